"""What a host runs: its Compose projects, read from the engine and from Compose itself.

Compose keeps no registry of projects; what it knows it writes into labels on every
container it makes (project, working dir, config files, env file, service). So a
project is found the way ``docker compose ls`` finds it, and completed from its
containers' labels (read in one Engine API call, locally or over deployproof's ssh
connection). ``docker compose config`` of the same files is what Compose would run;
it holds the env file's values, so it stays in memory and is never printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...errors import Inconclusive
from ...observe.stackfiles import parse_env
from ...reach.docker_client import client_for
from ...reach.hosts import HostAccess
from ...secrets import Masker

__all__ = ["Project", "list_projects", "read_project"]

PROJECT = "com.docker.compose.project"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
ENV_FILE = "com.docker.compose.project.environment_file"
SERVICE = "com.docker.compose.service"
ONEOFF = "com.docker.compose.oneoff"


@dataclass
class Project:
    """One Compose project as its host shows it; ``config`` and ``raw`` once read."""

    name: str
    status: str
    working_dir: str
    config_files: tuple[str, ...]
    env_files: tuple[str, ...]
    running: dict[str, list[str]]  # service -> its containers' states
    config: dict[str, Any] = field(default_factory=dict)  # `compose config`: holds secrets
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)  # services as written
    env: dict[str, str | None] = field(default_factory=dict)  # the env file: holds secrets
    env_text_found: bool = False

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return dict(self.config.get("services") or {})


def _split(value: str | None) -> tuple[str, ...]:
    """Compose joins several files into one label with commas."""
    return tuple(part for part in (value or "").split(",") if part)


def _containers(access: HostAccess) -> list[dict[str, Any]]:
    """Every Compose container of the host (one API call); ``Inconclusive`` when the engine
    does not answer, with one line naming where it was looked for."""
    import docker  # noqa: PLC0415 - optional until Docker is asked

    client = client_for(access.host)  # raises Inconclusive, naming the engine's address
    try:
        listed: list[dict[str, Any]] = client.api.containers(all=True, filters={"label": PROJECT})
    except docker.errors.DockerException as exc:
        raise Inconclusive(
            f"cannot list containers on host {access.host.name!r}: {_one_line(str(exc))}"
        ) from None
    return listed


def list_projects(access: HostAccess) -> list[Project]:
    """The host's Compose projects, running or not (``docker compose ls --all``), each with
    what its containers' labels say, sorted by name."""
    containers = _containers(access)
    done = access.run(*access.compose_command(), "ls", "--all", "--format", "json")
    if done.rc != 0:
        raise Inconclusive(
            f"`docker compose ls` failed on host {access.host.name!r}: {_last_line(done.stderr)}"
        )
    try:
        listed = json.loads(done.stdout or "[]") or []
    except ValueError:
        raise Inconclusive(
            f"`docker compose ls` on host {access.host.name!r} did not print JSON"
        ) from None
    by_project: dict[str, list[dict[str, str]]] = {}
    for container in containers:
        labels = container.get("Labels") or {}
        if labels.get(ONEOFF) == "True":  # `compose run`: not a service of the project
            continue
        labels = {**labels, "State": str(container.get("State") or "unknown")}
        by_project.setdefault(labels.get(PROJECT, ""), []).append(labels)
    projects = []
    for entry in listed:
        name = str(entry.get("Name") or "")
        labels = by_project.get(name, [])
        if not name or not labels:
            continue
        first = labels[0]
        running: dict[str, list[str]] = {}
        for each in labels:
            running.setdefault(each.get(SERVICE, ""), []).append(each["State"])
        projects.append(
            Project(
                name=name,
                status=str(entry.get("Status") or ""),
                working_dir=first.get(WORKING_DIR, ""),
                config_files=_split(entry.get("ConfigFiles")) or _split(first.get(CONFIG_FILES)),
                env_files=_split(first.get(ENV_FILE)),
                running=running,
            )
        )
    return sorted(projects, key=lambda project: project.name)


def read_project(access: HostAccess, project: Project, masker: Masker) -> str | None:
    """Fill in ``project``'s env, raw services and rendered config; why not, or ``None``.

    The reason is masked with the env file's secret values (Compose quotes lines of the
    files in its errors)."""
    env_files = []
    default = str(Path(project.working_dir) / ".env") if project.working_dir else None
    # Compose labels the env file only when one was named (--env-file); else it read the
    # project directory's .env, if there was one.
    for path in project.env_files or ((default,) if default else ()):
        text = access.read(Path(path))
        if text is None:
            continue
        env_files.append(path)
        project.env.update(parse_env(text))
        project.env_text_found = True
    project.env_files = tuple(env_files)
    masker = masker.with_env(project.env)
    for path in project.config_files:
        text = access.read(Path(path))
        if text is None:
            return f"compose file {path} is not on host {access.host.name!r} any more"
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            return f"{path} is not valid YAML: {masker(_one_line(str(exc)))}"
        services = document.get("services") if isinstance(document, dict) else None
        for name, service in (services or {}).items():
            if isinstance(service, dict):
                project.raw.setdefault(str(name), {}).update(service)
    argv = [*access.compose_command(), "-p", project.name]
    for path in project.config_files:
        argv += ["-f", path]
    for path in project.env_files:
        argv += ["--env-file", path]
    cwd = Path(project.working_dir) if project.working_dir else None
    done = access.run(*argv, "config", "--format", "json", cwd=cwd)
    try:
        config = json.loads(done.stdout) if done.rc == 0 else None
    except ValueError:
        config = None
    if not isinstance(config, dict):  # Compose 2.40 may exit 0 printing nothing on stdout
        return f"docker compose config refused it: {masker(_last_line(done.stderr))}"
    project.config = config
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return _one_line(lines[-1]) if lines else "no output"
