"""Quarantine: a flapping check of a stack taken out of the verdict, for a stated reason,
until a date.

A check that fails one run in five teaches people to rerun until green, which hides the
day it fails for real. Deleting it hides more. A quarantined check still runs and its
outcome is shown, but as *quarantined* (a skip): never green (it proves nothing, so it is
no evidence for a deploy) and never failing the run. From the day after ``until`` it fails
with the reason, passing or not: the quarantine is then the thing to fix.

The report is rewritten where its verdict is decided (the run's ``makereport`` wrapper,
:mod:`pytest_deployproof.hooks`), so JUnit, Allure, the dashboard and a deploy's teardown
all see the same outcome.
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, date, datetime

import pytest

from ..inventory.model import Quarantine, Stack
from ..targets import Target

__all__ = ["quarantine_of", "rewrite"]


def quarantine_of(stack: Stack, test_name: str, target: Target) -> Quarantine | None:
    """The stack's quarantine entry for this check and target, if any (the first)."""
    name = target.name or target.stack or ""
    for entry in stack.quarantine:
        if entry.test_name == test_name and fnmatch.fnmatchcase(name, entry.target):
            return entry
    return None


def rewrite(
    report: pytest.TestReport, entry: Quarantine, today: date | None = None
) -> pytest.TestReport:
    """The call report as a quarantined check's: skipped (saying what really happened), or,
    past its date, failed with the reason. Preflight gates are never quarantined (a
    waiver is the tool there), and setup errors stay errors (:mod:`..hooks`)."""
    today = today or datetime.now(UTC).date()
    happened = _what_happened(report)
    if today > entry.until:
        report.outcome = "failed"
        report.longrepr = (
            f"quarantine expired on {entry.until}: {entry.reason} (renew or remove it); "
            f"the check {happened}"
        )
        return report
    report.outcome = "skipped"
    report.longrepr = (
        str(report.fspath),
        report.location[1] or 0,
        f"quarantined: {entry.reason} (until {entry.until}); it {happened}",
    )
    return report


def _what_happened(report: pytest.TestReport) -> str:
    if report.passed:
        return "passed"
    if report.skipped:
        return "was skipped"
    crash = getattr(report.longrepr, "reprcrash", None)  # a traceback's own summary line
    text = str(crash.message if crash is not None else report.longrepr or "").strip()
    said = " ".join(text.splitlines()[:1])[:300]
    return f"failed: {said}" if said else "failed"
