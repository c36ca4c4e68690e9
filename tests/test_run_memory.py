"""The memory of past runs as a plain pytest run reads it (report/run_history.py).

Every run of an environment looks in its state dir for the memory ``deployproof serve``
keeps, to name flaky checks. That read must never change the file, never hold the run
for long, and never fail the run: an empty, corrupt or locked memory is said in one line
and the checks are judged as they are.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from pytest_deployproof.ops.serve.results import CheckResult, RunResult
from pytest_deployproof.report.run_history import FlakyRule, History

CHECK = "def test_stack_named(stack):\n    assert stack.name\n"


def _project(pytester: pytest.Pytester) -> Path:
    state = pytester.path / "state"
    (pytester.path / "inventories").mkdir()
    (pytester.path / "inventories" / "qa.yml").write_text(
        "hosts: {here: {spec: 'local://'}}\n"
        "layers: {platform: {order: 2, engine: compose}}\n"
        f"state_dir: {state}\n"
        "stacks:\n"
        f"  app: {{layer: platform, host: here, run_dir: {pytester.path},"
        " services: {web: {}}}\n"
    )
    pytester.makepyfile(test_checks=CHECK)
    state.mkdir()
    return state / "serve-runs.sqlite3"


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("--env", "qa", "-p", "no:cacheprovider", *args)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", None),  # an empty file: nothing remembered, nothing to say
        (b"this is not a database" * 100, "the memory of past runs was not read: "),
    ],
    ids=["empty", "corrupt"],
)
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_a_memory_that_cannot_be_read_never_fails_the_run_nor_changes(
    pytester: pytest.Pytester, content: bytes, said: str | None, workers: list[str]
) -> None:
    memory = _project(pytester)
    memory.write_bytes(content)

    result = _run(pytester, *workers)

    result.assert_outcomes(passed=1)
    output = result.stdout.str()
    if said is None:
        assert "memory of past runs" not in output
    else:
        assert f"deployproof: {said}" in output
    assert memory.read_bytes() == content  # read-only: no schema, no journal written
    assert sorted(p.name for p in memory.parent.iterdir()) == ["serve-runs.sqlite3"]


def test_reading_the_memory_writes_nothing_and_waits_briefly_for_a_writer(
    tmp_path: Path,
) -> None:
    memory = tmp_path / "serve-runs.sqlite3"
    with sqlite3.connect(memory) as db:  # a memory in rollback-journal mode, as another tool
        db.executescript(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY, env TEXT, started REAL, finished REAL,"
            " outcome TEXT, error TEXT);"
            "CREATE TABLE checks (run INTEGER, id TEXT, stack TEXT, layer TEXT, kind TEXT,"
            " name TEXT, verdict TEXT, attempts INTEGER, elapsed_s REAL);"
        )
    before = memory.read_bytes()
    assert History(memory).flaky_checks("qa", FlakyRule()) == {}
    assert memory.read_bytes() == before  # journal mode not converted

    holder = sqlite3.connect(memory, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            History(memory).flaky_checks("qa", FlakyRule())
        assert time.monotonic() - started < 3  # not the writers' 10 s
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _remember(memory: Path, verdicts: list[str]) -> None:
    """Runs of the one check, oldest first, as serve would have recorded them."""
    history = History(memory)
    for index, verdict in enumerate(verdicts, start=1):
        check = CheckResult(
            id="test_checks.py::test_stack_named[qa/platform/app]", env="qa", layer="platform",
            stack="app", kind="other", check="stack_named/here", verdict=verdict,
        )  # fmt: skip
        history.append(RunResult(index, "qa", time.time() - 60, time.time(), (check,)))


@pytest.mark.parametrize(("rule", "named"), [(None, False), ("2/4", True)])
def test_the_flaky_rule_of_a_run_is_the_ini_key(
    pytester: pytest.Pytester, rule: str | None, named: bool
) -> None:
    """Two flips in the last four runs: not flaky by the default 3/10, flaky by 2/4."""
    memory = _project(pytester)
    _remember(memory, ["passed", "passed", "failed", "passed"])
    if rule:
        pytester.makeini(f"[pytest]\ndeployproof_flaky = {rule}\n")

    result = _run(pytester)

    result.assert_outcomes(passed=1)
    line = "qa/platform/app: test_stack_named: 2 of the last 4 runs (retried 0, flipped 2)"
    assert (line in result.stdout.str().splitlines()) is named, result.stdout.str()


def test_a_flaky_rule_that_is_not_n_of_m_is_a_usage_error(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.makeini("[pytest]\ndeployproof_flaky = 5/3\n")
    result = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "deployproof_flaky = 5/3: '5/3': needs 1 <= N <= M" in result.stderr.str()
