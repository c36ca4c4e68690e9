"""Preflight gates (PRE-1..8): what must hold before anything is touched.

Each gate reads an observation (the stack's files on its host, the host's
engine, its disk) and fails with the stack, the gate and what was seen. None
of them prints a value from the env file: keys only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest

from ..inventory.model import Gate, Host, Stack
from ..observe.docker_engine import HostEngine
from ..observe.stackfiles import StackFiles
from ..reach.hosts import DiskUsage
from ..secrets import is_secret_key
from .waivers import Problem, judge_gate

__all__ = [
    "expect_compose_parses",
    "expect_disk_free",
    "expect_env_complete",
    "expect_images_available",
    "expect_images_pinned",
    "expect_limits_declared",
    "expect_networks_exist",
    "expect_no_build",
    "expect_no_literal_secrets",
    "expect_target_ready",
]


def _fail(stack: Stack, gate: Gate, label: str, problems: Sequence[Problem]) -> None:
    __tracebackhide__ = True
    judge_gate(stack, gate, label, problems)


def expect_compose_parses(stack: Stack, files: StackFiles) -> None:
    """PRE-3: Compose accepts the compose file with the env file."""
    __tracebackhide__ = True
    _fail(stack, "compose", "compose config", [files.problem] if files.problem else [])


def expect_target_ready(stack: Stack, problem: str | None) -> None:
    """The host runs what the stack's ``target:`` needs (Compose v2 with ``up
    --wait``; a swarm manager for ``target: swarm``)."""
    __tracebackhide__ = True
    _fail(stack, "target", f"{stack.target} target", [problem] if problem else [])


def expect_no_build(stack: Stack, files: StackFiles) -> None:
    """PRE-4: no service builds on the server; images come from a registry."""
    __tracebackhide__ = True
    building = sorted(name for name, service in files.services.items() if "build" in service)
    _fail(stack, "build", "build directive", [(n, f"service {n} has build:") for n in building])


def _tag_of(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def expect_images_pinned(stack: Stack, files: StackFiles, pattern: str) -> None:
    """PRE-2: critical services run registry tags (sha-<commit> or semver), not latest or pins."""
    __tracebackhide__ = True
    allowed = re.compile(pattern)
    problems: list[Problem] = []
    for name in sorted(files.services):
        declared = stack.services.get(name)
        if declared is None or not declared.critical:
            continue
        image = str(files.services[name].get("image") or "")
        tag = _tag_of(image)
        if not image:
            problems.append((name, f"critical service {name} names no image"))
        elif "@sha256:" in image:
            continue  # a digest pins exactly
        elif tag is None:
            why = f"critical service {name} uses untagged image {image} (means latest)"
            problems.append((name, why))
        elif tag == "latest":
            problems.append((name, f"critical service {name} uses {image}"))
        elif not allowed.match(tag):
            problems.append((
                name,
                f"critical service {name} uses {image}: tag {tag!r} is not a registry tag "
                f"matching {pattern} (a local pin tag?)",
            ))  # fmt: skip
    _fail(stack, "pinning", "image tags", problems)


def expect_limits_declared(stack: Stack, files: StackFiles) -> None:
    """PRE-6: every service declares a cpu and a memory limit."""
    __tracebackhide__ = True
    problems: list[Problem] = []
    for name, service in sorted(files.services.items()):
        limits: dict[str, Any] = ((service.get("deploy") or {}).get("resources") or {}).get(
            "limits"
        ) or {}
        missing = [
            what
            for what, present in (
                ("cpus", limits.get("cpus") or service.get("cpus")),
                ("memory", limits.get("memory") or service.get("mem_limit")),
            )
            if not present
        ]
        if missing:
            problems.append((name, f"service {name} has no {' or '.join(missing)} limit"))
    _fail(stack, "limits", "resource limits", problems)


def expect_env_complete(stack: Stack, files: StackFiles) -> None:
    """PRE-8: the env file exists and sets every required key (values never shown)."""
    __tracebackhide__ = True
    if files.env is None:
        _fail(stack, "env", "env file", [f"{stack.env_path} does not exist on host {stack.host}"])
        return
    required = [*stack.required_env]
    if stack.image_tag_var:
        required.append(stack.image_tag_var)
    required += [db.password_key for db in stack.databases.values() if db.password_key]
    missing = sorted({key for key in required if not files.env.get(key)})
    _fail(
        stack,
        "env",
        "env file",
        [f"{stack.env_path} does not set {', '.join(missing)}"] if missing else [],
    )


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env) if isinstance(env, dict) else {}


def expect_no_literal_secrets(stack: Stack, files: StackFiles) -> None:
    """PRE-8: the compose file holds no secret values, only ${VARIABLES} from the env file."""
    __tracebackhide__ = True
    problems: list[Problem] = []
    services = (files.compose_raw or {}).get("services") or {}
    for name, service in sorted(services.items()):
        for key, value in sorted(_environment(service or {}).items()):
            if is_secret_key(key) and value not in (None, "") and "$" not in str(value):
                problems.append(
                    (name, f"service {name} sets {key} to a literal value in {files.compose_name}")
                )
    _fail(stack, "secrets", "secrets in compose file", problems)


def expect_networks_exist(stack: Stack, files: StackFiles, engine: HostEngine) -> None:
    """PRE-1: every external network the stack joins exists on its host."""
    __tracebackhide__ = True
    declared = files.config.get("networks", {}) if files.config else {}
    wanted = set(stack.networks) | {
        str(network.get("name") or key)
        for key, network in declared.items()
        if isinstance(network, dict) and network.get("external")
    }
    missing = sorted(wanted - engine.networks())
    _fail(
        stack,
        "networks",
        "external networks",
        [f"network {name} does not exist on host {stack.host}" for name in missing],
    )


def expect_images_available(stack: Stack, files: StackFiles, engine: HostEngine) -> None:
    """PRE-7: every image the stack will run exists on its host or in its registry."""
    __tracebackhide__ = True
    images = {name: str(s["image"]) for name, s in sorted(files.services.items()) if s.get("image")}
    missing = engine.missing(images.values())
    problems: list[Problem] = [
        (name, f"service {name}: image {image} is {missing[image]}")
        for name, image in images.items()
        if image in missing
    ]
    _fail(stack, "registry", "images", problems)


def expect_disk_free(host: Host, usage: DiskUsage) -> None:
    """PRE-5: the host's data path has at least ``min_free_percent`` free."""
    __tracebackhide__ = True
    shortage = usage.shortage(host)
    if shortage:
        pytest.fail(shortage, pytrace=False)
