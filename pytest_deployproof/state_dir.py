"""The one place that knows the layout of an environment's state directory.

Everyone who deploys an environment shares it (``state_dir`` in the inventory):
the deploy history, the stacks' leases, what each stack was verified with
(promotion) and what was deployed (drift). Observation reads it and deploying
writes it, so it lives below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["StateDir"]


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def history(self) -> Path:
        """The append-only deploy history (docs/requirements.md#dep-4)."""
        return self.root / "deploy-history.log"

    @property
    def locks(self) -> Path:
        """One lease file per stack being deployed (docs/requirements.md#dep-9)."""
        return self.root / "locks"

    def verified(self, stack: str) -> Path:
        """The versions and image identities ``stack`` was verified with (promotion)."""
        return self.root / "verified" / f"{stack}.jsonl"

    def deployed(self, stack: str) -> Path:
        """What was last brought up for ``stack``: config hashes, for drift."""
        return self.root / "deployed" / f"{stack}.json"
