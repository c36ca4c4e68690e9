"""What a swarm manager says about the stacks it runs: services, their tasks, and the
containers of those tasks (SMK-1 and DRF-2 for ``target: swarm``).

A swarm stack is found by the ``com.docker.stack.namespace`` label that
``docker stack deploy`` puts on its services, tasks and containers. One listing
of each per host serves every stack (as :class:`~.containers.HostContainers`
does for Compose). A service is up when as many of its tasks *run* as it wants
replicas: Swarm holds a task with a healthcheck in ``starting`` until the
container reports healthy, so "running" already means healthy. Only tasks Swarm
wants running count; the exited containers of earlier tasks (Swarm keeps a few)
are history, not the service.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import Inconclusive
from ..inventory.model import Host, ProbeSettings, Stack
from ..reach.docker_client import client_for
from .containers import ContainerState, ServiceState

__all__ = ["NAMESPACE_LABEL", "HostSwarm", "SwarmService", "SwarmTask", "engine_time"]

NAMESPACE_LABEL = "com.docker.stack.namespace"
SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
TASK_LABEL = "com.docker.swarm.task.id"


def engine_time(text: str) -> datetime:
    """A Docker API timestamp (RFC 3339 with nanoseconds) as an aware datetime."""
    head, _, fraction = text.rstrip("Z").partition(".")
    digits = "".join(c for c in fraction if c.isdigit())[:6]
    return datetime.fromisoformat(f"{head}.{digits or '0'}").replace(tzinfo=UTC)


@dataclass(frozen=True)
class SwarmTask:
    """One task of a service, as the manager lists it."""

    id: str
    service_id: str
    slot: int
    desired: str  # running, shutdown, ...
    state: str  # new, pending, preparing, starting, running, failed, rejected, shutdown, ...
    error: str
    image: str
    container_id: str
    at: datetime  # when its state last changed

    @classmethod
    def from_api(cls, task: dict[str, Any]) -> SwarmTask:
        status = task.get("Status") or {}
        spec = (task.get("Spec") or {}).get("ContainerSpec") or {}
        return cls(
            id=task["ID"],
            service_id=task.get("ServiceID", ""),
            slot=int(task.get("Slot") or 0),
            desired=task.get("DesiredState", ""),
            state=status.get("State", "unknown"),
            error=status.get("Err") or status.get("Message") or "",
            image=spec.get("Image", ""),
            container_id=(status.get("ContainerStatus") or {}).get("ContainerID", ""),
            at=engine_time(status.get("Timestamp") or "1970-01-01T00:00:00Z"),
        )


@dataclass(frozen=True)
class SwarmService:
    """One service of a stack: its spec as deployed and how its last update went."""

    id: str
    name: str  # as the stack's compose files name it (without the namespace)
    spec: dict[str, Any]
    update_state: str | None  # updating, paused, completed, rollback_*; None: never updated
    update_message: str
    update_started: datetime | None

    @classmethod
    def from_api(cls, namespace: str, service: dict[str, Any]) -> SwarmService:
        spec = service.get("Spec") or {}
        status = service.get("UpdateStatus") or {}
        started = status.get("StartedAt")
        return cls(
            id=service["ID"],
            name=spec.get("Name", "").removeprefix(f"{namespace}_"),
            spec=spec,
            update_state=status.get("State"),
            update_message=status.get("Message", ""),
            update_started=engine_time(started) if started else None,
        )

    @property
    def image(self) -> str:
        """The image as written, without the digest ``stack deploy`` pins it to."""
        image = str(self.spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", ""))
        return image.split("@", 1)[0]

    @property
    def replicas(self) -> int | None:
        """How many tasks it wants; ``None`` for a global service (one per node)."""
        mode = self.spec.get("Mode") or {}
        if "Replicated" in mode:
            return int((mode["Replicated"] or {}).get("Replicas", 1))
        return None


class HostSwarm:
    """The swarm stacks of one manager host, listed once and cached until refreshed.

    Thread-safe: concurrent checks of one host share one listing."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._listing: tuple[list[SwarmService], list[SwarmTask], list[ContainerState]] | None
        self._listing = None
        self._namespaces: dict[str, str] = {}  # service id -> namespace

    def refresh(self) -> None:
        with self._lock:
            self._listing = None

    def _client(self) -> Any:
        return client_for(self.host)

    def _list(self) -> tuple[list[SwarmService], list[SwarmTask], list[ContainerState]]:
        with self._lock:
            if self._listing is None:
                self._listing = self._read()
            return self._listing

    def _read(self) -> tuple[list[SwarmService], list[SwarmTask], list[ContainerState]]:
        import docker  # noqa: PLC0415

        api = self._client().api
        label = {"label": NAMESPACE_LABEL}
        try:
            raw_services = api.services(filters=label)
            raw_tasks = api.tasks(filters=label)  # all: failed ones say why a service is down
            raw_containers = api.containers(all=True, filters={"label": TASK_LABEL})
        except docker.errors.APIError as exc:
            if "not a swarm manager" in str(exc) or "This node is not a swarm" in str(exc):
                return [], [], []  # no swarm: no swarm stack runs here (preflight says why)
            raise Inconclusive(
                f"cannot list swarm services on host {self.host.name!r}: {exc}"
            ) from None
        except docker.errors.DockerException as exc:
            raise Inconclusive(
                f"cannot list swarm services on host {self.host.name!r}: {exc}"
            ) from None
        services = []
        for raw in raw_services:
            namespace = ((raw.get("Spec") or {}).get("Labels") or {}).get(NAMESPACE_LABEL, "")
            self._namespaces[raw["ID"]] = namespace
            services.append(SwarmService.from_api(namespace, raw))
        tasks = [SwarmTask.from_api(raw) for raw in raw_tasks]
        containers = []
        for summary in raw_containers:
            state = ContainerState.from_summary(summary)
            labels = state.labels
            namespace = labels.get(NAMESPACE_LABEL, "")
            service = labels.get(SERVICE_NAME_LABEL, "").removeprefix(f"{namespace}_")
            containers.append(_as_stack_container(state, namespace, service))
        return services, tasks, containers

    def services(self, namespace: str) -> dict[str, SwarmService]:
        services, _, _ = self._list()
        return {s.name: s for s in services if self._namespaces.get(s.id) == namespace}

    def current(self, namespace: str, service: str) -> list[ContainerState]:
        """The containers of the tasks Swarm wants running for ``service`` (a task with no
        container yet appears as one in its task state, e.g. ``pending``, with its error)."""
        services, tasks, containers = self._list()
        wanted = next(
            (s for s in services if s.name == service and self._namespaces.get(s.id) == namespace),
            None,
        )
        if wanted is None:
            return []
        by_id = {c.id: c for c in containers}
        found = []
        ours = (t for t in tasks if t.service_id == wanted.id and t.desired == "running")
        for task in sorted(ours, key=lambda t: (t.slot, t.id)):
            container = by_id.get(task.container_id)
            if container is None or task.state != "running":
                container = ContainerState(
                    id=task.container_id or task.id,
                    name=f"{namespace}_{service}.{task.slot or task.id[:12]}",
                    project=namespace,
                    service=service,
                    image=task.image.split("@", 1)[0],
                    state=task.state,
                    status=f"task {task.state}" + (f": {task.error}" if task.error else ""),
                    health=container.health if container else None,
                    labels=container.labels if container else {},
                    image_id=container.image_id if container else "",
                )
            found.append(container)
        return found

    def tasks(self, namespace: str, service: str) -> list[SwarmTask]:
        """Every task of ``service`` Swarm still lists, whatever it wants of it now."""
        services, tasks, _ = self._list()
        ids = {
            s.id for s in services if s.name == service and self._namespaces.get(s.id) == namespace
        }
        return [t for t in tasks if t.service_id in ids]

    def containers(self, namespace: str) -> list[ContainerState]:
        """Every current container of the stack ``namespace`` (for drift and DEP-7)."""
        found = []
        for name in sorted(self.services(namespace)):
            found += [c for c in self.current(namespace, name) if c.state == "running"]
        return found

    def service(self, stack: Stack, service: str, probes: ProbeSettings) -> ServiceState:
        """The service's current tasks once settled (as many running as it wants replicas,
        none starting), polling until the deadline (SMK-5)."""
        started = time.monotonic()
        attempts = 0
        namespace = stack.project_name
        while True:
            attempts += 1
            found = tuple(self.current(namespace, service))
            declared = self.services(namespace).get(service)
            desired = declared.replicas if declared is not None else None
            running = sum(1 for c in found if c.state == "running" and c.health != "starting")
            waited = time.monotonic() - started
            settled = bool(found) and running == len(found) and running >= (desired or 1)
            # No such service in the stack, or it is scaled to 0: nothing is starting, so
            # waiting out the deadline would only delay the same verdict.
            absent = declared is None or desired == 0
            if settled or absent or waited + probes.interval_s > probes.deadline_s:
                return ServiceState(
                    stack.name, namespace, service, found, attempts, waited, desired=desired
                )
            time.sleep(probes.interval_s)
            self.refresh()

    def manager_problem(self) -> str | None:
        """Why this host cannot take a ``docker stack deploy``, or ``None``."""
        import docker  # noqa: PLC0415

        try:
            swarm = self._client().info().get("Swarm") or {}
        except docker.errors.DockerException as exc:
            raise Inconclusive(
                f"cannot ask host {self.host.name!r} about its swarm: {exc}"
            ) from None
        if swarm.get("LocalNodeState") != "active":
            return (
                f"host {self.host.name} is not part of a swarm (state "
                f"{swarm.get('LocalNodeState') or 'unknown'}): `docker swarm init` there first"
            )
        if not swarm.get("ControlAvailable"):
            return f"host {self.host.name} is a swarm worker: stacks deploy from a manager"
        return None

    def now(self) -> datetime:
        """The engine's clock: what the engine's own timestamps are compared with."""
        return engine_time(str(self._client().info().get("SystemTime")))


def _as_stack_container(state: ContainerState, namespace: str, service: str) -> ContainerState:
    return ContainerState(
        id=state.id,
        name=state.name,
        project=namespace,
        service=service,
        image=state.image.split("@", 1)[0],
        state=state.state,
        status=state.status,
        health=state.health,
        labels=state.labels,
        ports=state.ports,
        image_id=state.image_id,
    )
