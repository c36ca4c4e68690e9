"""Reports from real runs (REP-1..3): Allure results, JUnit, the dashboard, and no secrets.

Each test runs pytest in a subprocess against real Compose stacks and reads
the files it wrote, as CI and an operator would.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.compose import ComposeStack, inventory_yaml
from tests.support.repo import SUITES

MakeStack = Callable[..., ComposeStack]


def allure_results(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*-result.json"))]


def labels(result: dict[str, Any]) -> dict[str, str]:
    """Single-valued labels (the last of a name wins)."""
    return {label["name"]: label["value"] for label in result["labels"]}


def attachment(directory: Path, result: dict[str, Any], name: str) -> str:
    [found] = [a for a in result.get("attachments", []) if a["name"] == name]
    return (directory / found["source"]).read_text()


def test_a_failed_deploy_leaves_labels_steps_attachments_junit_and_a_dashboard(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path], bad_image: str
) -> None:
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    result = pytester.runpytest_subprocess(
        "--env", "test", "--deploy", bad_image, "-m", "smoke", "-p", "no:cacheprovider",
        "--alluredir", "allure", "--junitxml", "junit.xml", "--dashboard", "out/dashboard.md",
    )  # fmt: skip
    result.assert_outcomes(passed=1, failed=1)
    allure = pytester.path / "allure"

    # Labels: environment / layer / stack / check kind / host / severity.
    [failed] = [r for r in allure_results(allure) if r["status"] == "failed"]
    assert failed["name"] == "test_endpoint_answers[test/platform/app/health]"
    assert {
        key: value
        for key, value in labels(failed).items()
        if key in ("parentSuite", "suite", "subSuite", "feature", "severity")
    } == {
        "parentSuite": "test",
        "suite": "platform",
        "subSuite": "app",
        "feature": "smoke",
        "severity": "critical",
    }
    tags = [label["value"] for label in failed["labels"] if label["name"] == "tag"]
    assert "here" in tags  # the host (allure-pytest adds the pytest markers as tags too)
    # What the probe saw, as an operator reads it.
    exchange = attachment(allure, failed, "HTTP exchange")
    assert exchange.startswith(f"GET {deploy_project[0].url}/cgi-bin/health\n\nHTTP 503 in ")
    assert "content-type: text/plain" in exchange.lower()
    assert "attempts: HTTP 503" in exchange
    assert attachment(allure, failed, "verdict").startswith("stack app: GET ")

    # Deploy phases are steps of the deploy fixture; the backup manifest is attached.
    containers = [json.loads(p.read_text()) for p in allure.glob("*-container.json")]
    [deploy] = [b for c in containers for b in c.get("befores", []) if b["name"] == "deployment"]
    steps = {step["name"].rsplit(": ", 1)[1]: step for step in deploy["steps"]}
    assert list(steps) == ["lock", "preflight", "backup", "pull", "tag", "up"]
    [manifest] = steps["backup"]["attachments"]
    assert json.loads((allure / manifest["source"]).read_text())["version"] == "v1.0.0"

    # Run metadata, written once by the controller.
    properties = (allure / "environment.properties").read_text()
    assert "environment=test\n" in properties
    assert f"deploy.version={bad_image}\n" in properties
    categories = json.loads((allure / "categories.json").read_text())
    assert [c["name"] for c in categories][:3] == [
        "Infrastructure unreachable (inconclusive)",
        "Deployment failed",
        "Drift",
    ]
    assert json.loads((allure / "executor.json").read_text())["name"] == "deployproof"

    # JUnit properties.
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").iter("testcase")}
    case = cases["test_endpoint_answers[test/platform/app/health]"]
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert (props["environment"], props["layer"], props["stack"]) == ("test", "platform", "app")

    # The dashboard: one row per check kind and layer, the deploy, its rollback.
    dashboard = (pytester.path / "out" / "dashboard.md").read_text().splitlines()
    assert dashboard[0].startswith("<!-- deployproof-dashboard:")
    rows = [line.split(" | ")[:3] for line in dashboard if line.startswith("| ")]
    failing = "test/platform/app/health"
    assert rows[1:] == [
        ["| Smoke: platform", "❌", f"1 failed, 1 passed: {failing}"],
        ["| Deploy: app v4.0.0", "❌", f"app: v4.0.0 failed (1 checks failed: {failing}); "
         "rolled back to v1.0.0, verified"],
        ["| Rollback: app → v1.0.0", "✅", "verified"],
    ]  # fmt: skip


def test_under_xdist_with_clean_alluredir_the_metadata_is_there_once_and_failures_attached(
    pytester: pytest.Pytester, compose_stack: MakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, broken = compose_stack("good"), compose_stack("broken")
    good.up()
    broken.up()
    broken.compose("stop", "-t", "1", "web")
    (pytester.path / "inventories").mkdir()
    (pytester.path / "inventories" / "test.yml").write_text(inventory_yaml([good, broken]))
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    allure = pytester.path / "allure"
    allure.mkdir()
    (allure / "stale-result.json").write_text("{}")  # from an earlier run

    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # as in GitHub Actions
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = pytester.runpytest_subprocess(
        "--env", "test", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
        "--alluredir", str(allure), "--clean-alluredir",
    )  # fmt: skip
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    # The step summary is the dashboard; each failed check is an annotation.
    assert summary.read_text().startswith("<!-- deployproof-dashboard:")
    assert "| Smoke: platform | ❌ | 1 failed, 1 blocked, 2 passed:" in summary.read_text()
    result.stdout.fnmatch_lines(
        ["::error title=failed%3A test/platform/broken/web::stack broken *: not running *"]
    )
    files = sorted(p.name for p in allure.iterdir())
    for name in ("environment.properties", "executor.json", "categories.json"):
        assert files.count(name) == 1
    assert "stale-result.json" not in files
    results = allure_results(allure)
    assert len(results) == 4
    [failed] = [r for r in results if r["status"] == "failed"]
    assert failed["name"] == "test_service_running[test/platform/broken/web]"
    state = attachment(allure, failed, "containers")
    assert f"{broken.container('web')}: exited" in state
    assert f"--- last log lines of {broken.container('web')} ---" in state


PLANTED = {
    "DB_PASSWORD": "planted-Pa55word-4f1b",
    "API_TOKEN": "planted-token-9c2e77",
}
LEAKY_TEST = """
import os
def test_leaks(stack, stack_files):
    print("password is", stack_files.env["DB_PASSWORD"])
    raise AssertionError("token " + stack_files.env["API_TOKEN"])
