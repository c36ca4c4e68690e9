"""``deployproof version``, ``promote``, ``verified``, ``affected`` and ``runner``: what a
release pipeline asks between builds and deploys.

The next tag (DEP-6) and its promotion to production, what an environment verified and
so may be promoted (DEP-5), which stacks a change touches, and the reference IaC runner
that applies a tag to one stack (DEP-8).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..inventory.load import InventoryError
from ._common import JSON_TIME, add_environment_options, add_json_option, load_inventory, print_json
from .serving import serve_until_stopped

__all__ = ["add_parsers"]


def add_parsers(commands: Any) -> None:
    """Register ``version``, ``promote``, ``verified``, ``affected`` and ``runner`` on the
    CLI's subcommands."""
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
    add_environment_options(verified)
    verified.add_argument("stack")
    add_json_option(verified, "the verified versions")
    verified.set_defaults(run=_verified)
    affected = commands.add_parser("affected", help="stacks a change touches")
    add_environment_options(affected)
    affected.add_argument("--since", required=True, metavar="REV")
    add_json_option(affected, "the stacks and skipped paths")
    affected.set_defaults(run=_affected)
    runner = commands.add_parser("runner", help="the reference IaC runner for one stack")
    runner.add_argument("action", choices=["serve"])
    add_environment_options(runner)
    runner.add_argument("--stack", required=True)
    runner.add_argument("--host", default="127.0.0.1")
    runner.add_argument("--port", type=int, default=8081)
    runner.set_defaults(run=_runner)


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
        inventory = load_inventory(args)
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    records = list(reversed(load_verified(inventory.state, args.stack)))
    if args.json:
        print_json(
            [
                {
                    "version": record.version,
                    "verified_at": datetime.fromtimestamp(record.at, UTC).strftime(JSON_TIME),
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
        inventory = load_inventory(args)
        repo = inventory.repo or repository_root(Path(args.inventory).resolve())
        impact = impact_of(inventory, changed_files(repo, args.since))
    except (InventoryError, ChangeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        skipped = dict(sorted(impact.skipped.items()))
        print_json({"stacks": sorted(impact.stacks), "skipped": skipped})
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
    from ..orchestrators.compose import compose_readiness, compose_up  # noqa: PLC0415
    from ..reach.hosts import HostAccess  # noqa: PLC0415

    try:
        inventory = load_inventory(args)
        stack = inventory.stacks[args.stack]
    except InventoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not stack.image_tag_var:
        print(f"error: stack {stack.name} has no image_tag_var", file=sys.stderr)
        return 2
    access = HostAccess(inventory.hosts[stack.host])
    tag_var = stack.image_tag_var
    unready = compose_readiness(access)  # it applies with `compose up`, as a deploy does
    if unready:
        print(f"error: {unready}", file=sys.stderr)
        return 2

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
