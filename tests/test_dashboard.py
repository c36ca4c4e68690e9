"""The markdown dashboard (seed 001 §4): snapshots of pass, fail, inconclusive, deploy, rollback."""

from __future__ import annotations

import calendar

import pytest

from pytest_deployproof.ledger import DeployRecord
from pytest_deployproof.report.dashboard import (
    Outcomes,
    Stage,
    deploy_stages,
    error_annotations,
    next_step,
    render,
    verdict_of,
)

NOON = calendar.timegm((2026, 11, 29, 12, 34, 0))


def report(
    target: str,
    check: str,
    outcome: str = "passed",
    longrepr: object = None,
    when: str = "call",
    layer: str = "platform",
    verdict: str | None = None,
) -> pytest.TestReport:
    """A report as the run's hooks leave it: with the verdict they decided, when given."""
    decided = [("deployproof_verdict", verdict)] if verdict else []
    return pytest.TestReport(
        nodeid=f"suites/test_{check}.py::test_x[{target}]",
        location=("suites/test_x.py", 1, "test_x"),
        keywords={},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr,  # type: ignore[arg-type]
        when=when,  # type: ignore[arg-type]
        user_properties=[("check", check), ("layer", layer), ("target", target), *decided],
    )


def outcomes(*reports: pytest.TestReport) -> Outcomes:
    gathered = Outcomes()
    for one in reports:
        gathered.add(one)
    for test in gathered.tests.values():
        test.finished = NOON
    return gathered


def test_all_passed() -> None:
    stages = outcomes(
        report("prod/platform/web", "preflight"),
        report("prod/platform/web/web", "smoke"),
        report("prod/apps/api/api", "smoke", layer="apps"),
    ).stages()
    assert render("abc1234def", stages) == (
        "<!-- deployproof-dashboard:abc1234 -->\n"
        "## ⚙️ Commit `abc1234` Pipeline\n"
        "\n"
        "| Stage | Status | Output | Time |\n"
        "|:---|:---:|:---|:---|\n"
        "| Preflight: platform | ✅ | 1 passed | 12:34 |\n"
        "| Smoke: apps | ✅ | 1 passed | 12:34 |\n"
        "| Smoke: platform | ✅ | 1 passed | 12:34 |\n"
        "\n"
        "<!-- next-step -->\n"
        "✅ All checks passed.\n"
        "<!-- /next-step -->\n"
    )


def test_a_run_whose_every_check_skipped_is_never_green() -> None:
    skipped = ("x.py", 1, "Skipped: the selected stacks declare no endpoint")
    stages = outcomes(
        report("prod/platform/web", "health", "skipped", skipped, when="setup"),
    ).stages()
    assert next_step(stages) == (
        "⏸️ Inconclusive: nothing was checked (every selected check was skipped)."
    )
    assert "All checks passed" not in render("abc1234def", stages)


def test_a_failure_names_the_check_and_the_next_step() -> None:
    failed = report(
        "prod/platform/web/health",
        "smoke",
        "failed",
        "E   Failed: GET http://127.0.0.1/health: status 503, expected 200\nmore | lines",
    )
    stages = outcomes(report("prod/platform/web/web", "smoke"), failed).stages()
    assert render("abc1234", stages).splitlines()[5:] == [
        "| Smoke: platform | ❌ | 1 failed, 1 passed: prod/platform/web/health | 12:34 |",
        "",
        "<!-- next-step -->",
        "❌ 1 stage(s) failed: Smoke: platform.",
        "Fix and push, then run the checks again (`/e2e`).",
        "<!-- /next-step -->",
    ]
    [(target, verdict, message)] = outcomes(failed).failures()
    assert (target, verdict) == ("prod/platform/web/health", "failed")
    assert message == "Failed: GET http://127.0.0.1/health: status 503, expected 200"


def test_inconclusive_and_blocked_are_not_failures() -> None:
    unreachable = report(
        "prod/platform/web/web",
        "smoke",
        "failed",
        "INCONCLUSIVE: cannot list containers on host 'vps1': connection refused",
        when="setup",
        verdict="inconclusive",
    )
    blocked = report(
        "prod/platform/web/health",
        "smoke",
        "skipped",
        ("x.py", 1, "Skipped: blocked by test_service_running[prod/platform/web/web]"),
        when="setup",
        verdict="blocked",
    )
    assert [verdict_of(unreachable), verdict_of(blocked)] == ["inconclusive", "blocked"]
    stages = outcomes(unreachable, blocked).stages()
    assert stages == [
        Stage(
            "Smoke: platform",
            "inconclusive",
            "1 inconclusive, 1 blocked: prod/platform/web/web",
            "12:34",
        )
    ]
    assert "⚠️ Inconclusive: infrastructure did not answer." in render("abc1234", stages)


def test_a_failed_deploy_and_its_rollback_are_rows() -> None:
    records = [
        DeployRecord(stack="api", version="v2.0.0", outcome="success", finished=NOON),
        DeployRecord(
            stack="web",
            version="v4.0.0",
            outcome="rolled back",
            rollback="v2.0.0",
            message="web: v4.0.0 failed (1 checks failed: p/platform/web/health); rolled back",
            finished=NOON,
        ),
    ]
    text = render("abc1234", deploy_stages(records))
    assert text.splitlines()[5:] == [
        "| Deploy: api v2.0.0 | ✅ | deployed and verified | 12:34 |",
        "| Deploy: web v4.0.0 | ❌ | web: v4.0.0 failed (1 checks failed: p/platform/web/health); "
        "rolled back | 12:34 |",
        "| Rollback: web → v2.0.0 | ✅ | verified | 12:34 |",
        "",
        "<!-- next-step -->",
        "❌ 1 stage(s) failed: Deploy: web v4.0.0.",
        "Fix and push, then run the checks again (`/e2e`).",
        "↩️ web → v2.0.0: rolled back.",
        "<!-- /next-step -->",
    ]


def test_a_call_passing_after_a_setup_error_stays_an_error() -> None:
    setup = report(
        "p/l/s", "smoke", "failed", "DEPLOY FAILED: refused", when="setup", verdict="deploy failed"
    )
    teardown = report("p/l/s", "smoke", "passed", when="teardown")
    assert outcomes(setup, teardown).failures() == [
        ("p/l/s", "deploy failed", "DEPLOY FAILED: refused")
    ]


def test_tables_survive_pipes_and_annotations_escape_newlines() -> None:
    stage = Stage("Smoke: a|b", "failed", "x | y\nz", "-")
    assert "| Smoke: a\\|b | ❌ | x \\| y z | - |" in render("0" * 40, [stage])
    assert error_annotations([("p/l/s:1", "failed", "50% down\nsecond line")]) == [
        "::error title=failed%3A p/l/s%3A1::50%25 down%0Asecond line"
    ]
