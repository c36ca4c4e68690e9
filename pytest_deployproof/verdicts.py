"""What a check concluded, as a value: the one place verdicts and check kinds are named.

A verdict is decided once, where the test's outcome is known (the run's
``pytest_runtest_makereport`` wrapper, :mod:`.hooks`), and put on the report as
the user property ``deployproof_verdict``. The dashboard, JUnit and the deployer's
teardown read it from there (or from the :class:`CheckFailure` records made at the
same moment), never by matching the message text: a message is for people, and a
wrong verdict must not hide in a prefix that a reworded message no longer has
(docs/requirements.md#byd-1). Allure sorts only by message, so its categories are
built from the verdict's label (:mod:`.report.allure_results`).

Light on purpose: plugin.py imports it in every pytest run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import pytest

__all__ = [
    "CHECK_KINDS",
    "HELD_EXIT_CODE",
    "VERDICT_PROPERTY",
    "CheckFailure",
    "Verdict",
    "kind_of",
    "verdict_of",
]

# The check kinds, in the order a pipeline runs them; each is a marker (plugin.py
# registers them with these descriptions) and a stage of the dashboard.
CHECK_KINDS: dict[str, str] = {
    "preflight": "gate checked before anything is deployed",
    "smoke": "a deployed stack runs and answers",
    "health": "service health endpoints answer within budget",
    "e2e": "end-to-end user journeys against a deployed stack",
    "drift": "running state matches what the repository declares",
    "deploy": "needs --deploy: exercises the deploy fixture",
}

VERDICT_PROPERTY = "deployproof_verdict"

# The exit code of an inconclusive run: a deploy was held, its checks could not decide
# (all inconclusive, or none ran and passed), or nothing at all was checked (every
# selected test skipped). Not 0 (it is not green) and not 1 (nothing failed); pytest's
# own codes stop at 5.
HELD_EXIT_CODE = 6


class Verdict(StrEnum):
    """A test's verdict, from best to worst: the worst phase (setup, call, teardown) decides."""

    PASSED = "passed"
    SKIPPED = "skipped"
    BLOCKED = "blocked"  # skipped because a check it depends on failed (BYD-2)
    INCONCLUSIVE = "inconclusive"  # could not observe: hold, never green (BYD-1)
    FAILED = "failed"
    DEPLOY_FAILED = "deploy failed"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def label(self) -> str:
        """How the terminal and JUnit announce it before the message (``INCONCLUSIVE: …``)."""
        return self.value.upper()

    @property
    def is_bad(self) -> bool:
        """Neither passed nor skipped: the run is not green."""
        return self in (Verdict.INCONCLUSIVE, Verdict.FAILED, Verdict.DEPLOY_FAILED)

    @classmethod
    def worst(cls, verdicts: Sequence[Verdict]) -> Verdict:
        return max(verdicts, key=lambda v: v.rank, default=cls.PASSED)


_RANK = {verdict: rank for rank, verdict in enumerate(Verdict)}


@dataclass(frozen=True)
class CheckFailure:
    """A check of a stack that did not pass, as its deploy's teardown reads it (DEP-2)."""

    test: str  # the target id, and the test's name for stack-level checks
    verdict: Verdict

    def __str__(self) -> str:
        if self.verdict is Verdict.INCONCLUSIVE:
            return f"{self.verdict.label} {self.test}"
        return self.test


def verdict_of(report: pytest.TestReport) -> Verdict:
    """The verdict the run's hooks put on ``report``; for a report without one (a test
    that is not deployproof's), what its outcome says."""
    for name, value in report.user_properties:
        if name == VERDICT_PROPERTY:
            return Verdict(str(value))
    if report.skipped:
        return Verdict.SKIPPED
    return Verdict.FAILED if report.failed else Verdict.PASSED


def kind_of(item: pytest.Item) -> str | None:
    """The check kind of ``item``: the first kind marker it carries (one walk over its
    markers, not one ``get_closest_marker`` per kind)."""
    names = {mark.name for mark in item.iter_markers()}
    return next((kind for kind in CHECK_KINDS if kind in names), None)
