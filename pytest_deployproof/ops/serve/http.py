"""The HTTP side of ``deployproof serve``: /healthz, /healthz/<stack>, /metrics, POST /run.

Stands on :class:`~pytest_deployproof.signed_http.BoundedServer`, like the webhook and
the runner: socket timeouts, a whole-request deadline, a cap on connections, malformed
requests answered 400 by the standard handler, never a traceback. Reads are served from
the latest run held in memory (:mod:`.runs`); only ``POST /run`` asks for a run, one that
starts after it asked (concurrent requests share it: single-flight), so scrapers and load
balancers can poll as often as they like without running a check more often.

No path takes a body, and none is read: a request that carries one is answered with
``Connection: close`` and the connection closed, so its unread bytes are never parsed as
the next request on a keep-alive connection. A 401 closes the connection too.

With a token (``--token-env NAME``: read from the environment, never from the command
line, where ``ps`` shows it) every path needs ``Authorization: Bearer <token>``,
compared in constant time. Everything served passes the product's masker.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ...secrets import Masker
from ...signed_http import BoundedServer, send
from .metrics import CONTENT_TYPE, Exposition
from .results import Health, RunResult, Status, judge
from .runs import Runs

__all__ = ["RUN_WAIT_S", "ServeServer"]

# How long POST /run waits for its run before answering 202 (inside BoundedServer's
# 30 s request deadline, which would otherwise cut the connection).
RUN_WAIT_S = 25.0


class ServeServer(BoundedServer):
    """Serves ``runs``' results; starts its schedule once it listens, stops it on close."""

    def __init__(
        self,
        address: tuple[str, int],
        runs: Runs,
        *,
        env: str,
        stacks: Sequence[str],
        token: str | None,
        masker: Masker,
    ) -> None:
        self.runs, self.env, self.stacks = runs, env, tuple(stacks)
        self.token = token.encode() if token else None
        self.masker = masker.escaped()  # also as JSON writes the values
        self.metrics = Exposition(env, runs, self.health_of)
        super().__init__(address, _Request)
        runs.start()

    @property
    def max_age_s(self) -> float:
        """Older than two intervals is stale: one run missed is noise, two is news."""
        return 2 * self.runs.interval_s

    def health_of(self, run: RunResult | None) -> Health:
        """What /healthz says of ``run`` (``None``: no run yet) now."""
        return judge(run, now=time.time(), max_age_s=self.max_age_s)

    def health(self, stack: str | None = None, run: RunResult | None = None) -> Health:
        run = run if run is not None else self.runs.latest
        checks = None
        if stack is not None and run is not None:
            checks = [check for check in run.checks if check.stack == stack]
        return judge(run, checks, now=time.time(), max_age_s=self.max_age_s)

    def document(self, stack: str | None, run: RunResult | None = None) -> dict[str, Any]:
        """The /healthz JSON body, of one snapshot (its run and that run's flakiness)."""
        snapshot = self.runs.snapshot
        run = run if run is not None else snapshot.latest
        health = self.health(stack, run)
        flaky = snapshot.flaky
        return {
            "status": health.status.value,
            "env": self.env,
            "stack": stack,
            "reason": health.reason,
            "running": self.runs.running,
            "run": None if run is None else _run_json(run),
            "counts": health.counts,
            "checks": [
                {**check.as_json(), "flaky": _flaky_json(flaky.get(check.id))}
                for check in health.checks
            ],
        }

    def server_close(self) -> None:
        super().server_close()
        self.runs.stop()  # abandons the run in flight; no pytest outlives serve


def _run_json(run: RunResult) -> dict[str, Any]:
    return {
        "id": run.id,
        "started": _iso(run.started),
        "finished": _iso(run.finished),
        "duration_s": round(run.duration_s, 3),
        "age_s": round(time.time() - run.finished, 3),
        "outcome": run.outcome,
        "error": run.error,
    }


def _flaky_json(flaky: Any) -> dict[str, Any] | None:
    return None if flaky is None else dict(flaky.as_json())


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _accepts_gzip(header: str) -> bool:
    """Whether ``Accept-Encoding`` lists gzip with a weight above 0 (``gzip;q=0`` refuses)."""
    for part in header.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        weight = params.strip().lower().removeprefix("q=")
        try:
            return not params.strip() or float(weight) > 0
        except ValueError:
            return False
    return False


