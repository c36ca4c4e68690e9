"""``deployproof serve``: the selected checks, run on an interval, as /healthz and /metrics.

Operators run the checks at deploy time, then nothing watches until the next deploy.
Serve runs the same suites (``pytest --env X -m EXPR``) on a schedule and on demand,
one run at a time, and answers from the latest run: ``/healthz`` 200 only when every
check passed in a run that is recent enough (failed, inconclusive, stale and unknown
are 503, each named), ``/metrics`` for Prometheus. Every run is remembered, so a check
that passes only after retries or flips between runs is called flaky.

One concern per module: :mod:`.collector` (the pytest plugin inside each run),
:mod:`.results` (a run's verdicts and what they add up to), :mod:`.runs` (scheduling,
single-flight, the subprocess), ``report.run_history`` (the SQLite memory, flakiness,
trends: every pytest run reads it too),
:mod:`.latency` (the probe latency histograms, run by run),
:mod:`.metrics` (Prometheus), :mod:`.http` (the server), :mod:`.command` (the CLI).
"""

from __future__ import annotations

from .command import add_parsers

__all__ = ["add_parsers"]
