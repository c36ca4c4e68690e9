"""Smoke assertions (SMK-1, SMK-2): is every service up, does every endpoint answer.

They fail with what was seen, never with a traceback: a failed smoke check is
a fact about the deployment, and the operator needs the container, its state
and the HTTP exchange, not the plugin's stack frames.
"""

from __future__ import annotations

import pytest

from ..inventory.model import Service, Stack
from ..observe.probes import ProbeResult
from ..orchestrators.containers import ServiceState, service_problems

__all__ = ["expect_endpoint_answers", "expect_service_running"]


def expect_service_running(stack: Stack, service: Service, state: ServiceState) -> None:
    """Every container of ``service`` runs, and is healthy where it has a healthcheck."""
    __tracebackhide__ = True
    wrong = service_problems(service, state)
    if wrong:
        where = f"stack {stack.name} (project {state.project}), service {service.name}"
        plural = "s" if state.attempts != 1 else ""
        waited = f"after {state.attempts} observation{plural} in {state.elapsed_s:.1f} s"
        pytest.fail(f"{where}: " + "; ".join(wrong) + f" ({waited})", pytrace=False)


def expect_endpoint_answers(stack: Stack, result: ProbeResult) -> None:
    """The endpoint answered as declared within its tries and deadline."""
    __tracebackhide__ = True
    if not result.passed:
        pytest.fail(f"stack {stack.name}: {result.describe()}", pytrace=False)
