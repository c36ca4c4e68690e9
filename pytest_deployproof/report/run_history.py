"""The memory of past runs: every check's verdict, attempts and time, in SQLite.

A check that passes only on its second attempt, or fails every other run, is green in
any single run and hidden by retries (BYD-3 makes the retries visible; this remembers
them). The state directory is shared by whoever operates the environment, and SQLite is
one file, written whole per transaction (TRU-2), readable by ``deployproof trend`` while
``serve`` writes (WAL). Rows older than the retention are deleted after each run, so
the file stays the size of the window, not of the server's uptime.

Flaky: in at least ``n`` of the last ``m`` runs the check passed only after retries, or
its pass/fail result changed from the run before.

``deployproof serve`` writes it (ops/serve); every pytest run of the environment reads it,
so a check the memory calls flaky is said so in the terminal, the dashboard and Allure
(:mod:`.reporter`). A check is known across the two by its stack, kind and name
(:func:`check_name`), not by its node id, which depends on the directory pytest ran in.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from ..targets import target_of
from ..verdicts import Verdict, kind_of

__all__ = ["Flaky", "FlakyRule", "History", "RunRecord", "Trend", "check_name"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, env TEXT NOT NULL, started REAL NOT NULL, finished REAL NOT NULL,
    outcome TEXT NOT NULL, error TEXT
);
CREATE TABLE IF NOT EXISTS checks (
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    id TEXT NOT NULL, stack TEXT NOT NULL, layer TEXT NOT NULL, kind TEXT NOT NULL,
    name TEXT NOT NULL, verdict TEXT NOT NULL, attempts INTEGER, elapsed_s REAL
);
CREATE INDEX IF NOT EXISTS checks_by_run ON checks (run);
CREATE INDEX IF NOT EXISTS checks_by_stack ON checks (stack, run);
"""


