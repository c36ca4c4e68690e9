"""The run's markdown dashboard (REP-2), GitHub step summary and annotations.

One row per check kind and layer ("Smoke: platform"), and one per deploy and
rollback, in this schema::

    <!-- deployproof-dashboard:abc1234 -->
    ## ⚙️ Commit `abc1234` Pipeline

    | Stage | Status | Output | Time |
    ...
    <!-- next-step -->
    ❌ 1 check failed: ...
    <!-- /next-step -->

The marker lets the comment hook find and update the one dashboard of a
commit. Outcomes are gathered from test reports, which the controller
receives for every test also under xdist, so this is built there only.
Rendering is a pure function of the stages: what the snapshot tests pin.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pytest

from ..ledger import DeployRecord, Outcome
from ..verdicts import CHECK_KINDS, Verdict, verdict_of

__all__ = [
    "ICONS",
    "Outcomes",
    "Stage",
    "deploy_stages",
    "error_annotations",
    "marker",
    "render",
    "verdict_of",
]

ICONS = {
    "passed": "✅",
    "failed": "❌",
    "inconclusive": "⚠️",
    "skipped": "⏭️",
    "running": "⏳",
    "held": "⏸️",
    "pending": "⏭️",
}


@dataclass(frozen=True)
class Stage:
    name: str
    status: str  # a key of ICONS
    output: str
    time: str  # when it finished, HH:MM UTC, or "-"


def _first_line(report: pytest.TestReport) -> str:
    text = str(report.longrepr or "").strip()
    if isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        text = str(report.longrepr[2])
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E ")]
    return (errors[0][2:] if errors else lines[-1] if lines else "").strip()


@dataclass
class _Test:
    properties: dict[str, str]
    verdict: Verdict = Verdict.PASSED
    message: str = ""
    finished: float = 0.0


@dataclass
class Outcomes:
    """Every test's verdict, by node id, as the reports arrive."""

    tests: dict[str, _Test] = field(default_factory=dict)

    def add(self, report: pytest.TestReport) -> None:
        test = self.tests.get(report.nodeid)
        if test is None:  # the test's properties are read once, from its first report
            properties = {str(k): str(v) for k, v in report.user_properties}
            if "check" not in properties:
                return  # not a deployproof check
            test = self.tests[report.nodeid] = _Test(properties)
        verdict = verdict_of(report)  # the test's verdict so far (see hooks.py)
        counts = report.when == "call" or verdict is not Verdict.PASSED
        if counts and verdict.rank >= test.verdict.rank:
            test.verdict = verdict
            if not report.passed:  # what was seen comes from the phase that went wrong
                test.message = _first_line(report)
        test.finished = time.time()

    def flaky(self) -> list[str]:
        """``<target> <check>: <what the memory saw>`` of each test the reporter marked flaky."""
        return sorted(
            f"{t.properties.get('target', nodeid)}: {t.properties['flaky']}"
            for nodeid, t in self.tests.items()
            if "flaky" in t.properties
        )

    def failures(self) -> list[tuple[str, str, str]]:
        """(target, verdict, message) of every test that did not pass or skip."""
        return [
            (t.properties.get("target", nodeid), t.verdict, t.message)
            for nodeid, t in self.tests.items()
            if t.verdict.is_bad
        ]

    def stages(self) -> list[Stage]:
        groups: dict[tuple[str, str], list[_Test]] = {}
        for test in self.tests.values():
            key = (test.properties["check"], test.properties.get("layer", "-"))
            groups.setdefault(key, []).append(test)
        order = list(CHECK_KINDS)
        keys = sorted(groups, key=lambda k: (order.index(k[0]) if k[0] in order else 9, k))
        return [
            _stage(f"{kind.capitalize()}: {layer}", groups[(kind, layer)]) for kind, layer in keys
        ]


def _stage(name: str, tests: list[_Test]) -> Stage:
    counts: dict[Verdict, int] = {}
    for test in tests:
        counts[test.verdict] = counts.get(test.verdict, 0) + 1
    if counts.get(Verdict.FAILED) or counts.get(Verdict.DEPLOY_FAILED):
        status = "failed"
    elif counts.get(Verdict.INCONCLUSIVE):
        status = "inconclusive"
    elif counts.get(Verdict.PASSED):
        status = "passed"
    else:
        status = "skipped"
    output = ", ".join(
        f"{n} {verdict.value}" for verdict in reversed(Verdict) if (n := counts.get(verdict))
    )
    worst = [t for t in tests if t.verdict.is_bad]
    if worst:
        output += f": {worst[0].properties.get('target', '?')}"
    return Stage(name, status, output, _clock(max(t.finished for t in tests)))


