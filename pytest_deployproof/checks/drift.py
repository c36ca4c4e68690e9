"""Drift checks (DRF-1..4): each fails with a diff, expected against running, also attached
to the report."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ..inventory.model import Inventory, Layer, Stack
from ..observe import drift
from ..observe.drift import LayerPlan
from ._failing import fail_if

if TYPE_CHECKING:
    from ..run import Run

__all__ = [
    "expect_config_as_deployed",
    "expect_containers_as_declared",
    "expect_layer_in_sync",
    "expect_parity",
]


def _fail(stack_or_layer: str, check: str, lines: list[str]) -> None:
    __tracebackhide__ = True
    fail_if(stack_or_layer, check, lines, as_diff=True)


def expect_config_as_deployed(run: Run, stack: Stack) -> None:
    """DRF-1: the files and the containers' Compose hashes are what deployproof deployed."""
    __tracebackhide__ = True
    recorded = drift.DeployedState.load(run.inventory.state, stack.name)
    if recorded is None:
        pytest.skip(f"stack {stack.name} was never brought up by deployproof: no recorded hash")
    files = run.observations.stack_files(stack.name)
    compose_text = run.observations.access(stack.host).read(stack.compose_path) or ""
    current = drift.config_hash(compose_text, files.env or {})
    containers = drift.containers_of(run.observations.containers(stack.host), stack)
    _fail(
        f"stack {stack.name}",
        "config drift",
        drift.config_drift(stack, recorded, current, containers),
    )


def expect_containers_as_declared(run: Run, stack: Stack) -> None:
    """DRF-2: image and tag, services, ports and environment as the compose files declare."""
    __tracebackhide__ = True
    files = run.observations.stack_files(stack.name)
    if files.config is None:
        pytest.skip(f"stack {stack.name}: compose refuses its files: {files.problem}")
    containers = drift.containers_of(run.observations.containers(stack.host), stack)
    hashes = run.observations.service_hashes(stack)
    engine = run.observations.engine(stack.host)
    lines = drift.container_drift(files.services, containers, hashes, engine.inspect)
    _fail(f"stack {stack.name}", "container drift", [files.masker(line) for line in lines])


def expect_layer_in_sync(layer: Layer, plan: LayerPlan) -> None:
    """DRF-3: the layer's engine in plan mode reports no change."""
    __tracebackhide__ = True
    if plan.verdict == "drift":
        _fail(f"layer {layer.name}", f"{layer.engine} plan", plan.detail.splitlines())


def expect_parity(run: Run, stack: Stack, other: Inventory) -> None:
    """DRF-4: the stack exists in the other environment and runs the same version there,
    unless the stack's ``parity_allow`` accepts the difference."""
    __tracebackhide__ = True
    from ..observe.stackfiles import env_value  # noqa: PLC0415
    from ..reach.hosts import HostAccess  # noqa: PLC0415

    theirs = other.stacks.get(stack.name)
    here, there = run.inventory.environment, other.environment
    if theirs is None:
        if "missing" not in stack.parity_allow:
            _fail(f"stack {stack.name}", "parity", [f"in {here}, not in {there}"])
        return
    if not stack.image_tag_var or "version" in stack.parity_allow:
        return
    mine = env_value(
        run.observations.access(stack.host).read(stack.env_path) or "", stack.image_tag_var
    )
    access = HostAccess(other.hosts[theirs.host])
    their_var = theirs.image_tag_var or stack.image_tag_var
    their_version = env_value(access.read(theirs.env_path) or "", their_var)
    if mine != their_version:
        _fail(
            f"stack {stack.name}",
            "parity",
            [f"version {mine} in {here}, {their_version} in {there}"],
        )
