"""The bundled E2E checks (E2E-2..4): isolation, limits, shutdown, rollout.

Like the other checks, each one judges an observation and fails with the
stack, what was expected and what was seen, with the figures.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import Inconclusive
from ..inventory.model import Database, Stack
from ..observe.databases import password_for
from ._failing import fail_if

if TYPE_CHECKING:
    from ..deploy.deployer import Deployment
    from ..run import Run

__all__ = [
    "expect_isolated",
    "expect_limits_applied",
    "expect_rollout_within_budget",
    "expect_stops_on_sigterm",
    "grace_period_s",
]

_REFUSED = re.compile(r"permission denied|not permitted|does not exist|authentication failed", re.I)


def _fail(stack: Stack, check: str, problems: list[str]) -> None:
    __tracebackhide__ = True
    fail_if(f"stack {stack.name}", check, problems)


def expect_isolated(run: Run, stack: Stack, database: Database) -> None:
    """Seed 003 §4: the stack's user reaches its own database, and no other stack's."""
    __tracebackhide__ = True
    import psycopg  # noqa: PLC0415

    from ..e2e_fixtures import postgres_databases  # noqa: PLC0415
    from ..observe.databases import connect_postgres as connect  # noqa: PLC0415

    if database.kind != "postgresql":
        pytest.skip(
            f"database {database.name} is {database.kind}: isolation is per PostgreSQL user"
        )
    files = run.observations.stack_files(stack.name)
    password = password_for(database, files.env, run.inventory.secrets_prefix)
    user = database.user or "(default user)"
    try:
        connect(database, password).close()
    except psycopg.OperationalError as exc:
        reason = files.masker(" ".join(str(exc).split()))
        if not _REFUSED.search(reason):
            raise Inconclusive(f"stack {stack.name}: database {database.name}: {reason}") from None
        _fail(stack, "isolation", [f"user {user} cannot connect to its own database: {reason}"])
    server = (database.host, database.port or 5432)
    reached = []
    for other in run.inventory.stacks.values():
        for theirs in postgres_databases(other):
            same_server = (theirs.host, theirs.port or 5432) == server
            if other.name == stack.name or not same_server or theirs.dbname == database.dbname:
                continue
            try:
                connect(database.model_copy(update={"dbname": theirs.dbname}), password).close()
            except psycopg.OperationalError:
                continue  # refused: as it should be
            reached.append(
                f"user {user} of stack {stack.name} can connect to database {theirs.dbname} "
                f"of stack {other.name}"
            )
    _fail(stack, "isolation", reached)


def expect_limits_applied(
    stack: Stack, service: str, declared: dict[str, Any], containers: list[Any]
) -> None:
    """The running containers carry the cpu and memory limits the compose file declares."""
    __tracebackhide__ = True
    limits = ((declared.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    if not limits:
        _fail(stack, "limits", [f"service {service} declares no limits (preflight says so too)"])
    mine = [c for c in containers if c.labels.get("com.docker.compose.service") == service]
    if not mine:
        _fail(stack, "limits", [f"service {service} has no container"])
    problems = []
    for container in mine:
        host_config = container.attrs["HostConfig"]
        if "cpus" in limits:
            want = round(float(limits["cpus"]) * 1e9)
            cpus = host_config.get("NanoCpus") or (
                host_config.get("CpuQuota", 0) * 1e9 // max(1, host_config.get("CpuPeriod") or 1)
            )
            if int(cpus) != want:
                problems.append(
                    f"{container.name}: cpus {int(cpus) / 1e9:g}, declared {want / 1e9:g}"
                )
        if "memory" in limits:
            want = int(limits["memory"])
            memory = int(host_config.get("Memory") or 0)
            if memory != want:
                problems.append(f"{container.name}: memory {memory} bytes, declared {want}")
    _fail(stack, "limits", problems)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}


def grace_period_s(declared: dict[str, Any]) -> float:
    """Compose's ``stop_grace_period`` ("1m30s", "10s"; default 10 s)."""
    text = str(declared.get("stop_grace_period") or "10s")
    parts = _DURATION.findall(text)
    return sum(float(n) * _UNIT[unit] for n, unit in parts) if parts else 10.0


def expect_stops_on_sigterm(
    stack: Stack, service: str, declared: dict[str, Any], containers: list[Any]
) -> None:
    """E2E-4: SIGTERM stops each container within the grace period, with exit code 0
    (or 143, the shell's code for "ended by SIGTERM"). The container is started again."""
    __tracebackhide__ = True
    grace = grace_period_s(declared)
    running = [
        c
        for c in containers
        if c.labels.get("com.docker.compose.service") == service and c.status == "running"
    ]
    if not running:
        pytest.skip(f"service {service} of {stack.name} has no running container")
    problems = []
    for container in running:
        started = time.monotonic()
        container.kill(signal="SIGTERM")
        while True:
            container.reload()
            elapsed = time.monotonic() - started
            if container.status != "running" or elapsed > grace:
                break
            time.sleep(0.1)
        code = container.attrs["State"].get("ExitCode")
        if container.status == "running":
            problems.append(
                f"{container.name} still runs {elapsed:.1f} s after SIGTERM "
                f"(grace period {grace:g} s): it ignores SIGTERM"
            )
            container.stop(timeout=0)
        elif code not in (0, 143):
            problems.append(
                f"{container.name} stopped after {elapsed:.1f} s with exit code {code}, "
                "not a clean one (0 or 143)"
            )
        container.start()
    _fail(stack, "shutdown", problems)


def expect_rollout_within_budget(stack: Stack, deployment: Deployment | None) -> None:
    """DEP-10: the requests that failed while the stack was rolled out are within budget."""
    __tracebackhide__ = True
    if deployment is None:
        pytest.skip("the rollout suite measures a deploy: run it with --deploy VERSION")
    figures = deployment.rollout
    if figures is None or figures.sent == 0:
        pytest.skip(f"stack {stack.name} has no http endpoint to probe during its rollout")
    budget = stack.rollout.budget
    if figures.failed > budget:
        _fail(
            stack,
            f"rollout of {deployment.version}",
            [f"{figures.describe()}; budget {budget} failed requests"],
        )
