"""When serve runs the checks, and how: one pytest subprocess at a time, single-flight.

**A subprocess per run**, not ``pytest.main`` in this process: the checks import user
code (conftest files, E2E suites) and pytest keeps module, plugin and fixture state per
process, so a second in-process run would see the first's imports and caches; a check
that hangs (a blackholed host) could not be stopped from inside; and a crash in a check
would take the server with it. A subprocess gets the same markers, selection, fixtures
and reports as ``pytest --env X -m EXPR`` (it *is* that command), hands its verdicts
back through :mod:`.collector`, and is killed, with everything it started, at its
deadline or when serve stops. It runs in its own session (process group), so Ctrl-C at
serve's terminal does not reach it unasked, and killing the group leaves no orphan
(the prober process of a large run included).

**Single-flight**: one worker thread performs every run, so two runs never overlap.
Runs start every ``interval_s`` (measured start to start; a run longer than that is
followed at once by the next) and on demand: :meth:`Runs.request` joins the run already
asked for and not yet started, and only otherwise asks for a new one. Never the run in
flight: it started before the request, so its results may predate what the caller asks
about (a deploy it just made); the next run starts as soon as that one ends. However
many requests arrive together, they share one run.

**One snapshot**: what the runs have produced (the latest result, flakiness, counts by
outcome, the latency histograms) is one immutable :class:`Snapshot`, replaced whole when
a run ends. A reader (/healthz, a scrape) takes it once and sees one run's state, never
the verdicts of one run beside the counts of the next; readers take no lock, and the
worker, the only writer, never waits for them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ...report.run_history import Flaky, FlakyRule, History
from ...secrets import Masker
from .collector import RESULTS_OPTION
from .latency import Latencies
from .results import RunResult, read_results

__all__ = ["OUTCOMES", "Pending", "RunCommand", "Runs", "Snapshot"]

log = logging.getLogger(__name__)

OUTCOMES = ("healthy", "failed", "inconclusive", "error", "abandoned")
INTERRUPT_GRACE_S = 5.0  # after SIGINT, how long pytest may take to tear down before SIGKILL
OUTPUT_TAIL = 8192  # bytes of pytest's output kept to explain a run that did not judge


@dataclass(frozen=True)
class RunCommand:
    """The pytest command line of a run: ``pytest --env X -m EXPR --stack ...``.

    The ``--dp-`` spellings always exist (settings.py): a project whose conftest owns
    ``--env`` still gets deployproof's. Run from ``cwd``, so the project's own suites,
    conftest files and ini apply, exactly as when the operator runs pytest there."""

    env: str
    inventory: Path
    marker: str | None = None
    stacks: tuple[str, ...] = ()
    cwd: Path = Path()

    def argv(self, results: Path) -> list[str]:
        argv = [sys.executable, "-m", "pytest", "--dp-env", self.env]
        argv += ["--dp-inventory", str(self.inventory)]
        if self.marker:
            argv += ["-m", self.marker]
        if self.stacks:
            argv += ["--dp-stack", ",".join(self.stacks)]
        argv += ["-p", "pytest_deployproof.ops.serve.collector", RESULTS_OPTION, str(results)]
        return [*argv, "-p", "no:cacheprovider", "-q", "-rN", "--color=no"]


@dataclass(frozen=True, eq=False)  # compared by identity: a new run, a new snapshot
class Snapshot:
    """What serve knows after its last finished run, as one value (see the module).

    The mappings are never changed after the snapshot is made; the next run makes a
    new snapshot."""

    latest: RunResult | None = None
    flaky: Mapping[str, Flaky] = field(default_factory=dict)
    outcomes: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    latencies: Latencies = field(default_factory=Latencies)

    def counted(self, outcome: str) -> dict[str, int]:
        """The counts by outcome with one more ``outcome``."""
        return {**self.outcomes, outcome: self.outcomes.get(outcome, 0) + 1}


class Pending:
    """A run asked for: everyone who asked waits on the same one."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: RunResult | None = None  # None: abandoned (serve stopped)

    def wait(self, timeout_s: float | None) -> RunResult | None:
        self.done.wait(timeout_s)
        return self.result


