"""A serve run's results as values, and what /healthz concludes from them.

The run's pytest process writes JSON lines (:mod:`.collector`); :func:`read_results`
turns them into :class:`CheckResult` values, and a run that ended without deciding
(pytest crashed, the inventory broke, the deadline passed) becomes a :class:`RunResult`
with an ``error``, never a list of green checks. :func:`judge` is the one place that
says whether what we know is healthy, in the order an operator must hear it: nothing
known yet, known but too old, the run itself broken, a check failed, a check could not
look, nothing was checked at all; only then healthy (docs/requirements.md#byd-1:
inconclusive and stale are never green). :func:`drift_by_stack` says the same of each
stack's drift checks, for ``/metrics``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ...secrets import Masker
from ...verdicts import Verdict

__all__ = [
    "CheckResult",
    "Health",
    "RunResult",
    "Status",
    "drift_by_stack",
    "judge",
    "read_results",
]

# pytest's exit codes after which the per-check verdicts are the whole story: all passed,
# some failed, or held as inconclusive (verdicts.HELD_EXIT_CODE). Any other code means the
# run did not get to judge (interrupted, internal error, usage error, nothing collected).
JUDGED_EXIT_CODES = (0, 1, 6)


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict in one run, with its identity as labels (see collector.describe)."""

    id: str
    env: str
    layer: str
    stack: str
    kind: str
    check: str
    verdict: str  # a Verdict value
    message: str = ""
    attempts: int | None = None
    elapsed_s: float | None = None
    duration_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stack": self.stack,
            "layer": self.layer,
            "kind": self.kind,
            "check": self.check,
            "verdict": self.verdict,
            "message": self.message,
            "attempts": self.attempts,
            "elapsed_s": self.elapsed_s,
        }


@dataclass(frozen=True)
class RunResult:
    """A finished run: its checks, and ``error`` when it could not judge them."""

    id: int
    env: str
    started: float  # epoch seconds
    finished: float
    checks: tuple[CheckResult, ...] = ()
    error: str | None = None
    exit_code: int | None = None

    @property
    def duration_s(self) -> float:
        return self.finished - self.started

    @property
    def outcome(self) -> str:
        """The run counter's label: healthy, failed, inconclusive, or error."""
        return "error" if self.error else judge(self, self.checks).status.run_outcome

    def stacks(self) -> set[str]:
        return {check.stack for check in self.checks}


class Status(StrEnum):
    HEALTHY = "healthy"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    STALE = "stale"
    UNKNOWN = "unknown"

    @property
    def http(self) -> int:
        return 200 if self is Status.HEALTHY else 503

    @property
    def run_outcome(self) -> str:
        return self.value if self in (Status.HEALTHY, Status.FAILED) else "inconclusive"


@dataclass(frozen=True)
class Health:
    status: Status
    reason: str
    checks: tuple[CheckResult, ...] = field(default=())
    counts: dict[str, int] = field(default_factory=dict)


_FAILING = {Verdict.FAILED, Verdict.DEPLOY_FAILED, Verdict.BLOCKED}


def judge(  # noqa: PLR0911 - one return per status, in the order they are told
    run: RunResult | None,
    checks: Sequence[CheckResult] | None = None,
    *,
    now: float | None = None,
    max_age_s: float | None = None,
) -> Health:
    """What /healthz says about ``checks`` (default: all of ``run``'s)."""
    if run is None:
        return Health(Status.UNKNOWN, "no run has completed yet")
    chosen = tuple(run.checks if checks is None else checks)
    counts = dict(Counter(check.verdict for check in chosen))
    if now is not None and max_age_s is not None and now - run.finished > max_age_s:
        age = now - run.finished
        return Health(
            Status.STALE,
            f"the last run finished {age:.0f} s ago, more than {max_age_s:g} s: "
            "its verdicts are too old to stand for now",
            chosen,
            counts,
        )
    if run.error:
        return Health(Status.INCONCLUSIVE, f"the run did not judge: {run.error}", chosen, counts)
    verdicts = [Verdict(check.verdict) for check in chosen]
    bad = [c for c, v in zip(chosen, verdicts, strict=True) if v in _FAILING]
    if bad:
        return Health(Status.FAILED, f"{len(bad)} of {len(chosen)} checks failed", chosen, counts)
    unsure = [c for c, v in zip(chosen, verdicts, strict=True) if v is Verdict.INCONCLUSIVE]
    if unsure:
        return Health(
            Status.INCONCLUSIVE,
            f"{len(unsure)} of {len(chosen)} checks could not decide: {unsure[0].message}",
            chosen,
            counts,
        )
    if Verdict.PASSED not in verdicts:
        return Health(
            Status.INCONCLUSIVE,
            f"nothing was checked ({len(chosen)} selected, none ran and passed)",
            chosen,
            counts,
        )
    return Health(Status.HEALTHY, f"all {counts[Verdict.PASSED]} checks passed", chosen, counts)


