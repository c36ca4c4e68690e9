"""``deployproof``: the small operator CLI. Running checks is ``pytest``, not this.

Commands here act on the inventory without running tests: print the JSON
Schema for editors, validate inventory files (every environment at once,
which a pytest run never does: it reads only the one it checks), and the
operator's deploy commands: history, rollback, restore, lock (DEP-12).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..deploy.history import Entry, History
from ..deploy.locks import StackLock, stale_reason
from ..inventory.load import InventoryError, discover, load_environment, load_file
from ..inventory.schema import schema_text
from ..state_dir import StateDir
from ._help import EPILOGS, EXIT_CODES
from .discover import add_parser as _discover_command
from .progress import add_verbosity, cli_logging
from .scaffold import add_parser as _init_command
from .serve import add_parsers as _serve_commands
from .serving import serve_until_stopped

if TYPE_CHECKING:
    from ..deploy.backups import Backup
    from ..inventory.model import Inventory, Stack
    from ..run import Run

__all__ = ["main"]


def _check(args: argparse.Namespace) -> int:
    try:
        files = discover(Path(args.inventory))
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.env:
        unknown = sorted(set(args.env) - set(files))
        if unknown:
            known = ", ".join(files) or "(none)"
            print(
                f"error: unknown environment {', '.join(unknown)}: known are {known}",
                file=sys.stderr,
            )
            return 2
        files = {env: files[env] for env in args.env}
    failed = 0
    checked: list[dict[str, Any]] = []
    for env, path in files.items():
        try:
            inventory = load_file(path, _ansible(args))
        except InventoryError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            checked.append(_checked_json(env, path, error=str(exc)))
            continue
        checked.append(_checked_json(env, path, inventory))
        if not args.json:
            stacks, hosts = len(inventory.stacks), len(inventory.hosts)
            print(f"ok: {env}: {stacks} stacks, {hosts} hosts ({path})")
    if args.json:
        _print_json(checked)
    return 1 if failed else 0


_UTC = "%Y-%m-%dT%H:%M:%SZ"  # the times in --json documents


def _checked_json(
    env: str, path: Path, inventory: Inventory | None = None, error: str | None = None
) -> dict[str, Any]:
    """One environment file as ``check --json`` prints it."""
    return {
        "env": env,
        "path": str(path),
        "ok": inventory is not None,
        "stacks": None if inventory is None else len(inventory.stacks),
        "hosts": None if inventory is None else len(inventory.hosts),
        "error": error,
    }


def _print_json(document: object) -> None:
    """``--json``: one document on stdout, the fields each command's help lists."""
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _entry_json(entry: Entry | None) -> dict[str, str] | None:
    """A history line as ``history --json`` prints it (the notes were masked when written)."""
    if entry is None:
        return None
    return {
        "timestamp": entry.timestamp.astimezone(UTC).strftime(_UTC),
        "stack": entry.stack,
        "env": entry.env,
        "action": entry.action,
        "version": entry.version,
        "status": entry.status,
        "notes": entry.notes,
    }


def _ansible(args: argparse.Namespace) -> Path | None:
    """The command's ``--ansible-inventory``, if given."""
    value = getattr(args, "ansible_inventory", None)
    return Path(value) if value else None


def _load(args: argparse.Namespace) -> Inventory:
    """The environment an operator command names (``--ansible-inventory`` completes hosts).

    A stack the command names must be one of the inventory's before anything uses it:
    its name becomes part of paths (``locks/<stack>.lease``), and ``../../x`` is no stack."""
    inventory = load_environment(Path(args.inventory), args.env, _ansible(args))
    stack = getattr(args, "stack", None)
    if stack is not None and stack not in inventory.stacks:
        known = ", ".join(sorted(inventory.stacks)) or "(none)"
        raise InventoryError(f"no stack {stack!r} in {args.env}: known are {known}")
    return inventory


