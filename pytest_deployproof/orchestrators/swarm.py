"""``target: swarm``: ``docker stack deploy`` of the rendered files, watched until it
converged, failed, or ran out of time.

Why not trust ``docker stack deploy --detach=false``: it exits 0 and prints "converged"
after Swarm has rolled a failing service back (docker/cli#6752). So the deploy is
detached, and every service of the stack is then read from the manager until:

* its update state (from *this* deploy: started after it, on the engine's clock) is
  ``paused``, ``rollback_started``, ``rollback_paused`` or ``rollback_completed``: failed,
  with Swarm's own message;
* a task of the new image failed or was rejected since the deploy: failed, with the
  task's error (Swarm would restart it forever; a version whose task crashed is not good);
* its spec runs the image this deploy asked for, its update (if any) completed, and as
  many tasks of that image run as it wants replicas: converged;
* the deadline passes: failed, naming what each unconverged service still waits for
  (``start-first`` with a host-mode port waits forever; pending tasks say why).

Stacks ignore ``.env`` (moby#29133), so the files are rendered by ``docker compose
config`` with the stack's env file first. The rendering holds the env's values, so it is
written 0600 beside the env file and removed once Swarm has read it; it is never kept in
the state directory. A rollback renders the last good version the same way.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from ..inventory.model import ProbeSettings, Stack
from ..reach.hosts import HostAccess
from .containers import ContainerState, ServiceState
from .swarm_services import HostSwarm

__all__ = ["SwarmOrchestrator", "render_for_swarm"]

FAILED_UPDATES = frozenset({"paused", "rollback_started", "rollback_paused", "rollback_completed"})
FAILED_TASKS = frozenset({"failed", "rejected"})
POLL_S = 0.5
log = logging.getLogger(__name__)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def render_for_swarm(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``docker compose config --format json`` as ``docker stack deploy`` takes it, and the
    image each service must end up running. Compose writes what the stack loader refuses:
    nulls, a top-level ``name``, published ports as strings and cpus as numbers."""
    document = _without_nulls(config)
    document.pop("name", None)
    images: dict[str, str] = {}
    for name, service in (document.get("services") or {}).items():
        for port in service.get("ports") or []:
            if isinstance(port, dict) and str(port.get("published", "")).isdigit():
                port["published"] = int(port["published"])
        resources = (service.get("deploy") or {}).get("resources") or {}
        for kind in ("limits", "reservations"):
            if "cpus" in (resources.get(kind) or {}):
                resources[kind]["cpus"] = f"{float(resources[kind]['cpus']):g}"
        images[name] = str(service.get("image", ""))
    return document, images


class SwarmOrchestrator:
    """Swarm through one manager host: the CLI deploys, the Docker API is watched."""

    apply_command = "docker stack deploy"

    def __init__(self, access: HostAccess, swarm: HostSwarm) -> None:
        self.access = access
        self.swarm = swarm

    def apply(self, stack: Stack, timeout_s: float) -> str | None:
        done = self.access.compose(stack, "config", "--format", "json")
        if done.rc != 0:
            lines = done.stderr.strip().splitlines()
            return f"docker compose config failed: {lines[-1] if lines else done.rc}"
        try:
            document, images = render_for_swarm(json.loads(done.stdout))
        except ValueError as exc:
            return f"docker compose config printed no JSON: {exc}"
        since = self.swarm.now()
        deadline = time.monotonic() + timeout_s
        rendered = stack.run_dir / f".deployproof-stack-{uuid.uuid4().hex[:12]}.json"
        self.access.write(rendered, json.dumps(document), private=True)
        log.info("%s: docker stack deploy of %d services", stack.name, len(images))
        try:
            deployed = self.access.run(
                "docker", "stack", "deploy", "--prune", "-c", str(rendered), stack.project_name
            )
        finally:
            self.access.run("rm", "-f", "--", str(rendered))
        if deployed.rc != 0:
            lines = deployed.stderr.strip().splitlines()
            return f"docker stack deploy failed: {lines[-1] if lines else deployed.rc}"
        # waiting: the CLI counts the seconds on a terminal (ops/progress.py)
        log.info("%s: waiting for the swarm to converge (timeout %ds)", stack.name,
                 int(timeout_s), extra={"waiting": True})  # fmt: skip
        return self._converge(stack, images, since, deadline, timeout_s)

    def _converge(
        self, stack: Stack, images: dict[str, str], since: Any, deadline: float, timeout_s: float
    ) -> str | None:
        namespace = stack.project_name
        said: list[str] = []
        while True:
            self.swarm.refresh()
            services = self.swarm.services(namespace)
            failed: list[str] = []
            waiting: list[str] = []
            for name, image in sorted(images.items()):
                service = services.get(name)
                if service is None:
                    waiting.append(f"service {name}: not created yet")
                    continue
                update = service.update_state
                if service.update_started is None or service.update_started < since:
                    update = None  # an earlier deploy's update: not this one's verdict
                if update in FAILED_UPDATES:
                    failed.append(
                        f"service {name}: Swarm says {update.replace('_', ' ')} "
                        f"({service.update_message})"
                    )
                    continue
                crashed = [
                    t
                    for t in self.swarm.tasks(namespace, name)
                    if t.state in FAILED_TASKS and t.at >= since and t.image.split("@")[0] == image
                ]
                if crashed:
                    failed.append(f"service {name}: a task of {image} {crashed[-1].state}: "
                                  f"{crashed[-1].error or 'no error given'}")  # fmt: skip
                    continue
                why = self._not_converged(namespace, name, image, service.replicas, update)
                if why:
                    waiting.append(why)
            if waiting != said:  # what it waits for, each time that changes
                log.debug("%s: waiting: %s", stack.name, "; ".join(waiting) or "nothing")
                said = waiting
            if failed:
                return "; ".join(failed)
            if not waiting:
                return None
            if time.monotonic() > deadline:
                return f"not converged within {timeout_s:g} s: {'; '.join(waiting)}"
            time.sleep(POLL_S)

    def _not_converged(
        self, namespace: str, name: str, image: str, replicas: int | None, update: str | None
    ) -> str | None:
        service = self.swarm.services(namespace)[name]
        if service.image != image:
            return f"service {name}: runs {service.image}, not {image} yet"
        if update == "updating":
            return f"service {name}: update in progress"
        current = self.swarm.current(namespace, name)
        running = [c for c in current if c.state == "running" and c.image == image]
        wanted = replicas if replicas is not None else max(1, len(current))
        if len(running) >= wanted:
            return None
        stuck = next((c.status for c in current if c.state != "running"), "")
        return f"service {name}: {len(running)} of {wanted} tasks of {image} running" + (
            f" ({stuck})" if stuck else ""
        )

    def service(self, stack: Stack, service: str, probes: ProbeSettings) -> ServiceState:
        return self.swarm.service(stack, service, probes)

    def containers(self, stack: Stack) -> list[ContainerState]:
        return self.swarm.containers(stack.project_name)

    def refresh(self) -> None:
        self.swarm.refresh()

    def readiness(self) -> str | None:
        return self.swarm.manager_problem()
