"""`deployproof serve` under scrapes: what a scrape costs, and what scrapes cost a run (issue #23).

`deployproof serve` runs as a subprocess on 127.0.0.1 (a free port) against an inventory of
STACKS stacks x 2 health endpoints = 200 checks (`-m health`, the project's own copy of the
bundled health-endpoint check, DEPLOYPROOF_BUILTIN=0), probing a loopback asyncio server that
answers at once, in a process of its own (in this one it would share the scrapers' GIL, and the
run would measure the benchmark). No Docker. Every check probes, so /metrics carries each
check's verdicts and a latency histogram: a realistic body.

  (a) a warm scrape: after a run, the median and p95 of SCRAPES sequential GETs of /metrics
      (plain, and gzipped as Prometheus asks), and of /healthz, on one keep-alive connection;
  (b) one run of the 200 checks (POST /run; the run's own duration, as serve reports it)
      with no scraper (for reference), with 1 scraper and with 100 concurrent scrapers
      hammering /metrics (gzip accepted) back to back over keep-alive connections
      (asyncio, in this process), and the latency of the scrapes answered while that run
      was in flight; and, for scale, with 100 scrapers each scraping once a second
      (Prometheus's way: 100 a second in all).
(b0), (b1), (b100) and the paced load run in interleaved rounds (this machine's speed
drifts); each figure is the median of the rounds, with the range. serve serves at most 64
connections at once (signed_http.MAX_CONNECTIONS): the scrapers above that are answered 503
and closed, wait 0.1 s (the paced ones their second) and connect again; how many were is
printed.

Usage: python benchmarks/serve_scrape.py [--stacks 100] [--rounds 3] [--scrapes 200] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import CHILD_ENV

BENCHMARKS = Path(__file__).resolve().parent
DEPLOYPROOF = str(Path(sys.executable).parent / "deployproof")

# issue 23: scrapes must not slow the checks down, and a scrape must be cheap.
TARGET_RUN_RATIO = 1.5  # (b100)/(b1)
TARGET_SCRAPE_P50_MS = 20.0  # (a), /metrics

ENDPOINTS = """\
import sys, threading
sys.path.insert(0, sys.argv[1])
from smoke_probe import SlowServer

server = SlowServer(0.0)
print(server.port, flush=True)
threading.Event().wait()
"""

CHECKS = """\
import pytest

from pytest_deployproof.checks.smoke import expect_endpoint_answers

pytestmark = pytest.mark.health


@pytest.mark.deployproof_only(health=True)
def test_health_endpoint(stack, endpoint, endpoint_probe):
    expect_endpoint_answers(stack, endpoint_probe)
