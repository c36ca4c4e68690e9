"""Narrowing an environment to what this run checks (SEL-1, INV-5).

The selection is computed once, from the inventory file and the options
only, never from live state: every xdist worker must compute the same one.
A filter that matches nothing is a typo until proven otherwise, so it is an
error naming what exists; a change set that touches nothing is a legitimate
empty selection and is reported as such.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .changes import Impact
from .model import Host, Inventory, Layer, Stack

__all__ = ["Selection", "SelectionError", "select"]


class SelectionError(Exception):
    """A filter that names nothing in the environment."""


@dataclass(frozen=True)
class Selection:
    inventory: Inventory
    stacks: tuple[Stack, ...]
    layers: tuple[Layer, ...]
    hosts: tuple[Host, ...]
    impact: Impact | None = None

    @property
    def environment(self) -> str:
        return self.inventory.environment

    def empty_reason(self) -> str:
        if self.impact is not None:
            return f"no stack selected: the change set touches none ({self.impact.describe()})"
        return "no stack selected"


def _unknown(kind: str, name: str, known: list[str]) -> SelectionError:
    message = f"--{kind} {name!r} is not in this environment: known are {', '.join(known)}"
    hint = difflib.get_close_matches(name, known, n=1)
    if hint:
        message += f" (did you mean {hint[0]!r}?)"
    return SelectionError(message)


def _expand_groups(inventory: Inventory, names: tuple[str, ...]) -> tuple[str, ...]:
    """Host names for ``--host`` values: a host group stands for its hosts (a host's own
    name wins over a group of the same name); a name that is neither is an error."""
    groups: dict[str, set[str]] = {}
    for host in inventory.hosts.values():
        for group in host.groups:
            groups.setdefault(group, set()).add(host.name)
    hosts: set[str] = set()
    for name in names:
        if name in inventory.hosts:
            hosts.add(name)
        elif name in groups:
            hosts |= groups[name]
        else:
            raise _unknown("host", name, sorted({*inventory.hosts, *groups}))
    return tuple(sorted(hosts))


def select(
    inventory: Inventory,
    stacks: tuple[str, ...] = (),
    layers: tuple[str, ...] = (),
    hosts: tuple[str, ...] = (),
    impact: Impact | None = None,
) -> Selection:
    """Apply the filters; each given filter must match something."""
    known_stacks = sorted(inventory.stacks)
    for pattern in stacks:
        if not any(fnmatchcase(name, pattern) for name in known_stacks):
            raise _unknown("stack", pattern, known_stacks)
    for name in layers:
        if name not in inventory.layers:
            raise _unknown("layer", name, sorted(inventory.layers))
    hosts = _expand_groups(inventory, hosts)

    order = {layer.name: layer.order for layer in inventory.layers.values()}
    chosen = [
        stack
        for stack in inventory.stacks.values()
        if (not stacks or any(fnmatchcase(stack.name, p) for p in stacks))
        and (not layers or stack.layer in layers)
        and (not hosts or stack.host in hosts)
        and (impact is None or stack.name in impact.stacks)
    ]
    chosen.sort(key=lambda stack: (order[stack.layer], stack.name))
    narrowed = bool(stacks or hosts or impact is not None)

    if layers:
        layer_names = set(layers)
    elif narrowed:
        layer_names = {stack.layer for stack in chosen}
    else:
        layer_names = set(inventory.layers)
    if hosts:
        host_names = set(hosts)
    elif narrowed or layers:
        host_names = {stack.host for stack in chosen}
    else:
        host_names = set(inventory.hosts)

    return Selection(
        inventory=inventory,
        stacks=tuple(chosen),
        layers=tuple(layer for layer in inventory.layers_in_order() if layer.name in layer_names),
        hosts=tuple(inventory.hosts[name] for name in sorted(host_names)),
        impact=impact,
    )
