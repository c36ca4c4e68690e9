"""Keeping a stack's (or a whole host's) tests on one xdist worker (SEL-3).

xdist's ``--dist loadgroup`` groups tests by their ``xdist_group`` mark, which it
carries from the workers to the controller by appending ``@group`` to each test's
node id. pytest 9.2 made node ids structured and that append no longer takes
effect: loadgroup then silently hands tests out one by one
(pytest-dev/pytest-xdist#1386, still open when this was written). A stack whose
tests are spread over two workers would be deployed twice, so deployproof does not
rely on it. Under ``--dist loadgroup`` it schedules with xdist's own
``LoadGroupScheduling`` but works out each test's group itself, on the controller,
from the test's id: the parameter id *is* the deployproof target id
(``env/layer/stack[/child]`` or ``env/host``), and the controller has loaded the
same selection as the workers. Tests that are not deployproof's keep xdist's rule.
"""

from __future__ import annotations

from typing import Any

from .inventory.selection import Selection
from .reach.hosts import is_ssh

__all__ = ["TargetGroups", "make_scheduler"]


class TargetGroups:
    """The xdist group of each deployproof test, from its node id."""

    def __init__(self, selection: Selection, group_by: str) -> None:
        inventory = selection.inventory
        env = selection.environment

        def by_host(host: str) -> bool:
            return group_by == "host" or (group_by == "auto" and is_ssh(inventory.hosts[host]))

        self._groups: dict[str, str] = {}
        for layer in selection.layers:
            self._groups[f"{env}/{layer.name}"] = f"layer:{env}/{layer.name}"
        for host in selection.hosts:
            self._groups[f"{env}/{host.name}"] = f"host:{env}/{host.name}"
        for stack in selection.stacks:
            self._groups.setdefault(f"{env}/{stack.layer}/{stack.host}", f"host:{env}/{stack.host}")
            # A stack's tests always stay together (its deploy runs once); by host, so do
            # all of the host's.
            group = (
                f"host:{env}/{stack.host}" if by_host(stack.host) else f"stack:{env}/{stack.name}"
            )
            self._groups[f"{env}/{stack.layer}/{stack.name}"] = group

    def group(self, nodeid: str) -> str | None:
        """The group of the test ``nodeid``; ``None`` if it is not a deployproof target's."""
        opened, closed = nodeid.find("["), nodeid.rfind("]")
        if opened < 0 or closed < opened:
            return None
        parts = nodeid[opened + 1 : closed].split("/")
        # Longest first: env/layer/stack (or env/layer/host), then env/host or env/layer.
        for size in (3, 2):
            if len(parts) < size:
                continue
            head, last = "/".join(parts[: size - 1]), parts[size - 1]
            # Another parametrisation of the same test joins its id with "-": try the
            # whole segment, then without each trailing "-part".
            while True:
                found = self._groups.get(f"{head}/{last}")
                if found is not None:
                    return found
                if "-" not in last:
                    break
                last = last.rsplit("-", 1)[0]
        return None


def make_scheduler(config: Any, log: Any, groups: TargetGroups) -> Any:
    """xdist's LoadGroupScheduling, grouping deployproof's tests by :class:`TargetGroups`."""
    from xdist.scheduler import LoadGroupScheduling  # noqa: PLC0415 - only under xdist

    class TargetGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            found = groups.group(nodeid)
            return found if found is not None else str(super()._split_scope(nodeid))

    return TargetGroupScheduling(config, log)
