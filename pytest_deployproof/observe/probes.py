"""HTTP probes of declared endpoints, many at once (SMK-2, SMK-3, SMK-5, BYD-3).

Probing is I/O-bound and the report wants one test per endpoint, so
endpoints are observed together (one shared ``httpx.AsyncClient``, in-flight
requests capped by a semaphore no larger than the connection pool: an
unbounded burst ends in ``PoolTimeout``) and each test then judges its own
result. Every result keeps every attempt, so a probe that only passed on its
third try says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

__all__ = [
    "Attempt",
    "EndpointSpec",
    "Pace",
    "ProbeResult",
    "exchange",
    "judge",
    "probe_all",
    "probe_many",
]

BODY_EXCERPT = 200
EXCHANGE_BODY = 2000  # a report attachment has room for more of the body
_MISSING = object()


# Probing is typed by what it reads, not by the inventory model: the prober child process
# (prober.py) probes without importing pydantic, which would double its start-up time.
class EndpointSpec(Protocol):
    """What probing reads of an endpoint (the model's ``Endpoint`` is one)."""

    @property
    def url(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def body(self) -> str | None: ...
    @property
    def json_fields(self) -> dict[str, Any] | None: ...
    @property
    def latency_ms(self) -> float | None: ...
    @property
    def tries(self) -> int | None: ...


class Pace(Protocol):
    """How patiently to probe (the model's ``ProbeSettings`` is one)."""

    @property
    def tries(self) -> int: ...
    @property
    def interval_s(self) -> float: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def deadline_s(self) -> float: ...
    @property
    def concurrency(self) -> int: ...


@dataclass(frozen=True)
class Attempt:
    """One request: what came back, or why nothing did."""

    status: int | None
    latency_ms: float
    body: str = ""
    error: str | None = None
    problems: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # kept only when the answer had problems

    def describe(self) -> str:
        if self.status is not None:
            seen = f"HTTP {self.status}"
        elif self.error is None:
            seen = "connected"
        else:
            seen = f"no answer ({self.error})"
        return f"{seen} in {self.latency_ms:.0f} ms"


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of probing one endpoint, with every attempt."""

    url: str
    expected_status: int
    attempts: tuple[Attempt, ...]
    elapsed_s: float
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", bool(self.attempts) and not self.last.problems)

    @property
    def last(self) -> Attempt:
        return self.attempts[-1]

    @property
    def time_to_green_s(self) -> float | None:
        return self.elapsed_s if self.passed else None

    def describe(self) -> str:
        """What was seen, for a failure message: problems, status, body, latency, attempts."""
        last = self.last
        tcp = _is_tcp(self.url)
        verb, expected = (
            ("CONNECT", "a connection") if tcp else ("GET", f"HTTP {self.expected_status}")
        )
        lines = [f"{verb} {self.url}: " + "; ".join(last.problems or ("ok",))]
        lines.append(
            f"seen: {last.describe()}, expected {expected}; "
            f"{len(self.attempts)} attempts in {self.elapsed_s:.2f} s"
        )
        if last.body:
            excerpt = last.body[:BODY_EXCERPT].replace("\r", "")
            more = "..." if len(last.body) > BODY_EXCERPT else ""
            lines.append(f"body: {excerpt!r}{more}")
        if len(self.attempts) > 1:
            lines.append("attempts: " + ", ".join(a.describe() for a in self.attempts))
        return "\n".join(lines)


def exchange(result: ProbeResult, masker: Callable[[str], str]) -> str:
    """The failed probe's last exchange, as an operator reads it in a report attachment:
    request line, status, headers, body excerpt (secrets masked), then every attempt."""
    last = result.last
    verb = "CONNECT" if _is_tcp(result.url) else "GET"
    lines = [f"{verb} {result.url}", ""]
    if last.status is None:
        lines.append(f"no answer: {last.error or 'connected'} after {last.latency_ms:.0f} ms")
    else:
        lines.append(f"HTTP {last.status} in {last.latency_ms:.0f} ms")
        lines += [f"{name}: {value}" for name, value in last.headers]
        lines += ["", last.body[:EXCHANGE_BODY] + ("..." if len(last.body) > EXCHANGE_BODY else "")]
    lines += ["", "problems: " + "; ".join(last.problems or ("none",))]
    lines.append("attempts: " + ", ".join(a.describe() for a in result.attempts))
    return masker("\n".join(lines))


def judge(
    endpoint: EndpointSpec, status: int | None, body: str, latency_ms: float
) -> tuple[str, ...]:
    """Everything wrong with one answer, as readable phrases (empty: it passes).

    ``status`` is ``None`` for a TCP endpoint that accepted the connection.
    """
    problems: list[str] = []
    if status is not None and status != endpoint.status:
        problems.append(f"status {status}, expected {endpoint.status}")
    if endpoint.body is not None and endpoint.body not in body:
        problems.append(f"body does not contain {endpoint.body!r}")
    if endpoint.json_fields:
        problems += _judge_json(endpoint.json_fields, body)
    if endpoint.latency_ms is not None and latency_ms > endpoint.latency_ms:
        problems.append(f"latency {latency_ms:.0f} ms over the {endpoint.latency_ms:.0f} ms budget")
    return tuple(problems)


def _judge_json(expected: dict[str, Any], body: str) -> list[str]:
    try:
        document = json.loads(body)
    except ValueError:
        return ["body is not JSON"]
    problems = []
    for path, want in expected.items():
        value: Any = document
        for step in path.split("."):
            value = value.get(step, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            problems.append(f"JSON has no {path!r}")
        elif value != want:
            problems.append(f"JSON {path} is {value!r}, expected {want!r}")
    return problems


async def _probe(
    client: httpx.AsyncClient, gate: asyncio.Semaphore, endpoint: EndpointSpec, probes: Pace
) -> ProbeResult:
    tries = endpoint.tries or probes.tries
    # The clock starts when the first attempt gets its turn: time spent queueing behind
    # other endpoints is neither this endpoint's latency nor taken from its deadline.
    started = 0.0
    attempts: list[Attempt] = []
    for attempt in range(tries):
        if attempt:
            remaining = probes.deadline_s - (time.monotonic() - started)
            if remaining <= probes.interval_s:
                break
            await asyncio.sleep(probes.interval_s)
        sent = time.monotonic()
        try:
            async with gate:
                sent = time.monotonic()
                started = started or sent
                if _is_tcp(endpoint.url):
                    await _connect(endpoint.url, probes.timeout_s)
                    status, body = None, ""
                else:
                    response = await client.get(endpoint.url)
                    status, body = response.status_code, response.text
        # Whatever stopped the answer is what was seen for this endpoint, and must not end
        # the batch: httpx is meant to raise its own errors, but httpcore's leak now and
        # then (encode/httpx#1251; and after a module is imported twice, as pytester can).
        except Exception as exc:
            latency = (time.monotonic() - sent) * 1000
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            attempts.append(Attempt(None, latency, "", reason, (f"no answer: {reason}",)))
        else:
            latency = (time.monotonic() - sent) * 1000
            problems = judge(endpoint, status, body, latency)
            headers = tuple(response.headers.items()) if problems and status is not None else ()
            # Kept: what a report shows of the body, and whether there was more.
            kept = body[: EXCHANGE_BODY + 1]
            attempts.append(Attempt(status, latency, kept, None, problems, headers))
        if not attempts[-1].problems:
            break
    return ProbeResult(endpoint.url, endpoint.status, tuple(attempts), time.monotonic() - started)


def _is_tcp(url: str) -> bool:
    return url.startswith("tcp://")


async def _connect(url: str, timeout_s: float) -> None:
    parts = urlsplit(url)
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port), timeout=timeout_s
    )
    writer.close()
    await writer.wait_closed()


# httpcore scans every connection of a pool for each request it assigns, so one large
# pool costs CPU per request in proportion to its size. Measured on this project's
# machines (600 probes, 100 ms loopback server, 50 in flight): one pool with 50
# keep-alive connections 11.3 s, one pool keeping 20 alive 2.05 s, five pools of 10
# 1.77 s. Hence pools of at most POOL_SIZE connections, requests dealt round-robin.
POOL_SIZE = 10


def _tls_context(targets: Iterable[EndpointSpec]) -> ssl.SSLContext:
    """One TLS context for every pool: httpx would load the CA bundle once per client
    (~50 ms each). Without an https:// target (redirects are not followed) the context
    is never used, so it loads nothing, and would verify nothing as trusted."""
    if any(target.url.startswith("https://") for target in targets):
        return httpx.create_ssl_context()  # what each client would have made
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


async def probe_many(
    targets: Mapping[str, EndpointSpec],
    probes: Pace,
    done: Callable[[str, ProbeResult], None],
) -> None:
    """Probe ``targets`` concurrently, handing each result to ``done`` as it completes."""
    pools = -(-probes.concurrency // POOL_SIZE)  # ceiling division
    per_pool = -(-probes.concurrency // pools)
    limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
    timeout = httpx.Timeout(probes.timeout_s, pool=probes.deadline_s)
    gate = asyncio.Semaphore(probes.concurrency)

    async def one(client: httpx.AsyncClient, key: str) -> None:
        done(key, await _probe(client, gate, targets[key], probes))

    verify = _tls_context(targets.values())
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    limits=limits, timeout=timeout, follow_redirects=False, verify=verify
                )
            )
            for _ in range(pools)
        ]
        await asyncio.gather(
            *(one(clients[index % pools], key) for index, key in enumerate(targets))
        )


def probe_all(targets: Iterable[tuple[str, EndpointSpec]], probes: Pace) -> dict[str, ProbeResult]:
    """Probe every ``(key, endpoint)`` concurrently; results by key."""
    wanted = dict(targets)
    results: dict[str, ProbeResult] = {}
    if wanted:
        asyncio.run(probe_many(wanted, probes, results.__setitem__))
    return results
