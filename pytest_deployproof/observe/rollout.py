"""Measuring downtime while a stack is rolled out (DEP-10, E2E-3).

"Zero downtime" made measurable: from just before the new version is written
until ``docker compose up`` has returned, a background thread requests the
stack's http endpoints every ``interval_ms`` and counts what did not answer
as expected. The figures go to the ``rollout`` E2E suite, which fails when
the failures exceed the stack's budget.

A thread with a blocking client is enough here: one request at a time, on a
fixed cadence, is what a user's browser does, and it keeps the measurement
independent of the deploy's own work.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from ..inventory.model import Endpoint, Rollout

__all__ = ["RolloutFigures", "RolloutWatch"]


@dataclass
class RolloutFigures:
    """What a user would have seen during the rollout."""

    sent: int = 0
    failed: int = 0
    longest_gap_s: float = 0.0  # longest time without a good answer
    duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)  # the first few, for the report

    @property
    def failed_share(self) -> float:
        """The failed requests' share of those sent, in percent (0 when none was sent)."""
        return 100 * self.failed / self.sent if self.sent else 0.0

    def describe(self) -> str:
        text = (
            f"{self.sent} requests in {self.duration_s:.1f} s, {self.failed} failed "
            f"({self.failed_share:.1f}%), longest gap without a good answer "
            f"{self.longest_gap_s:.2f} s"
        )
        return text + (f" (first: {self.errors[0]})" if self.errors else "")


class RolloutWatch:
    """Probes ``endpoints`` from :meth:`start` to :meth:`stop`."""

    MAX_ERRORS = 5

    def __init__(self, endpoints: list[Endpoint], settings: Rollout) -> None:
        self.endpoints = [e for e in endpoints if not e.is_tcp]
        self.settings = settings
        self.figures = RolloutFigures()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="deployproof-rollout", daemon=True)

    def start(self) -> RolloutWatch:
        if self.endpoints:
            self._thread.start()
        return self

    def stop(self) -> RolloutFigures:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.settings.timeout_ms / 1000 + 5)
        return self.figures

    def _watch(self) -> None:
        interval = self.settings.interval_ms / 1000
        figures = self.figures
        started = last_good = time.monotonic()
        timeout = httpx.Timeout(self.settings.timeout_ms / 1000)
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            index = 0
            while not self._stop.is_set():
                endpoint = self.endpoints[index % len(self.endpoints)]
                index += 1
                sent = time.monotonic()
                error = self._request(client, endpoint)
                now = time.monotonic()
                figures.sent += 1
                if error is None:
                    figures.longest_gap_s = max(figures.longest_gap_s, now - last_good)
                    last_good = now
                else:
                    figures.failed += 1
                    if len(figures.errors) < self.MAX_ERRORS:
                        figures.errors.append(f"{endpoint.name}: {error}")
                self._stop.wait(max(0.0, interval - (now - sent)))
            end = time.monotonic()
            figures.longest_gap_s = max(figures.longest_gap_s, end - last_good)
            figures.duration_s = end - started

    @staticmethod
    def _request(client: httpx.Client, endpoint: Endpoint) -> str | None:
        try:
            response = client.get(endpoint.url)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}"
        if response.status_code != endpoint.status:
            return f"HTTP {response.status_code}"
        return None
