"""Adopted as users adopt it: the built wheel, installed into a fresh venv, in a repository
that holds nothing but an inventory (and, in one case, a conftest of its own).

The wheel is built from this checkout (``pip wheel``) and installed into a new venv that
has no other copy of the package: its dependencies come from this venv's site-packages,
added after its own by a ``.pth`` line (``.pth`` files are read only in site
directories, so this venv's editable install of the package is not active there, and
each test asserts which copy ran). Real Compose projects on the real engine are checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import junit
from tests.support.compose import ComposeStack, inventory_yaml
from tests.support.repo import REPO


@dataclass(frozen=True)
class Installed:
    """A venv holding the installed wheel."""

    venv: Path

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def run(self, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
        """``argv`` with the venv's executables first on PATH, in ``cwd``, as a user runs it
        (no DEPLOYPROOF_* or PYTEST_* settings of this suite, no coverage hooks of this run)."""
        ours = ("COV", "PYTEST_", "DEPLOYPROOF_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
        )


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(dist), str(REPO)],
        check=True,
    )  # fmt: skip
    [wheel] = dist.glob("pytest_deployproof-*.whl")
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / version / "site-packages"
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )  # fmt: skip
    return Installed(venv)


def test_the_wheel_carries_the_bundled_checks_and_both_entry_points(
    installed: Installed, tmp_path: Path
) -> None:
    done = installed.run(
        tmp_path,
        installed.python,
        "-c",
        "import importlib.metadata as m, pytest_deployproof, pytest_deployproof.suites as s;"
        "import pathlib;"
        "print(pytest_deployproof.__file__);"
        "print(sorted(p.name for p in pathlib.Path(s.__file__).parent.glob('test_*.py')));"
        "eps = m.distribution('pytest-deployproof').entry_points;"
        "print(sorted(f'{e.group}:{e.value}' for e in eps))",
    )
    assert done.returncode == 0, done.stderr
    where, suites, entry_points = done.stdout.splitlines()
    assert where.startswith(str(installed.venv))  # the installed copy, not this checkout
    assert suites == str(["test_drift.py", "test_health.py", "test_preflight.py", "test_smoke.py"])
    assert entry_points == str(
        ["console_scripts:pytest_deployproof.ops.cli:main", "pytest11:pytest_deployproof.plugin"]
    )
    version = installed.run(tmp_path, "deployproof", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip().startswith("deployproof 0.")


def _user_repository(path: Path, app: ComposeStack) -> Path:
    """A repository with nothing of ours in it but the inventory."""
    (path / "inventories").mkdir(parents=True)
    (path / "inventories" / "prod.yml").write_text(inventory_yaml([app]))
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


@pytest.mark.parametrize("own_conftest", [False, True], ids=["plain", "conftest-with-env"])
def test_installed_plugin_checks_a_repository_that_holds_only_an_inventory(
    installed: Installed,
    compose_stack: Callable[..., ComposeStack],
    tmp_path: Path,
    own_conftest: bool,
) -> None:
    app = compose_stack("app")
    app.up()
    repo = _user_repository(tmp_path / "repo", app)
    env = ["--env", "prod"]
    if own_conftest:  # the most common hand-written option: ours steps aside
        (repo / "conftest.py").write_text(
            "def pytest_addoption(parser):\n    parser.addoption('--env', default='dev')\n"
        )
        env = ["--dp-env", "prod"]
    report = tmp_path / "report.xml"

    def check() -> tuple[subprocess.CompletedProcess[str], dict[str, junit.Outcome]]:
        done = installed.run(
            repo, "pytest", *env, "-m", "preflight or smoke", "-p", "no:cacheprovider",
            f"--junitxml={report}",
        )  # fmt: skip
        return done, junit.outcomes(report)

    done, outcomes = check()
    assert done.returncode == 0, done.stdout + done.stderr
    if own_conftest:
        assert "deployproof: --env is this project's own option; deployproof's is --dp-env" in (
            done.stdout
        )
    kinds = {test_id.split("[")[0] for test_id in outcomes}
    assert {"test_service_running", "test_endpoint_answers", "test_compose_parses"} <= kinds
    assert {o.status for o in outcomes.values()} == {"passed"}, outcomes

    # The service stops: exactly its checks fail (its endpoint is blocked by it, not failed).
    app.compose("stop", "web")
    done, outcomes = check()
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
    failed = sorted(i for i, o in outcomes.items() if o.status in ("failed", "error"))
    assert failed == ["test_service_running[prod/platform/app/web]"], outcomes
    assert outcomes["test_endpoint_answers[prod/platform/app/health]"].status == "skipped"
