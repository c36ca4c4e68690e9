"""The pull-request comment hook (CMT-1..3, BYD-6).

``deployproof comment --event $GITHUB_EVENT_PATH`` (and ``deployproof webhook
serve``) hand an ``issue_comment`` event to :func:`handle`, which decides,
in this order, and stops at the first "no":

1. a new comment (``created``), by a human, on a pull request;
2. a command (:mod:`.commands`; anything else that starts with ``/`` gets /help);
3. an author whose ``author_association`` is allowed (from the configuration of
   the checked-out default branch, never from the pull request);
4. ``/apply <env>`` and ``/revert <env>`` of any environment but staging (production,
   prod...) only on an approved pull request;
5. the pull request's head, resolved now and again just before a deploy: if it
   moved, nothing is applied.

Then it reacts 👀, runs the mapped pytest selection (in process), writes ONE
dashboard comment per commit (marker ``<!-- deployproof-dashboard:<sha7> -->``,
only the bot's own comments are edited), updated as the stage starts and ends,
and reacts 🚀 or 👎.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..report import dashboard
from ..verdicts import HELD_EXIT_CODE
from .commands import ENVIRONMENTS, HELP, Command, HelpNeeded, parse
from .github import GitHub, truncate

COMMIT_VERSION = re.compile(r"[A-Za-z0-9._-]*\{sha7?\}[A-Za-z0-9._-]*")

__all__ = ["COMMIT_VERSION", "HookSettings", "Outcome", "RevertError", "handle"]

RunChecks = Callable[[list[str]], int]  # pytest arguments -> exit code
# Repository permissions (roles) whose holders may run commands and approve production.
DEFAULT_PERMISSIONS = frozenset({"admin", "maintain", "write"})


class RevertError(Exception):
    """``HookSettings.revert`` cannot roll back (the environment is not in the inventory, or
    the inventory cannot be read); the message, naming what to fix, is the reply."""


@dataclass(frozen=True)
class HookSettings:
    inventory: Path
    permissions: frozenset[str] = DEFAULT_PERMISSIONS
    bot_login: str = "github-actions[bot]"
    suites: tuple[str, ...] = ()
    # What `/apply` and `/revert` may name: the inventory's environments (inventories/<env>.yml).
    environments: tuple[str, ...] = ENVIRONMENTS
    report_url: str | None = None
    # environment -> exit code (/revert); RevertError when it cannot start
    revert: Callable[[str], int] | None = None
    # The version `/apply` deploys for a head: its full SHA by default, because a short
    # one can be matched by a commit someone else pushes (7 hex digits are 28 bits).
    commit_version: str = "sha-{sha}"

    def version_of(self, head: str) -> str:
        return self.commit_version.replace("{sha7}", head[:7]).replace("{sha}", head)


@dataclass
class Outcome:
    """What the hook did: for the CLI's exit code and log, and for tests."""

    action: str  # ignored, refused, help, ran
    reason: str = ""
    exit_code: int = 0
    args: list[str] = field(default_factory=list)


def handle(
    event: dict[str, Any], github: GitHub, settings: HookSettings, run_checks: RunChecks
) -> Outcome:
    ignored = _not_for_us(event)
    if ignored is not None:
        return Outcome("ignored", ignored)
    comment, number = event["comment"], int(event["issue"]["number"])
    comment_id = int(comment["id"])
    try:
        command: Command | None = parse(
            str(comment.get("body") or ""), settings.suites, settings.environments
        )
        needed = None
    except HelpNeeded as exc:
        command, needed = None, exc
    if command is None and needed is None:
        return Outcome("ignored", "not a command")  # ordinary discussion: no API call at all
    # Authorize before anything answers: an outsider's comment gets no reply, no help.
    login = str((comment.get("user") or {}).get("login") or "")
    permission = github.permission(login) if login else "none"
    if permission not in settings.permissions:
        return Outcome("ignored", f"{login or '?'} has {permission} permission: not authorized")
    if needed is not None or (command is not None and command.name == "help"):
        return _help(github, number, comment_id, needed)
    assert command is not None
    # The head is read once: what is approved is what is deployed, and a head that moves
    # afterwards (read again right before an apply) stops it.
    head = github.pull_request(number).head_sha
    refusal = _refusal(
        command, login=login, number=number, head=head, github=github, settings=settings
    )
    if refusal is not None:
        github.create_comment(number, refusal)
        github.react(comment_id, "-1")
        return Outcome("refused", refusal)
    return _run(command, number=number, comment_id=comment_id, head=head, github=github,
                settings=settings, run_checks=run_checks)  # fmt: skip


def _not_for_us(event: dict[str, Any]) -> str | None:
    """Why this event is none of our business, or ``None``."""
    comment, issue = event.get("comment") or {}, event.get("issue") or {}
    if event.get("action") != "created":
        return f"comment {event.get('action')}: only new comments run"
    sender = event.get("sender") or comment.get("user") or {}
    if sender.get("type") == "Bot" or str(sender.get("login", "")).endswith("[bot]"):
        return "written by a bot"
    if "pull_request" not in issue:
        return "not a pull request"
    return None


def _help(github: GitHub, number: int, comment_id: int, needed: HelpNeeded | None) -> Outcome:
    """Answer with the command list: asked for, or because the comment was not one."""
    if needed is None:
        github.create_comment(number, HELP)
        return Outcome("help", "asked for help")
    github.create_comment(number, f"{needed}.\n\n{HELP}")
    github.react(comment_id, "confused")
    return Outcome("help", str(needed))


