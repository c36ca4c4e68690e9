"""Has anyone changed it by hand? Drift of stacks and layers (DRF-1..3).

* **Config** (DRF-1): the config hash (SHA-256 over the compose file and the env,
  canonicalised) and Compose's per-service ``config-hash`` are recorded when
  deployproof brings a stack up. Later, the host's files must still hash the
  same, and every container must still carry the recorded Compose hash: an env
  file edited and applied by hand changes both.
* **Containers** (DRF-2): what runs against what ``docker compose config``
  declares: the image and tag, missing and extra services, published ports,
  and, for a container whose Compose hash says it changed, its environment.
  One container listing per host serves every stack (shared with the smoke
  checks); only a container that drifted is inspected, to show the diff.
* **Layers** (DRF-3): the layer's engine in plan mode, read by exit code:
  ``terraform|tofu|terragrunt plan -detailed-exitcode`` (0 none, 2 drift,
  else error), ``ansible-playbook --check --diff`` (``changed`` in the recap),
  or any command with the terraform contract.

A diff is written expected-then-running, one line per difference, so the
failure message and the report attachment read the same.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import Inconclusive
from ..inventory.model import Layer, Stack
from ..state_dir import StateDir

if TYPE_CHECKING:
    from ..orchestrators.containers import ContainerState
    from ..reach.hosts import HostAccess

__all__ = [
    "ConfigSeen",
    "ContainersSeen",
    "DeployedState",
    "LayerPlan",
    "ParitySeen",
    "ServicesSeen",
    "config_hash",
    "container_drift",
    "plan_layer",
    "proven_hashes",
    "record_deployed",
    "service_hashes",
    "spec_drift",
]

ONEOFF_LABEL = "com.docker.compose.oneoff"
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - how Docker writes "every interface", compared, not bound
HASH_LABEL = "com.docker.compose.config-hash"


def config_hash(compose_text: str, env: dict[str, str | None]) -> str:
    """SHA-256 of the compose file and the env, canonicalised: key order and whitespace do
    not count, values do (DEP-7)."""
    compose = yaml.safe_load(compose_text) or {}
    canonical = json.dumps(compose, sort_keys=True, separators=(",", ":"), default=str)
    canonical += "\0" + "\n".join(f"{key}={env[key] or ''}" for key in sorted(env))
    return hashlib.sha256(canonical.encode()).hexdigest()


def service_hashes(access: HostAccess, stack: Stack, env_file: bool = True) -> dict[str, str]:
    """Compose's own config hash of each service (``docker compose config --hash '*'``),
    with the env file unless ``env_file`` is false (rendered so when there is none)."""
    done = access.compose(stack, "config", "--hash", "*", env_file=env_file)
    if done.rc != 0:
        raise Inconclusive(f"docker compose config --hash failed for {stack.name}: {done.stderr}")
    pairs = (line.split() for line in done.stdout.splitlines())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


# What Compose's ServiceHash leaves out of a service before hashing it (compose v2
# pkg/compose/hash.go): none of them changes the container.
_UNHASHED = ("build", "pull_policy", "scale", "depends_on", "profiles")
# Go's encoding/json escapes these; Python's does not.
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029"}  # fmt: skip


def unescaped(value: Any) -> Any:
    """``value`` from ``docker compose config`` output as Compose holds it: the output
    writes every literal ``$`` as ``$$`` (so that it reads back uninterpolated)."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, dict):
        return {key: unescaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unescaped(item) for item in value]
    return value


