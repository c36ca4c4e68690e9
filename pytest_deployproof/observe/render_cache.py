"""Drift without re-rendering what has not changed (DRF-2, issue 22).

``docker compose config`` costs a Compose process a stack (~45 ms of CPU, once: each
service's hash is computed from that rendering where the containers' labels prove it,
:func:`.drift.proven_hashes`): most of a cold drift scan of many stacks. Its output is
a function of its inputs, so it is kept in the state directory under a digest of them,
and a stack is rendered again only when one changed:

* the compose file and the env file, byte for byte;
* the process variables the compose file names (they win over the env file), and every
  ``COMPOSE_*`` variable;
* the project name, the target and the Compose command.

A compose file that reads files the digest does not cover (``include:``, ``extends:``,
``env_file:``) has no key: it is rendered every time, and nothing is ever judged from a
cache whose inputs could not be digested. An entry keeps each service's image and
published ports and Compose's hash of each service, never environment values (they may
be secrets): the environment is compared only for a container whose Compose hash is not
the rendered one, and then the stack is rendered afresh anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import yaml

from ..inventory.model import Stack
from ..state_dir import StateDir

__all__ = ["Rendered", "load_rendered", "render_key", "store_rendered"]

_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_KEPT = ("image", "ports")  # what the cached drift comparison reads besides the hashes


@dataclass(frozen=True)
class Rendered:
    services: dict[str, dict[str, Any]]  # service -> image and ports, as Compose rendered them
    hashes: dict[str, str]  # service -> its config hash: Compose's, or proven by a label


def _reads_other_files(compose_text: str) -> bool:
    try:
        document = yaml.safe_load(compose_text)
    except yaml.YAMLError:
        return True
    if not isinstance(document, dict) or "include" in document:
        return True
    services = document.get("services") or {}
    if not isinstance(services, dict):
        return True
    return any(
        not isinstance(service, dict) or "extends" in service or "env_file" in service
        for service in services.values()
    )


def render_key(
    stack: Stack, compose_text: str, env_text: str | None, compose_command: list[str]
) -> str | None:
    """The digest of everything Compose reads to render the stack, or ``None`` when it
    reads more than that (then the stack is always rendered)."""
    if _reads_other_files(compose_text):
        return None
    names = set(_VARIABLE.findall(compose_text))
    process = {
        name: value
        for name, value in os.environ.items()
        if name in names or name.startswith("COMPOSE_")
    }
    inputs = {
        "compose": compose_text,
        "env": env_text,
        "process": process,
        "project": stack.project_name,
        "target": stack.target,
        "command": compose_command,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def load_rendered(state: StateDir, stack: str, key: str) -> Rendered | None:
    """The entry for ``key``; ``None`` when there is none, or it is of other inputs."""
    try:
        data = json.loads(state.rendered(stack).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    return Rendered(data["services"], data["hashes"])


def store_rendered(
    state: StateDir, stack: str, key: str, services: dict[str, Any], hashes: dict[str, str]
) -> None:
    """Keep what was rendered for ``key`` (atomically; a state disk that refuses it costs
    only the next scan's time)."""
    kept = {
        name: {field: service[field] for field in _KEPT if field in service}
        for name, service in services.items()
    }
    path = state.rendered(stack)
    temporary = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"key": key, "services": kept, "hashes": hashes}))
        temporary.replace(path)
    except OSError:
        temporary.unlink(missing_ok=True)
