"""Report hooks (REP-1..3): Allure labels and attachments, JUnit properties, the dashboard,
GitHub's step summary and annotations, and masking secrets out of all of them.

Registered by the plugin when an environment is selected. Who does what
under xdist follows pytest's own junitxml: workers label, attach and mask
their reports; the controller, which receives every report, gathers the
outcomes and writes the run-level files once, at session end, after the
deploys have finished and every other plugin has written its files.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..secrets import mask_files
from ..stash import RUN_KEY
from ..targets import target_of
from ..verdicts import kind_of
from . import allure_results, dashboard
from .run_history import Flaky, FlakyRule, History, memory_key

if TYPE_CHECKING:
    from ..run import Run

__all__ = ["Reporter"]


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class Reporter:
    """The report hooks of one session (a plugin object, as pytest's LogXML is)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.outcomes = dashboard.Outcomes()
        self.annotations: list[str] = []  # GitHub Actions ::error lines, at the end
        self.memory_problem: str | None = None
        rule = str(config.getini("deployproof_flaky"))
        try:
            self.flaky_rule = FlakyRule.parse(rule)
        except ValueError as exc:
            raise pytest.UsageError(f"deployproof_flaky = {rule}: {exc}") from None

    @property
    def run(self) -> Run:
        return self.config.stash[RUN_KEY]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # One tuple per distinct (name, value), shared by the items: 5,000 stacks make
        # 25,000 items, and a tuple each was ~7 MiB (benchmarks/scale.py).
        shared: dict[tuple[str, str], tuple[str, str]] = {}
        for item in items:
            target = target_of(item)
            if target is None:
                continue
            # JUnit properties (REP-2), and what the controller's dashboard groups by.
            pairs = [
                ("environment", target.environment),
                ("layer", target.layer or "-"),
                ("stack", target.stack or "-"),
                ("host", target.host or "-"),
                ("check", kind_of(item) or "other"),
            ]
            item.user_properties += [shared.setdefault(pair, pair) for pair in pairs]
            item.user_properties.append(("target", target.id))
        allure = allure_results.alluredir(self.config) is not None
        if allure:
            allure_results.add_labels(items, self.run)
        self._mark_flaky(items, allure=allure)

    def _mark_flaky(self, items: list[pytest.Item], *, allure: bool) -> None:
        """Checks the memory of past runs (``deployproof serve``'s, in the state dir) calls
        flaky carry it: a JUnit property, which the dashboard and the terminal summary read,
        and an Allure tag. A flaky check still counts as what it is in this run."""
        flaky = self._remembered_flaky() if items else {}
        for item in items if flaky else ():
            key = memory_key(item)
            judged = flaky.get(key) if key is not None else None
            if judged is None:
                continue
            seen = f"{judged.events} of the last {judged.runs} runs"
            detail = f"retried {judged.retried}, flipped {judged.flips}"
            name = getattr(item, "originalname", item.name)
            item.user_properties.append(("flaky", f"{name}: {seen} ({detail})"))
            if allure:
                item.add_marker(pytest.mark.allure_label("flaky", label_type="tag"))

    def _remembered_flaky(self) -> dict[tuple[str, str, str], Flaky]:
        run = self.run
        try:
            memory = History(run.inventory.state.serve_runs)
            return memory.flaky_checks(run.inventory.environment, self.flaky_rule)
        except (OSError, ValueError, sqlite3.Error) as exc:  # never fails the run itself
            self.memory_problem = f"the memory of past runs was not read: {exc}"
            return {}

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        # Masking the report itself is the outermost wrapper's (hooks.py); attachments
        # are masked as they are made.
        report = yield
        if report.failed and allure_results.alluredir(self.config) is not None:
            allure_results.attach_failure(item, self.run, str(report.longrepr))
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        """A parameter whose text holds a secret (a URL with a password) is shown masked."""
        if allure_results.alluredir(self.config) is None:
            return
        callspec = getattr(item, "callspec", None)
        for name, value in (callspec.params if callspec else {}).items():
            text = repr(value)
            if self.run.observations.masker(text) != text:
                allure_results.mask_parameter(name, text)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not _is_worker(self.config):  # the controller sees every worker's reports here
            self.outcomes.add(report)
            if report.when == "call" and report.passed:
                self.run.ledger.checks_passed += 1  # the run showed something (BYD-1)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist: a worker's deploys, for the controller's summary and dashboard."""
        output = getattr(node, "workeroutput", None) or {}
        self.run.ledger.merge_wire(output)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        run = self.run
        if _is_worker(self.config):
            output: dict[str, Any] = self.config.workeroutput  # type: ignore[attr-defined]
            output.update(run.ledger.to_wire())
            return
        masker = run.secrets()
        results = allure_results.alluredir(self.config)
        if results is not None:
            allure_results.write_metadata(results, run, run.settings.deploy.value)
            mask_files(sorted(p for p in results.iterdir() if p.is_file()), masker)
        xml = getattr(self.config.option, "xmlpath", None)
        if xml and Path(xml).is_file():
            mask_files([Path(xml)], masker)
        stages = self.outcomes.stages() + dashboard.deploy_stages(run.ledger.records)
        sha = allure_results.commit_of(run) or "0000000"
        markdown = masker(dashboard.render(sha, stages, flaky=self.outcomes.flaky()))
        target = self.config.getoption("deployproof_dashboard", None)
        if target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text(markdown)
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a", encoding="utf-8") as file:
                file.write(markdown + "\n")
        if os.environ.get("GITHUB_ACTIONS") == "true":
            failures = self.outcomes.failures()
            self.annotations = [masker(line) for line in dashboard.error_annotations(failures)]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        # Workflow commands must start a line: written here, by the terminal reporter.
        for line in self.annotations:
            terminalreporter.write_line(line)
        if _is_worker(self.config):
            return
        if self.memory_problem is None and getattr(self.config.option, "numprocesses", None):
            self._remembered_flaky()  # under xdist the workers read it: say a problem here too
        flaky = self.outcomes.flaky()
        if flaky:
            terminalreporter.section("deployproof: flaky checks (memory of past runs)")
            for line in flaky:
                terminalreporter.write_line(line)
        if self.memory_problem:
            terminalreporter.write_line(f"deployproof: {self.memory_problem}", yellow=True)