"""


def test_planted_secrets_appear_in_no_output_of_a_failing_deploy_and_rollback(
    pytester: pytest.Pytester,
    compose_stack: MakeStack,
    tmp_path: Path,
    bad_image: str,
) -> None:
    # The health endpoint answers with the token in its body; the stack's own
    # environment carries both values; a user's test prints and raises them.
    app = compose_stack(
        "app",
        env_file="APP_IMAGE_TAG=v1.0.0\n" + "".join(f"{k}={v}\n" for k, v in PLANTED.items()),
        web={"HEALTH_BODY": "${API_TOKEN}", "DB_PASSWORD": "${DB_PASSWORD}"},
    )
    app.up()
    state = tmp_path / "state"
    (pytester.path / "inventories").mkdir()
    inventory = inventory_yaml([app])
    inventory += f"state_dir: {state}\nup_timeout_s: 60\n"
    (pytester.path / "inventories" / "test.yml").write_text(inventory)
    pytester.makepyfile(test_smoke=SUITES["test_smoke"], test_leaky=LEAKY_TEST)

    result = pytester.runpytest_subprocess(
        "--env", "test", "--deploy", bad_image, "-p", "no:cacheprovider", "-rA",
        "--alluredir", "allure", "--junitxml", "junit.xml", "--dashboard", "dashboard.md",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["E * AssertionError: token ********", "password is ********", "*rolled back to v1.0.0*"]
    )
    produced = [p for p in pytester.path.rglob("*") if p.is_file() and ".env" not in p.name]
    produced += [p for p in state.rglob("*") if p.is_file()]
    produced += list((app.run_dir.parent / "backups").rglob("manifest.json"))
    assert len(produced) > 10
    texts = {str(p): p.read_bytes().decode(errors="replace") for p in produced}
    texts["terminal"] = result.stdout.str() + result.stderr.str()
    for secret in PLANTED.values():
        leaks = [name for name, text in texts.items() if secret in text]
        assert leaks == [], f"{secret} leaked into {leaks}"
    assert (
        "deploy.version=v4.0.0" in texts[str(pytester.path / "allure" / "environment.properties")]
    )