"""


def write_project(work: Path, stacks: int, base: str) -> None:
    """The inventory (STACKS x 2 health endpoints) and the project's one check file."""
    lines = [
        "hosts: {here: {spec: 'local://'}}",
        "layers: {platform: {order: 2, engine: compose}}",
        f"state_dir: {work / 'state'}",
        "stacks:",
    ]
    for i in range(stacks):
        lines += [
            f"  s{i:04d}:",
            "    layer: platform",
            "    host: here",
            f"    run_dir: /srv/stacks/s{i:04d}",
            "    services: {web: {}}",
            f"    endpoints: [{{name: health, url: '{base}/s{i}/health', health: true}},",
            f"                {{name: ready, url: '{base}/s{i}/ready', health: true}}]",
        ]
    (work / "inventories").mkdir()
    (work / "inventories" / "bench.yml").write_text("\n".join(lines) + "\n")
    (work / "test_checks.py").write_text(CHECKS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(work: Path, port: int) -> subprocess.Popen[bytes]:
    """serve with a schedule of an hour: only its first run, and the runs we ask for."""
    env = {**CHILD_ENV, "DEPLOYPROOF_BUILTIN": "0"}
    # hypothesis is one of our dev tools, not a user's plugin (see common.py).
    env["PYTEST_ADDOPTS"] = "-p no:hypothesispytest"
    argv = [DEPLOYPROOF, "serve", "--env", "bench", "-m", "health", "--port", str(port)]
    argv += ["--interval", "1h", "--timeout", "120s"]
    with (work / "serve.log").open("wb") as log:
        return subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for_first_run(work: Path, serve: subprocess.Popen[bytes], port: int) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            sys.exit(f"serve exited {serve.returncode}:\n{(work / 'serve.log').read_text()}")
        try:
            status, body = get(
                http.client.HTTPConnection("127.0.0.1", port, timeout=10), "/healthz"
            )
        except OSError:
            time.sleep(0.1)
            continue
        document = json.loads(body)
        if document["run"] is not None:
            if status != 200:
                sys.exit(f"the first run is not healthy: {document['reason']}")
            return dict(document)
        time.sleep(0.2)
    sys.exit(f"no run finished within 120 s:\n{(work / 'serve.log').read_text()}")


def get(
    connection: http.client.HTTPConnection, path: str, *, zipped: bool = False
) -> tuple[int, bytes]:
    connection.request("GET", path, headers={"Accept-Encoding": "gzip" if zipped else "identity"})
    answer = connection.getresponse()
    return answer.status, answer.read()


def warm_scrapes(port: int, path: str, count: int, *, zipped: bool = False) -> list[float]:
    """Seconds of ``count`` sequential GETs of ``path`` on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    get(connection, path, zipped=zipped)  # connect, and render once if nothing was yet
    times = []
    for _ in range(count):
        started = time.perf_counter()
        status, _ = get(connection, path, zipped=zipped)
        times.append(time.perf_counter() - started)
        if status not in (200, 503):
            sys.exit(f"GET {path}: {status}")
    connection.close()
    return times


@dataclass
class Load:
    """What the scrapers saw: each answered scrape's (start, seconds), and the refusals."""

    scrapes: list[tuple[float, float]] = field(default_factory=list)
    refused: int = 0


# As Prometheus asks (it accepts gzip); the body is not decompressed here: a scraper's own
# work is not serve's, and real scrapers run elsewhere.
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: gzip\r\n\r\n"


async def scraper(port: int, stop: asyncio.Event, load: Load, every_s: float) -> None:
    """GET /metrics on one keep-alive connection, back to back (``every_s`` 0) or once
    every ``every_s`` (from a random start within it, as Prometheus servers are spread);
    connect again when closed (a 503 over the connection cap, serve's 30 s deadline)."""
    await asyncio.sleep(random.uniform(0, every_s))
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            load.refused += 1
            await asyncio.sleep(max(0.1, every_s))
            continue
        try:
            while not stop.is_set():
                started = time.perf_counter()
                writer.write(REQUEST)
                status, length, closing = await read_head(reader)
                await reader.readexactly(length)
                if status != 200:
                    load.refused += 1
                    await asyncio.sleep(max(0.1, every_s))
                    break
                took = time.perf_counter() - started
                load.scrapes.append((started, took))
                if closing:
                    break
                await asyncio.sleep(max(0.0, every_s - took))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    status = int((await reader.readline()).split()[1])
    length, closing = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection":
            closing = value.strip().lower() == "close"
    return status, length, closing


class Scrapers:
    """``count`` scrapers on an event loop in a thread of this process, until stopped."""

    def __init__(self, port: int, count: int, every_s: float) -> None:
        self.load = Load()
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(port, count, every_s, ready))
        self.thread.start()
        ready.wait()

    def _run(self, port: int, count: int, every_s: float, ready: threading.Event) -> None:
        async def main() -> None:
            self.stop_event = stop = asyncio.Event()
            ready.set()
            await asyncio.gather(*(scraper(port, stop, self.load, every_s) for _ in range(count)))

        self.loop.run_until_complete(main())
        self.loop.close()

    def stop(self) -> Load:
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join()
        return self.load


@dataclass
class Run:
    duration_s: float
    scrapes: list[float]  # seconds of the scrapes answered while the run was in flight
    refused: int


