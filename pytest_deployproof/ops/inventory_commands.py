"""``deployproof check`` and ``deployproof schema``: the inventory, without running tests.

``check`` validates every environment's file at once, which a pytest run never does (it
reads only the one it checks); ``schema`` prints the JSON Schema for editors, or the field
reference the docs carry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..inventory.load import InventoryError, discover, load_file
from ..inventory.schema import schema_text
from ._common import add_json_option, ansible_inventory, print_json

if TYPE_CHECKING:
    from ..inventory.model import Inventory

__all__ = ["add_parsers"]


def add_parsers(commands: Any) -> None:
    """Register ``check`` and ``schema`` on the CLI's subcommands."""
    check = commands.add_parser("check", help="validate inventory files")
    check.add_argument("--inventory", default="inventories", help="file or directory")
    check.add_argument("--env", action="append", help="only these environments")
    check.add_argument("--ansible-inventory", help="hosts and groups from this Ansible inventory")
    add_json_option(check, "each environment's result")
    check.set_defaults(run=_check)
    schema = commands.add_parser("schema", help="print the inventory JSON Schema")
    schema.add_argument(
        "--format",
        choices=["json", "markdown"],
        default="json",
        help="json: the JSON Schema; markdown: the field reference (docs/inventory.md)",
    )
    schema.set_defaults(run=_schema)


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
            inventory = load_file(path, ansible_inventory(args))
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
        print_json(checked)
    return 1 if failed else 0


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


def _schema(args: argparse.Namespace) -> int:
    if args.format == "markdown":
        from ..inventory.reference import reference_markdown  # noqa: PLC0415

        sys.stdout.write(reference_markdown())
    else:
        sys.stdout.write(schema_text())
    return 0
