"""Helpers for the deploy tests on the real Docker engine (fixtures are in conftest)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_deployproof.deploy.history import History
from tests.conftest import ComposeStack


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
