"""The remote deploy backend (DEP-8): deployproof drives the reference runner on loopback,
which applies real Compose deploys; hostile or broken requests deploy nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pytest_deployproof.deploy.runner import RunnerError
from pytest_deployproof.observe.stackfiles import env_value
from pytest_deployproof.signed_http import signature
from tests.support.compose import ComposeStack
from tests.support.deploying import container, deploy_inventory, history_lines
from tests.support.known_issues import KnownIssueWarning
from tests.support.network import free_port, wait_for_port
from tests.support.repo import SUITES

SECRET = "runner-s3cret"


@pytest.fixture
def runner(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path]
) -> Iterator[Callable[[], str]]:
    """`deployproof runner serve` for the stack, and the inventory that deploys through it.
    Calling the returned function again restarts the runner (its memory is then on disk)."""
    app, state = deploy_project
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (pytester.path / "inventories" / "test.yml").write_text(
        deploy_inventory(
            app, state, f"    runner: {{url: '{url}', allow_insecure_http: true, timeout_s: 90}}\n"
        )
    )
    # PYTHONFAULTHANDLER: a runner that will not stop is sent SIGABRT and its threads'
    # stacks (written to its stderr file) say where it hangs.
    env = {**os.environ, "DEPLOYPROOF_RUNNER_SECRET": SECRET, "PYTHONFAULTHANDLER": "1"}
    processes: list[subprocess.Popen[bytes]] = []
    stderr_files: list[Path] = []

    def stop(running: subprocess.Popen[bytes], stderr: Path) -> None:
        running.terminate()
        try:
            running.wait(timeout=60)  # a loaded CI machine: stopping took over 10 s once
        except subprocess.TimeoutExpired:
            # Known, not understood (seen twice in clean-clone CI, never locally): an idle
            # runner outlives SIGTERM. Its threads' stacks are taken (SIGABRT with
            # PYTHONFAULTHANDLER) and reported in the warnings summary; the run goes on.
            running.send_signal(signal.SIGABRT)
            running.wait(timeout=30)
            threads = stderr.read_text()
            warnings.warn(
                f"known issue, an idle runner outlived SIGTERM by 60 s; its threads:\n{threads}",
                KnownIssueWarning,
                stacklevel=1,
            )

    def start() -> str:
        for running, stderr in zip(processes, stderr_files, strict=True):
            if running.returncode is None:
                stop(running, stderr)
        stderr_files.append(pytester.path / f"runner-{len(processes)}.stderr")
        argv = ["runner", "serve", "--env", "test", "--stack", "app", "--port", str(port)]
        with stderr_files[-1].open("wb") as stderr:  # the child keeps its own copy
            processes.append(
                subprocess.Popen(
                    [str(Path(sys.executable).parent / "deployproof"), *argv],
                    cwd=pytester.path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            )
        wait_for_port(port, "deployproof runner")
        return url

    try:
        start()
        yield start
    finally:
        for running, stderr in zip(processes, stderr_files, strict=True):
            if running.returncode is None:
                stop(running, stderr)


def post(url: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/deploy", content=body, headers=headers, timeout=10)


def request(**fields: object) -> bytes:
    """A deploy request: every field the runner judges is inside the signed body."""
    data = {"env": "test", "tag": "v2.0.0", "triggered_by": "t", "delivery": "delivery-1",
            "sent_at": time.time(), **fields}  # fmt: skip
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def signed(data: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": signature(secret.encode(), data)}


def test_the_runner_refuses_what_is_not_a_fresh_signed_deploy(
    pytester: pytest.Pytester,
    deploy_project: tuple[ComposeStack, Path],
    runner: Callable[[], str],
) -> None:
    app, _ = deploy_project
    url = runner()
    body = request()
    stale = request(sent_at=time.time() - 3 * 86400, delivery="delivery-old")
    huge = b"{" + b" " * (65 * 1024) + b"}"
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = {
        "missing signature": (body, {}, 401),
        "wrong secret": (body, signed(body, secret="guess"), 401),
        "tampered body": (body.replace(b"v2.0.0", b"v9.9.9"), signed(body), 401),
        "days later": (stale, signed(stale), 401),
        "no time inside": (untimed := request(sent_at=...), signed(untimed), 400),
        "not JSON": (b"tag=v2", signed(b"tag=v2"), 400),
        "oversized": (huge, signed(huge), 413),
        "shell in tag": (shell := request(tag="v2;rm -rf /"), signed(shell), 400),
        "other env": (other := request(env="prod"), signed(other), 400),
        # well-formed and signed, but not a tag the inventory's image_tag_pattern allows
        "latest": (latest := request(tag="latest"), signed(latest), 400),
    }
    for case, (data, headers, status) in cases.items():
        assert post(url, data, **headers).status_code == status, case
    for tag in (5, None, True, ["v2"]):  # once written as TAG=None
        data = request(tag=tag)
        assert post(url, data, **signed(data)).status_code == 400, tag
    deep_answer = post(url, deep[: 60 * 1024], **signed(deep[: 60 * 1024]))
    assert deep_answer.status_code == 400  # answered, not a dropped connection
    health = httpx.get(f"{url}/health")
    assert health.json() == {"status": "ok", "tag": "v1.0.0"}
    assert health.headers["X-Hub-Signature-256"] == signature(SECRET.encode(), health.content)
    assert env_value((app.run_dir / ".env").read_text(), "APP_IMAGE_TAG") == "v1.0.0"

    assert post(url, body, **signed(body)).status_code == 202
    # The same signed request again, with any headers: the id is inside what is signed.
    assert post(url, body, **signed(body), **{"X-Deployproof-Delivery": "fresh"}).status_code == 409
    deadline = time.monotonic() + 90
    while httpx.get(f"{url}/health").json().get("status") != "ok":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert httpx.get(f"{url}/health").json() == {
        "status": "ok",
        "tag": "v2.0.0",
        "delivery": "delivery-1",
        "triggered_by": "t",
    }
    assert container(app)["image"].endswith(":v2.0.0")
    runner()  # restarted: what it took is remembered on disk
    assert post(url, body, **signed(body)).status_code == 409

    no_secret = subprocess.run(
        [str(Path(sys.executable).parent / "deployproof"), "runner", "serve", "--env", "test",
         "--stack", "app", "--port", "0"],
        cwd=pytester.path, capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if k != "DEPLOYPROOF_RUNNER_SECRET"},
    )  # fmt: skip
    assert no_secret.returncode == 2
    assert "refusing to start without a runner secret" in no_secret.stderr


def test_a_client_does_not_believe_a_health_answer_it_cannot_verify(
    runner: Callable[[], str],
) -> None:
    from pytest_deployproof.deploy.runner import RunnerClient

    url = runner()
    assert RunnerClient(url, SECRET).health() == {"status": "ok", "tag": "v1.0.0"}
    impostor = RunnerClient(url, "another-secret", timeout_s=1)
    assert impostor.health()["status"].startswith("unsigned answer")
    with pytest.raises(RunnerError, match=r"did not apply v2\.0\.0 within 1 s: .*unsigned answer"):
        impostor.wait("v2.0.0", "delivery-1")


def test_deploy_through_the_runner_is_verified_and_rolled_back_through_it(
    pytester: pytest.Pytester,
    deploy_project: tuple[ComposeStack, Path],
    runner: Callable[[], str],
    bad_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, state = deploy_project
    url = runner()
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
    # DEP-8: the runner knows who asked: the deploying run, by the id its lease had.
    answer = httpx.get(f"{url}/health").json()
    assert re.fullmatch(r"deployproof run [0-9a-f-]{8,}", answer["triggered_by"]), answer

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
