"""One pytest process's deployproof run: what was selected, and the three parts that work on it.

* :class:`~.observe.observations.Observations` observes, batched and cached;
* :class:`~.observe.blocking.BlockedBy` decides what a broken observation blocks;
* :class:`~.ledger.DeployLedger` keeps what the deploys need to learn (failures)
  and what they did (records), for the reports.

Each part owns its state; this object only holds them together for the fixtures
and hooks (``deployproof_run``), and reads the collected tests once for all three.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from .inventory.model import Inventory, Stack
from .inventory.selection import Selection
from .ledger import DeployLedger
from .observe.blocking import BlockedBy
from .observe.observations import Observations
from .secrets import Masker
from .settings import Settings
from .targets import ROLLOUT_MARK, target_of

__all__ = ["Run"]


@dataclass(frozen=True)
class Run:
    settings: Settings
    selection: Selection
    observations: Observations
    blocking: BlockedBy
    ledger: DeployLedger = field(default_factory=DeployLedger)

    @classmethod
    def start(
        cls,
        settings: Settings,
        selection: Selection,
        *,
        worker: bool,
        known_secrets: Iterable[str] | None = None,
    ) -> Run:
        observations = Observations(settings, selection, worker=worker, known_secrets=known_secrets)
        return cls(
            settings, selection, observations, BlockedBy(observations, ordered=settings.ordered)
        )

    @property
    def inventory(self) -> Inventory:
        return self.selection.inventory

    @property
    def deploying(self) -> bool:
        return self.settings.deploy.value is not None

    def stack(self, name: str) -> Stack:
        return self.inventory.stacks[name]

    def secrets(self) -> Masker:
        """Every secret this run can have seen (see :meth:`Observations.secrets`)."""
        return self.observations.secrets()

    def plan(self, items: Iterable[pytest.Item]) -> None:
        """Read the collected tests (after -k/-m deselection) once, for all three parts."""
        targets = []
        for item in items:
            target = target_of(item)
            if target is None:
                continue
            targets.append(target)
            self.blocking.note(item, target)
            if target.stack and item.get_closest_marker(ROLLOUT_MARK):
                self.ledger.rollout_stacks.add(target.stack)
        self.observations.plan(targets)

    def close(self) -> None:
        self.observations.close()
