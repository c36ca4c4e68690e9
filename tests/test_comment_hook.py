"""The pull-request comment hook (CMT-1..3, BYD-6) against GitHub's REST API served locally.

GitHub cannot be reached from here, so its API is served by pytest-httpserver with
the state a real repository would have (comments, reactions, reviews, the pull
request's head); the stack, Docker and pytest runs are real.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pytest_deployproof.ops.commands import LAYERS, HelpNeeded, parse
from pytest_deployproof.ops.comment_hook import HookSettings, RevertError, handle
from pytest_deployproof.ops.github import GitHub
from pytest_deployproof.ops.hook_commands import _revert_inventory
from pytest_deployproof.ops.webhook import WebhookServer
from tests.support.compose import ComposeStack, inventory_yaml
from tests.support.repo import SUITES

REPO = "acme/infra"
BOT = "deployproof-bot"
SHA1, SHA2 = "abcdef1" + "0" * 33, "1234567" + "0" * 33


@dataclass
class FakeGitHub:
    """What the API serves and what it was told, for one repository and pull request 7."""

    heads: list[str] = field(default_factory=lambda: [SHA1])
    reviews: list[dict[str, Any]] = field(default_factory=list)
    # Repository roles; anyone else is not a collaborator (404), as on GitHub.
    roles: dict[str, str] = field(
        default_factory=lambda: {"alice": "write", "bob": "write", "carol": "admin", "dan": "read"}
    )
    comments: list[dict[str, Any]] = field(default_factory=list)
    reactions: list[tuple[int, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(500))

    def head(self) -> str:
        return self.heads.pop(0) if len(self.heads) > 1 else self.heads[0]

    def serve(self, request: Request) -> Response:
        self.calls.append(f"{request.method} {request.path}")
        assert request.headers.get("Authorization") == "Bearer t0ken"
        path = request.path.removeprefix(f"/repos/{REPO}")
        body = request.get_json(silent=True) or {}
        if request.method == "GET" and path == "/pulls/7":
            return self.json({"head": {"sha": self.head()}, "base": {"ref": "main"}})
        if found := re.fullmatch(r"/collaborators/([^/]+)/permission", path):
            role = self.roles.get(found[1])
            if role is None:
                return self.json({"message": "Not Found"}, 404)
            legacy = {"maintain": "write", "triage": "read"}.get(role, role)
            return self.json({"permission": legacy, "role_name": role})
        if request.method == "GET" and path == "/pulls/7/reviews":
            return self.json(self.reviews if request.args.get("page") == "1" else [])
        if request.method == "GET" and path == "/issues/7/comments":
            return self.json(self.comments if request.args.get("page") == "1" else [])
        if request.method == "POST" and path == "/issues/7/comments":
            comment = {"id": next(self.ids), "body": body["body"], "user": {"login": BOT}}
            self.comments.append(comment)
            return self.json(comment, 201)
        if found := re.fullmatch(r"/issues/comments/(\d+)/reactions", path):
            self.reactions.append((int(found[1]), body["content"]))
            return self.json({"content": body["content"]}, 201)
        if request.method == "PATCH" and (found := re.fullmatch(r"/issues/comments/(\d+)", path)):
            [comment] = [c for c in self.comments if c["id"] == int(found[1])]
            comment["body"] = body["body"]
            return self.json(comment)
        return self.json({"message": "Not Found"}, 404)

    @staticmethod
    def json(data: object, status: int = 200) -> Response:
        return Response(json.dumps(data), status, content_type="application/json")

    def dashboards(self) -> list[dict[str, Any]]:
        return [c for c in self.comments if c["body"].startswith("<!-- deployproof-dashboard:")]


@pytest.fixture
def github(httpserver: HTTPServer) -> FakeGitHub:
    fake = FakeGitHub()
    httpserver.expect_request(re.compile(".*")).respond_with_handler(fake.serve)
    return fake


def event(body: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "action": "created",
        "issue": {"number": 7, "pull_request": {"url": f"https://x/{REPO}/pulls/7"}},
        "comment": {
            "id": 101,
            "body": body,
            "user": {"login": "alice", "type": "User"},
            "author_association": "MEMBER",
        },
        "sender": {"login": "alice", "type": "User"},
        "repository": {"full_name": REPO},
    }
    for key, value in changes.items():
        if key in ("author_association", "body"):
            data["comment"][key] = value
        else:
            data[key] = value
    return data


def test_e2e_creates_one_dashboard_per_commit_and_updates_it(
    github: FakeGitHub, httpserver: HTTPServer, compose_stack: Callable[..., ComposeStack],
    tmp_path: Path,
) -> None:  # fmt: skip
    app = compose_stack("app")
    app.up()
    project = tmp_path / "project"
    (project / "inventories").mkdir(parents=True)
    (project / "inventories" / "staging.yml").write_text(inventory_yaml([app]))
    (project / "suites").mkdir()
    (project / "suites" / "test_smoke.py").write_text(SUITES["test_smoke"])
    (project / "suites" / "test_health.py").write_text(SUITES["test_health"])
    (project / "pytest.ini").write_text("[pytest]\ntestpaths = suites\n")

    def comment(body: str) -> subprocess.CompletedProcess[str]:
        (project / "event.json").write_text(json.dumps(event(body)))
        return subprocess.run(
            [str(Path(sys.executable).parent / "deployproof"), "comment", "--event", "event.json"],
            cwd=project, capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "GITHUB_API_URL": httpserver.url_for("").rstrip("/"),
                 "GITHUB_TOKEN": "t0ken", "DEPLOYPROOF_BOT_LOGIN": BOT},
        )  # fmt: skip

    done = comment("/e2e smoke")
    assert done.returncode == 0, done.stdout + done.stderr
    [board] = github.dashboards()
    lines = board["body"].splitlines()
    assert lines[0] == "<!-- deployproof-dashboard:abcdef1 -->"
    assert "| E2E: smoke | ✅ | exit code 0 |" in board["body"]
    assert any(line.startswith("| Smoke: platform | ✅ | 2 passed |") for line in lines)
    assert github.reactions == [(101, "eyes"), (101, "rocket")]
    # Created while running, then updated with the result: one POST, PATCHes after.
    assert github.calls.count("POST /repos/acme/infra/issues/7/comments") == 1
    assert f"PATCH /repos/acme/infra/issues/comments/{board['id']}" in github.calls

    # Same commit: the same comment, both stages on it. The stack declares no health
    # endpoint and no database: nothing was checked, which is held, never green.
    done = comment("/health")
    assert done.returncode == 6, done.stdout + done.stderr
    assert "INCONCLUSIVE: nothing was checked (2 skipped, none ran and passed)" in done.stdout
    assert [c["id"] for c in github.dashboards()] == [board["id"]]
    assert "| E2E: smoke | ✅ |" in board["body"]
    assert "| Health | ⏸️ | exit code 6 |" in board["body"]
    assert github.reactions[-1] == (101, "confused")

    github.heads = [SHA2]  # a new commit: a new dashboard
    assert comment("/e2e smoke").returncode == 0
    assert [c["body"].splitlines()[0] for c in github.dashboards()] == [
        "<!-- deployproof-dashboard:abcdef1 -->",
        "<!-- deployproof-dashboard:1234567 -->",
    ]

    app.compose("stop", "-t", "1", "web")  # a failing check: 👎 and ❌
    done = comment("/e2e smoke")
    assert done.returncode == 1
    assert github.reactions[-1] == (101, "-1")
    assert "| E2E: smoke | ❌ | exit code 1 |" in github.dashboards()[-1]["body"]


def settings(tmp_path: Path) -> HookSettings:
    return HookSettings(inventory=tmp_path / "inventories", bot_login=BOT, suites=("isolation",))


def hook(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path, data: dict[str, Any]
) -> tuple[str, list[list[str]]]:
    ran: list[list[str]] = []

    def run_checks(args: list[str]) -> int:
        ran.append(args)
        return 0

    api = GitHub(REPO, token="t0ken", api=httpserver.url_for("").rstrip("/"))
    return handle(data, api, settings(tmp_path), run_checks).action, ran


@pytest.mark.parametrize(
    ("case", "data"),
    [
        ("edited", event("/e2e smoke", action="edited")),
        ("bot", event("/e2e smoke", sender={"login": "dependabot[bot]", "type": "Bot"})),
        ("not a PR", {**event("/e2e smoke"), "issue": {"number": 7}}),
        ("discussion", event("Looks good to me!")),
        ("indented: quoted in a code block", event("    /apply production abcdef1")),
    ],
)
def test_what_is_not_a_command_for_us_gets_no_reply_and_no_api_call(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path, case: str, data: dict[str, Any]
) -> None:
    action, ran = hook(github, httpserver, tmp_path, data)
    assert (action, ran, github.calls) == ("ignored", [], [])


@pytest.mark.parametrize(
    ("login", "association"),
    [("mallory", "NONE"), ("mallory", "MEMBER"), ("dan", "COLLABORATOR"), ("eve", "OWNER")],
    ids=["outsider", "org-member-without-write", "read-only-collaborator", "claims-owner"],
)
@pytest.mark.parametrize("body", ["/e2e smoke", "/help", "/nonsense", "/apply production abc1234"])
def test_a_commenter_without_write_permission_gets_nothing_not_even_help(
    github: FakeGitHub,
    httpserver: HTTPServer,
    tmp_path: Path,
    login: str,
    association: str,
    body: str,
) -> None:
    """Judged by the repository role the API reports, never by author_association."""
    data = event(body)
    data["comment"]["user"] = {"login": login, "type": "User"}
    data["comment"]["author_association"] = association
    action, ran = hook(github, httpserver, tmp_path, data)
    assert (action, ran) == ("ignored", [])
    assert github.calls == [f"GET /repos/{REPO}/collaborators/{login}/permission"]
    assert github.comments == []
    assert github.reactions == []


def approve(login: str | None, commit: str = SHA1, state: str = "APPROVED") -> dict[str, Any]:
    return {"user": {"login": login} if login else None, "state": state, "commit_id": commit}


@pytest.mark.parametrize(
    ("body", "reviews", "answer"),
    [
        ("/apply production abcdef1", [], "no approval of abcdef1"),
        (
            "/apply production abcdef1",
            [approve("bob", commit="0" * 40)],
            "no approval of abcdef1 (an approval of an earlier commit does not count)",
        ),
        ("/apply production abcdef1", [approve("mallory")], "by a reviewer with write access"),
        ("/apply production abcdef1", [approve("dan")], "by a reviewer with write access"),
        (
            "/apply production abcdef1",
            [approve("alice")],
            "the only approval of abcdef1 is the commenter's own",
        ),
        ("/apply production abcdef1", [approve(None), approve("mallory")], "write access"),
        (
            "/apply production abcdef1",
            [approve("bob"), approve("carol", state="CHANGES_REQUESTED")],
            "a reviewer with write access requests changes",
        ),
        (
            "/apply production 1234567",  # written for an older head: the head moved since
            [approve("bob")],
            "names 1234567, but the head is `abcdef1`",
        ),
    ],
    ids=["none", "stale", "outsider", "read-only", "self", "ghost", "changes", "head-moved"],
)
def test_production_refusals_run_nothing(
    github: FakeGitHub,
    httpserver: HTTPServer,
    tmp_path: Path,
    body: str,
    reviews: list[dict[str, Any]],
    answer: str,
) -> None:
    github.reviews = reviews
    action, ran = hook(github, httpserver, tmp_path, event(body))
    assert (action, ran) == ("refused", [])
    assert github.dashboards() == []
    assert github.reactions == [(101, "-1")]
    [reply] = github.comments
    assert answer in reply["body"]


def test_production_without_a_named_commit_is_answered_with_help(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    action, ran = hook(github, httpserver, tmp_path, event("/apply production"))
    assert (action, ran) == ("help", [])
    [reply] = github.comments
    assert "`/apply production <sha>`" in reply["body"]


def test_two_commands_in_one_comment_run_neither(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    for body in ("atlantis plan\n/apply production abcdef1", "/e2e smoke\ninfra dig"):
        github.comments.clear()
        action, ran = hook(github, httpserver, tmp_path, event(body))
        assert (action, ran) == ("help", [])
        assert "one command per comment" in github.comments[0]["body"]


def test_production_with_an_approval_of_the_head_deploys_it(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    github.reviews = [
        approve("mallory"),
        approve("bob", commit="0" * 40),
        approve("bob"),
        approve("mallory", state="CHANGES_REQUESTED"),  # anyone may review a public repo
    ]
    action, ran = hook(github, httpserver, tmp_path, event("/apply production abcdef1"))
    assert action == "ran"
    [args] = ran
    assert args[:2] == ["--dp-env", "production"]
    # The full SHA: a short one could be matched by a commit someone else pushes.
    assert args[args.index("--dp-deploy") + 1] == f"sha-{SHA1}"


def test_the_version_applied_for_a_commit_is_a_setting_and_a_bad_one_is_refused(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    short = HookSettings(inventory=tmp_path, bot_login=BOT, commit_version="sha-{sha7}")
    assert short.version_of(SHA1) == "sha-abcdef1"
    (tmp_path / "event.json").write_text(json.dumps(event("/apply staging")))
    for bad in ("sha-$(id)", "latest", "{sha} x"):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "deployproof"), "comment", "--event", "event.json"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "GITHUB_API_URL": httpserver.url_for("").rstrip("/"),
                 "GITHUB_TOKEN": "t0ken", "DEPLOYPROOF_COMMIT_VERSION": bad},
        )  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"error: DEPLOYPROOF_COMMIT_VERSION={bad!r}: the tag /apply deploys" in done.stderr
        assert "Traceback" not in done.stderr
    assert github.calls == []  # refused before anything was asked or answered


def test_a_head_pushed_after_the_approval_check_is_not_deployed_to_production(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    """Approved and named: abcdef1. A push lands between the approval check and the apply:
    nothing is deployed, neither the approved commit nor the new one."""
    github.reviews = [approve("bob")]
    github.heads = [SHA1, SHA2]
    action, ran = hook(github, httpserver, tmp_path, event("/apply production abcdef1"))
    assert (action, ran) == ("refused", [])
    [board] = github.dashboards()
    assert "head moved to 1234567: not applied" in board["body"]


def test_a_head_that_moves_before_the_apply_is_not_applied(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    github.heads = [SHA1, SHA2]  # resolved once, then moved
    action, ran = hook(github, httpserver, tmp_path, event("/apply staging"))
    assert (action, ran) == ("refused", [])
    [board] = github.dashboards()
    assert "head moved to 1234567: not applied" in board["body"]
    assert "The head moved from `abcdef1` to `1234567`: comment again." in board["body"]


ALLOWED = {
    "-m",
    "smoke",
    "health",
    "preflight",
    "drift",
    "smoke or health",
    "--dp-suite",
    "isolation",
    "--dp-layer",
    *LAYERS,
    "--dp-env",
    "staging",
    "production",
    "--dp-inventory",
    "--dp-deploy",
    f"sha-{SHA1}",
    "--dp-dashboard",
}
HOSTILE = [
    "/e2e smoke; rm -rf /",
    "/e2e smoke && curl evil",
    "/e2e $(id)",
    "/e2e `id`",
    "/e2e smoke|sh",
    "/e2e -p evil",
    "/e2e --rootdir=/",
    "/e2e -o addopts=-pevil",
    "/e2e ../../etc/passwd",
    "/e2e /etc/passwd",
    "/e2e smoke -p evil",
    "/health -p",
    "/health --layer",
    "/plan -o",
    "/plan ../bootstrap",
    "/apply --deploy",
    "/apply staging --force",
    "/apply prod",
    "/apply production; true",
    "/revert now",
    "/e2e \uff53\uff4d\uff4f\uff4b\uff45",
    "/e2e sm\u043eke",
    "/\uff452e smoke",
    "/e2e smoke\u200b",
    "/e2e\tsmoke",
    "/e2e  smoke",
    "/E2E smoke",
    "/e2e SMOKE",
    "/e2e isolation/..",
    "/e2e isolation;",
    "/e2e " + "a" * 41,
    "/e2e smoke\n/apply production",
    "x" * (1 << 20),
    "/e2e smoke\n" + "y" * 70_000,
    "/e2e\x00smoke",
    "/e2e smoke\r\n/revert",
    "/help me please",
    "/e2e 'smoke'",
    '/e2e "smoke"',
    "/e2e ${IFS}",
    "/e2e %0a",
    "/e2e -m",
    "/e2e -k all",
    "/e2e --suite=../x",
    "atlantis apply -p x",
    "infra e2e --rootdir=/tmp",
    "infra dig; id",
    "/apply all;",
    "/plan all all",
    "/e2e smoke health",
    "/e2e -",
    "/e2e --",
    "/unknown",
    "/e2e\u00a0smoke",
    "/apply staging\u2028/apply production",
]


def test_hostile_comments_never_reach_beyond_the_allow_list(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    """Each of the 55 hostile comments, from a commenter with write access: nothing runs
    (no pytest, so no Compose and no runner), and the answer is the command list with a
    😕, or nothing at all (a comment not addressed to us)."""
    assert len(HOSTILE) == 55
    answered = 0
    for body in HOSTILE:
        github.comments.clear()
        github.reactions.clear()
        action, ran = hook(github, httpserver, tmp_path, event(body))
        assert ran == [], body
        assert action in ("help", "ignored"), (body, action)
        if action == "help":
            answered += 1
            [reply] = github.comments
            assert "**deployproof commands**" in reply["body"], body
            assert github.reactions == [(101, "confused")], body
        else:
            assert (github.comments, github.reactions) == ([], []), body
    assert github.dashboards() == []
    assert answered == 54  # and one is not a command line at all: ignored, unanswered


def test_commands_map_to_fixed_arguments() -> None:
    suites = ("isolation",)
    assert parse("/e2e", suites).pytest_args == ("-m", "smoke or health")  # type: ignore[union-attr]
    assert parse("/e2e isolation", suites).pytest_args == ("--dp-suite", "isolation")  # type: ignore[union-attr]
    assert parse("/health platform").pytest_args == ("-m", "health", "--dp-layer", "platform")  # type: ignore[union-attr]
    assert parse("atlantis plan all").pytest_args == ("-m", "drift")  # type: ignore[union-attr]
    assert parse("infra dig").name == "health"  # type: ignore[union-attr]
    assert parse("Looks good to me!") is None  # ordinary discussion
    with pytest.raises(HelpNeeded, match="not a layer"):
        parse("/health nowhere")


def test_the_webhook_refuses_to_start_without_a_secret_or_a_repository() -> None:
    with pytest.raises(ValueError, match="without a webhook secret"):
        WebhookServer(("127.0.0.1", 0), "", lambda e: None, repository=REPO)
    with pytest.raises(ValueError, match="without the repository it serves"):
        WebhookServer(("127.0.0.1", 0), "s3cret", lambda e: None, repository="")
    no_secret = subprocess.run(
        [str(Path(sys.executable).parent / "deployproof"), "webhook", "serve", "--port", "0",
         "--repository", REPO],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if k != "DEPLOYPROOF_WEBHOOK_SECRET"},
    )  # fmt: skip
    assert no_secret.returncode == 2
    assert "refusing to start without a webhook secret" in no_secret.stderr


def test_revert_rolls_the_environment_back_and_reports_it(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    reverted: list[str] = []

    def revert(environment: str) -> int:
        reverted.append(environment)
        return 0

    api = GitHub(REPO, token="t0ken", api=httpserver.url_for("").rstrip("/"))
    settings_ = HookSettings(inventory=tmp_path, bot_login=BOT, revert=revert)
    outcome = handle(event("/revert"), api, settings_, lambda args: pytest.fail("no checks"))
    assert (outcome.action, reverted) == ("ran", ["staging"])
    [board] = github.dashboards()
    assert "| Revert | ✅ | exit code 0 |" in board["body"]
    assert github.reactions == [(101, "eyes"), (101, "rocket")]


def test_apply_and_revert_name_the_inventory_environments(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    """Environments are the inventory's (seed 004's `prod`); every one but staging needs the
    head named and approved, as production does; an unknown one is answered with help."""
    envs = ("prod", "staging")
    applied = parse("/apply prod abcdef1", environments=envs)
    assert applied is not None
    assert (applied.environment, applied.sha, applied.needs_approval) == ("prod", "abcdef1", True)
    staging = parse("/apply staging", environments=envs)
    assert staging is not None
    assert (staging.environment, staging.needs_approval) == ("staging", False)
    reverted = parse("/revert prod abcdef1", environments=envs)
    assert reverted is not None
    assert (reverted.name, reverted.environment, reverted.stage) == (
        "revert",
        "prod",
        "Revert: prod",
    )
    with pytest.raises(HelpNeeded, match=r"`/apply prod <sha>`"):
        parse("/apply prod", environments=envs)
    with pytest.raises(HelpNeeded, match="is not a command I know"):
        parse("/apply production abcdef1", environments=envs)  # not in this inventory
    with pytest.raises(HelpNeeded, match="not a layer"):
        parse("/apply production", environments=envs)
    with pytest.raises(HelpNeeded, match="takes an environment: prod, staging"):
        parse("/revert production", environments=envs)

    api = GitHub(REPO, token="t0ken", api=httpserver.url_for("").rstrip("/"))
    hook_settings = HookSettings(inventory=tmp_path, bot_login=BOT, environments=envs)
    outcome = handle(event("/apply prod abcdef1"), api, hook_settings, lambda args: 0)
    assert outcome.action == "refused"
    [reply] = github.comments
    assert reply["body"].startswith("`/apply prod abcdef1` needs an approving review: no approval")


def revert_settings(
    tmp_path: Path, environments: tuple[str, ...] = ("production", "staging")
) -> tuple[HookSettings, list[str]]:
    """Settings whose /revert only records the environment it was asked to roll back."""
    reverted: list[str] = []

    def revert(environment: str) -> int:
        reverted.append(environment)
        return 0

    hook_settings = HookSettings(
        inventory=tmp_path, bot_login=BOT, environments=environments, revert=revert
    )
    return hook_settings, reverted


@pytest.mark.parametrize(
    ("body", "reviews", "answer"),
    [
        ("/revert production abcdef1", [], "`/revert production abcdef1` needs an approving"),
        (
            "/revert production abcdef1",
            [approve("alice")],
            "the only approval of abcdef1 is the commenter's own",
        ),
        (
            "/revert production 1234567",
            [approve("bob")],
            "`/revert production` names 1234567, but the head is `abcdef1`",
        ),
    ],
    ids=["none", "self", "head-moved"],
)
def test_revert_of_a_protected_environment_needs_the_approval_an_apply_needs(
    github: FakeGitHub,
    httpserver: HTTPServer,
    tmp_path: Path,
    body: str,
    reviews: list[dict[str, Any]],
    answer: str,
) -> None:
    """Rolling production back changes production as much as an apply: the same approval of
    the named head by another writer, or nothing is rolled back."""
    github.reviews = reviews
    hook_settings, reverted = revert_settings(tmp_path)
    api = GitHub(REPO, token="t0ken", api=httpserver.url_for("").rstrip("/"))
    outcome = handle(event(body), api, hook_settings, lambda args: pytest.fail("no checks"))
    assert (outcome.action, reverted) == ("refused", [])
    assert github.dashboards() == []
    [reply] = github.comments
    assert answer in reply["body"]
    assert github.reactions == [(101, "-1")]


def test_revert_of_a_protected_environment_names_the_head_and_runs_once_approved(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    with pytest.raises(HelpNeeded, match=r"`/revert production <sha>`"):
        parse("/revert production", environments=("production", "staging"))
    staging = parse("/revert", environments=("production", "staging"))
    assert staging is not None
    assert (staging.environment, staging.needs_approval) == ("staging", False)

    github.reviews = [approve("bob")]
    hook_settings, reverted = revert_settings(tmp_path)
    api = GitHub(REPO, token="t0ken", api=httpserver.url_for("").rstrip("/"))
    outcome = handle(event("/revert production abcdef1"), api, hook_settings, lambda a: 1)
    assert (outcome.action, reverted) == ("ran", ["production"])
    assert f"GET /repos/{REPO}/pulls/7/reviews" in github.calls
    [board] = github.dashboards()
    assert "| Revert: production | ✅ | exit code 0 |" in board["body"]


def comment_cli(
    project: Path, httpserver: HTTPServer, body: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``deployproof comment`` run as GitHub Actions runs it, on an event with ``body``."""
    (project / "event.json").write_text(json.dumps(event(body)))
    return subprocess.run(
        [str(Path(sys.executable).parent / "deployproof"), "comment", "--event", "event.json",
         *extra],
        cwd=project, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "GITHUB_API_URL": httpserver.url_for("").rstrip("/"),
             "GITHUB_TOKEN": "t0ken", "DEPLOYPROOF_BOT_LOGIN": BOT},
    )  # fmt: skip