class CheckRecord(Protocol):
    """One check of a recorded run (ops/serve/results.py's CheckResult)."""

    @property
    def id(self) -> str: ...
    @property
    def stack(self) -> str: ...
    @property
    def layer(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def check(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def attempts(self) -> int | None: ...
    @property
    def elapsed_s(self) -> float | None: ...


class RunRecord(Protocol):
    """A finished run as the memory keeps it (ops/serve/results.py's RunResult)."""

    @property
    def id(self) -> int: ...
    @property
    def env(self) -> str: ...
    @property
    def started(self) -> float: ...
    @property
    def finished(self) -> float: ...
    @property
    def outcome(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def checks(self) -> Sequence[CheckRecord]: ...


def check_name(item: pytest.Item) -> str:
    """A check's short name, as the memory and /metrics know it: the test's name without
    ``test_``, then its service, endpoint, database or host (``service_running/web``)."""
    target = target_of(item)
    name = getattr(item, "originalname", item.name).removeprefix("test_")
    child = None if target is None else (target.name or target.host)
    return f"{name}/{child}" if child else name


def memory_key(item: pytest.Item) -> tuple[str, str, str] | None:
    """``(stack, kind, name)``: how a check is found in the memory; ``None`` if the test
    is not one of a stack's checks."""
    target = target_of(item)
    if target is None or not target.stack:
        return None
    return (target.stack, kind_of(item) or "other", check_name(item))


# Results that say something about the deployment; a skip or an inconclusive run says
# nothing about whether a check flaps.
_JUDGED = {Verdict.PASSED.value, Verdict.FAILED.value, Verdict.BLOCKED.value}


@dataclass(frozen=True)
class FlakyRule:
    """``n`` flaky runs of the last ``m`` make a check flaky."""

    n: int = 3
    m: int = 10

    @classmethod
    def parse(cls, text: str) -> FlakyRule:
        """``N/M``, e.g. ``3/10``: for an argparse ``type=``."""
        n_text, _, m_text = text.partition("/")
        try:
            n, m = int(n_text), int(m_text)
        except ValueError:
            raise ValueError(f"{text!r}: write N/M, e.g. 3/10") from None
        if not 1 <= n <= m:
            raise ValueError(f"{text!r}: needs 1 <= N <= M")
        return cls(n, m)


@dataclass(frozen=True)
class Flaky:
    """How a check behaved over its recent runs."""

    events: int  # runs that passed after retries, or flipped pass <-> fail
    runs: int  # runs looked at (at most the rule's m)
    retried: int
    flips: int
    flaky: bool

    @property
    def score(self) -> float:
        return self.events / self.runs if self.runs else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "flaky": self.flaky,
            "events": self.events,
            "runs": self.runs,
            "retried": self.retried,
            "flips": self.flips,
        }


def flakiness(sequence: Sequence[tuple[str, int | None]], rule: FlakyRule) -> Flaky:
    """Judge one check from its ``(verdict, attempts)`` per run, oldest first."""
    recent = list(sequence)[-rule.m :]
    retried = flips = events = 0
    previous: bool | None = None
    for verdict, attempts in recent:
        passed = verdict == Verdict.PASSED.value
        retry = passed and (attempts or 1) > 1
        flip = verdict in _JUDGED and previous is not None and passed != previous
        retried += retry
        flips += flip
        events += retry or flip
        if verdict in _JUDGED:
            previous = passed
    return Flaky(events, len(recent), retried, flips, events >= rule.n)


@dataclass(frozen=True)
class Trend:
    """One check's record over a window, for ``deployproof trend``."""

    id: str
    stack: str
    kind: str
    name: str
    runs: int
    passed: int
    p50_s: float | None
    p95_s: float | None
    flaky: Flaky

    @property
    def pass_rate(self) -> float:
        return self.passed / self.runs if self.runs else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stack": self.stack,
            "kind": self.kind,
            "check": self.name,
            "runs": self.runs,
            "passed": self.passed,
            "pass_rate": round(self.pass_rate, 4),
            "p50_elapsed_s": self.p50_s,
            "p95_elapsed_s": self.p95_s,
            "flaky_score": round(self.flaky.score, 4),
            **self.flaky.as_json(),
        }


class History:
    """The runs of one environment's ``serve``, in ``path`` (created on first use)."""

    def __init__(self, path: Path, keep_s: float = 14 * 86400) -> None:
        self.path, self.keep_s = path, keep_s

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            with db:  # one transaction: committed whole, or rolled back
                yield db
        finally:
            db.close()

    def next_id(self) -> int:
        """Run ids continue across restarts, so a run id names one run for good."""
        with self._db() as db:
            row = db.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()
        return int(row[0]) + 1

    def append(self, run: RunRecord) -> None:
        """Record ``run`` and forget runs older than the retention."""
        with self._db() as db:
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                (run.id, run.env, run.started, run.finished, run.outcome, run.error),
            )
            db.executemany(
                "INSERT INTO checks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (run.id, c.id, c.stack, c.layer, c.kind, c.check, c.verdict, c.attempts,
                     c.elapsed_s)
                    for c in run.checks
                ],
            )  # fmt: skip
            horizon = time.time() - self.keep_s
            db.execute("DELETE FROM runs WHERE finished < ?", (horizon,))

    def flaky(self, env: str, rule: FlakyRule) -> dict[str, Flaky]:
        """Each check's flakiness over the environment's last ``rule.m`` runs."""
        with self._db() as db:
            rows = db.execute(
                "SELECT c.id, c.verdict, c.attempts FROM checks c WHERE c.run IN "
                "(SELECT id FROM runs WHERE env = ? ORDER BY id DESC LIMIT ?) ORDER BY c.run",
                (env, rule.m),
            ).fetchall()
        sequences: dict[str, list[tuple[str, int | None]]] = {}
        for check, verdict, attempts in rows:
            sequences.setdefault(check, []).append((verdict, attempts))
        return {check: flakiness(seq, rule) for check, seq in sequences.items()}

    def flaky_checks(self, env: str, rule: FlakyRule) -> dict[tuple[str, str, str], Flaky]:
        """The checks the environment's last ``rule.m`` runs call flaky, by
        ``(stack, kind, name)`` (see :func:`memory_key`); empty when nothing is remembered."""
        if not self.path.is_file():
            return {}
        # Read-only and brief: a pytest run reads the memory, never writes or converts it
        # (no schema, no journal mode), and a database held by another writer costs it half
        # a second, not the writers' ten.
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.5)
        try:
            rows = db.execute(
                "SELECT c.stack, c.kind, c.name, c.verdict, c.attempts FROM checks c WHERE c.run "
                "IN (SELECT id FROM runs WHERE env = ? ORDER BY id DESC LIMIT ?) ORDER BY c.run",
                (env, rule.m),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}  # an empty file: nothing remembered yet
            raise
        finally:
            db.close()
        sequences: dict[tuple[str, str, str], list[tuple[str, int | None]]] = {}
        for stack, kind, name, verdict, attempts in rows:
            sequences.setdefault((stack, kind, name), []).append((verdict, attempts))
        judged = {key: flakiness(seq, rule) for key, seq in sequences.items()}
        return {key: flaky for key, flaky in judged.items() if flaky.flaky}

    def trend(self, env: str, stack: str, runs: int, rule: FlakyRule) -> list[Trend]:
        """Each of ``stack``'s checks over the environment's last ``runs`` runs."""
        with self._db() as db:
            rows = db.execute(
                "SELECT c.id, c.kind, c.name, c.verdict, c.attempts, c.elapsed_s FROM checks c "
                "WHERE c.stack = ? AND c.run IN "
                "(SELECT id FROM runs WHERE env = ? ORDER BY id DESC LIMIT ?) ORDER BY c.run",
                (stack, env, runs),
            ).fetchall()
        grouped: dict[str, list[Any]] = {}
        for row in rows:
            grouped.setdefault(row[0], []).append(row)
        trends = []
        for check, seen in sorted(grouped.items()):
            elapsed = sorted(float(r[5]) for r in seen if r[5] is not None)
            trends.append(
                Trend(
                    id=check,
                    stack=stack,
                    kind=seen[-1][1],
                    name=seen[-1][2],
                    runs=len(seen),
                    passed=sum(r[3] == Verdict.PASSED.value for r in seen),
                    p50_s=_percentile(elapsed, 50),
                    p95_s=_percentile(elapsed, 95),
                    flaky=flakiness([(r[3], r[4]) for r in seen], rule),
                )
            )
        return trends

    def stacks(self, env: str) -> list[str]:
        with self._db() as db:
            rows = db.execute(
                "SELECT DISTINCT c.stack FROM checks c JOIN runs r ON r.id = c.run "
                "WHERE r.env = ? ORDER BY c.stack",
                (env,),
            ).fetchall()
        return [str(row[0]) for row in rows]


def _percentile(values: Sequence[float], percent: int) -> float | None:
    """Nearest-rank percentile: an elapsed time some run really took (statistics.quantiles
    would interpolate between two runs)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    rank = max(1, -(-percent * len(values) // 100))  # ceil
    return round(values[min(rank, len(values)) - 1], 3)
