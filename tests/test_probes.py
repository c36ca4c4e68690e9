"""HTTP probes against a real server on loopback: retries, budgets, body and JSON checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from pytest_deployproof.model import Endpoint, ProbeSettings
from pytest_deployproof.probes import probe_all


class Handler(BaseHTTPRequestHandler):
    """`/fail-N` fails N times then answers; `/slow-MS` sleeps; `/json` and `/text` answer."""

    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        count = Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        status, body, kind = 200, b"ok", "text/plain"
        if self.path.startswith("/fail-") and count <= int(self.path.split("-")[1]):
            status, body = 503, b"warming up"
        elif self.path.startswith("/slow-"):
            time.sleep(int(self.path.split("-")[1].split("?")[0]) / 1000)
        elif self.path == "/json":
            body, kind = (
                b'{"status": "ok", "db": {"ok": true}, "version": "v2"}',
                "application/json",
            )
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 refuses concurrent probes


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


FAST = ProbeSettings(tries=3, interval_s=0.05, timeout_s=2, deadline_s=5)


def probe(endpoint: Endpoint, settings: ProbeSettings = FAST):  # type: ignore[no-untyped-def]
    return probe_all([("e", endpoint)], settings)["e"]


def test_a_late_start_turns_green_and_says_after_how_many_attempts(server: str) -> None:
    result = probe(Endpoint(url=f"{server}/fail-2"))
    assert result.passed
    assert [a.status for a in result.attempts] == [503, 503, 200]
    assert result.time_to_green_s is not None


def test_a_real_failure_reports_status_body_latency_and_attempts(server: str) -> None:
    result = probe(Endpoint(url=f"{server}/fail-99"))
    assert not result.passed
    text = result.describe()
    assert f"GET {server}/fail-99: status 503, expected 200" in text
    assert "3 attempts in" in text
    assert "body: 'warming up'" in text
    assert text.count("HTTP 503 in") == 4  # the last one, and each in the attempts line


def test_latency_over_budget_fails(server: str) -> None:
    result = probe(Endpoint(url=f"{server}/slow-300", latency_ms=100, tries=1))
    assert not result.passed
    assert "over the 100 ms budget" in result.describe()


@pytest.mark.parametrize(
    ("checks", "problem"),
    [
        ({"body": "nope"}, "body does not contain 'nope'"),
        ({"json": {"status": "down"}}, "JSON status is 'ok', expected 'down'"),
        ({"json": {"db.ok": False}}, "JSON db.ok is True, expected False"),
        ({"json": {"missing.key": 1}}, "JSON has no 'missing.key'"),
    ],
)
def test_body_and_json_checks(server: str, checks: dict[str, object], problem: str) -> None:
    result = probe(Endpoint.model_validate({"url": f"{server}/json", "tries": 1, **checks}))
    assert not result.passed
    assert problem in result.describe()


def test_json_check_passes_and_non_json_fails(server: str) -> None:
    ok = probe(Endpoint.model_validate({"url": f"{server}/json", "json": {"db.ok": True}}))
    assert ok.passed
    text = probe(Endpoint.model_validate({"url": f"{server}/text", "json": {"a": 1}, "tries": 1}))
    assert "body is not JSON" in text.describe()


def test_connection_refused_is_a_failed_probe_with_the_reason() -> None:
    result = probe(Endpoint(url="http://127.0.0.1:9/health", tries=2))
    assert not result.passed
    assert "no answer: ConnectError" in result.describe()
    assert len(result.attempts) == 2


def test_endpoints_are_probed_concurrently(server: str) -> None:
    endpoints = [(str(i), Endpoint(url=f"{server}/slow-200?{i}")) for i in range(40)]
    started = time.monotonic()
    results = probe_all(endpoints, ProbeSettings(concurrency=20))
    elapsed = time.monotonic() - started
    assert all(result.passed for result in results.values())
    # Sequentially this is 8 s; with 20 in flight, about 0.4 s.
    assert elapsed < 4, f"40 probes of 200 ms took {elapsed:.1f} s: not concurrent"