def test_revert_without_staging_in_the_inventory_names_the_environments_it_has(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    """`/revert` means staging; an inventory without one is answered, not a traceback."""
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "prod.yml").write_text("hosts: {}\n")
    done = comment_cli(tmp_path, httpserver, "/revert")
    assert "Traceback" not in done.stdout + done.stderr
    assert "deployproof comment: help:" in done.stdout
    [reply] = github.comments
    assert "`/revert` rolls back staging, which the inventory does not have" in reply["body"]
    assert "(the inventory has prod)" in reply["body"]
    assert github.dashboards() == []
    assert github.reactions == [(101, "confused")]
    # And should staging vanish after the command was read, the rollback says the same.
    with pytest.raises(RevertError, match=r"has no environment 'staging': it has prod$"):
        _revert_inventory(tmp_path / "inventories", "staging")


def test_revert_of_an_environment_the_inventory_lacks_fails_its_stage_with_a_reply(
    github: FakeGitHub, httpserver: HTTPServer, tmp_path: Path
) -> None:
    """Without a readable inventory the hook still offers staging; the revert then fails its
    dashboard row (never left "Running") and says why, naming what to fix."""
    done = comment_cli(tmp_path, httpserver, "/revert", "--inventory", "nowhere")
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode == 2, done.stdout + done.stderr
    [board] = github.dashboards()
    assert "| Revert | ❌ | not reverted: cannot read the inventory of 'staging'" in board["body"]
    assert "Running" not in board["body"]
    [reply] = [c for c in github.comments if c is not board]
    assert reply["body"].startswith("`/revert` did not run: cannot read the inventory of")
    assert "nowhere does not exist: pass --inventory FILE|DIR" in reply["body"]
    assert github.reactions == [(101, "eyes"), (101, "-1")]