def _text(document: dict[str, Any]) -> str:
    """``?format=text``: what a person at a terminal wants first, then each check."""
    where = document["env"] + (f"/{document['stack']}" if document["stack"] else "")
    lines = [f"{document['status'].upper()} {where}: {document['reason']}"]
    run = document["run"]
    if run is not None:
        lines.append(
            f"run {run['id']} finished {run['age_s']:.0f} s ago, took {run['duration_s']:.1f} s"
        )
    for check in document["checks"]:
        extra = ""
        if check["attempts"] is not None:
            extra += f" ({check['attempts']} attempts, {check['elapsed_s']} s)"
        if check["flaky"] and check["flaky"]["flaky"]:
            flaky = check["flaky"]
            extra += f" FLAKY {flaky['events']}/{flaky['runs']}"
        message = f": {check['message']}" if check["message"] else ""
        lines.append(
            f"  {check['verdict']:<12} {check['stack']} {check['kind']} {check['check']}"
            f"{extra}{message}"
        )
    return "\n".join(lines) + "\n"


class _Request(BaseHTTPRequestHandler):
    server: ServeServer
    protocol_version = "HTTP/1.1"  # keep-alive for scrapers; bounded by the server's timeouts
    # Headers and body are two writes: with Nagle's algorithm a small body (gzipped
    # /metrics, ~17 KiB) waits for the client's delayed ACK of the headers, 40 ms a scrape.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return  # scrapes every second would drown the log

    def _answer(self, status: int, body: str, content_type: str) -> None:
        masked = self.server.masker(body)
        send(self, status, masked.encode(), content_type)

    def _json(self, status: int, document: object) -> None:
        self._answer(status, json.dumps(document, indent=2) + "\n", "application/json")

    _said_connection = False  # this answer already has a Connection header (send_error's)

    def send_header(self, keyword: str, value: str) -> None:
        self._said_connection |= keyword.lower() == "connection"
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        """Tell the client when the connection ends after this answer (see the module); a
        crowded server ends each connection after its answer (signed_http.KEEPALIVE_RESERVE)."""
        if self.server.crowded():
            self.close_connection = True
        if self.close_connection and not self._said_connection:
            self.send_header("Connection", "close")
        self._said_connection = False
        super().end_headers()

    def _refuse_body(self) -> None:
        """A body we do not read (no path takes one) must not be parsed as the next request:
        answer this one, then close. Also a chunked body, or a length we cannot read."""
        length = self.headers.get("Content-Length")
        if length not in (None, "0") or self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True

    def _authorised(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = (self.headers.get("Authorization") or "").encode("utf-8", errors="replace")
        if hmac.compare_digest(given, b"Bearer " + token):
            return True
        self.close_connection = True  # nothing more from a client that cannot authenticate
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Bearer realm="deployproof"')
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        body = b"a bearer token is needed\n"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return False

    def do_GET(self) -> None:
        self._refuse_body()
        if not self._authorised():
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/metrics":
            self._metrics()
            return
        if url.path == "/healthz" or url.path.startswith("/healthz/"):
            stack = unquote(url.path.removeprefix("/healthz").strip("/")) or None
            self._healthz(stack, query.get("format", ["json"])[0])
            return
        self._answer(404, "not found: GET /healthz, /healthz/<stack>, /metrics; POST /run\n",
                     "text/plain; charset=utf-8")  # fmt: skip

    def _metrics(self) -> None:
        """The rendered body as it is kept (see metrics.py), gzipped when the scraper says
        it accepts that, as Prometheus does."""
        gzipped = _accepts_gzip(self.headers.get("Accept-Encoding") or "")
        body = self.server.metrics.body(gzipped=gzipped)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _healthz(self, stack: str | None, form: str, run: RunResult | None = None) -> None:
        if stack is not None and stack not in self.server.stacks:
            known = ", ".join(self.server.stacks) or "(none)"
            self._answer(404, f"no stack {stack!r} is selected: known are {known}\n",
                         "text/plain; charset=utf-8")  # fmt: skip
            return
        if form not in ("json", "text"):
            self._answer(400, "format is json or text\n", "text/plain; charset=utf-8")
            return
        document = self.server.document(stack, run)
        status = Status(document["status"]).http
        if form == "text":
            self._answer(status, _text(document), "text/plain; charset=utf-8")
        else:
            self._json(status, document)

    def do_POST(self) -> None:
        """Run the checks (a run that starts after this request; concurrent requests share
        it) and answer as /healthz does."""
        self._refuse_body()
        if not self._authorised():
            return
        url = urlsplit(self.path)
        if url.path != "/run":
            self._answer(404, "not found: POST /run\n", "text/plain; charset=utf-8")
            return
        pending = self.server.runs.request()
        result = pending.wait(min(RUN_WAIT_S, self.server.runs.timeout_s + 10))
        if result is None and pending.done.is_set():
            self._json(503, {"status": "abandoned", "reason": "serve is stopping"})
            return
        if result is None:
            self._json(202, {"status": "running", "reason": "the run has not finished yet"})
            return
        self._healthz(None, parse_qs(url.query).get("format", ["json"])[0], result)