def _state(args: argparse.Namespace) -> StateDir | None:
    """The environment's state directory (history, locks), or None after saying why."""
    try:
        inventory = _load(args)
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
            _print_json(_entry_json(entry))
        if entry is None:
            print(f"no good version of {args.stack} in {args.env} yet", file=sys.stderr)
            return 1
        if not args.json:
            print(entry.version)
        return 0
    entries = history.entries(args.stack, args.env, status=args.status)[-args.limit :]
    if args.json:
        _print_json([_entry_json(entry) for entry in entries])
        return 0
    for entry in entries:
        sys.stdout.write(entry.line())
    return 0


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
        inventory = _load(args)
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
        _print_json([{"version": version, "running": version == current} for version in good])
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
            _print_json([_backup_json(backup) for backup in listed])
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


def _hook_settings(args: argparse.Namespace) -> Any:
    """The hook's configuration, from the checked-out (default) branch and its environment."""
    from ..e2e_fixtures import e2e_suites  # noqa: PLC0415
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
        found = load_environment(inventory, env)
        codes = [
            main(["rollback", "--env", env, "--inventory", str(inventory), name, "--last-good"])
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
        suites=tuple(e2e_suites(root)) if (root / "suites" / "e2e").is_dir() else (),
        revert=revert,
        commit_version=version,
        environments=environments or ENVIRONMENTS,
    )


def _run_checks(args: list[str]) -> int:
    import pytest  # noqa: PLC0415

    return int(pytest.main([*args, "-p", "no:cacheprovider"]))


def _github(repository: str | None) -> Any:
    from .github import GitHub  # noqa: PLC0415

    name = repository or os.environ.get("GITHUB_REPOSITORY", "")
    return GitHub(name, token=os.environ.get("GITHUB_TOKEN"))