def _refusal(
    command: Command,
    *,
    login: str,
    number: int,
    head: str,
    github: GitHub,
    settings: HookSettings,
) -> str | None:
    """Production (any environment but staging), applied or reverted: the comment names the
    head, and someone else with write access approved that exact commit (an approval of an
    earlier push does not count)."""
    if not command.needs_approval:
        return None
    said = f"/{command.name} {command.environment}"
    if command.sha is None or not head.startswith(command.sha):
        named = command.sha or "no commit"
        return (
            f"`{said}` names {named}, but the head is `{head[:7]}`: review it, "
            f"then comment `{said} {head[:7]}`."
        )
    problem = github.approval_problem(number, head, login, settings.permissions)
    if problem is not None:
        return f"`{said} {command.sha}` needs an approving review: {problem}."
    return None


def _run(
    command: Command,
    *,
    number: int,
    comment_id: int,
    head: str,
    github: GitHub,
    settings: HookSettings,
    run_checks: RunChecks,
) -> Outcome:
    github.react(comment_id, "eyes")
    board = Board(github, number, head, settings.bot_login)
    board.set(dashboard.Stage(command.stage, "running", "Running...", "-"))
    # The --dp- spellings: they never step aside for a project's own --env (settings.py).
    args = [
        "--dp-env",
        command.environment,
        "--dp-inventory",
        str(settings.inventory),
        *command.pytest_args,
    ]
    if command.deploys:
        if command.name == "apply":
            args += ["--dp-deploy", settings.version_of(head)]
        now = github.pull_request(number).head_sha
        if now != head:
            board.set(
                dashboard.Stage(
                    command.stage, "failed", f"head moved to {now[:7]}: not applied", _now()
                )
            )
            board.publish(f"⚠️ The head moved from `{head[:7]}` to `{now[:7]}`: comment again.")
            github.react(comment_id, "-1")
            return Outcome("refused", "head moved", args=args)
    rows: list[dashboard.Stage] = []
    if command.name == "revert":
        try:
            code = settings.revert(command.environment) if settings.revert else 2
        except RevertError as exc:
            return _not_reverted(command, str(exc), board=board, comment_id=comment_id, args=args)
    else:
        with tempfile.TemporaryDirectory(prefix="deployproof-comment-") as scratch:
            summary = Path(scratch) / "dashboard.md"
            code = run_checks([*args, "--dp-dashboard", str(summary)])
            rows = _rows(summary.read_text()) if summary.exists() else []
    # 6: held or nothing checked (BYD-1): neither a pass nor a failure, and never green.
    status = "passed" if code == 0 else "held" if code == HELD_EXIT_CODE else "failed"
    board.set(dashboard.Stage(command.stage, status, f"exit code {code}", _now()), *rows)
    moved = github.pull_request(number).head_sha
    note = None
    if moved != head:
        note = (
            f"⚠️ The head moved to `{moved[:7]}` during the run: these results are for `{head[:7]}`."
        )
    board.publish(note)
    github.react(comment_id, "rocket" if code == 0 else "confused" if status == "held" else "-1")
    return Outcome("ran", command.stage, code, args)


def _not_reverted(
    command: Command, reason: str, *, board: Board, comment_id: int, args: list[str]
) -> Outcome:
    """Finish the stage as failed with why (never left "Running"), and say it in a reply."""
    board.set(dashboard.Stage(command.stage, "failed", f"not reverted: {reason}", _now()))
    board.github.create_comment(board.number, f"`/revert` did not run: {reason}.")
    board.github.react(comment_id, "-1")
    return Outcome("ran", reason, 2, args)  # what `deployproof rollback` exits with for it


def _now() -> str:
    return time.strftime("%H:%M", time.gmtime())


_ICON_STATUS = {icon: status for status, icon in reversed(dashboard.ICONS.items())}


def _rows(markdown: str) -> list[dashboard.Stage]:
    """The stage rows of a dashboard we wrote (to keep them when the comment is updated)."""
    stages = []
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) == 4 and cells[1] in _ICON_STATUS and cells[0] != "Stage":
            stages.append(dashboard.Stage(cells[0], _ICON_STATUS[cells[1]], cells[2], cells[3]))
    return stages


class Board:
    """The one dashboard comment of a commit: found by marker among the bot's comments."""

    def __init__(self, github: GitHub, number: int, sha: str, bot_login: str) -> None:
        self.github, self.number, self.sha = github, number, sha
        marker = dashboard.marker(sha)
        self.comment_id: int | None = None
        self.stages: list[dashboard.Stage] = []
        for comment in github.comments(number):
            mine = comment.get("user", {}).get("login") == bot_login
            if mine and str(comment.get("body", "")).startswith(marker):
                self.comment_id = int(comment["id"])
                self.stages = _rows(comment["body"])

    def set(self, *stages: dashboard.Stage) -> None:
        names = {stage.name for stage in stages}
        self.stages = [s for s in self.stages if s.name not in names] + list(stages)
        self.publish()

    def publish(self, note: str | None = None) -> None:
        next_text = dashboard.next_step(self.stages)
        body = truncate(dashboard.render(self.sha, self.stages, next_text=_join(next_text, note)))
        if self.comment_id is None:
            self.comment_id = self.github.create_comment(self.number, body)
        else:
            self.github.update_comment(self.comment_id, body)


def _join(text: str, note: str | None) -> str:
    return f"{text}\n{note}" if note else text
