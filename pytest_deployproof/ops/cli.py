"""``deployproof``: the small operator CLI. Running checks is ``pytest``, not this.

Commands here act on the inventory without running tests. Each concern registers its
own commands: :mod:`.inventory_commands` (check, schema), :mod:`.operator_commands`
(history, rollback, restore, lock: DEP-12), :mod:`.hook_commands` (comment, webhook),
:mod:`.release_commands` (version, promote, verified, affected, runner), :mod:`.discover`,
:mod:`.scaffold` (init) and :mod:`.serve` (serve, trend). This module builds the parser
from them, in the order ``--help`` lists them, and runs the chosen command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .. import __version__
from . import hook_commands, inventory_commands, operator_commands, release_commands
from ._help import EPILOGS, EXIT_CODES
from .discover import add_parser as _discover_command
from .progress import add_verbosity, cli_logging
from .scaffold import add_parser as _init_command
from .serve import add_parsers as _serve_commands

__all__ = ["build_parser", "main"]


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
    inventory_commands.add_parsers(commands)
    operator_commands.add_parsers(commands)
    hook_commands.add_parsers(commands, main)  # /revert rolls back through this CLI
    release_commands.add_parsers(commands)
    operator_commands.add_lock_parser(commands)
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
