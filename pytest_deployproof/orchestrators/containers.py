"""What a host's Docker engine says about the stacks it runs (SMK-1).

One list call per host returns every Compose container on it; stacks are
found by their ``com.docker.compose.project`` label. docker-py's high-level
``containers.list()`` inspects each container separately, so the low-level
API is used with its summary fields; health comes from the summary's status
text (``Up 3 minutes (healthy)``), which Docker writes for exactly this use.

A stack whose containers are still starting is polled again until they
settle or the probe deadline passes (SMK-5), and how long that took is kept.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import Inconclusive
from ..inventory.model import Host, ProbeSettings, Service, Stack
from ..reach.docker_client import client_for

__all__ = [
    "ContainerState",
    "HostContainers",
    "ServiceState",
    "StopSeen",
    "grace_period_s",
    "service_problems",
    "stop_with_sigterm",
]

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")
TRANSITIONAL_STATES = frozenset({"created", "restarting"})


@dataclass(frozen=True)
class ContainerState:
    """One container as the engine lists it."""

    id: str
    name: str
    project: str
    service: str
    image: str
    state: str  # running, exited, created, restarting, paused, dead
    status: str  # Docker's human text, e.g. "Exited (1) 2 minutes ago"
    health: str | None  # healthy, unhealthy, starting, or None without a healthcheck
    labels: dict[str, str]
    ports: tuple[dict[str, Any], ...] = ()  # as the listing gives them: IP, PublicPort, ...
    image_id: str = ""  # what the image name meant when the container was created

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> ContainerState:
        labels = summary.get("Labels") or {}
        status = summary.get("Status", "")
        found = _HEALTH.search(status)
        health = found.group(1).replace("health: ", "") if found else None
        names = summary.get("Names") or ["/" + summary["Id"][:12]]
        return cls(
            id=summary["Id"],
            name=names[0].lstrip("/"),
            project=labels.get(PROJECT_LABEL, ""),
            service=labels.get(SERVICE_LABEL, ""),
            image=summary.get("Image", ""),
            state=summary.get("State", "unknown"),
            status=status,
            health=health,
            labels=labels,
            ports=tuple(summary.get("Ports") or ()),
            image_id=summary.get("ImageID", ""),
        )

    @property
    def settled(self) -> bool:
        return self.state not in TRANSITIONAL_STATES and self.health != "starting"

    def describe(self) -> str:
        health = f", health {self.health}" if self.health else ""
        return f"{self.name}: {self.state}{health} ({self.status})"


@dataclass(frozen=True)
class ServiceState:
    """The containers of one declared service, observed until settled."""

    stack: str
    project: str
    service: str
    containers: tuple[ContainerState, ...]
    attempts: int
    elapsed_s: float
    desired: int | None = None  # replicas a swarm service wants; None: as many as exist


class HostContainers:
    """The Compose containers of one host, listed once and cached until refreshed.

    Thread-safe: concurrent checks of one host share one listing.
    """

    def __init__(self, host: Host) -> None:
        self.host = host
        self.api_calls = 0
        self._lock = threading.Lock()
        self._by_project: dict[str, list[ContainerState]] | None = None

    def refresh(self) -> None:
        with self._lock:
            self._by_project = None

    def projects(self) -> dict[str, list[ContainerState]]:
        with self._lock:
            if self._by_project is None:
                self._by_project = self._list()
            return self._by_project

    def _list(self) -> dict[str, list[ContainerState]]:
        import docker  # noqa: PLC0415

        client = client_for(self.host)
        try:
            summaries = client.api.containers(all=True, filters={"label": PROJECT_LABEL})
        except docker.errors.DockerException as exc:
            raise Inconclusive(
                f"cannot list containers on host {self.host.name!r}: {exc}"
            ) from None
        self.api_calls += 1
        grouped: dict[str, list[ContainerState]] = {}
        for summary in summaries:
            state = ContainerState.from_summary(summary)
            grouped.setdefault(state.project, []).append(state)
        for states in grouped.values():
            states.sort(key=lambda c: (c.service, c.name))
        return grouped

    def service(self, stack: Stack, service: str, probes: ProbeSettings) -> ServiceState:
        """The service's containers once settled, polling until the deadline; at once when
        the stack has no container at all (it is not up, and nothing of it is starting)."""
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            found = tuple(
                c for c in self.projects().get(stack.project_name, []) if c.service == service
            )
            waited = time.monotonic() - started
            settled = bool(found) and all(c.settled for c in found)
            # No container of the project at all: nothing is starting, waiting cannot help.
            absent = not self.projects().get(stack.project_name)
            if settled or absent or waited + probes.interval_s > probes.deadline_s:
                return ServiceState(
                    stack.name, stack.project_name, service, found, attempts, waited
                )
            time.sleep(probes.interval_s)
            self.refresh()

    def logs(self, container: ContainerState, lines: int = 40) -> str:
        """The last ``lines`` of a container's log, for a failure's report attachment."""
        import docker  # noqa: PLC0415

        try:
            raw = client_for(self.host).api.logs(container.id, tail=lines, timestamps=True)
        except docker.errors.DockerException as exc:
            return f"(cannot read the log of {container.name}: {exc})"
        return bytes(raw).decode(errors="replace")


def service_problems(service: Service, state: ServiceState) -> list[str]:
    """Why the service is not up, one phrase per container (empty: it is up).

    The rule of "up" lives here, beside the observation, because three places judge
    by it: the smoke check, the blocked-by policy and a deploy's own verification."""
    if not state.containers:
        return [f"service {service.name} has no container (is the stack up?)"]
    wrong: list[str] = []
    running = sum(1 for c in state.containers if c.state == "running")
    if state.desired is not None and running < state.desired:
        wrong.append(f"service {service.name}: {running} of {state.desired} replicas running")
    for container in state.containers:
        if container.state != "running":
            wrong.append(f"{container.describe()}: not running")
        elif container.health == "unhealthy" or (
            service.healthcheck and container.health != "healthy"
        ):
            wrong.append(f"{container.describe()}: not healthy")
        elif container.health == "starting":
            wrong.append(f"{container.describe()}: still starting")
    return wrong


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}


def grace_period_s(declared: dict[str, Any]) -> float:
    """Compose's ``stop_grace_period`` ("1m30s", "10s"; default 10 s)."""
    text = str(declared.get("stop_grace_period") or "10s")
    parts = _DURATION.findall(text)
    return sum(float(n) * _UNIT[unit] for n, unit in parts) if parts else 10.0


@dataclass(frozen=True)
class StopSeen:
    """How one container took SIGTERM (E2E-4)."""

    container: str
    grace_s: float
    elapsed_s: float
    still_running: bool  # after the grace period: it ignores SIGTERM
    exit_code: int | None


def stop_with_sigterm(containers: list[Any], service: str, grace_s: float) -> list[StopSeen]:
    """SIGTERM to each running container of ``service`` (docker-py objects), one at a time:
    how long it took to stop and how it exited. Each is started again afterwards, and one
    that ignored SIGTERM is stopped first."""
    running = [
        c for c in containers if c.labels.get(SERVICE_LABEL) == service and c.status == "running"
    ]
    seen = []
    for container in running:
        started = time.monotonic()
        container.kill(signal="SIGTERM")
        while True:
            container.reload()
            elapsed = time.monotonic() - started
            if container.status != "running" or elapsed > grace_s:
                break
            time.sleep(0.1)
        still_running = container.status == "running"
        code = container.attrs["State"].get("ExitCode")
        seen.append(StopSeen(container.name, grace_s, elapsed, still_running, code))
        if still_running:
            container.stop(timeout=0)
        container.start()
    return seen
