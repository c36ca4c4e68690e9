"""The deploy and drift workflows that `deployproof init` writes publish an Allure report that
carries the trend of earlier runs (issue #23): a report per run without its history shows no
trend, and a flaky check or a slowly degrading environment stays invisible.

The workflows are rendered by `deployproof init`, as a user gets them. Their structure is read
from the YAML; their report script is not re-typed here but taken from the rendered YAML and run
with bash, twice, on the results of two real pytest runs, the history kept between the two as the
workflow keeps it (actions/cache for drift, an artifact for deploy), and the trend read back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.need import need
from tests.support.repo import REPO
from tests.test_init import deployproof

WORKFLOWS = {
    "deploy": ".github/workflows/deployproof-deploy.yml",
    "drift": ".github/workflows/deployproof-drift.yml",
}
GENERATE = "Allure report, carrying the history"  # the name of the step that makes the report
ACTION = re.compile(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}")


@pytest.fixture(scope="module")
def workflows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each workflow as `deployproof init --env qa` writes it into a repository."""
    repo = tmp_path_factory.mktemp("repo")
    done = deployproof("init", "--env", "qa", cwd=repo)
    assert done.returncode == 0, done.stderr
    return {kind: yaml.safe_load((repo / path).read_text()) for kind, path in WORKFLOWS.items()}


def step(job: dict[str, Any], action: str, **with_: str) -> dict[str, Any]:
    """The one step of ``job`` using ``action`` (pinned), whose ``with`` holds ``with_``."""
    found = [
        each
        for each in job["steps"]
        if each.get("uses", "").startswith(f"{action}@")
        and all(each.get("with", {}).get(key) == value for key, value in with_.items())
    ]
    assert len(found) == 1, (action, with_, job["steps"])
    one: dict[str, Any] = found[0]
    assert ACTION.fullmatch(one["uses"]), one["uses"]
    return one


def generate_script(workflow: dict[str, Any]) -> str:
    """The shell of the report job's step that makes the report, as the runner gets it."""
    steps = workflow["jobs"]["report"]["steps"]
    script: str = next(each["run"] for each in steps if each.get("name") == GENERATE)
    return script


@pytest.mark.parametrize("kind", list(WORKFLOWS))
def test_the_report_job_runs_after_the_checks_whatever_they_found(
    workflows: dict[str, dict[str, Any]], kind: str
) -> None:
    """A failed deploy or a drift is exactly the run whose report matters: the report job
    needs the checks' job but runs if always(), on GitHub's runner (Java and Node are there,
    a self-hosted one may lack them), from the results artifact the checks' job uploads."""
    jobs = workflows[kind]["jobs"]
    assert list(jobs) == [kind, "report"]
    checks, report = jobs[kind], jobs["report"]
    uploaded = step(checks, "actions/upload-artifact", name="allure-results", path="allure-results")
    assert uploaded["if"] == "always()"
    # not always(): a cancelled run has no report to make
    assert (report["needs"], report["if"], report["runs-on"]) == (
        kind,
        "${{ !cancelled() }}",
        "ubuntu-latest",
    )
    download = step(report, "actions/download-artifact", name="allure-results")
    # no results (the checks' job stopped before pytest): no report, no history, no 2nd failure
    assert (download["id"], download["continue-on-error"]) == ("results", True)
    assert report["steps"][0] is download
    assert all(each["if"] == "steps.results.outcome == 'success'" for each in report["steps"][1:])
    for name in ("allure-report", "allure-history")[: 2 if kind == "deploy" else 1]:
        upload = step(report, "actions/upload-artifact", name=name)
        assert upload["with"]["overwrite"] is True  # a re-run of the job replaces, never 409s
    # the Allure CLI pinned like everything else here: it writes what the next run trusts
    generate = re.search(
        r"\$\{ALLURE:-npx --yes allure-commandline@(\d+\.\d+\.\d+)\} generate allure-results "
        r"-o allure-report",
        generate_script(workflows[kind]),
    )
    assert generate, generate_script(workflows[kind])  # ALLURE: a local CLI, for the test
    # one script and one history folder: the trend test below runs it for both workflows
    assert generate_script(workflows[kind]) == generate_script(workflows["drift"])
    assert report["env"] == {"HISTORY": "allure-history"}


