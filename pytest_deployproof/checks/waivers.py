"""Waivers: a preflight gate a stack is let off, for a stated reason, until a date.

A team adopting the gates on stacks that already run meets problems it has accepted for
now (a vendor image without limits, a registry that cannot be asked). Turning the gate
off would hide the next, new problem; a waiver names the gate (and optionally the
services), the reason and the last day. Within it, a gate whose every problem is waived
is *skipped* with ``waived: <reason> (until <date>)``: it counts neither as passed nor as
failed, and a deploy is not held by it. Problems it does not cover still fail. Past the
date the gate fails with the reason, whether or not the problem is still there: the
waiver itself is now the thing to fix (renew it or remove it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import pytest

from ..inventory.model import Gate, Stack, Waiver
from ._failing import fail_if

__all__ = ["Problem", "judge_gate"]

#: a gate's finding: a text about the whole stack, or (service, text)
Problem = str | tuple[str, str]


def judge_gate(
    stack: Stack, gate: Gate, label: str, problems: Sequence[Problem], today: date | None = None
) -> None:
    """Fail, skip as waived, or pass the gate ``label`` of ``stack`` on ``problems``."""
    __tracebackhide__ = True
    today = today or datetime.now(UTC).date()
    waivers = [waiver for waiver in stack.waivers if waiver.gate == gate]
    texts = [_text(problem) for problem in problems]
    expired = [waiver for waiver in waivers if waiver.until < today]
    if expired:
        said = "; ".join(f"waiver expired on {w.until}: {w.reason}" for w in expired)
        fail_if(f"stack {stack.name}", label, [f"{said} (renew or remove it)", *texts])
    active = [waiver for waiver in waivers if waiver not in expired]
    waived = [problem for problem in problems if _covered(problem, active)]
    open_ = [_text(problem) for problem in problems if problem not in waived]
    fail_if(f"stack {stack.name}", label, open_)
    if waived:
        used = [w for w in active if any(_covered(problem, [w]) for problem in waived)]
        why = "; ".join(f"{w.reason} (until {w.until})" for w in used)
        pytest.skip(f"stack {stack.name}: {label}: waived: {why}: " + "; ".join(map(_text, waived)))


def _text(problem: Problem) -> str:
    return problem if isinstance(problem, str) else problem[1]


def _covered(problem: Problem, waivers: Sequence[Waiver]) -> bool:
    service = None if isinstance(problem, str) else problem[0]
    return any(not w.services or (service is not None and service in w.services) for w in waivers)
