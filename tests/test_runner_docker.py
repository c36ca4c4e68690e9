"""The remote deploy backend (DEP-8): deployproof drives the reference runner on loopback,
which applies real Compose deploys; hostile or broken requests deploy nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pytest_deployproof.observe.stackfiles import env_value
from pytest_deployproof.signed_http import signature
from tests.support.compose import ComposeStack
from tests.support.deploying import container, deploy_inventory, history_lines
from tests.support.network import free_port, wait_for_port
from tests.support.repo import SUITES

SECRET = "runner-s3cret"


@pytest.fixture
def runner(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path]
) -> Iterator[Callable[[], str]]:
    """`deployproof runner serve` for the stack, and the inventory that deploys through it."""
    app, state = deploy_project
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (pytester.path / "inventories" / "test.yml").write_text(
        deploy_inventory(app, state, f"    runner: {{url: '{url}', timeout_s: 90}}\n")
    )
    env = {**os.environ, "DEPLOYPROOF_RUNNER_SECRET": SECRET}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "deployproof"), "runner", "serve", "--env", "test",
         "--stack", "app", "--port", str(port)],
        cwd=pytester.path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, "deployproof runner")
        yield lambda: url
    finally:
        process.terminate()
        process.wait(timeout=10)


def post(url: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/deploy", content=body, headers=headers, timeout=10)


def test_the_runner_refuses_what_is_not_a_fresh_signed_deploy(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path], runner: Callable[[], str]
) -> None:
    app, _ = deploy_project
    url = runner()
    body = json.dumps({"env": "test", "tag": "v2.0.0", "triggered_by": "t"}).encode()
    now = str(int(time.time()))

    def signed(
        data: bytes, secret: str = SECRET, delivery: str = "d1", at: str = now
    ) -> dict[str, str]:
        return {
            "X-Hub-Signature-256": signature(secret.encode(), data),
            "X-Deployproof-Delivery": delivery,
            "X-Deployproof-Timestamp": at,
        }

    unsigned = {"X-Deployproof-Delivery": "d0", "X-Deployproof-Timestamp": now}
    shell = json.dumps({"env": "test", "tag": "v2;rm -rf /"}).encode()
    other_env = json.dumps({"env": "prod", "tag": "v2.0.0"}).encode()
    huge = b"{" + b" " * (65 * 1024) + b"}"
    cases = {
        "missing signature": (body, unsigned, 401),
        "wrong secret": (body, signed(body, secret="guess"), 401),
        "tampered body": (body.replace(b"v2.0.0", b"v9.9.9"), signed(body), 401),
        "stale": (body, signed(body, at=str(int(time.time()) - 3600)), 401),
        "not JSON": (b"tag=v2", signed(b"tag=v2"), 400),
        "shell in tag": (shell, signed(shell), 400),
        "other env": (other_env, signed(other_env), 400),
        "oversized": (huge, signed(huge), 413),
    }
    for case, (data, headers, status) in cases.items():
        assert post(url, data, **headers).status_code == status, case
    assert httpx.get(f"{url}/health").json() == {"status": "ok", "tag": "v1.0.0"}
    assert env_value((app.run_dir / ".env").read_text(), "APP_IMAGE_TAG") == "v1.0.0"

    assert post(url, body, **signed(body, delivery="d9")).status_code == 202
    assert post(url, body, **signed(body, delivery="d9")).status_code == 409  # replayed
    deadline = time.monotonic() + 90
    while httpx.get(f"{url}/health").json() != {"status": "ok", "tag": "v2.0.0"}:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert container(app)["image"].endswith(":v2.0.0")

    no_secret = subprocess.run(
        [str(Path(sys.executable).parent / "deployproof"), "runner", "serve", "--env", "test",
         "--stack", "app", "--port", "0"],
        cwd=pytester.path, capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if k != "DEPLOYPROOF_RUNNER_SECRET"},
    )  # fmt: skip
    assert no_secret.returncode == 2
    assert "refusing to start without a runner secret" in no_secret.stderr


def test_deploy_through_the_runner_is_verified_and_rolled_back_through_it(
    pytester: pytest.Pytester,
    deploy_project: tuple[ComposeStack, Path],
    runner: Callable[[], str],
    bad_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, state = deploy_project
    runner()
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    monkeypatch.setenv("DEPLOYPROOF_RUNNER_SECRET", SECRET)

    def deploy(version: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            "--env", "test", "--deploy", version, "-m", "smoke", "-p", "no:cacheprovider", "-rA"
        )  # fmt: skip

    result = deploy("v2.0.0")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["app: runner applied v2.0.0", "app: v2.0.0 deployed and verified"])
    assert container(app)["image"].endswith(":v2.0.0")

    result = deploy(bad_image)  # applied by the runner, fails its health check
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["app: v4.0.0 failed (*); rolled back to v2.0.0, verified"])
    assert container(app)["image"].endswith(":v2.0.0")
    assert env_value((app.run_dir / ".env").read_text(), "APP_IMAGE_TAG") == "v2.0.0"
    assert [line[:3] for line in history_lines(state)[-3:]] == [
        ("deploy", "v2.0.0", "success"),
        ("deploy", "v4.0.0", "fail"),
        ("rollback", "v2.0.0", "success"),
    ]
