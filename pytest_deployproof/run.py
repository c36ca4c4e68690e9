"""The state of one pytest process's deployproof run.

It holds the selection and the observers, and it batches observation: when
the first endpoint test of a stack asks for its probe, every endpoint this
process is going to test is probed at once (under xdist, those of the same
stack, since a worker does not know which other stacks it will be sent), and
later tests read their results from the cache.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import pytest

from .containers import HostContainers, ServiceState
from .model import Endpoint, Inventory, Stack
from .params import Target, target_of
from .probes import ProbeResult, probe_all
from .selection import Selection
from .settings import Settings

__all__ = ["Run"]


class Run:
    """Selection, observers and cached observations of one process."""

    def __init__(self, settings: Settings, selection: Selection, *, worker: bool) -> None:
        self.settings = settings
        self.selection = selection
        self.worker = worker
        self._hosts: dict[str, HostContainers] = {}
        self._lock = threading.Lock()
        self._planned: dict[str, tuple[str, Endpoint]] = {}
        self._probed: dict[str, ProbeResult] = {}

    @property
    def inventory(self) -> Inventory:
        return self.selection.inventory

    def stack(self, name: str) -> Stack:
        return self.inventory.stacks[name]

    def plan(self, items: Iterable[pytest.Item]) -> None:
        """Note every endpoint the collected tests will probe."""
        for item in items:
            target = target_of(item)
            if target is not None and target.kind == "endpoint" and target.stack:
                endpoint = self._endpoint(target)
                self._planned.setdefault(target.id, (target.stack, endpoint))

    def containers(self, host: str) -> HostContainers:
        with self._lock:
            if host not in self._hosts:
                self._hosts[host] = HostContainers(self.inventory.hosts[host])
            return self._hosts[host]

    def service_state(self, target: Target) -> ServiceState:
        assert target.stack
        assert target.name
        stack = self.stack(target.stack)
        return self.containers(stack.host).service(stack, target.name, self.inventory.probes)

    def probe(self, target: Target) -> ProbeResult:
        assert target.stack
        with self._lock:
            if target.id not in self._probed:
                batch = {
                    key: endpoint
                    for key, (stack, endpoint) in self._planned.items()
                    if key not in self._probed and (not self.worker or stack == target.stack)
                }
                batch[target.id] = self._endpoint(target)
                self._probed.update(probe_all(batch.items(), self.inventory.probes))
            return self._probed[target.id]

    def _endpoint(self, target: Target) -> Endpoint:
        assert target.stack
        stack = self.stack(target.stack)
        return next(e for e in stack.endpoints if e.name == target.name)
