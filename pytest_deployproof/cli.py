"""``deployproof``: the small operator CLI. Running checks is ``pytest``, not this.

Commands here act on the inventory without running tests: print the JSON
Schema for editors, and validate inventory files (every environment at once,
which a pytest run never does: it reads only the one it checks).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .inventory import InventoryError, discover, load_file
from .schema import schema_text

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
    for env, path in files.items():
        try:
            inventory = load_file(path)
        except InventoryError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            continue
        print(f"ok: {env}: {len(inventory.stacks)} stacks, {len(inventory.hosts)} hosts ({path})")
    return 1 if failed else 0


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deployproof", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate inventory files")
    check.add_argument("--inventory", default="inventories", help="file or directory")
    check.add_argument("--env", action="append", help="only these environments")
    check.set_defaults(run=_check)
    schema = commands.add_parser("schema", help="print the inventory JSON Schema")
    schema.set_defaults(run=_schema)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