def _comment(args: argparse.Namespace) -> int:
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
        settings = _hook_settings(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    outcome = handle(event, _github(repository), settings, _run_checks)
    print(f"deployproof comment: {outcome.action}: {outcome.reason}")
    return outcome.exit_code


def _webhook(args: argparse.Namespace) -> int:
    """Serve the hook over HTTP until interrupted."""
    from .comment_hook import handle  # noqa: PLC0415
    from .webhook import WebhookServer  # noqa: PLC0415

    try:
        settings = _hook_settings(args)
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


def _version(args: argparse.Namespace) -> int:
    """The next release tag (DEP-6): for staging, for production, or a hotfix."""
    from ..deploy.versions import VersionError, next_version  # noqa: PLC0415

    kind = "hotfix" if args.hotfix else args.env
    try:
        print(next_version(Path(args.repo), kind, args.base))
    except VersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _promote(args: argparse.Namespace) -> int:
    """Tag the staging release for production (minor+1, patch 0) on the same commit."""
    from ..deploy.versions import VersionError, latest, next_version  # noqa: PLC0415

    repo = Path(args.repo)
    try:
        base = args.base or latest(repo)
        tag = next_version(repo, "production", base)
    except VersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    message = f"promote {base} to production"
    done = subprocess.run(
        ["git", "-C", str(repo), "tag", "-a", tag, "-m", message, str(base)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        print(f"error: git tag {tag} failed: {done.stderr.strip()}", file=sys.stderr)
        return 1
    print(tag)
    return 0


def _verified(args: argparse.Namespace) -> int:
    """What an environment verified for a stack: what may be promoted from it (DEP-5)."""
    from ..deploy.promotion import load_verified  # noqa: PLC0415

    try:
        inventory = _load(args)
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    records = list(reversed(load_verified(inventory.state, args.stack)))
    if args.json:
        _print_json(
            [
                {
                    "version": record.version,
                    "verified_at": datetime.fromtimestamp(record.at, UTC).strftime(_UTC),
                    "images": record.images,  # each: [engine image id, registry digests...]
                }
                for record in records
            ]
        )
        return 0
    for record in records:
        images = ", ".join(f"{image} {ids[0][:19]}" for image, ids in record.images.items() if ids)
        print(f"{record.version}  {images}")
    return 0


def _affected(args: argparse.Namespace) -> int:
    """Which stacks a change touches, and which changes map to none."""
    from ..inventory.changes import ChangeError, changed_files, impact_of, repository_root  # noqa: PLC0415

    try:
        inventory = _load(args)
        repo = inventory.repo or repository_root(Path(args.inventory).resolve())
        impact = impact_of(inventory, changed_files(repo, args.since))
    except (InventoryError, ChangeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        skipped = dict(sorted(impact.skipped.items()))
        _print_json({"stacks": sorted(impact.stacks), "skipped": skipped})
        return 0
    for name in sorted(impact.stacks):
        print(name)
    for path, reason in sorted(impact.skipped.items()):
        print(f"# skipped {path}: {reason}", file=sys.stderr)
    return 0


def _runner(args: argparse.Namespace) -> int:
    """The reference IaC runner for one stack (DEP-8): signed POST /deploy, GET /health."""
    from ..deploy.runner import RunnerServer  # noqa: PLC0415
    from ..deploy.stack_action import write_tag  # noqa: PLC0415
    from ..observe.stackfiles import env_value  # noqa: PLC0415
    from ..orchestrators.compose import compose_up  # noqa: PLC0415
    from ..reach.hosts import HostAccess  # noqa: PLC0415

    try:
        inventory = _load(args)
        stack = inventory.stacks[args.stack]
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not stack.image_tag_var:
        print(f"error: stack {stack.name} has no image_tag_var", file=sys.stderr)
        return 2
    access = HostAccess(inventory.hosts[stack.host])
    tag_var = stack.image_tag_var

    def apply(tag: str) -> None:
        write_tag(access, stack, access.read(stack.env_path) or "", tag)
        problem = compose_up(access, stack, inventory.up_timeout_s)
        if problem is not None:
            raise RuntimeError(problem)

    try:
        server = RunnerServer(
            (args.host, args.port),
            os.environ.get("DEPLOYPROOF_RUNNER_SECRET", ""),
            args.env,
            apply,
            deliveries=inventory.state.root / "runner" / f"{stack.name}.deliveries",
            tag_pattern=inventory.image_tag_pattern,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server.state["tag"] = env_value(access.read(stack.env_path) or "", tag_var)
    return serve_until_stopped(server, f"deployproof runner: {stack.name} on {args.host}")


def _schema(args: argparse.Namespace) -> int:
    if args.format == "markdown":
        from ..inventory.reference import reference_markdown  # noqa: PLC0415

        sys.stdout.write(reference_markdown())
    else:
        sys.stdout.write(schema_text())
    return 0


def _release_commands(commands: Any, environment: Any) -> None:
    version = commands.add_parser("version", help="the next release tag (semver)")
    version.add_argument("action", choices=["next"])
    version.add_argument("--env", required=True, choices=["staging", "production"])
    version.add_argument("--hotfix", action="store_true", help="patch+1 of the production tag")
    version.add_argument("--from", dest="base", help="the tag to start from (default: latest)")
    version.add_argument("--repo", default=".", help="the git repository")
    version.set_defaults(run=_version)
    promote = commands.add_parser("promote", help="tag the staging release for production")
    promote.add_argument("--from", dest="base", help="the staging tag (default: latest)")
    promote.add_argument("--repo", default=".", help="the git repository")
    promote.set_defaults(run=_promote)
    verified = commands.add_parser("verified", help="versions an environment verified")
    environment(verified)
    verified.add_argument("stack")
    _json_option(verified, "the verified versions")
    verified.set_defaults(run=_verified)
    affected = commands.add_parser("affected", help="stacks a change touches")
    environment(affected)
    affected.add_argument("--since", required=True, metavar="REV")
    _json_option(affected, "the stacks and skipped paths")
    affected.set_defaults(run=_affected)
    runner = commands.add_parser("runner", help="the reference IaC runner for one stack")
    runner.add_argument("action", choices=["serve"])
    environment(runner)
    runner.add_argument("--stack", required=True)
    runner.add_argument("--host", default="127.0.0.1")
    runner.add_argument("--port", type=int, default=8081)
    runner.set_defaults(run=_runner)


def _hook_commands(commands: Any) -> None:
    comment = commands.add_parser("comment", help="handle a pull-request comment event")
    comment.add_argument("--event", required=True, help="the event JSON ($GITHUB_EVENT_PATH)")
    comment.add_argument("--inventory", default="inventories", help="file or directory")
    comment.set_defaults(run=_comment)

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
    webhook.set_defaults(run=_webhook)


def _lock_command(commands: Any, environment: Callable[[argparse.ArgumentParser], None]) -> None:
    lock = commands.add_parser("lock", help="show or break a stack's deploy lock")
    environment(lock)
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


def _inventory_commands(commands: Any) -> None:
    check = commands.add_parser("check", help="validate inventory files")
    check.add_argument("--inventory", default="inventories", help="file or directory")
    check.add_argument("--env", action="append", help="only these environments")
    check.add_argument("--ansible-inventory", help="hosts and groups from this Ansible inventory")
    _json_option(check, "each environment's result")
    check.set_defaults(run=_check)
    schema = commands.add_parser("schema", help="print the inventory JSON Schema")
    schema.add_argument(
        "--format",
        choices=["json", "markdown"],
        default="json",
        help="json: the JSON Schema; markdown: the field reference (docs/inventory.md)",
    )
    schema.set_defaults(run=_schema)


def _json_option(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument(
        "--json", action="store_true", help=f"{what} as one JSON document (fields: see below)"
    )


def _completion(args: argparse.Namespace) -> int:
    """The shell's completion script for every command and option (shtab renders it)."""
    import shtab  # noqa: PLC0415 - only this command needs it

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return 0


def _completion_command(commands: Any) -> None:
    completion = commands.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(run=_completion)


def _document(commands: Any) -> None:
    """Each command's help ends with its examples (and its ``--json`` fields), as written."""
    for name, command in commands.choices.items():
        command.formatter_class = argparse.RawDescriptionHelpFormatter
        if command.epilog is None:
            command.epilog = EPILOGS.get(name)


def build_parser() -> argparse.ArgumentParser:
    """Every command and option: what ``main`` parses and ``completion`` describes."""
    parser = argparse.ArgumentParser(
        prog="deployproof",
        description="The operator CLI of pytest-deployproof. Running checks is pytest, not this.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"deployproof {__version__}")
    add_verbosity(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    _inventory_commands(commands)

    def environment(command: argparse.ArgumentParser) -> None:
        env = os.environ.get("DEPLOYPROOF_ENV") or None  # as the pytest plugin reads it
        command.add_argument(
            "--env", default=env, required=env is None, help="the environment ($DEPLOYPROOF_ENV)"
        )
        command.add_argument("--inventory", default="inventories", help="file or directory")
        command.add_argument(
            "--ansible-inventory", help="hosts and groups from this Ansible inventory"
        )
        add_verbosity(command, inherit=True)

    history = commands.add_parser("history", help="deploy history of an environment")
    environment(history)
    history.add_argument("stack", nargs="?", help="only this stack")
    history.add_argument("--status", help="only entries with this status (e.g. fail)")
    history.add_argument("--last-good", action="store_true", help="print the last good version")
    history.add_argument("--limit", type=int, default=50, help="at most this many lines")
    _json_option(history, "the entries (with --last-good: the entry)")
    history.set_defaults(run=_history)

    rollback = commands.add_parser("rollback", help="roll a stack back to a good version")
    environment(rollback)
    rollback.add_argument("stack")
    rollback.add_argument("version", nargs="?", help="the version to put back")
    target = rollback.add_mutually_exclusive_group()
    target.add_argument("--list", action="store_true", help="versions that ran successfully")
    target.add_argument(
        "--last-good", action="store_true", help="the newest good version other than the running"
    )
    rollback.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS")
    _json_option(rollback, "with --list: the versions")
    rollback.set_defaults(run=_rollback)

    restore = commands.add_parser("restore", help="restore a stack from a deploy backup")
    environment(restore)
    restore.add_argument("stack")
    restore.add_argument("backup", nargs="?", help="the backup's name (default: the newest)")
    restore.add_argument("--list", action="store_true", help="list the stack's backups")
    restore.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS")
    _json_option(restore, "with --list: the backups")
    restore.set_defaults(run=_restore)

    _hook_commands(commands)
    _release_commands(commands, environment)

    _lock_command(commands, environment)
    _discover_command(commands)
    _init_command(commands)
    _serve_commands(commands)
    _completion_command(commands)
    _document(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "rollback":
        chosen = (args.version is not None) + args.list + args.last_good
        if chosen != 1:
            parser.error("rollback needs exactly one of: VERSION, --list, --last-good")
    with cli_logging(args.verbose - args.quiet):  # the phases of long commands, live
        return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
