"""HTTP probes against a real server on loopback: retries, budgets, body and JSON checks."""

from __future__ import annotations

import time

import pytest

from pytest_deployproof.inventory.model import Endpoint, ProbeSettings
from pytest_deployproof.observe.probes import probe_all

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


def test_time_and_deadline_start_when_a_probe_gets_its_turn_not_while_it_queues(
    server: str,
) -> None:
    """With one probe in flight, the third endpoint waits 2 s for its turn: its 1.5 s
    deadline must still allow its retry, and its time must not include the wait."""
    endpoints = [
        ("a", Endpoint(url=f"{server}/slow-1000?queue-a")),
        ("b", Endpoint(url=f"{server}/slow-1000?queue-b")),
        ("late", Endpoint(url=f"{server}/fail-1?queue")),
    ]
    pace = ProbeSettings(tries=3, interval_s=0.05, timeout_s=5, deadline_s=1.5, concurrency=1)
    late = probe_all(endpoints, pace)["late"]
    assert [a.status for a in late.attempts] == [503, 200]
    assert late.elapsed_s < 1.0, late.describe()


def test_an_unexpected_exception_fails_its_endpoint_not_the_batch(server: str) -> None:
    """A host name that cannot even be encoded raises UnicodeError (not an OSError) before
    any packet is sent: it is what was seen for that endpoint; the others are judged.
    (The inventory refuses such a name; built past its check, it stands for any exception
    a library lets through.)"""
    unencodable = Endpoint.model_construct(url="tcp://" + "a" * 64 + ".example:80", tries=1)
    results = probe_all([("bad", unencodable), ("good", Endpoint(url=f"{server}/json"))], FAST)
    assert results["good"].passed
    assert not results["bad"].passed
    assert "no answer: UnicodeError: encoding with 'idna' codec failed" in results["bad"].describe()
