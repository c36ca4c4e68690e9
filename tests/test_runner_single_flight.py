"""The IaC runner takes one deploy at a time, decided atomically (TRU-2): two signed
POST /deploy at the same instant are never both accepted.

A real RunnerServer on loopback; its ``apply`` is the work the runner is given (here it
lasts until both racers of the round were answered, then records the tag), so a second
202 can only come from the server's admission, never from the first apply having ended."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from pytest_deployproof.deploy.runner import RunnerServer
from pytest_deployproof.signed_http import signature

SECRET = "single-flight-secret"
ROUNDS = 50


RELEASE = threading.Event()  # an apply lasts until both racers of its round were answered


@pytest.fixture
def runner() -> Iterator[tuple[RunnerServer, list[str]]]:
    applied: list[str] = []
    overlapping: list[str] = []
    busy = threading.Lock()

    def apply(tag: str) -> None:
        if not busy.acquire(blocking=False):
            overlapping.append(tag)  # two applies at once: what must never happen
            return
        try:
            RELEASE.wait(10)
            applied.append(tag)
        finally:
            busy.release()

    server = RunnerServer(("127.0.0.1", 0), SECRET, "staging", apply)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, overlapping
    server.shutdown()
    server.server_close()
    assert applied, "nothing was ever applied"


def _post(url: str, tag: str, delivery: str) -> int:
    body = json.dumps({"env": "staging", "tag": tag, "triggered_by": "test",
                       "delivery": delivery, "sent_at": time.time()}).encode()  # fmt: skip
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature(SECRET.encode(), body),
    }
    return httpx.post(url, content=body, headers=headers, timeout=10).status_code


def test_two_deploys_at_the_same_instant_are_never_both_accepted(
    runner: tuple[RunnerServer, list[str]],
) -> None:
    server, overlapping = runner
    url = f"http://127.0.0.1:{server.server_address[1]}/deploy"
    outcomes = []
    for round_ in range(ROUNDS):
        start = threading.Barrier(2)
        codes: list[int] = []

        def send(tag: str, delivery: str, start: threading.Barrier, codes: list[int]) -> None:
            start.wait()
            codes.append(_post(url, tag, delivery))

        racers = [
            threading.Thread(target=send, args=(tag, f"round-{round_}-{tag}", start, codes))
            for tag in ("v1", "v2")
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        RELEASE.set()  # both answered while the accepted one was still applying
        outcomes.append(sorted(codes))
        deadline = time.monotonic() + 10
        while server.state["status"] == "deploying":  # let the accepted one finish
            assert time.monotonic() < deadline
            time.sleep(0.01)
        RELEASE.clear()

    assert len(outcomes) == ROUNDS
    assert [o for o in outcomes if o != [202, 409]] == []  # exactly one accepted, every round
    assert overlapping == []
    assert len(server.applied) == ROUNDS