def test_drift_carries_the_history_in_a_cache_restored_by_prefix(
    workflows: dict[str, dict[str, Any]],
) -> None:
    """A cache entry is immutable: each run saves its own key (run id and attempt) and restores
    the newest earlier entry by the prefix, per workflow and environment. Scheduled runs are all
    on the default branch, whose entries every run may restore."""
    report = workflows["drift"]["jobs"]["report"]
    cache = step(report, "actions/cache")["with"]
    assert cache["path"] == "${{ env.HISTORY }}"
    assert cache["restore-keys"] == "allure-history-drift-qa-"
    assert cache["key"] == (
        "allure-history-drift-qa-${{ github.run_id }}-${{ github.run_attempt }}"
    )
    assert "permissions" not in report  # the workflow's contents: read; the cache needs no more


def test_deploy_carries_the_history_in_an_artifact_of_the_earlier_runs(
    workflows: dict[str, dict[str, Any]],
) -> None:
    """Deploys run on tags, and a cache entry is scoped to its ref: the run for v1.5.0 cannot
    restore what the run for v1.4.0 cached. The history is an artifact instead, downloaded from
    the latest earlier run that has one; reading other runs takes actions: read, nothing more."""
    report = workflows["deploy"]["jobs"]["report"]
    assert report["permissions"] == {"contents": "read", "actions": "read"}
    kept = step(report, "actions/upload-artifact", name="allure-history", path="${{ env.HISTORY }}")
    assert kept["with"]["retention-days"] == 90  # not the repository's default, said here
    fetch = next(each for each in report["steps"] if "gh run download" in each.get("run", ""))
    assert fetch["continue-on-error"] is True  # no history restarts the trend, keeps the report
    assert "-w deployproof-deploy.yml -s completed" in fetch["run"]
    assert '-n allure-history -D "$HISTORY"' in fetch["run"]
    steps = [each.get("name") for each in report["steps"]]
    assert steps.index(fetch["name"]) < steps.index(GENERATE)


def allure_cli() -> str:
    found = shutil.which("allure")
    local = REPO / ".tools/allure/node_modules/.bin/allure"
    if found is None and local.exists():
        found = str(local)
    if found is None:
        need("allure", "the Allure command line is not installed (scripts/setup.sh installs it)")
    assert found is not None
    return found


def results(pytester: pytest.Pytester, into: Path, **tests: str) -> None:
    """Real Allure results: a pytest run (allure-pytest, the plugin loaded) of ``tests``."""
    source = "\n".join(f"def {name}():\n    {body}\n" for name, body in tests.items())
    pytester.makepyfile(test_it=source)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--alluredir", str(into), timeout=60)
    assert list(into.glob("*-result.json")), f"no Allure result in {into}"


def run_report(script: str, workspace: Path, history: str, allure: str) -> list[dict[str, Any]]:
    """The workflow's report step as the runner runs it (bash, in the workspace, the job's
    HISTORY), with the local Allure command line for npx; returns the report's trend."""
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=workspace,
        env={**os.environ, "HISTORY": history, "ALLURE": allure},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    trend: list[dict[str, Any]] = json.loads(
        (workspace / "allure-report/history/history-trend.json").read_text()
    )
    kept = json.loads((workspace / history / "history-trend.json").read_text())
    assert kept == trend  # what the next run gets is this report's history
    return trend


def test_the_second_report_shows_the_trend_of_the_first(
    workflows: dict[str, dict[str, Any]], pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """Two runs, each in a fresh workspace as on a runner; only the history folder goes from
    the first to the second (what the cache or the artifact carries). The second report's trend
    has both runs, newest first: one passed and one failed, then one passed. (Both workflows
    run this same script with the same HISTORY: the structure test above says so.)"""
    allure = allure_cli()
    script = generate_script(workflows["drift"])
    history = workflows["drift"]["jobs"]["report"]["env"]["HISTORY"]
    first, second = tmp_path / "first", tmp_path / "second"
    results(pytester, first / "allure-results", test_up="assert True")
    results(pytester, second / "allure-results", test_up="assert True", test_down="assert False")

    assert not (first / history).exists()  # the very first run: nothing restored
    trend = run_report(script, first, history, allure)
    assert [entry["data"]["total"] for entry in trend] == [1]

    shutil.copytree(first / history, second / history)  # the cache's or artifact's work
    trend = run_report(script, second, history, allure)
    assert [(entry["data"]["passed"], entry["data"]["failed"]) for entry in trend] == [
        (1, 1),
        (1, 0),
    ]
