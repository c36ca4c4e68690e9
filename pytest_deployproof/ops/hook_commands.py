"""``deployproof comment`` and ``deployproof webhook``: the pull-request comment hook, run
once per GitHub Actions event or served over HTTP.

Both read the hook's configuration the same way, from the checked-out (default) branch
and the environment, so a comment does the same whichever way it arrives.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..inventory.load import (
    InventoryError,
    UnknownEnvironmentError,
    discover,
    load_environment,
)
from .serving import serve_until_stopped

if TYPE_CHECKING:
    from ..inventory.model import Inventory

__all__ = ["add_parsers"]

log = logging.getLogger(__name__)

Deployproof = Callable[[Sequence[str]], int]
"""The CLI's ``main``: ``/revert`` rolls back through it, as an operator would."""


def add_parsers(commands: Any, deployproof: Deployproof) -> None:
    """Register ``comment`` and ``webhook`` on the CLI's subcommands; ``deployproof`` runs
    the CLI's own ``rollback`` for ``/revert``."""
    comment = commands.add_parser("comment", help="handle a pull-request comment event")
    comment.add_argument("--event", required=True, help="the event JSON ($GITHUB_EVENT_PATH)")
    comment.add_argument("--inventory", default="inventories", help="file or directory")
    comment.set_defaults(run=partial(_comment, deployproof=deployproof))

    webhook = commands.add_parser("webhook", help="serve the comment hook over HTTP")
    webhook.add_argument("action", choices=["serve"])
    webhook.add_argument("--host", default="127.0.0.1")
    webhook.add_argument("--port", type=int, default=8080)
    webhook.add_argument("--inventory", default="inventories", help="file or directory")
    webhook.add_argument(
        "--repository",
        help="the one repository it serves, owner/name (default: $GITHUB_REPOSITORY)",
    )
    webhook.add_argument(
        "--state-dir",
        help="where handled comment ids are kept (default: ~/.local/state/deployproof)",
    )
    webhook.set_defaults(run=partial(_webhook, deployproof=deployproof))


def _hook_settings(args: argparse.Namespace, deployproof: Deployproof) -> Any:
    """The hook's configuration, from the checked-out (default) branch and its environment."""
    from .commands import ENVIRONMENTS  # noqa: PLC0415
    from .comment_hook import COMMIT_VERSION, DEFAULT_PERMISSIONS, HookSettings  # noqa: PLC0415

    allowed = os.environ.get("DEPLOYPROOF_PERMISSIONS")
    version = os.environ.get("DEPLOYPROOF_COMMIT_VERSION") or "sha-{sha}"
    if not COMMIT_VERSION.fullmatch(version):
        raise ValueError(
            f"DEPLOYPROOF_COMMIT_VERSION={version!r}: the tag /apply deploys for a commit, "
            "with {sha} (the full SHA) or {sha7} in it, e.g. sha-{sha}; letters, digits, '.', "
            "'_' and '-' around it"
        )
    inventory = Path(args.inventory).resolve()
    try:  # the environments `/apply` and `/revert` may name: inventories/<env>.yml
        environments = tuple(discover(inventory))
    except InventoryError:
        environments = ()

    def revert(env: str) -> int:
        found = _revert_inventory(inventory, env)
        codes = [
            deployproof(
                ["rollback", "--env", env, "--inventory", str(inventory), name, "--last-good"]
            )
            for name in found.stacks
        ]
        return max(codes, default=0)

    root = Path.cwd()
    return HookSettings(
        inventory=inventory,
        permissions=(
            frozenset(p.strip() for p in allowed.split(",") if p.strip())
            if allowed
            else DEFAULT_PERMISSIONS
        ),
        bot_login=os.environ.get("DEPLOYPROOF_BOT_LOGIN", "github-actions[bot]"),
        suites=_e2e_suites(root),
        revert=revert,
        commit_version=version,
        environments=environments or ENVIRONMENTS,
    )


def _e2e_suites(root: Path) -> tuple[str, ...]:
    """The suites ``/e2e <suite>`` may name: those of the repository's E2E folder, the ini
    key ``deployproof_e2e_dir`` read as pytest would in ``root``. A folder out of the
    repository (the branch may be hostile) offers none, and the log says why."""
    from .._e2e_dir import E2EFolderError, repository_e2e_folder  # noqa: PLC0415
    from ..e2e_fixtures import e2e_suites  # noqa: PLC0415

    try:
        folder = repository_e2e_folder(root)
    except E2EFolderError as exc:
        log.warning("no E2E suite can be named in a comment: %s", exc)
        return ()
    return tuple(e2e_suites(folder)) if folder.is_dir() else ()


def _revert_inventory(inventory: Path, env: str) -> Inventory:
    """The inventory ``/revert`` rolls back; a missing environment or an unreadable inventory
    is a reply naming what the inventory has (the dashboard row ends failed), not a crash."""
    from .comment_hook import RevertError  # noqa: PLC0415

    try:
        return load_environment(inventory, env)
    except UnknownEnvironmentError as exc:
        known = ", ".join(exc.known) or "none"
        raise RevertError(
            f"the inventory {inventory} has no environment {env!r}: it has {known}"
        ) from None
    except InventoryError as exc:
        raise RevertError(f"cannot read the inventory of {env!r}: {exc}") from None


def _run_checks(args: list[str]) -> int:
    import pytest  # noqa: PLC0415

    return int(pytest.main([*args, "-p", "no:cacheprovider"]))


def _github(repository: str | None) -> Any:
    from .github import GitHub  # noqa: PLC0415

    name = repository or os.environ.get("GITHUB_REPOSITORY", "")
    return GitHub(name, token=os.environ.get("GITHUB_TOKEN"))


def _comment(args: argparse.Namespace, deployproof: Deployproof) -> int:
    """Handle one issue_comment event file (GitHub Actions: $GITHUB_EVENT_PATH)."""
    from .comment_hook import handle  # noqa: PLC0415

    try:
        event = json.loads(Path(args.event).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"error: --event {args.event}: cannot read the event: {exc}", file=sys.stderr)
        return 2
    if not isinstance(event, dict):
        print(f"error: --event {args.event}: not a GitHub event (a JSON object)", file=sys.stderr)
        return 2
    repository = (event.get("repository") or {}).get("full_name")
    try:
        settings = _hook_settings(args, deployproof)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    outcome = handle(event, _github(repository), settings, _run_checks)
    print(f"deployproof comment: {outcome.action}: {outcome.reason}")
    return outcome.exit_code


def _webhook(args: argparse.Namespace, deployproof: Deployproof) -> int:
    """Serve the hook over HTTP until interrupted."""
    from .comment_hook import handle  # noqa: PLC0415
    from .webhook import WebhookServer  # noqa: PLC0415

    try:
        settings = _hook_settings(args, deployproof)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def on_event(event: dict[str, Any]) -> object:
        repository = (event.get("repository") or {}).get("full_name")
        return handle(event, _github(repository), settings, _run_checks)

    state = Path(args.state_dir or _default_state_home()) / "webhook"
    try:
        server = WebhookServer(
            (args.host, args.port),
            os.environ.get("DEPLOYPROOF_WEBHOOK_SECRET", ""),
            on_event,
            repository=args.repository or os.environ.get("GITHUB_REPOSITORY", ""),
            seen=state / "comments.seen",
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return serve_until_stopped(server, f"deployproof webhook: listening on {args.host}")


def _default_state_home() -> Path:
    """Where a server keeps what it must remember across restarts (XDG's state home)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "deployproof"
