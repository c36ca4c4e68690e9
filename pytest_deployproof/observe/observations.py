"""What one pytest process observes, batched and cached.

It holds the observers (per host: containers, engine, access) and it batches
and caches observation: when the first endpoint test of a stack asks for its probe,
every endpoint this process is going to test is probed at once (under xdist,
those of the same stack, since a worker does not know which other stacks it
will be sent); a stack's files, a host's networks, disk and containers are
read once and shared by every check that judges them. Nothing here judges:
the checks do (and :mod:`.blocking` decides what a broken observation blocks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..errors import Inconclusive
from ..inventory.model import Endpoint, Host, Inventory, Layer, Stack
from ..inventory.selection import Selection
from ..orchestrators import ComposeOrchestrator, Orchestrator, SwarmOrchestrator
from ..orchestrators.containers import ContainerState, HostContainers, ServiceState
from ..orchestrators.swarm_services import HostSwarm
from ..reach import docker_client
from ..reach.hosts import DiskUsage, HostAccess
from ..secrets import Masker
from ..settings import Settings
from ..targets import Target
from .databases import DatabaseResult, probe_database
from .docker_engine import HostEngine
from .drift import (
    HASH_LABEL,
    ConfigSeen,
    ContainersSeen,
    DeployedState,
    LayerPlan,
    ParitySeen,
    ServicesSeen,
    config_hash,
    proven_hashes,
    scan_layers,
    service_hashes,
)
from .prober import Prober
from .probes import ProbeResult, probe_all
from .render_cache import load_rendered, render_key, store_rendered
from .stackfiles import StackFiles, env_value, observe_stack_files, parse_env

__all__ = ["Observations"]

T = TypeVar("T")


class Observations:
    """Observers and cached observations of one process."""

    def __init__(
        self,
        settings: Settings,
        selection: Selection,
        *,
        worker: bool,
        known_secrets: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings
        self.selection = selection
        self.worker = worker
        self.masker = Masker()
        # Re-entrant: an observation may need another (a stack's files need its host).
        self._lock = threading.RLock()
        self._containers: dict[str, HostContainers] = {}
        self._swarms: dict[str, HostSwarm] = {}
        self._services: dict[tuple[str, str], ServiceState] = {}
        self._planned_stacks: set[str] = set()
        self._rendered_ahead = False
        self._engines: dict[str, HostEngine] = {}
        self._access: dict[str, HostAccess] = {}
        self._files: dict[str, StackFiles] = {}
        self._disks: dict[str, DiskUsage] = {}
        self._readiness: dict[tuple[str, str], str | None] = {}
        self._planned: dict[str, tuple[str, Endpoint]] = {}
        self._probed: dict[str, ProbeResult] = {}
        self._prober: Prober | None = None
        # Under xdist the controller reads the secrets once and hands them to its workers,
        # so a worker never connects to a host it has no tests for just to mask a report.
        self._secrets: Masker | None = (
            None if known_secrets is None else self.masker.plus(*known_secrets)
        )
        self._hashes: dict[str, dict[str, str]] = {}
        self.planned_layers: set[str] = set()
        self._layer_plans: dict[str, LayerPlan] = {}

    @property
    def deploying(self) -> bool:
        return self.settings.deploy.value is not None

    def invalidate(self, stack: Stack) -> None:
        """Forget what was observed of ``stack``: it has just been changed."""
        self.orchestrator(stack).refresh()
        with self._lock:
            self._files.pop(stack.name, None)
            for seen in [seen for seen in self._services if seen[0] == stack.name]:
                del self._services[seen]
            prefix = f"{self.inventory.environment}/{stack.layer}/{stack.name}/"
            for key in [key for key in self._probed if key.startswith(prefix)]:
                del self._probed[key]

    @property
    def inventory(self) -> Inventory:
        return self.selection.inventory

    def stack(self, name: str) -> Stack:
        return self.inventory.stacks[name]

    def start_prober(self) -> None:
        """Start a prober process (before collection), only where it can pay.

        Not under xdist or --deploy (a worker learns its stacks one by one; a deploy changes
        each stack just before its tests), and not for one round of probes or fewer, which
        this process does faster than a new interpreter starts.
        """
        if self.worker or self.deploying:
            return
        endpoints = sum(len(stack.endpoints) for stack in self.selection.stacks)
        if endpoints > self.inventory.probes.concurrency:
            self._prober = Prober()

    @property
    def probing_ahead(self) -> bool:
        return self._prober is not None

    def close(self) -> None:
        """Stop what this run started that outlives a test: the prober process, and the
        Docker clients' connection pools."""
        if self._prober is not None:
            self._prober.close()
        docker_client.close_all()

    def plan(self, targets: Iterable[Target]) -> None:
        """Note the endpoints and layers the collected tests will observe.

        With a prober process started, it now probes them all, in the order the tests run.
        """
        for target in targets:
            if target.kind == "stack" and target.stack:
                self._planned_stacks.add(target.stack)
            if target.kind == "layer" and target.layer:
                self.planned_layers.add(target.layer)
            elif target.kind == "endpoint" and target.stack:
                self._planned.setdefault(target.id, (target.stack, self.endpoint(target)))
        if self._prober is not None:
            endpoints = {key: endpoint for key, (_, endpoint) in self._planned.items()}
            self._prober.submit(endpoints, self.inventory.probes)

    # -- per-host observers ------------------------------------------------

    def _per_host(self, cache: dict[str, T], host: str, make: Callable[[Host], T]) -> T:
        with self._lock:
            if host not in cache:
                cache[host] = make(self.inventory.hosts[host])
            return cache[host]

    def containers(self, host: str) -> HostContainers:
        return self._per_host(self._containers, host, HostContainers)

    def swarm(self, host: str) -> HostSwarm:
        return self._per_host(self._swarms, host, HostSwarm)

    def orchestrator(self, stack: Stack) -> Orchestrator:
        """What runs ``stack`` on its host (its ``target:``)."""
        if stack.target == "swarm":
            return SwarmOrchestrator(self.access(stack.host), self.swarm(stack.host))
        return ComposeOrchestrator(self.access(stack.host), self.containers(stack.host))

    def stack_containers(self, stack: Stack) -> list[ContainerState]:
        return self.orchestrator(stack).containers(stack)

    def engine(self, host: str) -> HostEngine:
        return self._per_host(self._engines, host, HostEngine)

    def access(self, host: str) -> HostAccess:
        return self._per_host(self._access, host, HostAccess)

    def secrets(self) -> Masker:
        """A masker for every secret this run can have seen (REP-3): values of the selected
        stacks' env files whose keys look secret, and process variables with the environment's
        ``secrets_prefix``. Read once, when first needed: a failure to report, files to mask."""
        with self._lock:
            if self._secrets is None:
                masker = self.masker
                by_host: dict[str, list[Stack]] = {}
                for stack in self.selection.stacks:
                    by_host.setdefault(stack.host, []).append(stack)
                # Hosts in parallel: an unreachable one costs one connect timeout, not one each.
                # (Accesses are made here: the threads must not take this run's lock.)
                jobs = [(self.access(host), stacks) for host, stacks in by_host.items()]
                with ThreadPoolExecutor(max(1, min(16, len(jobs)))) as pool:
                    for texts in pool.map(lambda job: _env_files(*job), jobs):
                        for text in texts:
                            masker = masker.with_env(parse_env(text))
                prefix = self.inventory.secrets_prefix
                if prefix:
                    masker = masker.plus(
                        *(v for k, v in os.environ.items() if k.startswith(prefix) and v)
                    )
                self._secrets = masker
            return self._secrets

    # -- observations ------------------------------------------------------

    def service_state(self, target: Target) -> ServiceState:
        assert target.stack
        assert target.name
        return self.service(self.stack(target.stack), target.name)

    def service(self, stack: Stack, name: str) -> ServiceState:
        """One declared service as it runs, observed once per run (the smoke check, the
        checks it blocks and the report share it) until the stack is changed."""
        key = (stack.name, name)
        with self._lock:
            seen = self._services.get(key)
        if seen is None:  # observed outside the lock: it may poll until the probe deadline
            seen = self.orchestrator(stack).service(stack, name, self.inventory.probes)
            with self._lock:
                seen = self._services.setdefault(key, seen)
        return seen

    def stack_files(self, name: str) -> StackFiles:
        with self._lock:
            if name not in self._files:
                stack = self.stack(name)
                self._files[name] = observe_stack_files(stack, self.access(stack.host), self.masker)
            return self._files[name]

    def service_hashes(self, stack: Stack) -> dict[str, str]:
        """Compose's config hash of each service, from the host's files (cached; computed
        outside the lock, so that stacks are rendered concurrently)."""
        with self._lock:
            known = self._hashes.get(stack.name)
            access = self.access(stack.host)
        if known is None:
            # with the env file exactly when the rendering had it (no file: none named)
            known = service_hashes(access, stack, self.stack_files(stack.name).env is not None)
            with self._lock:
                known = self._hashes.setdefault(stack.name, known)
        return known

    def _hashes_for(self, stack: Stack, files: StackFiles) -> dict[str, str]:
        """Each service's Compose hash: computed from the rendering in hand where every
        container's own label proves it (:func:`.drift.proven_hashes`), else Compose's."""
        proven = proven_hashes(files.services, self.stack_containers(stack))
        return proven if proven is not None else self.service_hashes(stack)

    def _render_key(self, stack: Stack, files: StackFiles) -> str | None:
        if files.compose_text is None:
            return None
        command = self.access(stack.host).compose_command()
        return render_key(stack, files.compose_text, files.env_text, command)

    def _render_ahead(self) -> None:
        """At the first container drift observation, render every planned Compose stack
        whose rendering is not kept for its current inputs, four at a time: a Compose
        process per rendering is most of a cold drift scan."""
        with self._lock:
            if self._rendered_ahead:
                return
            self._rendered_ahead = True
            stacks = [
                self.stack(name)
                for name in sorted(self._planned_stacks)
                if self.stack(name).target == "compose"
            ]

        def render(stack: Stack) -> None:
            files = self.stack_files(stack.name)
            key = self._render_key(stack, files)
            if key and load_rendered(self.inventory.state, stack.name, key) is not None:
                return
            if files.config is not None:
                hashes = self._hashes_for(stack, files)
                if key:
                    store_rendered(self.inventory.state, stack.name, key, files.services, hashes)

        if len(stacks) > 1:
            with ThreadPoolExecutor(4) as pool:
                for future in [pool.submit(render, stack) for stack in stacks]:
                    with contextlib.suppress(Exception):  # each stack's own check reports it
                        future.result()

    def deployed_config(self, stack: Stack) -> ConfigSeen:
        """DRF-1: the recorded deploy, the hash of the host's files now, the containers."""
        recorded = DeployedState.load(self.inventory.state, stack.name)
        files = self.stack_files(stack.name)
        access = self.access(stack.host)
        compose_text = access.read(access.compose_file(stack)) or ""
        current = config_hash(compose_text, files.env or {})
        return ConfigSeen(recorded, current, self.stack_containers(stack))

    def running_containers(self, stack: Stack) -> ContainersSeen | ServicesSeen:
        """DRF-2: the rendered services against the running containers and their hashes
        (on a swarm: against the services' specs as the manager holds them)."""
        files = self.stack_files(stack.name)
        if stack.target == "swarm":
            if files.config is None:
                problem = files.problem or "compose refused the files"
                return ContainersSeen({}, problem, [], {}, lambda container: {})
            specs = self.swarm(stack.host).services(stack.project_name)
            return ServicesSeen(files.services, {name: s.spec for name, s in specs.items()})
        self._render_ahead()
        containers = self.stack_containers(stack)
        inspect = self.engine(stack.host).inspect
        key = self._render_key(stack, files)
        state = self.inventory.state
        cached = load_rendered(state, stack.name, key) if key else None
        if (
            cached is not None
            and containers
            and all(c.labels.get(HASH_LABEL) == cached.hashes.get(c.service) for c in containers)
        ):
            # The same inputs rendered these hashes, and every container carries its own:
            # nothing whose comparison needs the full rendering (the environment) is due.
            return ContainersSeen(cached.services, None, containers, cached.hashes, inspect)
        if files.config is None:
            return ContainersSeen({}, files.problem or "compose refused the files", [], {},
                                  lambda container: {})  # fmt: skip
        hashes = self._hashes_for(stack, files)
        if key:
            store_rendered(state, stack.name, key, files.services, hashes)
        return ContainersSeen(files.services, None, containers, hashes, inspect)

    def parity(self, stack: Stack, other: Inventory) -> ParitySeen:
        """DRF-4: whether the stack exists in ``other``, and (when it matters) both versions,
        each read from its own host's env file."""
        theirs = other.stacks.get(stack.name)
        seen = ParitySeen(self.inventory.environment, other.environment, theirs is not None,
                          None, None, compared=False)  # fmt: skip
        if theirs is None or not stack.image_tag_var or "version" in stack.parity_allow:
            return seen
        mine = env_value(self.access(stack.host).read(stack.env_path) or "", stack.image_tag_var)
        other_host = HostAccess(other.hosts[theirs.host])
        their_var = theirs.image_tag_var or stack.image_tag_var
        their_version = env_value(other_host.read(theirs.env_path) or "", their_var)
        return dataclasses.replace(
            seen, version_here=mine, version_there=their_version, compared=True
        )

    def layer_plan(self, layer: Layer) -> LayerPlan:
        """The layer's plan. The first call plans every layer this process will judge, at
        once: plans are slow and independent (DRF-3)."""
        with self._lock:
            if layer.name not in self._layer_plans:
                wanted = [
                    self.inventory.layers[name]
                    for name in sorted(self.planned_layers | {layer.name})
                    if name not in self._layer_plans
                ]
                self._layer_plans.update(scan_layers(wanted, self.layer_dir, self.secrets()))
            return self._layer_plans[layer.name]

    def layer_dir(self, layer: Layer) -> Path:
        """Where a layer's plan runs: its ``path`` (a directory) under the repository, or the
        repository itself when ``path`` is a file (an ansible playbook)."""
        base = self.inventory.repo or self.settings.inventory.value.resolve().parent
        if self.inventory.repo is None and self.settings.inventory.value.is_file():
            base = base.parent
        candidate = base / (layer.path or ".")
        return candidate if candidate.is_dir() else base

    def readiness(self, stack: Stack) -> str | None:
        """Why the stack's host cannot take a deploy of its ``target:`` (preflight), or ``None``;
        asked once per host and target."""
        key = (stack.host, stack.target)
        with self._lock:
            if key not in self._readiness:
                self._readiness[key] = self.orchestrator(stack).readiness()
            return self._readiness[key]

    def disk_usage(self, host: str) -> DiskUsage:
        with self._lock:
            if host not in self._disks:
                model = self.inventory.hosts[host]
                self._disks[host] = self.access(host).disk_usage(model.data_path)
            return self._disks[host]

    def probe(self, target: Target) -> ProbeResult:
        """This endpoint's result: from the prober process when it has this endpoint (see
        prober.py). Otherwise the first call probes every planned endpoint not yet probed
        (under xdist: of this stack) concurrently, here; later calls read the cache.

        In this process probing is done in one batch on this thread: it is CPU-bound in
        httpx, and streaming results from a background thread was measured slower (GIL
        contention with pytest's own per-test work).
        """
        assert target.stack
        prober = self._prober
        if prober is not None and prober.expects(target.id):
            # Generous: this endpoint starts at the latest when those probed before it end.
            pace = self.inventory.probes
            result = prober.result(target.id, 2 * (pace.deadline_s + pace.timeout_s) + 10)
            if result is not None:
                return result
            delivered, reason = prober.abandon()
            warnings.warn(
                f"deployproof: the prober process failed: {self.secrets()(reason)}; "
                "probing the rest of the endpoints in this process",
                stacklevel=1,
            )
            with self._lock:
                self._probed.update(delivered)
                self._prober = prober = None
        with self._lock:
            if target.id not in self._probed:
                batch = {
                    key: endpoint
                    for key, (stack, endpoint) in self._planned.items()
                    if key not in self._probed
                    and not (prober is not None and prober.expects(key))
                    # A worker does not know its other stacks; a deploy changes each stack
                    # just before its tests: then only this stack's endpoints are current.
                    and (not (self.worker or self.deploying) or stack == target.stack)
                }
                batch[target.id] = self.endpoint(target)
                self._probed.update(probe_all(batch.items(), self.inventory.probes))
            return self._probed[target.id]

    def database(self, target: Target) -> DatabaseResult:
        assert target.stack
        assert target.name
        stack = self.stack(target.stack)
        files = self.stack_files(stack.name)
        return probe_database(
            stack.databases[target.name],
            files.env,
            self.inventory.probes,
            files.masker,
            self.inventory.secrets_prefix,
        )

    def endpoint(self, target: Target) -> Endpoint:
        assert target.stack
        stack = self.stack(target.stack)
        return next(e for e in stack.endpoints if e.name == target.name)


def _env_files(access: HostAccess, stacks: list[Stack]) -> list[str]:
    """The env files of ``stacks`` (all on ``access``'s host) that could be read."""
    texts: list[str] = []
    for stack in stacks:
        try:
            texts.append(access.read(stack.env_path) or "")
        except Inconclusive:
            break  # an unreachable host: nothing read from it can leak
    return texts
