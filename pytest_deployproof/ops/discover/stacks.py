"""From a running Compose project to an inventory stack: what can be read off, and no more.

Everything here is a pure function of what :mod:`.projects` read, so each rule can be
tested without a Docker engine. The rules lean towards saying less: a stack entry that
the bundled checks then find wrong would teach the operator to distrust the inventory.
Secrets never pass through: a database's password is named by the env-file KEY the
compose file interpolates (``POSTGRES_PASSWORD: ${DB_PASSWORD}`` gives ``DB_PASSWORD``),
and a password written into the compose file is reported, not copied.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from ...inventory.model import compose_project_name
from .endpoints import Candidate, candidates, published_port
from .projects import Project

__all__ = [
    "Discovered",
    "build_stack",
    "database_kind",
    "env_reference",
    "image_tag_variable",
    "password_key",
]

# compose.yaml is what a stack without `compose:` finds first (Compose's own lookup order);
# any other file is named, so the stack never depends on which other files lie beside it.
DEFAULT_COMPOSE, DEFAULT_ENV = "compose.yaml", ".env"
LAYER = "apps"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# The whole tag is one variable: `repo:${TAG}`, `repo:${TAG:-v1}`, `repo:$TAG`.
_TAG = re.compile(rf":\$(?:\{{(?P<braced>{_NAME})(?::?[-?+][^}}]*)?\}}|(?P<bare>{_NAME}))$")
_REFERENCE = re.compile(rf"^\$(?:\{{(?P<braced>{_NAME})(?::?[-?+][^}}]*)?\}}|(?P<bare>{_NAME}))$")
_PORTS = {"postgresql": 5432, "redis": 6379}
_POSTGRES = re.compile(r"postgres(?:ql)?(?:-?\d+)?")
_REDIS = re.compile(r"redis(?:-?\d+)?")


@dataclass
class Discovered:
    """One stack of the inventory to write, and what the operator should know about it."""

    name: str
    entry: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def image_tag_variable(image: str) -> str | None:
    """The variable that is the whole tag of ``image`` as written, e.g. ``APP_TAG`` in
    ``ghcr.io/o/app:${APP_TAG:-v1}``; ``None`` when the tag is literal or only part
    variable (a deploy writes a whole tag into the variable)."""
    found = _TAG.search(image.strip())
    return (found["braced"] or found["bare"]) if found else None


def env_reference(value: object) -> str | None:
    """The variable a value is exactly a reference to (``${DB_PASSWORD}``), else ``None``."""
    found = _REFERENCE.match(str(value).strip()) if isinstance(value, str) else None
    return (found["braced"] or found["bare"]) if found else None


def database_kind(image: str) -> Literal["postgresql", "redis"] | None:
    """A PostgreSQL or Redis server, by its image's name (``postgres:16``,
    ``docker.io/bitnami/postgresql``, ``redis:7-alpine``): the repository's last segment
    is the server's name, so ``postgres-exporter`` or a tag ``:postgres`` is not one."""
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    if _POSTGRES.fullmatch(last):
        return "postgresql"
    if _REDIS.fullmatch(last):
        return "redis"
    return None


def _environment(raw: dict[str, Any]) -> dict[str, str | None]:
    """A service's ``environment`` as written, in either form (mapping or ``K=V`` list);
    ``None`` for a key given without a value (taken from the project's environment)."""
    declared = raw.get("environment")
    if isinstance(declared, dict):
        return {str(k): None if v is None else str(v) for k, v in declared.items()}
    found: dict[str, str | None] = {}
    for item in declared if isinstance(declared, list) else []:
        key, sep, value = str(item).partition("=")
        found[key] = value if sep else None
    return found


