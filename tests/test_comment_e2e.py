"""The comment hook end to end (CMT-1..3, BYD-6, DEP-1/2): ``deployproof webhook serve`` as
a real process on loopback, sent signed ``issue_comment`` deliveries as GitHub sends
them, deploying a real Compose stack and rolling it back.

GitHub's REST API is the one stand-in (FakeGitHub, served by pytest-httpserver); the
server, its pytest runs, Docker, Compose and the stack are real.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from pytest_deployproof.deploy.history import History
from pytest_deployproof.signed_http import signature
from tests.support.compose import ComposeStack
from tests.support.deploying import container, deploy_inventory, history_lines
from tests.support.repo import SUITES
from tests.test_comment_hook import BOT, REPO, FakeGitHub, approve, event

SECRET = "webhook-e2e-s3cret"


class Server:
    """``deployproof webhook serve`` started in ``project``; stopped with SIGTERM."""

    def __init__(self, project: Path, state: Path, api: str, log: Path) -> None:
        self.log = log
        with log.open("w") as output:  # its stdout and stderr; the child keeps its own copy
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "deployproof"), "webhook", "serve",
                 "--host", "127.0.0.1", "--port", "0", "--repository", REPO,
                 "--state-dir", str(state), "--inventory", "inventories"],
                cwd=project, stdout=output, stderr=subprocess.STDOUT,
                env={**os.environ, "DEPLOYPROOF_WEBHOOK_SECRET": SECRET, "GITHUB_API_URL": api,
                     "GITHUB_TOKEN": "t0ken", "DEPLOYPROOF_BOT_LOGIN": BOT},
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not (found := re.search(r"listening on 127\.0\.0\.1:(\d+)\n", self.errors())):
            assert self.process.poll() is None, f"the server did not start:\n{self.errors()}"
            assert time.monotonic() < deadline, f"the server never listened:\n{self.errors()}"
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{found[1]}/"

    def errors(self) -> str:
        return self.log.read_text()

    def deliver(self, body: bytes, delivery: str) -> tuple[int, str]:
        """As GitHub delivers: the signature over the exact bytes sent."""
        headers = {"X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": delivery,
                   "X-Hub-Signature-256": signature(SECRET.encode(), body),
                   "Content-Type": "application/json"}  # fmt: skip
        answer = httpx.post(self.url, content=body, headers=headers, timeout=30)
        return answer.status_code, answer.text.strip()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def comment(body: str, comment_id: int) -> bytes:
    data = event(body)
    data["comment"]["id"] = comment_id
    data["comment"]["created_at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(data).encode()


def wait_for_reaction(github: FakeGitHub, server: Server, comment_id: int) -> str:
    """The hook's last word on a comment: 🚀, 👎 or 😕 (👀 comes first)."""
    deadline = time.monotonic() + 180
    while True:
        done = [r for c, r in github.reactions if c == comment_id and r != "eyes"]
        if done:
            return done[-1]
        assert server.process.poll() is None, f"the server died:\n{server.errors()}"
        assert time.monotonic() < deadline, f"no answer to {comment_id}:\n{server.errors()}"
        time.sleep(0.3)


@pytest.fixture
def sha_image(demo_image: str) -> Iterator[Callable[[str], str]]:
    """Tag the demo image's v2.0.0 as a commit's version (as CI would push it); untagged after."""
    made: list[str] = []

    def tag(version: str) -> str:
        image = f"{demo_image}:{version}"
        subprocess.run(["docker", "tag", f"{demo_image}:v2.0.0", image], check=True)
        made.append(image)
        return image

    yield tag
    for image in made:
        subprocess.run(["docker", "rmi", image], capture_output=True, check=False)


def status_version(app: ComposeStack) -> str:
    return str(httpx.get(f"{app.url}/cgi-bin/status", timeout=10).json()["version"])


