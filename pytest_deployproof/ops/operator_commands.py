"""``deployproof history``, ``rollback``, ``restore`` and ``lock``: the operator's tools
for a stack's deploys (DEP-12).

A rollback or restore by hand goes through the same path a failed deploy takes (a run
over the one stack, its lock, its history), so what an operator does is recorded and
locked like what a deploy does.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..deploy.history import Entry, History
from ..deploy.locks import StackLock, stale_reason
from ..inventory.load import InventoryError
from ._common import JSON_TIME, add_environment_options, add_json_option, load_inventory, print_json

if TYPE_CHECKING:
    from ..deploy.backups import Backup
    from ..inventory.model import Stack
    from ..run import Run
    from ..state_dir import StateDir

__all__ = ["add_lock_parser", "add_parsers"]


def add_parsers(commands: Any) -> None:
    """Register ``history``, ``rollback`` and ``restore`` on the CLI's subcommands."""
    history = commands.add_parser("history", help="deploy history of an environment")
    add_environment_options(history)
    history.add_argument("stack", nargs="?", help="only this stack")
    history.add_argument("--status", help="only entries with this status (e.g. fail)")
    history.add_argument("--last-good", action="store_true", help="print the last good version")
    history.add_argument("--limit", type=int, default=50, help="at most this many lines")
    add_json_option(history, "the entries (with --last-good: the entry)")
    history.set_defaults(run=_history)

    rollback = commands.add_parser("rollback", help="roll a stack back to a good version")
    add_environment_options(rollback)
    rollback.add_argument("stack")
    rollback.add_argument("version", nargs="?", help="the version to put back")
    target = rollback.add_mutually_exclusive_group()
    target.add_argument("--list", action="store_true", help="versions that ran successfully")
    target.add_argument(
        "--last-good", action="store_true", help="the newest good version other than the running"
    )
    rollback.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS")
    add_json_option(rollback, "with --list: the versions")
    rollback.set_defaults(run=_rollback)

    restore = commands.add_parser("restore", help="restore a stack from a deploy backup")
    add_environment_options(restore)
    restore.add_argument("stack")
    restore.add_argument("backup", nargs="?", help="the backup's name (default: the newest)")
    restore.add_argument("--list", action="store_true", help="list the stack's backups")
    restore.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS")
    add_json_option(restore, "with --list: the backups")
    restore.set_defaults(run=_restore)


def add_lock_parser(commands: Any) -> None:
    """Register ``lock``; apart from the others so it keeps its place in the CLI's help."""
    lock = commands.add_parser("lock", help="show or break a stack's deploy lock")
    add_environment_options(lock)
    lock.add_argument("stack")
    what = lock.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="who holds it (the default)")
    what.add_argument(
        "--break",
        dest="break_lease",
        action="store_true",
        help="remove the lease, whoever holds it",
    )
    lock.set_defaults(run=_lock)


def _state(args: argparse.Namespace) -> StateDir | None:
    """The environment's state directory (history, locks), or None after saying why."""
    try:
        inventory = load_inventory(args)
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return inventory.state


def _history(args: argparse.Namespace) -> int:
    state = _state(args)
    if state is None:
        return 2
    history = History(state.history)
    if args.last_good:
        entry = history.last_good(args.stack, args.env)
        if args.json:
            print_json(_entry_json(entry))
        if entry is None:
            print(f"no good version of {args.stack} in {args.env} yet", file=sys.stderr)
            return 1
        if not args.json:
            print(entry.version)
        return 0
    entries = history.entries(args.stack, args.env, status=args.status)[-args.limit :]
    if args.json:
        print_json([_entry_json(entry) for entry in entries])
        return 0
    for entry in entries:
        sys.stdout.write(entry.line())
    return 0


def _entry_json(entry: Entry | None) -> dict[str, str] | None:
    """A history line as ``history --json`` prints it (the notes were masked when written)."""
    if entry is None:
        return None
    return {
        "timestamp": entry.timestamp.astimezone(UTC).strftime(JSON_TIME),
        "stack": entry.stack,
        "env": entry.env,
        "action": entry.action,
        "version": entry.version,
        "status": entry.status,
        "notes": entry.notes,
    }