def _clock(when: float) -> str:
    return time.strftime("%H:%M", time.gmtime(when)) if when else "-"


def deploy_stages(deploys: Iterable[DeployRecord]) -> list[Stage]:
    """A row per deploy, and one per rollback it needed."""
    stages = []
    for record in deploys:
        outcome, when = record.outcome, _clock(record.finished)
        name = f"Deploy: {record.stack} {record.version}"
        if outcome.good:
            done = (
                "deployed and verified"
                if outcome is Outcome.SUCCESS
                else "already deployed, verified"
            )
            stages.append(Stage(name, "passed", done, when))
            continue
        if outcome is Outcome.HELD:
            stages.append(Stage(name, "held", _cell(record.message), when))
            continue
        stages.append(Stage(name, "failed", _cell(record.message), when))
        if record.rollback:
            ok = outcome is Outcome.ROLLED_BACK
            stages.append(
                Stage(
                    f"Rollback: {record.stack} → {record.rollback}",
                    "passed" if ok else "failed",
                    "verified" if ok else "ROLLBACK FAILED VERIFICATION",
                    when,
                )
            )
    return stages


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= 160 else flat[:157] + "..."


def next_step(stages: list[Stage]) -> str:
    failed = [s for s in stages if s.status == "failed"]
    rolled = [s for s in stages if s.name.startswith("Rollback:")]
    lines = []
    running = [s.name for s in stages if s.status == "running"]
    if running:
        return f"⏳ Running: {', '.join(running)}..."
    if failed:
        lines.append(f"❌ {len(failed)} stage(s) failed: {', '.join(s.name for s in failed)}.")
        lines.append("Fix and push, then run the checks again (`/e2e`).")
    elif any(s.status == "held" for s in stages):
        lines.append(
            "⏸️ Held: the checks could not decide; the deploy is neither verified nor rolled "
            "back. Rerun the checks when the infrastructure answers."
        )
    elif any(s.status == "inconclusive" for s in stages):
        lines.append("⚠️ Inconclusive: infrastructure did not answer. Rerun when it is back.")
    elif not any(s.status == "passed" for s in stages):
        lines.append("⏸️ Inconclusive: nothing was checked (every selected check was skipped).")
    else:
        lines.append("✅ All checks passed.")
    lines += [f"↩️ {s.name.removeprefix('Rollback: ')}: rolled back." for s in rolled]
    return "\n".join(lines)


def marker(sha: str) -> str:
    """The hidden line that lets the comment hook find a commit's one dashboard."""
    return f"<!-- deployproof-dashboard:{sha[:7]} -->"


def render(
    sha: str, stages: list[Stage], *, next_text: str | None = None, flaky: Sequence[str] = ()
) -> str:
    """The dashboard markdown for commit ``sha`` (first 7 characters shown); ``flaky``: lines
    naming the checks of this run that the memory of past runs calls flaky."""
    sha7 = sha[:7]
    lines = [
        marker(sha),
        f"## ⚙️ Commit `{sha7}` Pipeline",
        "",
        "| Stage | Status | Output | Time |",
        "|:---|:---:|:---|:---|",
    ]
    lines += [
        f"| {_cell(s.name)} | {ICONS[s.status]} | {_cell(s.output) or '-'} | {s.time} |"
        for s in stages
    ]
    if flaky:
        lines += ["", "**Flaky** (passed only after retries, or flipped, in recent runs):"]
        lines += [f"- {_cell(line)}" for line in flaky]
    lines += ["", "<!-- next-step -->", next_text or next_step(stages), "<!-- /next-step -->"]
    return "\n".join(lines) + "\n"


def error_annotations(failures: Iterable[tuple[str, str, str]]) -> list[str]:
    """GitHub Actions workflow commands, one ``::error`` per failed check."""

    def escape(text: str, *, prop: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if prop else text

    return [
        f"::error title={escape(f'{verdict}: {target}', prop=True)}::{escape(message or verdict)}"
        for target, verdict, message in failures
    ]
