"""The repository the tests run from: its root, and the bundled suites the tests run."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SMOKE_SUITE = (REPO / "suites" / "test_smoke.py").read_text()
SUITES = {path.stem: path.read_text() for path in (REPO / "suites").glob("test_*.py")}