def _redis_password(raw: dict[str, Any]) -> tuple[bool, str | None]:
    """``(given, value)`` of ``--requirepass`` on the command line as written."""
    command = raw.get("command")
    try:
        words = (
            shlex.split(command) if isinstance(command, str) else [str(w) for w in command or []]
        )
    except ValueError:
        return False, None
    for index, word in enumerate(words):
        if word == "--requirepass" and index + 1 < len(words):
            return True, words[index + 1]
    return False, None


def _unstated_password(
    kind: str, service: str, variable: str, environment: dict[str, str | None], env_keys: set[str]
) -> tuple[str | None, str | None]:
    """The key when the compose file does not pass the password variable explicitly."""
    if variable in env_keys:  # e.g. `env_file: .env` on the service
        return variable, None
    if f"{variable}_FILE" in environment:
        return None, (
            f"service {service} reads its password from a file ({variable}_FILE): set "
            "databases.*.password_key to an env-file key holding it, by hand"
        )
    if kind == "redis":
        return None, None  # a Redis without a password is common; nothing to name
    return None, f"service {service}: no {variable} found; password_key left out"


def password_key(
    kind: str, service: str, raw: dict[str, Any], env_keys: set[str]
) -> tuple[str | None, str | None]:
    """``(env key, note)``: the env-file key holding the database's password, and what the
    operator should know (a literal password, a key the env file does not set)."""
    environment = _environment(raw)
    variable = "POSTGRES_PASSWORD" if kind == "postgresql" else "REDIS_PASSWORD"
    given, value = variable in environment, environment.get(variable)
    if kind == "redis" and not given:
        given, value = _redis_password(raw)
    if not given:
        return _unstated_password(kind, service, variable, environment, env_keys)
    key = variable if value is None else env_reference(value)
    note = None
    if key is None:  # a literal: never copied, and it should not be where it is
        note = (
            f"service {service}: its password is written into the compose file; move it into "
            f"the env file ({variable}: ${{DB_PASSWORD}}) and set password_key"
        )
    elif key not in env_keys:
        note = f"service {service}: the env file does not set {key} (the password key)"
    return key, note


def _relative(path: str, run_dir: str) -> str:
    """``path`` relative to ``run_dir`` when it is directly inside, else as it is."""
    pure = PurePosixPath(path)
    return pure.name if str(pure.parent) == run_dir.rstrip("/") else path


def _tag_variable(project: Project, databases: set[str]) -> tuple[str | None, str | None]:
    """The stack's one image-tag variable, and a note when services use several."""
    used: dict[str, list[str]] = {}
    for name, raw in sorted(project.raw.items()):
        variable = image_tag_variable(str(raw.get("image") or ""))
        if variable and name in project.services:
            used.setdefault(variable, []).append(name)
    apps = {v: s for v, s in used.items() if not set(s) <= databases} or used
    if not apps:
        return None, None
    counts = Counter({variable: len(services) for variable, services in apps.items()})
    chosen = sorted(counts, key=lambda v: (-counts[v], v))[0]
    note = None
    if len(apps) > 1:
        listed = "; ".join(f"{v} ({', '.join(s)})" for v, s in sorted(apps.items()))
        note = (
            f"images use several tag variables: {listed}; image_tag_var is {chosen}, "
            "a deploy sets only it"
        )
    return chosen, note


def _database(
    service: str, kind: str, declared: dict[str, Any], raw: dict[str, Any], env_keys: set[str]
) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    entry: dict[str, Any] = {"kind": kind}
    found = published_port(declared.get("ports") or [], _PORTS[kind])
    if found is None:
        notes.append(
            f"database {service}: port {_PORTS[kind]} is not published on the host at a fixed "
            "port; set its host and port to where deployproof can reach it"
        )
    else:
        host_ip, port = found
        if host_ip not in ("", "0.0.0.0", "::", "127.0.0.1"):  # noqa: S104 - compared only
            entry["host"] = host_ip
        entry["port"] = port
    if kind == "postgresql":
        environment = declared.get("environment") or {}
        user = str(environment.get("POSTGRES_USER") or "postgres")
        entry["dbname"] = str(environment.get("POSTGRES_DB") or user)
        entry["user"] = user
    key, note = password_key(kind, service, raw, env_keys)
    if key:
        entry["password_key"] = key
    if note:
        notes.append(note)
    entry["service"] = service
    return entry, notes


