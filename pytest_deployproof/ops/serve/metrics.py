"""``/metrics``: the latest run, in Prometheus's text format, through prometheus_client.

A custom collector (prometheus_client's pattern for exporters that mirror state held
elsewhere) rather than Gauges set after each run: a scrape reads one snapshot of the
latest run, so it never sees half of one run's series and half of the next, and the
series of a check that is no longer selected vanish with the run that dropped it.
Scrapes never start a run: they read what the schedule produced (a scraper every
second costs a rendering, not a pytest run).

Per check, labels ``env, layer, stack, kind, check``:

* ``deployproof_check_verdict{...,verdict}``: 1 for its verdict in the last run, 0 for
  every other verdict (one series per value, so ``== 1`` selects and absent means
  "not selected", never "passed");
* ``deployproof_check_attempts`` / ``deployproof_check_elapsed_seconds``: the last
  probe's attempts and time (BYD-3), for checks that probe;
* ``deployproof_check_flaky``: 1 when the run history calls the check flaky.

Per environment: ``deployproof_healthy`` (what /healthz answers: 1 only for 200),
``deployproof_last_run_timestamp_seconds``, ``deployproof_last_run_duration_seconds``
and ``deployproof_runs_total{outcome}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ...verdicts import Verdict
from .results import Health, Status
from .runs import Runs

__all__ = ["CONTENT_TYPE", "VERDICTS", "registry_for", "render"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
VERDICTS = tuple(verdict.value for verdict in Verdict)
_LABELS = ["env", "layer", "stack", "kind", "check"]


class _ServeCollector:
    """Yields the metric families of ``runs``' latest run (prometheus_client Collector)."""

    def __init__(self, env: str, runs: Runs, health: Callable[[], Health]) -> None:
        self.env, self.runs, self.health = env, runs, health

    def collect(self) -> Iterator[Metric]:
        runs = self.runs
        latest, flaky, outcomes = runs.latest, dict(runs.flaky), dict(runs.outcomes)
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
            "1 when the check passed only after retries or flipped pass/fail in too many "
            "recent runs",
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

        healthy = GaugeMetricFamily(
            "deployproof_healthy",
            "1 when /healthz answers 200: the last run is fresh and every check passed",
            labels=["env"],
        )
        healthy.add_metric([self.env], 1.0 if self.health().status is Status.HEALTHY else 0.0)
        yield healthy
        if latest is not None:
            yield _gauge(
                "deployproof_last_run_timestamp_seconds",
                "When the last complete run finished (Unix time)",
                self.env,
                latest.finished,
            )
            yield _gauge(
                "deployproof_last_run_duration_seconds",
                "How long the last complete run took",
                self.env,
                latest.duration_s,
            )
        total = CounterMetricFamily(
            "deployproof_runs",
            "Runs of the checks by outcome (healthy, failed, inconclusive, error, abandoned)",
            labels=["env", "outcome"],
        )
        for outcome, count in sorted(outcomes.items()):
            total.add_metric([self.env, outcome], float(count))
        yield total


def _gauge(name: str, documentation: str, env: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["env"])
    gauge.add_metric([env], value)
    return gauge


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def registry_for(env: str, runs: Runs, health: Callable[[], Health]) -> CollectorRegistry:
    """A registry of its own (not the process-global one: no process/GC series of the
    server mixed in, and two servers in one test process do not collide)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ServeCollector(env, runs, health))
    return registry
