"""The probe latency histograms of ``/metrics``, accumulated run by run, as values.

A Prometheus histogram is cumulative over the exporter's lifetime: ``rate()`` and
``histogram_quantile()`` work on how its counts grow. So each finished run adds its
checks' probe times once, when it finishes (:meth:`Latencies.plus`), never on a scrape:
however often scrapes come, no run is missed and none is counted twice. The value is
immutable and replaced whole, with the run it includes (:class:`.runs.Snapshot`), so a
scrape sees the histograms and the verdicts of the same run.

Series are keyed by their labels (env, layer, stack, kind, check), as Prometheus keys
them, and stay once seen: a check dropped from the selection keeps its counts, as a
prometheus_client ``Histogram`` child would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .results import RunResult

__all__ = ["BUCKETS", "Latencies", "Series"]

# Upper bounds in seconds, for HTTP probes: a loopback answer (5 ms) to the default
# deadline's end (10 s); slower, retried probes land in +Inf. Fewer than
# prometheus_client's 15 defaults: 200 checks x 14 lines is the bulk of a scrape.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[str, str, str, str, str]  # env, layer, stack, kind, check


@dataclass(frozen=True)
class Series:
    """One check's histogram: cumulative counts per bound of :data:`BUCKETS`, then +Inf."""

    counts: tuple[int, ...] = (0,) * (len(BUCKETS) + 1)
    sum_s: float = 0.0

    @property
    def count(self) -> int:
        return self.counts[-1]

    def observe(self, seconds: float) -> Series:
        counts = tuple(
            count + (1 if index == len(BUCKETS) or seconds <= BUCKETS[index] else 0)
            for index, count in enumerate(self.counts)
        )
        return Series(counts, self.sum_s + seconds)


@dataclass(frozen=True)
class Latencies:
    """Every check's histogram so far. Never changed in place: :meth:`plus` makes the next."""

    series: Mapping[Labels, Series] = field(default_factory=dict)

    def plus(self, run: RunResult) -> Latencies:
        """These histograms with ``run``'s probe times added: each check that probed
        (``elapsed_s`` recorded, all its attempts) counts once. A run that did not judge
        still adds the probes it made: the time they took is real."""
        series = dict(self.series)
        for check in run.checks:
            if check.elapsed_s is None:
                continue  # not a probing check (a container check, a skip)
            labels = (check.env, check.layer, check.stack, check.kind, check.check)
            series[labels] = series.get(labels, Series()).observe(check.elapsed_s)
        return Latencies(series)
