"""Drift checks (DRF-1..4): each fails with a diff, expected against running, also attached
to the report."""

from __future__ import annotations

import pytest

from ..inventory.model import Layer, Stack
from ..observe import drift
from ..observe.drift import ConfigSeen, ContainersSeen, LayerPlan, ParitySeen, ServicesSeen
from ..secrets import Masker
from ._failing import fail_if

__all__ = [
    "expect_config_as_deployed",
    "expect_containers_as_declared",
    "expect_layer_in_sync",
    "expect_parity",
]


def _fail(stack_or_layer: str, check: str, lines: list[str]) -> None:
    __tracebackhide__ = True
    fail_if(stack_or_layer, check, lines, as_diff=True)


def expect_config_as_deployed(stack: Stack, seen: ConfigSeen) -> None:
    """DRF-1: the files and the containers' Compose hashes are what deployproof deployed."""
    __tracebackhide__ = True
    if seen.recorded is None:
        pytest.skip(f"stack {stack.name} was never brought up by deployproof: no recorded hash")
    lines = drift.config_drift(stack, seen.recorded, seen.current_hash, seen.containers)
    _fail(f"stack {stack.name}", "config drift", lines)


def expect_containers_as_declared(
    stack: Stack, seen: ContainersSeen | ServicesSeen, masker: Masker
) -> None:
    """DRF-2: image and tag, services, ports and environment as the compose files declare
    (on a swarm: services, image, replicas, environment and limits of each service's spec)."""
    __tracebackhide__ = True
    if isinstance(seen, ServicesSeen):
        lines = drift.spec_drift(seen.services, seen.specs)
        _fail(f"stack {stack.name}", "service drift", [masker(line) for line in lines])
        return
    if seen.problem is not None:
        pytest.skip(f"stack {stack.name}: compose refuses its files: {seen.problem}")
    lines = drift.container_drift(seen.services, seen.containers, seen.hashes, seen.inspect)
    _fail(f"stack {stack.name}", "container drift", [masker(line) for line in lines])


def expect_layer_in_sync(layer: Layer, plan: LayerPlan) -> None:
    """DRF-3: the layer's engine in plan mode reports no change."""
    __tracebackhide__ = True
    if plan.verdict == "drift":
        _fail(f"layer {layer.name}", f"{layer.engine} plan", plan.detail.splitlines())


def expect_parity(stack: Stack, seen: ParitySeen) -> None:
    """DRF-4: the stack exists in the other environment and runs the same version there,
    unless the stack's ``parity_allow`` accepts the difference."""
    __tracebackhide__ = True
    if not seen.exists_there:
        if "missing" not in stack.parity_allow:
            _fail(f"stack {stack.name}", "parity", [f"in {seen.here}, not in {seen.there}"])
        return
    if seen.compared and seen.version_here != seen.version_there:
        _fail(
            f"stack {stack.name}",
            "parity",
            [f"version {seen.version_here} in {seen.here}, {seen.version_there} in {seen.there}"],
        )