def drift_by_stack(run: RunResult | None) -> dict[str, bool]:
    """Per stack, whether ``run`` saw it drift: True when one of its drift checks failed,
    False when at least one ran and every one that ran passed. A stack is left out when
    that cannot be said: no drift check of it ran (none selected, all skipped as not
    applicable), or one could not decide (inconclusive, blocked), or the run itself did
    not judge (then only a failure seen counts). Left out is not "in sync" (BYD-1).
    Checks of no stack (a layer's) are not a stack's."""
    if run is None:
        return {}
    seen: dict[str, set[Verdict]] = {}
    for check in run.checks:
        if check.kind == "drift" and check.stack != "-":
            seen.setdefault(check.stack, set()).add(Verdict(check.verdict))
    drift = {stack: _drifted(verdicts, judged=not run.error) for stack, verdicts in seen.items()}
    return {stack: drifted for stack, drifted in drift.items() if drifted is not None}


def _drifted(verdicts: set[Verdict], *, judged: bool) -> bool | None:
    if verdicts & {Verdict.FAILED, Verdict.DEPLOY_FAILED}:
        return True
    if not judged or verdicts & {Verdict.INCONCLUSIVE, Verdict.BLOCKED}:
        return None
    return False if Verdict.PASSED in verdicts else None  # all skipped: none ran


def read_results(
    path: Path,
    *,
    run_id: int,
    env: str,
    started: float,
    finished: float,
    exit_code: int | None,
    output: str,
    masker: Masker,
) -> RunResult:
    """The run whose pytest process wrote ``path`` and exited with ``exit_code``
    (``None``: it was killed, and ``output`` says why). Checks collected but never
    reported become INCONCLUSIVE (nothing was seen of them); a run that did not judge
    carries the reason."""
    lines = _records(path)
    collected: list[dict[str, Any]] = next((r["collected"] for r in lines if "collected" in r), [])
    reported = {r["check"]["id"]: r for r in lines if "verdict" in r}
    checks = []
    for described in collected:
        record = reported.get(described["id"])
        if record is None:
            record = {"verdict": Verdict.INCONCLUSIVE.value, "message": "did not report"}
        checks.append(_check(described, record, env, masker))
    error = None
    if exit_code is None:
        error = output or "killed before it finished"
    elif exit_code not in JUDGED_EXIT_CODES or not collected:
        error = f"pytest exited {exit_code}: {_tail(masker(output))}"
    return RunResult(run_id, env, started, finished, tuple(checks), error, exit_code)


def _records(path: Path) -> list[dict[str, Any]]:
    records = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed process
        if isinstance(record, dict):
            records.append(record)
    return records


def _check(
    described: dict[str, Any], record: dict[str, Any], env: str, masker: Masker
) -> CheckResult:
    def number(value: Any, kind: type[int] | type[float]) -> Any:
        try:
            return None if value is None else kind(value)
        except (TypeError, ValueError):
            return None

    return CheckResult(
        id=str(described["id"]),
        env=str(described.get("env") or env),
        layer=str(described.get("layer") or "-"),
        stack=str(described.get("stack") or "-"),
        kind=str(described.get("kind") or "other"),
        check=str(described.get("check") or described["id"]),
        verdict=str(Verdict(record.get("verdict", Verdict.INCONCLUSIVE.value))),
        message=masker(str(record.get("message") or "")),
        attempts=number(record.get("attempts"), int),
        elapsed_s=number(record.get("elapsed_s"), float),
        duration_s=number(record.get("duration_s"), float),
    )


def _tail(output: str, lines: int = 6) -> str:
    kept = [line for line in output.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "(no output)"
