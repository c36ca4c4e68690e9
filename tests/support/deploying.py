"""Deploying a real stack with ``--deploy``, for the deploy tests on the real Docker engine.

``deploy_project`` (a fixture; this module is a pytest plugin) gives a running stack
and its inventory; the helpers run deploys, inspect the container and read history.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deployproof.deploy.history import History
from tests.support.compose import ComposeStack


@pytest.fixture
def deploy_project(
    pytester: pytest.Pytester, compose_stack: Callable[..., ComposeStack], tmp_path: Path
) -> tuple[ComposeStack, Path]:
    """A running stack at v1.0.0 and an inventory for it, history and locks in tmp_path/state."""
    app = compose_stack("app")
    app.up()
    state = tmp_path / "state"
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(deploy_inventory(app, state))
    return app, state


def deploy_inventory(app: ComposeStack, state: Path, extra: str = "") -> str:
    """An inventory of one stack, ``app``; ``extra`` adds lines to the stack (4-space indent)."""
    return (
        "hosts: {here: {spec: 'local://'}}\n"
        "layers: {platform: {order: 2, engine: compose}}\n"
        "probes: {tries: 2, interval_s: 0.2, deadline_s: 8}\n"
        f"state_dir: {state}\n"
        "up_timeout_s: 60\n"
        "stacks:\n"
        f"  app:\n    layer: platform\n    host: here\n    run_dir: {app.run_dir}\n"
        f"    project: {app.project}\n    image_tag_var: APP_IMAGE_TAG\n"
        "    services: {web: {critical: true}}\n"
        f"    endpoints: [{{name: health, url: '{app.url}/cgi-bin/health'}}]\n" + extra
    )


def plain_inventory(
    pytester: pytest.Pytester, run_dir: Path, port: int, extra: str = "", stack: str = "web"
) -> None:
    """``inventories/prod.yml`` of one stack started in ``run_dir`` the way people start
    them (no ``project:``); ``extra`` adds lines to the stack (4-space indent)."""
    (pytester.path / "inventories").mkdir(exist_ok=True)
    (pytester.path / "inventories" / "prod.yml").write_text(
        "hosts: {here: {spec: 'local://'}}\n"
        "probes: {tries: 2, interval_s: 0.2, deadline_s: 8}\n"
        "stacks:\n"
        f"  {stack}:\n    layer: platform\n    host: here\n    run_dir: {run_dir}\n{extra}"
        "    image_tag_var: APP_IMAGE_TAG\n"
        "    services: {web: {critical: true}}\n"
        f"    endpoints: [{{name: home, url: 'http://127.0.0.1:{port}/'}}]\n"
    )


def deploy_only_selected(pytester: pytest.Pytester, version: str, marks: str) -> pytest.RunResult:
    """``--deploy version`` of the prod environment with the checks the test wrote."""
    return pytester.runpytest_subprocess(
        "--env", "prod", "--deploy", version, "-m", marks,
        "-p", "no:cacheprovider", "-o", "deployproof_builtin=false",
    )  # fmt: skip


def deploy(pytester: pytest.Pytester, version: str, marks: str = "smoke") -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--env", "test", "--deploy", version, "-m", marks, "-p", "no:cacheprovider", "-rA"
    )


def container(app: ComposeStack) -> dict[str, str]:
    done = subprocess.run(
        [
            "docker",
            "inspect",
            app.container("web"),
            "--format",
            "{{json .Id}} {{json .Config.Image}} {{json .State.Health.Status}}",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    cid, image, health = (json.loads(part) for part in done.stdout.split())
    return {"id": cid, "image": image, "health": health}


def history_lines(state: Path) -> list[tuple[str, str, str, str]]:
    return [
        (e.action, e.version, e.status, e.notes)
        for e in History(state / "deploy-history.log").entries()
    ]


SLOW_CHECK = """
import time, pathlib

def test_slow(stack):
    pathlib.Path("started").write_text("yes")
    time.sleep(60)
"""


def start_deploy(pytester: pytest.Pytester, version: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--env",
            "test",
            "--deploy",
            version,
            "-p",
            "no:cacheprovider",
            "test_slow.py",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)
