"""Layer drift (DRF-3): real ansible-core on this host in check mode, and the terraform
exit-code contract followed by a command (terraform itself is not installable here)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.support.repo import SUITES

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: the motd the platform layer manages
      ansible.builtin.copy:
        dest: {target}
        content: "managed by ansible\\n"
"""


def layer_inventory(layers: str) -> str:
    return f"hosts: {{here: {{spec: 'local://'}}}}\nrepo: ..\nlayers:\n{layers}stacks: {{}}\n"


def run_drift(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    (pytester.path / "test_drift.py").write_text(SUITES["test_drift"])
    return pytester.runpytest_subprocess(
        "--env", "test", "-m", "drift", "-k", "layer", "-p", "no:cacheprovider", "-rA", *args
    )  # fmt: skip


@pytest.fixture
def ansible_playbook() -> str:
    found = shutil.which("ansible-playbook") or str(
        Path(sys.executable).parent / "ansible-playbook"
    )
    if not Path(found).exists():
        pytest.fail("ansible-playbook is not installed (ansible-core is a dev dependency)")
    return found


def test_ansible_in_sync_then_changed_by_hand_then_broken(
    pytester: pytest.Pytester, tmp_path: Path, ansible_playbook: str
) -> None:
    target = tmp_path / "motd"
    (pytester.path / "site.yml").write_text(PLAYBOOK.format(target=target))
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(
        layer_inventory(
            "  platform: {order: 2, engine: ansible, path: site.yml, args: ['-i', 'localhost,', "
            f"'-e', 'ansible_python_interpreter={sys.executable}']}}\n"
        )
    )
    target.write_text("managed by ansible\n")
    run_drift(pytester).assert_outcomes(passed=1)

    target.write_text("edited by hand\n")
    result = run_drift(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["layer platform: ansible plan:", "- changed=1"])
    assert target.read_text() == "edited by hand\n"  # check mode changed nothing

    (pytester.path / "site.yml").write_text(
        "- hosts: localhost\n  tasks:\n    - no_such_module: {}\n"
    )
    result = run_drift(pytester)
    result.assert_outcomes(errors=1)  # an engine error is inconclusive, not drift
    result.stdout.fnmatch_lines(["INCONCLUSIVE: layer platform: ansible plan failed: exit code *"])


CONTRACT = "exit {code}"


def test_the_terraform_contract_drift_error_and_ordered_apply(pytester: pytest.Pytester) -> None:
    """0: in sync, 2: drift, anything else: error. With --ordered, a layer after a drifted
    one is blocked by it."""
    pytester.mkdir("inventories")
    inventory = pytester.path / "inventories" / "test.yml"

    def layers(bootstrap: int, platform: int) -> None:
        inventory.write_text(
            layer_inventory(
                "  bootstrap: {order: 1, engine: command, "
                f"command: 'echo plan; exit {bootstrap}'}}\n"
                f"  platform: {{order: 2, engine: command, command: 'exit {platform}'}}\n"
            )
        )

    layers(0, 0)
    run_drift(pytester).assert_outcomes(passed=2)
    layers(2, 0)
    result = run_drift(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["layer bootstrap: command plan:", "- exit code 2", "- plan"])
    result = run_drift(pytester, "--ordered")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*blocked by layer bootstrap: it drifted*"])
    layers(0, 1)
    result = run_drift(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["INCONCLUSIVE: layer platform: command plan failed: exit code 1"])
