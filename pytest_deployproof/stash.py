"""Stash keys shared by the hooks and the fixtures (no globals, no config attributes)."""

from __future__ import annotations

import pytest

from .run import Run
from .settings import Settings

__all__ = ["RUN_KEY", "SETTINGS_KEY"]

SETTINGS_KEY = pytest.StashKey[Settings]()
RUN_KEY = pytest.StashKey[Run]()
