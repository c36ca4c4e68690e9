"""The bundled E2E checks (E2E-2..4): isolation, limits, shutdown, rollout.

Like the other checks, each one judges an observation and fails with the
stack, what was expected and what was seen, with the figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pytest

from ..inventory.model import Database, Stack
from ..observe.databases import IsolationSeen
from ..orchestrators.containers import StopSeen
from ._failing import fail_if

if TYPE_CHECKING:
    from ..observe.rollout import RolloutFigures


class RolledOut(Protocol):
    """What the rollout check reads of a deploy (the ``deployment`` fixture's value)."""

    version: str
    rollout: RolloutFigures | None


__all__ = [
    "expect_isolated",
    "expect_limits_applied",
    "expect_rollout_within_budget",
    "expect_stops_on_sigterm",
]


def _fail(stack: Stack, check: str, problems: list[str]) -> None:
    __tracebackhide__ = True
    fail_if(f"stack {stack.name}", check, problems)


def expect_isolated(stack: Stack, database: Database, seen: IsolationSeen) -> None:
    """E2E-2: the stack's user reaches its own database, and no other stack's."""
    __tracebackhide__ = True
    if seen.own_refused is not None:
        problem = f"user {seen.user} cannot connect to its own database: {seen.own_refused}"
        _fail(stack, "isolation", [problem])
    _fail(
        stack,
        "isolation",
        [
            f"user {seen.user} of stack {stack.name} can connect to database {dbname} "
            f"of stack {other}"
            for other, dbname in seen.reached
        ],
    )


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


def expect_stops_on_sigterm(stack: Stack, service: str, seen: list[StopSeen]) -> None:
    """E2E-4: SIGTERM stops each container within the grace period, with exit code 0
    (or 143, the shell's code for "ended by SIGTERM")."""
    __tracebackhide__ = True
    if not seen:
        pytest.skip(f"service {service} of {stack.name} has no running container")
    problems = []
    for stop in seen:
        if stop.still_running:
            problems.append(
                f"{stop.container} still runs {stop.elapsed_s:.1f} s after SIGTERM "
                f"(grace period {stop.grace_s:g} s): it ignores SIGTERM"
            )
        elif stop.exit_code not in (0, 143):
            problems.append(
                f"{stop.container} stopped after {stop.elapsed_s:.1f} s with exit code "
                f"{stop.exit_code}, not a clean one (0 or 143)"
            )
    _fail(stack, "shutdown", problems)


def expect_rollout_within_budget(stack: Stack, deployment: RolledOut | None) -> None:
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