class Runs:
    """The runs of one ``serve``: the latest result, counts by outcome, flakiness."""

    def __init__(
        self,
        command: RunCommand,
        *,
        interval_s: float,
        timeout_s: float,
        history: History | None,
        flaky_rule: FlakyRule,
        masker: Masker,
        on_finished: Callable[[RunResult], None] | None = None,
    ) -> None:
        self.command, self.interval_s, self.timeout_s = command, interval_s, timeout_s
        self.history, self.flaky_rule, self.masker = history, flaky_rule, masker
        self.on_finished = on_finished
        self.snapshot = Snapshot()  # replaced whole, never changed (see the module)
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._next: Pending | None = None
        self._running: Pending | None = None
        self._process: subprocess.Popen[bytes] | None = None
        # What can fail (the state directory) first: nothing is made before it succeeds.
        self._next_id = history.next_id() if history is not None else 1
        self._workdir = Path(tempfile.mkdtemp(prefix="deployproof-serve-"))
        self._worker = threading.Thread(target=self._loop, name="deployproof-serve-runs")

    # -- asking ------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()

    @property
    def latest(self) -> RunResult | None:
        return self.snapshot.latest

    @property
    def running(self) -> bool:
        return self._running is not None

    def request(self) -> Pending:
        """A run that starts after this call: the one already asked for and not yet started,
        else a new one (queued behind the run in flight, if any). N concurrent requests cause
        one run; none of them gets a run begun before it asked."""
        with self._cond:
            if self._stopping.is_set():
                abandoned = Pending()  # serve is stopping: no run will start
                abandoned.done.set()
                return abandoned
            if self._next is None:
                self._next = Pending()
                self._cond.notify_all()
            return self._next

    def stop(self) -> None:
        """Stop scheduling and abandon the run in flight: its pytest gets SIGINT (a clean
        teardown), then SIGKILL after a grace period; waits until the worker has ended."""
        with self._cond:
            self._stopping.set()
            self._cond.notify_all()
        if self._worker.is_alive():
            self._worker.join()
        shutil.rmtree(self._workdir, ignore_errors=True)

    # -- the worker ----------------------------------------------------------

    def _loop(self) -> None:
        due = time.monotonic()  # the first run at once: nothing is known before it
        while True:
            with self._cond:
                while not self._stopping.is_set() and self._next is None:
                    wait = due - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopping.is_set():
                    break
                pending = self._next or Pending()
                self._next, self._running = None, pending
            begun = time.monotonic()
            result = self._run_once()
            due = begun + self.interval_s
            if result is not None:
                self._record(result)
            else:
                self._publish(replace(self.snapshot, outcomes=self.snapshot.counted("abandoned")))
            with self._cond:
                self._running = None
            pending.result = result
            pending.done.set()
        with self._cond:
            for left in (self._next, self._running):
                if left is not None:
                    left.done.set()  # those waiting learn it was abandoned (result None)

    def _publish(self, snapshot: Snapshot) -> None:
        with self._cond:  # one assignment is atomic already; the lock says who writes
            self.snapshot = snapshot

    def _record(self, result: RunResult) -> None:
        """Keep ``result`` (history, flakiness) and publish the snapshot that includes it:
        its latencies are added here, once per run, not by whoever reads them."""
        before = self.snapshot
        flaky = before.flaky
        if self.history is not None:
            try:
                self.history.append(result)
                flaky = self.history.flaky(result.env, self.flaky_rule)
            except Exception as exc:  # a full disk must not stop the checks from being served
                log.warning("serve: could not record run %d in %s: %s", result.id,
                            self.history.path, exc)  # fmt: skip
        self._publish(
            Snapshot(result, flaky, before.counted(result.outcome), before.latencies.plus(result))
        )
        log.info(
            "serve: run %d: %s in %.1f s (%d checks)",
            result.id, result.outcome, result.duration_s, len(result.checks),
        )  # fmt: skip
        if self.on_finished is not None:
            self.on_finished(result)

    def _run_once(self) -> RunResult | None:
        """One pytest run; ``None`` when serve stopped it (abandoned, not a verdict)."""
        run_id, self._next_id = self._next_id, self._next_id + 1
        results = self._workdir / f"run-{run_id}.jsonl"
        output = self._workdir / f"run-{run_id}.out"
        started, deadline = time.time(), time.monotonic() + self.timeout_s
        with output.open("wb") as sink:
            process = subprocess.Popen(
                self.command.argv(results),
                cwd=self.command.cwd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._process = process
            code: int | None = None
            why = ""
            try:
                while code is None:
                    try:
                        code = process.wait(timeout=0.2)
                    except subprocess.TimeoutExpired:
                        if self._stopping.is_set():
                            return None
                        if time.monotonic() > deadline:
                            why = "deadline"
                            break
            finally:
                _end_group(process)
                self._process = None
        text = _tail(output)
        result = read_results(
            results,
            run_id=run_id,
            env=self.command.env,
            started=started,
            finished=time.time(),
            exit_code=code,
            output=f"stopped at its deadline of {self.timeout_s:g} s" if why else text,
            masker=self.masker,
        )
        for path in (results, output):
            path.unlink(missing_ok=True)
        return result


def _tail(path: Path) -> str:
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - OUTPUT_TAIL))
        return file.read().decode("utf-8", errors="replace")


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """End ``process`` and whatever it started: SIGINT first (pytest tears its session
    down, stopping the prober), SIGKILL for what remains after the grace period. The
    group is its own session, so nothing else is in it."""
    group = process.pid
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=INTERRUPT_GRACE_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)  # children that outlived pytest, if any
    process.wait()
