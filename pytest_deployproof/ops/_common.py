"""What the operator CLI's commands share: the environment options, ``--json``, and
loading the environment a command names.

In one place so every command that takes ``--env`` reads it the same way (and from
``$DEPLOYPROOF_ENV`` as the pytest plugin does), and every ``--json`` document is printed
the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..inventory.load import InventoryError, load_environment
from .progress import add_verbosity

if TYPE_CHECKING:
    from ..inventory.model import Inventory

__all__ = [
    "JSON_TIME",
    "add_environment_options",
    "add_json_option",
    "ansible_inventory",
    "load_inventory",
    "print_json",
]

JSON_TIME = "%Y-%m-%dT%H:%M:%SZ"  # the times in --json documents


def add_environment_options(command: argparse.ArgumentParser) -> None:
    """``--env`` (default ``$DEPLOYPROOF_ENV``), ``--inventory`` and ``--ansible-inventory``:
    how a command names the environment it acts on."""
    env = os.environ.get("DEPLOYPROOF_ENV") or None  # as the pytest plugin reads it
    command.add_argument(
        "--env", default=env, required=env is None, help="the environment ($DEPLOYPROOF_ENV)"
    )
    command.add_argument("--inventory", default="inventories", help="file or directory")
    command.add_argument("--ansible-inventory", help="hosts and groups from this Ansible inventory")
    add_verbosity(command, inherit=True)


def add_json_option(command: argparse.ArgumentParser, what: str) -> None:
    """``--json``; its help points at the fields the command's epilog lists."""
    command.add_argument(
        "--json", action="store_true", help=f"{what} as one JSON document (fields: see below)"
    )


def print_json(document: object) -> None:
    """``--json``: one document on stdout, the fields each command's help lists."""
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


def ansible_inventory(args: argparse.Namespace) -> Path | None:
    """The command's ``--ansible-inventory``, if given."""
    value = getattr(args, "ansible_inventory", None)
    return Path(value) if value else None


def load_inventory(args: argparse.Namespace) -> Inventory:
    """The environment an operator command names (``--ansible-inventory`` completes hosts).

    A stack the command names must be one of the inventory's before anything uses it:
    its name becomes part of paths (``locks/<stack>.lease``), and ``../../x`` is no stack."""
    inventory = load_environment(Path(args.inventory), args.env, ansible_inventory(args))
    stack = getattr(args, "stack", None)
    if stack is not None and stack not in inventory.stacks:
        known = ", ".join(sorted(inventory.stacks)) or "(none)"
        raise InventoryError(f"no stack {stack!r} in {args.env}: known are {known}")
    return inventory