def one_run(port: int, scrapers: int, every_s: float = 0.0) -> Run:
    """POST /run with ``scrapers`` hammering /metrics (started 0.5 s before, to connect).

    The POST's connection is made first: with more scrapers than serve's connection cap,
    a connection made later would wait for one of theirs to end (their 30 s deadline)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    get(connection, "/healthz")  # connected and holding one of serve's slots
    load = Scrapers(port, scrapers, every_s) if scrapers else None
    time.sleep(max(0.5, every_s) if scrapers else 0)
    asked = time.perf_counter()
    connection.request("POST", "/run")
    answer = connection.getresponse()
    body = answer.read()
    answered = time.perf_counter()
    seen = load.stop() if load is not None else Load()
    if answer.status not in (200, 503) or json.loads(body).get("run") is None:
        sys.exit(f"POST /run: {answer.status} {body[:500]!r}")
    run = json.loads(body)["run"]
    during = [seconds for started, seconds in seen.scrapes if asked <= started <= answered]
    return Run(float(run["duration_s"]), during, seen.refused)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=100, help="x 2 endpoints (default: 100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scrapes", type=int, default=200, help="sequential scrapes for (a)")
    parser.add_argument("--scrapers", type=int, default=100)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    endpoints = subprocess.Popen(
        [sys.executable, "-c", ENDPOINTS, str(BENCHMARKS)], stdout=subprocess.PIPE
    )
    assert endpoints.stdout is not None
    base = f"http://127.0.0.1:{int(endpoints.stdout.readline())}"
    with tempfile.TemporaryDirectory(prefix="deployproof-serve-bench-") as tmp:
        work = Path(tmp)
        write_project(work, args.stacks, base)
        port = free_port()
        serve = start_serve(work, port)
        try:
            first = wait_for_first_run(work, serve, port)
            checks = len(first["checks"])  # type: ignore[arg-type]
            body = get(http.client.HTTPConnection("127.0.0.1", port), "/metrics")[1]
            packed = get(http.client.HTTPConnection("127.0.0.1", port), "/metrics", zipped=True)
            metrics = warm_scrapes(port, "/metrics", args.scrapes)
            zipped = warm_scrapes(port, "/metrics", args.scrapes, zipped=True)
            healthz = warm_scrapes(port, "/healthz", args.scrapes)
            variants = {
                "b0": (0, 0.0),
                "b1": (1, 0.0),
                f"b{args.scrapers}": (args.scrapers, 0.0),
                "paced": (args.scrapers, 1.0),
            }
            one_run(port, 0)  # warm: the first run after serve started is not a round
            runs: dict[str, list[Run]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, (scrapers, every_s) in variants.items():
                    runs[name].append(one_run(port, scrapers, every_s))
        finally:
            serve.terminate()
            serve.wait(timeout=30)
            endpoints.kill()
            endpoints.wait()

    def shown(name: str) -> str:
        times = [run.duration_s for run in runs[name]]
        return f"{statistics.median(times):6.2f} s  ({min(times):.2f}-{max(times):.2f})"

    loaded = f"b{args.scrapers}"
    median = {name: statistics.median(run.duration_s for run in runs[name]) for name in runs}
    under = [seconds for run in runs[loaded] for seconds in run.scrapes]
    single = [seconds for run in runs["b1"] for seconds in run.scrapes]
    refused = sum(run.refused for run in runs[loaded])
    ratio = median[loaded] / median["b1"]
    scrape_p50 = statistics.median(metrics)
    lines = body.count(b"\n")
    print(f"{args.stacks} stacks x 2 health endpoints = {checks} checks; /metrics is "
          f"{len(body) / 1024:.0f} KiB, {lines} lines "
          f"({len(packed[1]) / 1024:.0f} KiB gzipped)")  # fmt: skip
    print(f"(a)  warm /metrics, {args.scrapes} sequential keep-alive GETs: "
          f"p50 {ms(scrape_p50)}  p95 {ms(percentile(metrics, 0.95))}")  # fmt: skip
    print(f"     warm /metrics gzipped, the same:              "
          f"p50 {ms(statistics.median(zipped))}  p95 {ms(percentile(zipped, 0.95))}")  # fmt: skip
    print(f"     warm /healthz, {args.scrapes} sequential keep-alive GETs: "
          f"p50 {ms(statistics.median(healthz))}  p95 {ms(percentile(healthz, 0.95))}")  # fmt: skip
    print(f"(b)  one run of {checks} checks, median of {args.rounds} interleaved rounds (range)")
    print(f"     no scraper                   {shown('b0')}")
    print(f"     1 scraper                    {shown('b1')}  "
          f"{len(single)} scrapes, p50 {ms(statistics.median(single))}")  # fmt: skip
    print(f"     {args.scrapers} scrapers                 {shown(loaded)}  "
          f"{len(under)} scrapes, p50 {ms(statistics.median(under))}  "
          f"p95 {ms(percentile(under, 0.95))}; {refused} refused (503 over the cap)")  # fmt: skip
    paced = [seconds for run in runs["paced"] for seconds in run.scrapes]
    print(f"     {args.scrapers} scrapers, each every 1 s {shown('paced')}  "
          f"{len(paced)} scrapes, p50 {ms(statistics.median(paced))}  "
          f"p95 {ms(percentile(paced, 0.95))}; "
          f"{sum(run.refused for run in runs['paced'])} refused")  # fmt: skip
    print(f"(b{args.scrapers})/(b1) = {ratio:.2f}  (target <= {TARGET_RUN_RATIO})")
    back_to_back = median["b1"] / median["b0"]
    print(f"(b1)/(b0)  = {back_to_back:.2f}  (a scraper back to back takes CPU from the run)")
    print(f"(paced)/(b0) = {median['paced'] / median['b0']:.2f}")
    print(f"(a) /metrics p50 = {scrape_p50 * 1000:.2f} ms  (target <= {TARGET_SCRAPE_P50_MS} ms)")
    missed = ratio > TARGET_RUN_RATIO or scrape_p50 * 1000 > TARGET_SCRAPE_P50_MS
    if args.check and missed:
        sys.exit("a target was missed")


if __name__ == "__main__":
    main()
