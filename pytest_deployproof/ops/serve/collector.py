"""The pytest plugin a serve run loads (``-p``): each check's verdict, as a JSON line.

``deployproof serve`` runs the checks in a pytest *subprocess* (see :mod:`.runs` for
why). This plugin is how that process hands its verdicts back: not by parsing the
terminal, and not from JUnit (written only at the very end, so a run killed at its
deadline would leave nothing), but one line per check as its teardown report arrives,
with the verdict the run's own hooks decided (:func:`~pytest_deployproof.verdicts.verdict_of`),
the check's target and kind, the attempts and time its probe recorded (BYD-3), and the
message already masked by this run's masker (REP-3). The first line lists what was
collected (so checks that never reported are known); the last says how the session
ended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import pytest

from ...report.run_history import check_name
from ...stash import RUN_KEY
from ...targets import target_of
from ...verdicts import Verdict, kind_of, verdict_of

__all__ = ["RESULTS_OPTION", "describe", "message_of"]

RESULTS_OPTION = "--deployproof-serve-results"
MESSAGE_LIMIT = 600  # characters of a failure message kept: the gist, not a traceback


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        RESULTS_OPTION,
        dest="deployproof_serve_results",
        default=None,
        help="(deployproof serve) write each check's verdict to this file as JSON lines",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("deployproof_serve_results")
    if path and not hasattr(config, "workerinput"):  # the controller sees every report
        config.pluginmanager.register(_Writer(config, Path(path)), "deployproof-serve-results")


def describe(item: pytest.Item) -> dict[str, Any]:
    """What a check is, in the names /healthz and /metrics use: its node id (the key),
    environment, layer, stack, check kind and a short name (``service_running/web``)."""
    target = target_of(item)
    return {
        "id": item.nodeid,
        "env": None if target is None else target.environment,
        "layer": None if target is None else target.layer,
        "stack": None if target is None else target.stack,
        "host": None if target is None else target.host,
        "kind": kind_of(item) or "other",
        "check": check_name(item),
    }


def message_of(report: pytest.TestReport) -> str:
    """A report's one-paragraph reason: a skip's reason, a failure's crash line (the
    message ``pytest.fail`` or an INCONCLUSIVE error gave), never a whole traceback."""
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        text = str(longrepr[2])
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = str(getattr(crash, "message", None) or longrepr)
    for prefix in ("Skipped: ", "Failed: "):  # pytest's exception names, not the message
        text = text.removeprefix(prefix)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


class _Writer:
    """Writes the results file of one serve run (flushed per line)."""

    def __init__(self, config: pytest.Config, path: Path) -> None:
        self.config = config
        self.file: IO[str] = path.open("w", encoding="utf-8")
        self.checks: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, str] = {}
        self.durations: dict[str, float] = {}

    def _write(self, record: dict[str, Any]) -> None:
        run = self.config.stash.get(RUN_KEY, None)
        line = json.dumps(record)
        if run is not None:
            line = run.secrets().escaped()(line)  # as JSON writes them (mask_files does too)
        self.file.write(line + "\n")
        self.file.flush()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.checks = {item.nodeid: describe(item) for item in session.items}
        self._write({"collected": list(self.checks.values())})

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.checks:
            return
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if (report.failed or report.skipped) and report.nodeid not in self.messages:
            self.messages[report.nodeid] = message_of(report)  # the first bad phase says why
        if report.when != "teardown":
            return
        properties = dict(report.user_properties)
        verdict: Verdict = verdict_of(report)  # the test's worst phase (hooks.py)
        self._write(
            {
                "check": self.checks[report.nodeid],
                "verdict": verdict.value,
                "message": self.messages.pop(report.nodeid, ""),
                "attempts": properties.get("deployproof_attempts"),
                "elapsed_s": properties.get("deployproof_elapsed_s"),
                "duration_s": round(self.durations.pop(report.nodeid, 0.0), 3),
            }
        )

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self._write({"exitstatus": int(exitstatus)})

    def pytest_unconfigure(self) -> None:
        self.file.close()
