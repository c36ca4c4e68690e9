"""What this process's deploys did, as the reports read it: failures in, records out.

The deploy fixture's teardown needs the real outcome of its stack's tests (the
run's makereport hook writes each failure here, typed with its verdict), and the
reports need what each deploy did (a frozen :class:`DeployRecord` per stack).
Under xdist the records cross from each worker to the controller as plain data
(:meth:`DeployRecord.to_wire`, through ``workeroutput``) and come back typed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .verdicts import CheckFailure

__all__ = ["DeployLedger", "DeployRecord", "Outcome"]


class Outcome(StrEnum):
    """How one stack's deploy ended. Only SUCCESS and UNCHANGED are good; HELD is neither
    good nor failed (the checks could not decide)."""

    PENDING = "pending"
    SUCCESS = "success"  # deployed, and its checks proved it
    UNCHANGED = "unchanged"  # already deployed, and its checks proved it
    UNVERIFIED = "unverified"  # already deployed, but not proven
    HELD = "held"
    ROLLED_BACK = "rolled back"
    ROLLBACK_FAILED = "rollback failed"
    REFUSED = "refused"  # nothing changed
    ERROR = "error"  # finishing it failed: nothing can be said

    @property
    def good(self) -> bool:
        return self in (Outcome.SUCCESS, Outcome.UNCHANGED)


@dataclass(frozen=True)
class DeployRecord:
    """One stack's deploy of this run, as it ended."""

    stack: str
    version: str
    outcome: Outcome
    message: str = ""
    previous: str | None = None
    rollback: str | None = None  # the version rolled back to, when it came to that
    backup: str | None = None
    phases: tuple[tuple[str, str, float], ...] = ()  # phase, ok|fail, seconds
    finished: float = 0.0  # epoch seconds

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))  # from plain data too

    def to_wire(self) -> dict[str, Any]:
        """Plain data for xdist's workeroutput."""
        wire = dataclasses.asdict(self)
        wire["phases"] = [list(phase) for phase in self.phases]
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> DeployRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in wire.items() if key in names}
        values["phases"] = tuple(tuple(phase) for phase in values.get("phases", ()))
        return cls(**values)


@dataclass
class DeployLedger:
    """Failures by stack (written by the hooks), deploy records and terminal lines."""

    failures: dict[str, list[CheckFailure]] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)  # the evidence: checks that passed
    records: list[DeployRecord] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)  # the "deployproof deploy" section
    rollout_stacks: set[str] = field(default_factory=set)  # a collected test judges the rollout
    interrupted: bool = False  # Ctrl-C or SIGTERM ended the run
    checks_passed: int = 0  # of the whole run, counted where the exit code is decided

    def record_failure(self, stack: str, failure: CheckFailure) -> None:
        self.failures.setdefault(stack, []).append(failure)

    def record_pass(self, stack: str) -> None:
        self.passed[stack] = self.passed.get(stack, 0) + 1

    def failures_of(self, stack: str) -> list[CheckFailure]:
        return list(self.failures.get(stack, []))

    def to_wire(self) -> dict[str, Any]:
        return {
            "deployproof_deploys": [record.to_wire() for record in self.records],
            "deployproof_summaries": list(self.summaries),
        }

    def merge_wire(self, output: Mapping[str, Any]) -> None:
        """A worker's records and lines, on the controller."""
        self.records += [DeployRecord.from_wire(r) for r in output.get("deployproof_deploys", [])]
        self.summaries += output.get("deployproof_summaries", [])