def _files(project: Project, entry: dict[str, Any], warnings: list[str]) -> None:
    """The project name, compose file and env file, said only where they differ from what
    the inventory's defaults would find."""
    run_dir = project.working_dir
    if compose_project_name(PurePosixPath(run_dir).name) != project.name:
        entry["project"] = project.name
    compose = _relative(project.config_files[0], run_dir)
    if compose != DEFAULT_COMPOSE:
        entry["compose"] = compose
    if len(project.config_files) > 1:
        warnings.append(
            f"Compose runs it from {len(project.config_files)} files "
            f"({', '.join(project.config_files)}); an inventory stack names one, so this names "
            f"the first: merge them into one (`docker compose config`) before a deploy"
        )
    if project.env_files:
        env_file = _relative(project.env_files[0], run_dir)
        if env_file != DEFAULT_ENV:
            entry["env_file"] = env_file
        if len(project.env_files) > 1:
            warnings.append(f"it uses several env files; the inventory names the first, {env_file}")


def build_stack(
    project: Project,
    host: str,
    where: Callable[[str], str | None],
    verify: Callable[[str], str | None],
) -> Discovered:
    """The inventory entry of ``project`` on inventory host ``host``; endpoints are kept
    only when ``verify`` finds they answer (see :mod:`.endpoints`)."""
    run_dir = project.working_dir
    found = Discovered(project.name, {"layer": LAYER, "host": host, "run_dir": run_dir})
    entry, warn = found.entry, found.warnings.append
    _files(project, entry, found.warnings)
    env_keys = set(project.env)
    services = project.services
    kinds = {
        name: kind
        for name, declared in services.items()
        if (kind := database_kind(str(declared.get("image") or "")))
    }
    variable, note = _tag_variable(project, set(kinds))
    if variable:
        entry["image_tag_var"] = variable
        if variable not in env_keys:
            warn(f"the env file does not set {variable} (the image tag variable)")
    if note:
        warn(note)
    entry["services"] = {name: {"critical": True} for name in sorted(services)}
    for name in sorted(services):
        states = project.running.get(name, [])
        if not states or any(state != "running" for state in states):
            warn(f"service {name} is not running ({', '.join(states) or 'no container'}): "
                 "the smoke check will fail until it runs")  # fmt: skip
    databases: dict[str, Any] = {}
    for name, kind in sorted(kinds.items()):
        databases[name], notes = _database(
            name, kind, services[name], project.raw.get(name, {}), env_keys
        )
        found.warnings += notes
    endpoints = _endpoints(found, services, kinds, where, verify)
    if endpoints:
        entry["endpoints"] = endpoints
    if databases:
        entry["databases"] = databases
    return found


def _endpoints(
    found: Discovered,
    services: dict[str, dict[str, Any]],
    kinds: Mapping[str, str],
    where: Callable[[str], str | None],
    verify: Callable[[str], str | None],
) -> list[dict[str, str]]:
    proposed: list[Candidate] = []
    for name in sorted(services):
        skip = [_PORTS[kinds[name]]] if name in kinds else []
        more, notes = candidates(name, services[name], where, skip)
        proposed += more
        found.warnings += notes
    endpoints: list[dict[str, str]] = []
    names: set[str] = set()
    for candidate in proposed:
        problem = verify(candidate.url)
        if problem:
            found.warnings.append(
                f"endpoint {candidate.url} (service {candidate.service}) left out: {problem}"
            )
            continue
        name = candidate.name
        while name in names:
            name += "-1"
        names.add(name)
        endpoints.append({"name": name, "url": candidate.url, "service": candidate.service})
    return endpoints
