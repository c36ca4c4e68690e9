"""The interface every deploy target implements (see the package docstring)."""

from __future__ import annotations

from typing import Protocol

from ..inventory.model import ProbeSettings, Stack
from .containers import ContainerState, ServiceState

__all__ = ["Orchestrator"]


class Orchestrator(Protocol):
    """One host's way of running stacks. A Kubernetes target would implement the same five
    calls (apply a rendering and watch its rollout; pods as containers)."""

    #: how its apply reads in a message: "docker compose up", "docker stack deploy"
    apply_command: str

    def apply(self, stack: Stack, timeout_s: float) -> str | None:
        """Bring up what the stack's files and env file say now, and wait until every service
        converged healthy: ``None``, or why not (a deadline is a reason, never success)."""

    def service(self, stack: Stack, service: str, probes: ProbeSettings) -> ServiceState:
        """One declared service as it runs, once settled or at the probe deadline."""

    def containers(self, stack: Stack) -> list[ContainerState]:
        """The stack's current containers (drift, and whether a deploy changes anything)."""

    def refresh(self) -> None:
        """Forget what was listed: the host has just been changed."""

    def readiness(self) -> str | None:
        """Why the host cannot take a deploy of this kind at all, or ``None`` (preflight)."""