def test_apply_to_an_inventory_environment_then_revert_through_the_webhook_server(
    httpserver: HTTPServer,
    compose_stack: Callable[..., ComposeStack],
    sha_image: Callable[[str], str],
    demo_image: str,
    tmp_path: Path,
) -> None:
    head = uuid.uuid4().hex + uuid.uuid4().hex[:8]  # a commit of this run only
    version = f"sha-{head}"  # the default: the full SHA (HookSettings.commit_version)
    sha_image(version)
    github = FakeGitHub(heads=[head], reviews=[approve("bob", commit=head)])
    httpserver.expect_request(re.compile(".*")).respond_with_handler(github.serve)

    # The environment is the inventory's: inventories/prod.yml is `prod` (seed 004).
    app = compose_stack("app")
    app.up()
    project, state = tmp_path / "project", tmp_path / "state"
    (project / "inventories").mkdir(parents=True)
    (project / "inventories" / "prod.yml").write_text(deploy_inventory(app, state))
    (project / "suites").mkdir()
    for suite in ("test_smoke", "test_health"):
        (project / "suites" / f"{suite}.py").write_text(SUITES[suite])
    (project / "pytest.ini").write_text("[pytest]\ntestpaths = suites\n")
    # v1.0.0 runs and was verified by an earlier deploy: what /revert goes back to.
    History(state / "deploy-history.log").record("app", "prod", "deploy", "v1.0.0", "success")
    before = container(app)

    server = Server(project, tmp_path / "webhook-state", httpserver.url_for("").rstrip("/"),
                    tmp_path / "server.log")  # fmt: skip
    try:
        apply = comment(f"/apply prod {head[:7]}", 101)
        assert server.deliver(apply, "d-1") == (202, "accepted")
        assert wait_for_reaction(github, server, 101) == "rocket", server.errors()

        # Deployed for real: the env file, the running container and what it serves.
        assert (app.run_dir / ".env").read_text() == f"APP_IMAGE_TAG={version}\n"
        running = container(app)
        assert running["id"] != before["id"]
        assert (running["image"], running["health"]) == (f"{demo_image}:{version}", "healthy")
        assert status_version(app) == version
        assert history_lines(state)[-1][:3] == ("deploy", version, "success")

        # One dashboard for the commit: created once, then edited in place.
        [board] = github.dashboards()
        assert board["body"].splitlines()[0] == f"<!-- deployproof-dashboard:{head[:7]} -->"
        assert "| Apply: prod | ✅ | exit code 0 |" in board["body"]
        posts = [c for c in github.calls if c.startswith("POST /repos/acme/infra/issues/7/")]
        patches = [c for c in github.calls if c.startswith("PATCH ")]
        assert posts == ["POST /repos/acme/infra/issues/7/comments"]
        assert len(patches) >= 1
        assert set(patches) == {f"PATCH /repos/{REPO}/issues/comments/{board['id']}"}
        # Production was allowed on the approval of this exact head by a writer.
        assert f"GET /repos/{REPO}/pulls/7/reviews" in github.calls
        assert f"GET /repos/{REPO}/collaborators/bob/permission" in github.calls

        # The same signed delivery again (as is, and with a new delivery id): nothing runs.
        calls = len(github.calls)
        assert server.deliver(apply, "d-1") == (200, "comment already handled: ignored")
        assert server.deliver(apply, "d-1-again") == (200, "comment already handled: ignored")
        time.sleep(1)
        assert len(github.calls) == calls
        assert container(app)["id"] == running["id"]

        # prod is protected: the revert names the head, approved, as the apply did.
        revert = comment(f"/revert prod {head[:7]}", 102)
        assert server.deliver(revert, "d-2") == (202, "accepted")
        assert wait_for_reaction(github, server, 102) == "rocket", server.errors()

        # Rolled back for real, to the last good version before the apply.
        assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
        back = container(app)
        assert (back["image"], back["health"]) == (f"{demo_image}:v1.0.0", "healthy")
        assert status_version(app) == "v1.0.0"
        assert history_lines(state)[-1][:3] == ("rollback", "v1.0.0", "success")
        # The same dashboard, now with both rows; still the one comment.
        assert [c["id"] for c in github.dashboards()] == [board["id"]]
        assert "| Apply: prod | ✅ | exit code 0 |" in board["body"]
        assert "| Revert: prod | ✅ | exit code 0 |" in board["body"]
        assert github.calls.count(f"POST /repos/{REPO}/issues/7/comments") == 1
        assert github.reactions == [(101, "eyes"), (101, "rocket"), (102, "eyes"),
                                    (102, "rocket")]  # fmt: skip
    finally:
        code = server.stop()
    assert code == 0, server.errors()
    assert "Traceback" not in server.errors()
