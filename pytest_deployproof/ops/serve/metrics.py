"""``/metrics``: the runs' snapshot, in Prometheus's text format, through prometheus_client.

A custom collector (prometheus_client's pattern for exporters that mirror state held
elsewhere) rather than Gauges set after each run: a scrape renders one
:class:`~.runs.Snapshot`, so it never sees half of one run's series and half of the
next, and the series of a check that is no longer selected vanish with the run that
dropped it (the latency histograms excepted: they are cumulative, see below). Scrapes
never start a run: they read what the schedule produced. And they do not render it
each time: the body is rendered once per snapshot and health state and then served as
bytes (:class:`Exposition`), so a scraper every second, or a hundred, costs a socket
write, not a rendering of every check (~40 ms at 200 checks) and not a pytest run. A
scraper that accepts gzip (Prometheus does) gets the body compressed, also once per
rendering: ~1/20 of the bytes (600 KiB at 200 checks) to copy and send each time.

Per check, labels ``env, layer, stack, kind, check``:

* ``deployproof_check_verdict{...,verdict}``: 1 for its verdict in the last run, 0 for
  every other verdict (one series per value, so ``== 1`` selects and absent means
  "not selected", never "passed");
* ``deployproof_check_attempts`` / ``deployproof_check_elapsed_seconds``: the last
  probe's attempts and time (BYD-3), for checks that probe;
* ``deployproof_check_latency_seconds`` (histogram: ``_bucket{le}``, ``_sum``,
  ``_count``): every probe time since serve started, one observation per check per
  finished run, added when the run finishes (:mod:`.latency`), so however often
  Prometheus scrapes, ``rate()`` and ``histogram_quantile()`` see each run exactly
  once. Buckets 5 ms to 10 s; a check's series stays after it leaves the selection;
* ``deployproof_check_flaky``: 1 when the run history calls the check flaky.

Per stack, labels ``env, stack``: ``deployproof_stack_drift`` 1 when a drift check of
the stack failed in the last complete run, 0 when at least one ran and all that ran
passed (skipped ones, not applicable, do not count), and **absent** when none ran, one
could not decide (inconclusive, blocked) or the run did not judge: absent is not "in
sync" (alert on ``== 1``, and on ``absent()`` where drift checks are expected). Like
the verdicts, it is the last complete run's, however old: ``deployproof_healthy`` and
``deployproof_last_run_timestamp_seconds`` say whether that run is fresh.

Per environment: ``deployproof_healthy`` (what /healthz answers: 1 only for 200),
``deployproof_last_run_timestamp_seconds``, ``deployproof_last_run_duration_seconds``
and ``deployproof_runs_total{outcome}``.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ...verdicts import Verdict
from .latency import BUCKETS, Latencies
from .results import Health, RunResult, Status, drift_by_stack
from .runs import Runs, Snapshot

__all__ = ["CONTENT_TYPE", "VERDICTS", "Exposition"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
VERDICTS = tuple(verdict.value for verdict in Verdict)
_LABELS = ["env", "layer", "stack", "kind", "check"]
_BOUNDS = [repr(bound) for bound in BUCKETS] + ["+Inf"]  # le="0.005" ... "10.0", as Go writes


@dataclass(eq=False)
class _Rendered:
    snapshot: Snapshot
    healthy: bool
    plain: bytes
    gzipped: bytes | None = None  # made when first asked for


class Exposition:
    """The /metrics body of ``runs``: rendered once per snapshot and health state, then
    the same bytes for every scrape until either changes.

    The health state is part of the key because it changes with time alone (a run ages
    into stale) while the snapshot stays. Rendering holds a lock: the scrapes that arrive
    while a new snapshot is rendered wait for that one rendering and share it."""

    def __init__(self, env: str, runs: Runs, health: Callable[[RunResult | None], Health]) -> None:
        self.env, self.runs, self.health = env, runs, health
        self._lock = threading.Lock()
        self._rendered: _Rendered | None = None

    def body(self, *, gzipped: bool = False) -> bytes:
        """The text format (``gzipped``: compressed, for ``Content-Encoding: gzip``)."""
        snapshot = self.runs.snapshot  # taken once: everything below is of this run
        healthy = self.health(snapshot.latest).status is Status.HEALTHY
        with self._lock:
            rendered = self._rendered
            if rendered is None or rendered.snapshot is not snapshot or rendered.healthy != healthy:
                body = generate_latest(_SnapshotCollector(self.env, snapshot, healthy))
                rendered = self._rendered = _Rendered(snapshot, healthy, body)
            if not gzipped:
                return rendered.plain
            if rendered.gzipped is None:
                rendered.gzipped = gzip.compress(rendered.plain, compresslevel=6, mtime=0)
            return rendered.gzipped


class _SnapshotCollector(Collector):
    """Yields the metric families of one snapshot (a prometheus_client Collector)."""

    def __init__(self, env: str, snapshot: Snapshot, healthy: bool) -> None:
        self.env, self.snapshot, self.healthy = env, snapshot, healthy

    def collect(self) -> Iterator[Metric]:
        yield from _check_families(self.snapshot)
        yield _latency_family(self.snapshot.latencies)
        yield _drift_family(self.env, self.snapshot.latest)
        yield from _run_families(self.env, self.snapshot, self.healthy)


def _check_families(snapshot: Snapshot) -> Iterator[Metric]:
    latest, flaky = snapshot.latest, snapshot.flaky
    verdict = GaugeMetricFamily(
        "deployproof_check_verdict",
        "1 for the check's verdict in the last complete run, 0 for the others",
        labels=[*_LABELS, "verdict"],
    )
    attempts = GaugeMetricFamily(
        "deployproof_check_attempts",
        "Attempts the check's probe needed in the last run (BYD-3)",
        labels=_LABELS,
    )
    elapsed = GaugeMetricFamily(
        "deployproof_check_elapsed_seconds",
        "Time the check's probe took, all attempts, in the last run",
        labels=_LABELS,
    )
    flaky_gauge = GaugeMetricFamily(
        "deployproof_check_flaky",
        "1 when the check passed only after retries or flipped pass/fail in too many recent runs",
        labels=_LABELS,
    )
    for check in latest.checks if latest is not None else ():
        labels = [check.env, check.layer, check.stack, check.kind, check.check]
        for value in VERDICTS:
            verdict.add_metric([*labels, value], 1.0 if check.verdict == value else 0.0)
        if check.attempts is not None:
            attempts.add_metric(labels, float(check.attempts))
        if check.elapsed_s is not None:
            elapsed.add_metric(labels, check.elapsed_s)
        judged = flaky.get(check.id)
        flaky_gauge.add_metric(labels, 1.0 if judged is not None and judged.flaky else 0.0)
    yield from (verdict, attempts, elapsed, flaky_gauge)


def _latency_family(latencies: Latencies) -> Metric:
    histogram = HistogramMetricFamily(
        "deployproof_check_latency_seconds",
        "Time the check's probe took (all attempts), one observation per finished run",
        labels=_LABELS,
    )
    for labels, series in sorted(latencies.series.items()):
        buckets = list(zip(_BOUNDS, (float(count) for count in series.counts), strict=True))
        histogram.add_metric(list(labels), buckets, series.sum_s)
    return histogram


def _drift_family(env: str, latest: RunResult | None) -> Metric:
    drift = GaugeMetricFamily(
        "deployproof_stack_drift",
        "1 when a drift check of the stack failed in the last complete run, 0 when those "
        "that ran passed; absent when none ran or one could not decide",
        labels=["env", "stack"],
    )
    for stack, drifted in sorted(drift_by_stack(latest).items()):
        drift.add_metric([env, stack], 1.0 if drifted else 0.0)
    return drift


def _run_families(env: str, snapshot: Snapshot, healthy: bool) -> Iterator[Metric]:
    yield _gauge(
        "deployproof_healthy",
        "1 when /healthz answers 200: the last run is fresh and every check passed",
        env,
        1.0 if healthy else 0.0,
    )
    latest = snapshot.latest
    if latest is not None:
        yield _gauge(
            "deployproof_last_run_timestamp_seconds",
            "When the last complete run finished (Unix time)",
            env,
            latest.finished,
        )
        yield _gauge(
            "deployproof_last_run_duration_seconds",
            "How long the last complete run took",
            env,
            latest.duration_s,
        )
    total = CounterMetricFamily(
        "deployproof_runs",
        "Runs of the checks by outcome (healthy, failed, inconclusive, error, abandoned)",
        labels=["env", "outcome"],
    )
    for outcome, count in sorted(snapshot.outcomes.items()):
        total.add_metric([env, outcome], float(count))
    yield total


def _gauge(name: str, documentation: str, env: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["env"])
    gauge.add_metric([env], value)
    return gauge
