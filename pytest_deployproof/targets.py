"""Parametrising tests over a selection (SEL-2, SEL-3).

A test that takes ``stack``, ``service``, ``endpoint``, ``database``,
``layer`` or ``host`` runs once per matching thing in the selection, with a
readable id such as ``staging/platform/web`` or
``staging/platform/web/health``. Rows are built from the inventory alone, in
a sorted, stable order, so every xdist worker collects the same tests.

Every row carries a :class:`Target`, attached to the test item as the
``deployproof_target`` mark: it is how fixtures and reporters learn which
environment, layer, host and stack a test is about without parsing node ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # plugin.py imports this module in every pytest run: keep it light
    from .inventory.model import Database, Endpoint, Service, Stack
    from .inventory.selection import Selection

__all__ = ["CHILD_KINDS", "PARAM_NAMES", "Row", "Target", "build_rows", "deploy_order", "target_of"]

CHILD_KINDS = ("service", "endpoint", "database")
PARAM_NAMES = ("stack", *CHILD_KINDS, "layer", "host")
TARGET_MARK = "deployproof_target"
ONLY_MARK = "deployproof_only"  # deployproof_only(health=True): parametrise over matching items
BLOCKS_MARK = "deployproof_blocks"  # deployproof_blocks("containers"): this test reports that
ROLLOUT_MARK = "deployproof_rollout"  # this test judges the stack's rollout: watch it (E2E-3)


@dataclass(frozen=True, slots=True)
class Target:
    """What one parametrised test is about. ``stack`` is ``None`` for layer/host tests."""

    environment: str
    layer: str | None
    host: str | None
    stack: str | None
    kind: str  # stack, service, endpoint, database, layer or host
    name: str | None  # the service/endpoint/database name for child kinds

    @property
    def id(self) -> str:
        parts = [self.environment, self.layer, self.stack, self.name]
        if self.kind == "host":
            parts = [self.environment, self.host]
        return "/".join(part for part in parts if part)


@dataclass(frozen=True)
class Row:
    values: dict[str, Any]
    target: Target


_TARGET_KEY = pytest.StashKey["Target | None"]()


def target_of(item: pytest.Item) -> Target | None:
    """The :class:`Target` of a collected test; ``None`` if deployproof did not parametrise it.

    Kept in the item's stash after the first look: every hook of every phase asks, and
    ``get_closest_marker`` walks the item's parents each time (at 20,000 tests, ~6 lookups
    a test were a visible share of the run)."""
    try:
        return item.stash[_TARGET_KEY]
    except KeyError:
        mark = item.get_closest_marker(TARGET_MARK)
        target = mark.args[0] if mark else None
        item.stash[_TARGET_KEY] = target
        return target


def build_rows(
    selection: Selection,
    argnames: set[str],
    host_object: Callable[[str], Any],
    only: dict[str, Any] | None = None,
) -> list[Row]:
    """Rows for a test asking for ``argnames`` (a subset of :data:`PARAM_NAMES`).

    ``host_object`` turns an inventory host name into the value a test gets
    as ``host`` (a testinfra host), so this module stays free of I/O.
    ``only`` keeps the rows whose item (the child, else the stack, layer or
    host model) has those attribute values: ``{"health": True}``.
    """
    rows = _rows(selection, argnames, host_object)
    if not only:
        return rows
    for name in only:
        if rows and not any(hasattr(v, name) for row in rows for v in row.values.values()):
            raise pytest.UsageError(
                f"{ONLY_MARK}({name}=...) names no attribute of the parametrised items"
            )
    return [row for row in rows if _matches(row, only)]


def _matches(row: Row, only: dict[str, Any]) -> bool:
    kind = row.target.kind
    subject = row.values.get(kind) if kind in row.values else None
    if subject is None:
        subject = next(iter(row.values.values()))
    return all(getattr(subject, name, None) == value for name, value in only.items())


def _rows(selection: Selection, argnames: set[str], host_object: Callable[[str], Any]) -> list[Row]:
    children = [kind for kind in CHILD_KINDS if kind in argnames]
    if len(children) > 1:
        raise pytest.UsageError(
            f"a test may take only one of {', '.join(CHILD_KINDS)}; it asks for "
            f"{' and '.join(children)} (take the stack and iterate instead)"
        )
    env = selection.environment
    layers = selection.inventory.layers
    rows: list[Row] = []

    def row(stack: Stack, kind: str, child: Service | Endpoint | Database | None) -> Row:
        values: dict[str, Any] = {}
        if "stack" in argnames:
            values["stack"] = stack
        if child is not None:
            values[kind] = child
        if "layer" in argnames:
            values["layer"] = layers[stack.layer]
        if "host" in argnames:
            values["host"] = host_object(stack.host)
        name = child.name if child is not None else None
        return Row(values, Target(env, stack.layer, stack.host, stack.name, kind, name))

    if children or "stack" in argnames:
        kind = children[0] if children else "stack"
        for stack in selection.stacks:
            if kind == "stack":
                rows.append(row(stack, kind, None))
            elif kind == "service":
                rows += [row(stack, kind, stack.services[n]) for n in sorted(stack.services)]
            elif kind == "endpoint":
                rows += [row(stack, kind, e) for e in stack.endpoints]
            else:
                rows += [row(stack, kind, stack.databases[n]) for n in sorted(stack.databases)]
        return rows

    if "layer" in argnames and "host" in argnames:
        pairs = sorted({(s.layer, s.host) for s in selection.stacks})
        order = {layer.name: layer.order for layer in selection.layers}
        for layer_name, host_name in sorted(pairs, key=lambda p: (order.get(p[0], 0), p)):
            values = {"layer": layers[layer_name], "host": host_object(host_name)}
            rows.append(Row(values, Target(env, layer_name, host_name, None, "layer", host_name)))
        return rows
    if "layer" in argnames:
        return [
            Row({"layer": layer}, Target(env, layer.name, None, None, "layer", None))
            for layer in selection.layers
        ]
    return [
        Row({"host": host_object(host.name)}, Target(env, None, host.name, None, "host", None))
        for host in selection.hosts
    ]


def deploy_order(items: list[pytest.Item]) -> list[pytest.Item]:
    """Items ordered for ``--deploy``: each stack's tests together, where its first test
    was, its preflight gates first. The deploy fixture starts at the stack's first
    non-preflight test and, by then, knows whether every gate passed (DEP-1)."""
    first: dict[str, int] = {}
    keys: list[tuple[int, int, int]] = []
    for index, item in enumerate(items):
        target = target_of(item)
        stack = target.stack if target is not None else None
        if stack is None:
            keys.append((index, 0, index))
            continue
        group = first.setdefault(stack, index)
        keys.append((group, 0 if item.get_closest_marker("preflight") else 1, index))
    return [item for _, item in sorted(zip(keys, items, strict=True), key=lambda pair: pair[0])]