def _lock(args: argparse.Namespace) -> int:
    state = _state(args)
    if state is None:
        return 2
    directory = state.locks
    if args.break_lease:
        broken = StackLock.break_lease(directory, args.stack)
        print(f"broke the lease of {broken.describe()}" if broken else f"{args.stack}: not locked")
        if broken is not None and broken.changed:
            print(
                f"warning: it was changing the stack ({broken.action} {broken.version}, from "
                f"{broken.previous or 'unknown'}); check it, or `deployproof rollback --env "
                f"{args.env} {args.stack} --last-good`",
                file=sys.stderr,
            )
        return 0
    holder = StackLock(directory, args.stack).holder()
    if holder is None:
        print(f"{args.stack}: not locked")
        return 0
    stale = stale_reason(holder)
    print(f"{args.stack}: locked by {holder.describe()}" + (f" (stale: {stale})" if stale else ""))
    return 0


def _operator_run(args: argparse.Namespace) -> tuple[Run, Stack] | None:
    """A run over one stack for an operator command; ``None`` (after saying why) when the
    inventory or the stack name is wrong, or ``--json`` is given without ``--list``."""
    from ..inventory.selection import select  # noqa: PLC0415
    from ..run import Run  # noqa: PLC0415 - the deploy machinery is heavy
    from ..settings import Setting, Settings  # noqa: PLC0415

    if args.json and not args.list:  # a rollback or restore itself prints a sentence
        print("error: --json goes with --list", file=sys.stderr)
        return None
    try:
        inventory = load_inventory(args)
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    settings = Settings(
        env=Setting(args.env, "--env"),
        inventory=Setting(Path(args.inventory), "--inventory"),
        stacks=Setting((args.stack,), args.command),
        layers=Setting((), "default"),
        hosts=Setting((), "default"),
        changed_since=Setting(None, "default"),
        lock_wait_s=args.lock_wait,
    )
    run = Run.start(settings, select(inventory, stacks=(args.stack,)), worker=False)
    return run, inventory.stacks[args.stack]


def _rollback(args: argparse.Namespace) -> int:
    """Roll a stack back by hand, through the same path a failed deploy takes."""
    from ..deploy.operator import RollBack  # noqa: PLC0415
    from ..deploy.stack_action import DeployError  # noqa: PLC0415

    found = _operator_run(args)
    if found is None:
        return 2
    run, stack = found
    history = History(run.inventory.state.history)
    current = RollBack(run, stack, "-").current_version()
    good = history.good_versions(args.stack, args.env)
    if args.list and args.json:
        print_json([{"version": version, "running": version == current} for version in good])
        return 0
    if args.list:
        for version in good:
            print(version + ("  (running)" if version == current else ""))
        return 0
    version = args.version
    if args.last_good:
        earlier = [v for v in good if v != current]
        if not earlier:
            print(f"error: no good version of {args.stack} other than {current}", file=sys.stderr)
            return 1
        version = earlier[0]
    try:
        print(RollBack(run, stack, version).roll_back())
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _restore(args: argparse.Namespace) -> int:
    """Put a stack's backup back: files, databases, then up and verify."""
    from ..deploy.backups import Backups  # noqa: PLC0415
    from ..deploy.operator import Restore  # noqa: PLC0415
    from ..deploy.stack_action import DeployError  # noqa: PLC0415

    found = _operator_run(args)
    if found is None:
        return 2
    run, stack = found
    if args.list:
        access = run.observations.access(stack.host)
        listed = Backups(stack, access, args.env, run.observations.masker).all()
        if args.json:
            print_json([_backup_json(backup) for backup in listed])
            return 0
        for backup in listed:
            print(backup.describe())
        if not listed:
            print(f"{stack.name}: no backups", file=sys.stderr)
        return 0
    try:
        print(Restore(run, stack, "-").restore(args.backup))
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _backup_json(backup: Backup) -> dict[str, Any]:
    """A backup as ``restore --list --json`` prints it: what its one text line says."""
    files = backup.manifest.get("files", [])
    return {
        "name": backup.name,
        "version": backup.version,
        "created": backup.created or None,
        "files": len(files),
        "bytes": sum(int(f.get("size", 0)) for f in files),
    }
