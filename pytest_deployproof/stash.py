"""Stash keys shared by the hooks and the fixtures (no globals, no config attributes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # plugin.py imports this module in every pytest run: keep it light
    from .run import Run
    from .settings import Settings
    from .verdicts import Verdict

__all__ = ["BLOCKED_KEY", "RUN_KEY", "SETTINGS_KEY", "VERDICT_KEY"]

SETTINGS_KEY: pytest.StashKey[Settings] = pytest.StashKey()
RUN_KEY: pytest.StashKey[Run] = pytest.StashKey()
# Set on an item by the fixture that skips it as "blocked by" another check (BYD-2), so
# its report's verdict is BLOCKED without reading the skip's text.
BLOCKED_KEY: pytest.StashKey[str] = pytest.StashKey()
# The worst verdict of an item's phases so far (its teardown report carries it).
VERDICT_KEY: pytest.StashKey[Verdict] = pytest.StashKey()