def computed_service_hash(service: dict[str, Any]) -> str:
    """Compose's config hash of one service, computed from its rendering (``config
    --format json``) as Compose computes it: SHA-256 of the service's JSON as Compose holds
    it (``$$`` read back as ``$``), compact, in Compose's field order, less what
    :data:`_UNHASHED` names and ``deploy.replicas``. It saves a Compose process per stack.

    It is believed only where it equals a container's own ``config-hash`` label: then the
    bytes Compose hashed when it made the container are the bytes computed from today's
    rendering, and everything the container drift check would otherwise inspect (the
    environment) is in them. Where it differs, Compose is asked (``config --hash``): real
    drift, or something this computation does not reproduce. (For a service with
    ``env_file:`` it agrees with the label where ``config --hash`` does not: that counts
    the ``env_file:`` entry itself, while ``up`` hashes the service with the file's
    variables read in, as the rendering shows them.)"""
    kept = {key: value for key, value in unescaped(service).items() if key not in _UNHASHED}
    if isinstance(kept.get("deploy"), dict):
        kept["deploy"] = {k: v for k, v in kept["deploy"].items() if k != "replicas"}
    text = json.dumps(kept, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return hashlib.sha256(text.encode()).hexdigest()


def proven_hashes(
    services: dict[str, Any], containers: list[ContainerState]
) -> dict[str, str] | None:
    """The computed hash of each service that has a container, when every container of
    the stack (one-off runs aside) carries exactly its service's; else ``None``: then
    only Compose can say which is right. A service with no container gets no hash: none
    could prove it."""
    computed = {
        name: computed_service_hash(service)
        for name, service in services.items()
        if isinstance(service, dict)
    }
    proven: dict[str, str] = {}
    for container in containers:
        if container.labels.get(ONEOFF_LABEL) == "True":
            continue
        label = container.labels.get(HASH_LABEL)
        if label is None or label != computed.get(container.service):
            return None
        proven[container.service] = label
    return proven


@dataclass(frozen=True)
class DeployedState:
    """What deployproof last brought up for a stack, kept in the state directory."""

    version: str | None
    config_hash: str
    services: dict[str, str]  # service -> Compose config-hash
    at: float

    @classmethod
    def load(cls, state: StateDir, stack: str) -> DeployedState | None:
        try:
            data = json.loads(state.deployed(stack).read_text())
        except (OSError, ValueError):
            return None
        return cls(data.get("version"), data["config_hash"], data["services"], data["at"])


@dataclass(frozen=True)
class ConfigSeen:
    """DRF-1's observation: what was recorded at the last deploy, and what is there now."""

    recorded: DeployedState | None  # None: deployproof never brought the stack up
    current_hash: str  # of the host's compose file and env file now
    containers: list[ContainerState]


@dataclass(frozen=True)
class ContainersSeen:
    """DRF-2's observation: the rendered services, the running containers, their Compose
    hashes, and the engine's inspection (asked only for containers whose hash differs)."""

    services: dict[str, Any]
    problem: str | None  # why Compose refused the files, when it did
    containers: list[ContainerState]
    hashes: dict[str, str]
    inspect: Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class ServicesSeen:
    """DRF-2 on a swarm: the rendered services and each service's spec on the manager."""

    services: dict[str, Any]
    specs: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ParitySeen:
    """DRF-4's observation: the stack in the other environment, and both versions."""

    here: str
    there: str
    exists_there: bool
    version_here: str | None
    version_there: str | None
    compared: bool  # versions were read (the stack has a tag variable and they matter)


def record_deployed(
    state_dir: StateDir,
    stack: Stack,
    access: HostAccess,
    version: str | None,
    env_text: str,
    *,
    containers: list[ContainerState] | None = None,
) -> DeployedState:
    """Record the stack as just brought up (after every deploy, rollback and restore).

    Each service's hash is the one Compose wrote on its containers when it brought them
    up (``containers``, listed after ``up``): what DRF-1 later finds on a container it did
    not recreate. ``config --hash`` is asked only without them: it is not always what
    ``up`` writes (a service with ``env_file:`` hashes differently)."""
    from .stackfiles import parse_env  # noqa: PLC0415

    compose_text = access.read(access.compose_file(stack)) or ""
    hashes: dict[str, str] = {}  # a swarm's: none (its services are compared by spec)
    if stack.target == "compose" and containers is None:
        hashes = service_hashes(access, stack)
    elif stack.target == "compose":
        for container in containers or []:
            label = container.labels.get(HASH_LABEL)
            if label and container.labels.get(ONEOFF_LABEL) != "True":
                hashes.setdefault(container.service, label)
    state = DeployedState(
        version, config_hash(compose_text, parse_env(env_text)), hashes, time.time()
    )
    path = state_dir.deployed(stack.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    try:
        temporary.write_text(json.dumps(state.__dict__, indent=2) + "\n")
        temporary.replace(path)
    except OSError:
        temporary.unlink(missing_ok=True)  # the old record stays whole
        raise
    return state


def config_drift(
    stack: Stack, recorded: DeployedState, current_hash: str, running: list[ContainerState]
) -> list[str]:
    """DRF-1: the files and the containers against what was recorded at the last deploy."""
    lines = []
    if current_hash != recorded.config_hash:
        lines.append(
            f"files: compose + env on the host hash {current_hash[:12]}, deployed "
            f"{recorded.config_hash[:12]} ({recorded.version or 'unknown version'})"
        )
    for container in running:
        expected = recorded.services.get(container.service)
        actual = container.labels.get(HASH_LABEL)
        if expected is not None and actual != expected:
            lines.append(
                f"{container.name}: config-hash {(actual or 'none')[:12]}, deployed "
                f"{expected[:12]}: recreated by hand"
            )
    return lines


def _published(declared: dict[str, Any]) -> set[str]:
    ports = set()
    for port in declared.get("ports") or []:
        if isinstance(port, dict) and port.get("published"):
            host_ip = port.get("host_ip") or ANY_ADDRESS
            ports.add(
                f"{host_ip}:{port['published']}->{port['target']}/{port.get('protocol', 'tcp')}"
            )
    return ports


def _running_ports(container: ContainerState) -> set[str]:
    return {
        f"{p.get('IP') or ANY_ADDRESS}:{p['PublicPort']}->{p['PrivatePort']}/{p.get('Type', 'tcp')}"
        for p in container.ports
        if p.get("PublicPort") and ":" not in (p.get("IP") or "")  # IPv6 duplicates
    }


def container_drift(
    services: dict[str, Any],
    containers: list[ContainerState],
    hashes: dict[str, str],
    inspect: Any,
) -> list[str]:
    """DRF-2: running containers against the declared services, as expected/running lines.
    ``inspect(container) -> attrs`` is called only for a container whose Compose hash is not
    the one the files give (``hashes``): only then can its environment differ."""
    lines = []
    present = [c for c in containers if c.labels.get(ONEOFF_LABEL) != "True"]
    by_service: dict[str, list[ContainerState]] = {}
    for container in present:
        by_service.setdefault(container.service, []).append(container)
    for name in sorted(services):
        if name not in by_service:
            lines.append(f"service {name}: declared, no container (removed by hand?)")
    for name in sorted(set(by_service) - set(services)):
        for container in by_service[name]:
            lines.append(
                f"{container.name}: runs with the project label, service {name or '(none)'} "
                "is not declared"
            )
    for name, declared in sorted(services.items()):
        for container in by_service.get(name, []):
            image = declared.get("image")
            if image and container.image != image:
                lines.append(f"{container.name}: image {container.image}, declared {image}")
            want, have = _published(declared), _running_ports(container)
            if container.state == "running" and want != have:
                lines.append(
                    f"{container.name}: ports {', '.join(sorted(have)) or 'none'}, declared "
                    f"{', '.join(sorted(want)) or 'none'}"
                )
            if container.labels.get(HASH_LABEL) != hashes.get(name):
                lines += _environment_drift(container, declared, inspect(container))
    return lines


def _environment_drift(
    container: ContainerState, declared: dict[str, Any], attrs: dict[str, Any]
) -> list[str]:
    declared_env = unescaped(declared.get("environment") or {})
    want = {k: "" if v is None else str(v) for k, v in declared_env.items()}
    have = dict(item.partition("=")[::2] for item in attrs.get("Config", {}).get("Env") or [])
    keys = sorted(k for k in set(want) | set(have) if k in want and want.get(k) != have.get(k))
    return [f"{container.name}: environment {key} differs from the declared value" for key in keys]


_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _bytes(text: Any) -> int:
    """Compose's memory size ("32M", "1g", 33554432) in bytes."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", str(text).strip().lower())
    if not found:
        return -1
    return int(float(found.group(1)) * _UNITS[found.group(2) or "b"])


def spec_drift(declared: dict[str, Any], specs: dict[str, dict[str, Any]]) -> list[str]:
    """DRF-2 on a swarm: each service's spec on the manager against the rendered files:
    missing and extra services, image and tag, replicas, environment, limits. (A service's
    environment on a swarm has no hidden default: every key it runs with is compared.)"""
    lines = [f"service {name}: declared, not deployed (removed by hand?)"
             for name in sorted(set(declared) - set(specs))]  # fmt: skip
    lines += [f"service {name}: runs in the stack, not declared"
              for name in sorted(set(specs) - set(declared))]  # fmt: skip
    for name in sorted(set(declared) & set(specs)):
        lines += [f"service {name}: {line}" for line in _spec_lines(declared[name], specs[name])]
    return lines


def _spec_lines(want: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    lines = []
    template = spec.get("TaskTemplate") or {}
    container = template.get("ContainerSpec") or {}
    image = str(container.get("Image", "")).split("@", 1)[0]
    if want.get("image") and image != want["image"]:
        lines.append(f"image {image}, declared {want['image']}")
    deploy = want.get("deploy") or {}
    replicas = ((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas")
    declared_replicas = deploy.get("replicas", 1)
    if deploy.get("mode", "replicated") == "replicated" and replicas != declared_replicas:
        lines.append(f"{replicas} replicas, declared {declared_replicas}")
    declared_env = unescaped(want.get("environment") or {})
    env = {k: "" if v is None else str(v) for k, v in declared_env.items()}
    have = dict(item.partition("=")[::2] for item in container.get("Env") or [])
    lines += [f"environment {key} differs from the declared value"
              for key in sorted(set(env) | set(have)) if env.get(key) != have.get(key)]  # fmt: skip
    limits = (deploy.get("resources") or {}).get("limits") or {}
    actual = (template.get("Resources") or {}).get("Limits") or {}
    cpus = actual.get("NanoCPUs", 0)
    if "cpus" in limits and cpus != round(float(limits["cpus"]) * 1e9):
        lines.append(f"cpus limit {cpus / 1e9:g}, declared {limits['cpus']}")
    memory = actual.get("MemoryBytes", 0)
    if "memory" in limits and memory != _bytes(limits["memory"]):
        lines.append(f"memory limit {memory} bytes, declared {limits['memory']}")
    return lines


# -- layers -----------------------------------------------------------------


@dataclass(frozen=True)
class LayerPlan:
    layer: str
    verdict: str  # in sync, drift, error
    detail: str
    elapsed_s: float


_RECAP = re.compile(r"\bchanged=(\d+)")


def plan_command(layer: Layer) -> list[str] | None:
    """The command that plans ``layer`` without changing anything; None for compose."""
    extra = list(layer.args)
    if layer.engine in ("terraform", "tofu"):
        return [layer.engine, "plan", "-detailed-exitcode", "-input=false", "-no-color", *extra]
    if layer.engine == "terragrunt":
        return ["terragrunt", "plan", "-detailed-exitcode", "-input=false", "-no-color", *extra]
    if layer.engine == "ansible":
        return ["ansible-playbook", "--check", "--diff", *extra, layer.path or "site.yml"]
    if layer.engine == "command":
        return ["sh", "-c", layer.command or "false"]
    return None


def plan_layer(layer: Layer, cwd: Path, masker: Any, timeout_s: float = 900) -> LayerPlan:
    """Run the layer's engine in plan mode and read the verdict from its contract."""
    argv = plan_command(layer)
    assert argv is not None
    beside = Path(sys.executable).parent / argv[0]  # ansible-core installed in this venv
    if not shutil.which(argv[0]) and beside.exists():
        argv = [str(beside), *argv[1:]]
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError:
        return LayerPlan(layer.name, "error", f"{argv[0]} is not installed", 0.0)
    except subprocess.TimeoutExpired:
        return LayerPlan(layer.name, "error", f"{shlex.join(argv)} ran over {timeout_s:g} s", 0.0)
    elapsed = time.monotonic() - started
    output = masker((done.stdout + done.stderr).strip())
    tail = "\n".join(output.splitlines()[-30:])
    if layer.engine == "ansible":
        changed = sum(int(n) for n in _RECAP.findall(done.stdout))
        if done.returncode != 0:
            return LayerPlan(layer.name, "error", f"exit code {done.returncode}\n{tail}", elapsed)
        verdict = "drift" if changed else "in sync"
        return LayerPlan(layer.name, verdict, f"changed={changed}\n{tail}", elapsed)
    verdict = {0: "in sync", 2: "drift"}.get(done.returncode, "error")
    return LayerPlan(layer.name, verdict, f"exit code {done.returncode}\n{tail}", elapsed)


def scan_layers(
    layers: list[Layer], cwd_of: Any, masker: Any, workers: int = 4
) -> dict[str, LayerPlan]:
    """Plan every layer concurrently (they are independent reads)."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    planned = [layer for layer in layers if plan_command(layer) is not None]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(planned) or 1))) as pool:
        futures = {
            layer.name: pool.submit(plan_layer, layer, cwd_of(layer), masker) for layer in planned
        }
    return {name: future.result() for name, future in futures.items()}
