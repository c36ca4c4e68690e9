"""Blocked-by: a check that depends on a broken observation is skipped, not failed (BYD-2).

When a stack's container is down, its endpoint and database checks cannot say
anything the container check has not said already: a cascade of failures would
bury the one that matters. So the checks that *report* an observation are noted
at collection (a test marked ``deployproof_blocks("containers")`` or
``("compose")``), and a check that needs that observation is skipped as "blocked
by" the reporting check when it is broken. Nobody reporting it in this run means
nothing is blocked: the check then fails on its own, with what it saw.

Under ``--ordered`` the same holds for layers: a layer after one that drifted is
blocked by it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from ..inventory.model import Layer, Stack
from ..orchestrators.containers import service_problems
from ..targets import BLOCKS_MARK, Target
from .observations import Observations

__all__ = ["BlockedBy"]


class BlockedBy:
    """Which collected checks report which observation, and what is blocked by them."""

    def __init__(self, observations: Observations, *, ordered: bool) -> None:
        self.observations = observations
        self.ordered = ordered
        self._reporters: dict[tuple[str, ...], str] = {}

    def note(self, item: pytest.Item, target: Target) -> None:
        """Remember that ``item`` reports an observation (after -k/-m: a check that will
        not run blocks nothing)."""
        if not target.stack:
            return
        for mark in item.iter_markers(BLOCKS_MARK):
            key = (mark.args[0], target.stack, *([target.name] if target.name else []))
            self._reporters.setdefault(key, item.nodeid)

    def by_containers(self, stack: Stack, services: Iterable[str]) -> str | None:
        """Why checks that need these services up cannot say anything, or ``None``."""
        observed = self.observations
        for name in services:
            reporter = self._reporters.get(("containers", stack.name, name))
            if reporter is None:
                continue  # nobody checks this service in this run: do not guess
            state = observed.service(stack, name)
            problems = service_problems(stack.services[name], state)
            if problems:
                return f"blocked by {reporter}: {problems[0]}"
        return None

    def by_compose(self, stack: Stack) -> str | None:
        files = self.observations.stack_files(stack.name)
        if files.config is not None:
            return None
        reporter = self._reporters.get(("compose", stack.name))
        return f"blocked by {reporter}: {files.problem}" if reporter else None

    def by_layer(self, layer: Layer) -> str | None:
        """Under --ordered, the earliest drifted layer before this one (and planned)."""
        if not self.ordered:
            return None
        observed = self.observations
        for earlier in observed.selection.layers:
            if earlier.order >= layer.order or earlier.name not in observed.planned_layers:
                continue
            if observed.layer_plan(earlier).verdict == "drift":
                return (
                    f"blocked by layer {earlier.name}: it drifted, and apply is ordered (--ordered)"
                )
        return None
