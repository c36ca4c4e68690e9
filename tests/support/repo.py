"""The repository the tests run from: its root, and the bundled suites the tests run."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
BUNDLED = REPO / "pytest_deployproof" / "suites"  # the checks the package ships
SMOKE_SUITE = (BUNDLED / "test_smoke.py").read_text()
SUITES = {path.stem: path.read_text() for path in BUNDLED.glob("test_*.py")}
