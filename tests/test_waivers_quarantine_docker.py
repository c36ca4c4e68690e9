"""Waivers and quarantine on a real stack. A waived gate neither passes nor fails and does
not hold a deploy; an expired one fails with its reason and does. A quarantined check runs
and says what happened, but is never green (no evidence for a deploy) and never fails the
run; an expired quarantine fails with its reason."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.compose import compose_binary, service_block
from tests.support.deploying import deploy_only_selected, plain_inventory
from tests.support.network import free_port
from tests.support.repo import SUITES


@pytest.fixture
def no_limits_stack(demo_image: str, tmp_path: Path) -> Iterator[tuple[str, Path, int]]:
    """A running stack whose service declares no resource limits (a vendor image, say)."""
    name = f"vendor{uuid.uuid4().hex[:6]}"
    run_dir = tmp_path / name
    run_dir.mkdir()
    port = free_port()
    service = service_block(demo_image, port, {}, {"deploy": None})
    (run_dir / "compose.yaml").write_text(yaml.safe_dump({"services": {"web": service}}))
    (run_dir / ".env").write_text("APP_IMAGE_TAG=v1.0.0\n")
    compose = [compose_binary(), "up", "-d", "--wait"]
    subprocess.run(compose, cwd=run_dir, check=True, capture_output=True)
    try:
        yield name, run_dir, port
    finally:
        subprocess.run(
            [compose_binary(), "down", "-t", "1"], cwd=run_dir, capture_output=True, check=False
        )


def _inventory(pytester: pytest.Pytester, stack: tuple[str, Path, int], until: str) -> None:
    name, run_dir, port = stack
    waiver = (
        f"{{gate: limits, reason: 'vendor image, limited by its systemd slice', until: {until}}}"
    )
    plain_inventory(pytester, run_dir, port, f"    waivers: [{waiver}]\n", stack=name)


def test_a_waived_gate_is_reported_and_does_not_hold_the_deploy(
    pytester: pytest.Pytester, no_limits_stack: tuple[str, Path, int]
) -> None:
    name, run_dir, _ = no_limits_stack
    _inventory(pytester, no_limits_stack, "2099-12-31")
    pytester.makepyfile(test_preflight=SUITES["test_preflight"], test_smoke=SUITES["test_smoke"])
    checked = pytester.runpytest_subprocess(
        "--env", "prod", "-m", "preflight", "-k", "resource_limits or compose_parses",
        "-p", "no:cacheprovider", "-rs",
    )  # fmt: skip
    checked.assert_outcomes(passed=1, skipped=1)
    checked.stdout.fnmatch_lines(
        [f"SKIPPED * stack {name}: resource limits: waived: vendor image, limited by its "
         "systemd slice (until 2099-12-31): service web has no cpus or memory limit"]
    )  # fmt: skip
    deployed = deploy_only_selected(pytester, "v2.0.0", "preflight or smoke")
    deployed.stdout.fnmatch_lines([f"*{name}: v2.0.0 deployed and verified*"])
    assert (run_dir / ".env").read_text() == "APP_IMAGE_TAG=v2.0.0\n"


def test_an_expired_waiver_fails_the_gate_and_holds_the_deploy(
    pytester: pytest.Pytester, no_limits_stack: tuple[str, Path, int]
) -> None:
    name, run_dir, _ = no_limits_stack
    _inventory(pytester, no_limits_stack, "2020-01-31")
    pytester.makepyfile(test_preflight=SUITES["test_preflight"], test_smoke=SUITES["test_smoke"])
    deployed = deploy_only_selected(pytester, "v2.0.0", "preflight or smoke")
    deployed.stdout.fnmatch_lines(
        [f"*stack {name}: resource limits: waiver expired on 2020-01-31: vendor image, limited "
         "by its systemd slice (renew or remove it); service web has no cpus or memory limit*",
         f"*deploy of {name} v2.0.0 refused, nothing changed: preflight failed*"]
    )  # fmt: skip
    assert (run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"


QUARANTINED_USER_CHECK = """
def test_flaps(stack):
    assert False, "the CDN answered 502 again"
"""


def _quarantine(pytester: pytest.Pytester, stack: tuple[str, Path, int], entries: str) -> None:
    name, run_dir, port = stack
    plain_inventory(pytester, run_dir, port, f"    quarantine: [{entries}]\n", stack=name)


def test_a_quarantined_check_runs_is_shown_and_neither_passes_nor_fails(
    pytester: pytest.Pytester, no_limits_stack: tuple[str, Path, int]
) -> None:
    name, _, _ = no_limits_stack
    _quarantine(
        pytester,
        no_limits_stack,
        "{check: flaps, reason: 'CDN flaps, ticket OPS-7', until: 2099-12-31}, "
        "{check: test_service_running, target: 'w*', reason: 'watching it', until: 2099-12-31}",
    )
    pytester.makepyfile(test_smoke=SUITES["test_smoke"], test_mine=QUARANTINED_USER_CHECK)
    result = pytester.runpytest_subprocess("--env", "prod", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=2)  # the endpoint passes; two quarantined
    assert result.ret == 0  # a failing quarantined check does not fail the run
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED * quarantined: CDN flaps, ticket OPS-7 (until 2099-12-31); it failed: "
            "*the CDN answered 502 again*",
            "SKIPPED * quarantined: watching it (until 2099-12-31); it passed",
        ]
    )
    # Never green: a deploy whose only check of the stack is quarantined is not verified.
    pytester.makepyfile(test_smoke="", test_mine=QUARANTINED_USER_CHECK)
    held = deploy_only_selected(pytester, "v2.0.0", "not nothing")
    assert held.ret == 6, held.stdout.str()
    held.stdout.fnmatch_lines([f"*{name}: v2.0.0 HELD, not verified*"])


def test_an_expired_quarantine_fails_with_its_reason_even_when_the_check_passes(
    pytester: pytest.Pytester, no_limits_stack: tuple[str, Path, int]
) -> None:
    _quarantine(
        pytester, no_limits_stack,
        "{check: service_running, reason: 'watching it', until: 2020-01-31}",
    )  # fmt: skip
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    result = pytester.runpytest_subprocess("--env", "prod", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*quarantine expired on 2020-01-31: watching it (renew or remove it); the check passed*"]
    )


def test_a_preflight_gate_cannot_be_quarantined_into_a_deploy(
    pytester: pytest.Pytester, no_limits_stack: tuple[str, Path, int]
) -> None:
    """The stack has no limits: quarantining the gate must not let the deploy through."""
    name, run_dir, _ = no_limits_stack
    _quarantine(
        pytester, no_limits_stack,
        "{check: resource_limits, reason: 'flaky they say', until: 2099-12-31}",
    )  # fmt: skip
    pytester.makepyfile(test_preflight=SUITES["test_preflight"], test_smoke=SUITES["test_smoke"])
    deployed = deploy_only_selected(pytester, "v2.0.0", "preflight or smoke")
    deployed.stdout.fnmatch_lines([f"*deploy of {name} v2.0.0 refused, nothing changed*"])
    assert (run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
