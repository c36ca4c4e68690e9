"""The discovered inventory as a file: written only once the loader accepts it.

The text is validated by the same loader ``pytest --env`` uses (from a scratch copy
named as the environment, since an environment is named by its file), and masked with
every secret value discovery saw; a file that fails either is never written, so what
lands in ``inventories/`` is always usable and never holds a password.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ...inventory.load import InventoryError, load_file
from ...secrets import Masker
from .stacks import LAYER, Discovered

__all__ = ["inventory_text", "leaks", "validate", "write_atomically"]


def inventory_text(host_name: str, spec: str, stacks: list[Discovered], warnings: list[str]) -> str:
    """The inventory YAML, headed by comments saying where it came from and what to check."""
    document: dict[str, Any] = {
        "hosts": {host_name: {"spec": spec}},
        "layers": {LAYER: {"order": 1, "engine": "compose"}},
        "stacks": {stack.name: stack.entry for stack in stacks},
    }
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = [
        f"# Written by `deployproof discover` from host {host_name} ({spec}) at {when}.",
        "# Read it before trusting it: every service is marked critical, endpoints are those",
        "# that answered when discovered, passwords are named by their env-file KEY only.",
        "# Before `--deploy`, set state_dir outside any checkout (default: .deployproof/<env>",
        "# beside this file), e.g. state_dir: /var/lib/deployproof/<env>",
    ]
    if warnings:
        header.append("# Warnings:")
        header += [f"#   - {line}" for line in warnings]
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
    return "\n".join(header) + "\n" + body


def validate(text: str, env: str) -> str | None:
    """Why the loader refuses ``text`` as environment ``env``, or ``None``."""
    with tempfile.TemporaryDirectory(prefix="deployproof-discover-") as scratch:
        path = Path(scratch) / f"{env}.yml"
        path.write_text(text, encoding="utf-8")
        try:
            load_file(path)
        except InventoryError as exc:
            return str(exc).replace(str(path), "(discovered inventory)")
    return None


def leaks(text: str, masker: Masker) -> bool:
    """Whether a secret value discovery saw is in ``text``."""
    return masker(text) != text


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole or not at all (a temporary file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
