"""Endpoint probing at scale: deployproof vs a naive pytest file vs a bare asyncio script.

An inventory of STACKS stacks x 2 endpoints, all served by one loopback HTTP server that
answers every request after DELAY_MS. Three wall times, measured in the same run, each in
its own process (the server runs here, in threads):

  (a) deployproof: `pytest --env bench -m smoke -k test_endpoint_answers` over the bundled
      smoke suite (its container checks are deselected: these stacks have no containers,
      and a deselected check blocks nothing);
  (b) naive: one parametrised pytest test doing a sequential `httpx.get` per endpoint;
  (c) floor: one asyncio + httpx script probing every endpoint with a semaphore of 50;
and, to show what pytest itself costs, a bare pytest file with as many trivial tests, and,
for honesty, (c') the floor script given deployproof's own httpx tuning (pools of 10, one
TLS context): a floor that knows what deployproof knows.

(a), (c), (c') and bare pytest run in interleaved rounds (this machine's speed drifts by
10 % over a minute); each figure is the median of the rounds, with the range. (b) runs
once: it takes N x the server's delay.

Usage: python benchmarks/smoke_probe.py [--stacks 300] [--delay-ms 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import CHILD_ENV, PYTEST

REPO = Path(__file__).resolve().parent.parent
BUNDLED_SMOKE = REPO / "pytest_deployproof" / "suites" / "test_smoke.py"


class SlowServer:
    """An asyncio HTTP/1.1 server (keep-alive) answering every request after ``delay_s``.

    Python's ThreadingHTTPServer was tried first and stalled keep-alive connections for
    seconds under 50 concurrent clients, which measured the server, not the probes.
    """

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline():  # the request line; empty at EOF
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers
                await asyncio.sleep(self.delay_s)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def write_inventory(directory: Path, stacks: int, base: str) -> list[str]:
    lines = [
        "hosts: {here: {spec: 'local://'}}",
        "layers: {platform: {order: 2, engine: compose}}",
        "probes: {tries: 3, interval_s: 0.5, timeout_s: 10, deadline_s: 60, concurrency: 50}",
        "stacks:",
    ]
    urls = []
    for i in range(stacks):
        health, ready = f"{base}/s{i}/health", f"{base}/s{i}/ready"
        urls += [health, ready]
        lines += [
            f"  s{i:04d}:",
            "    layer: platform",
            "    host: here",
            f"    run_dir: /srv/stacks/s{i:04d}",
            "    services: {web: {critical: true}}",
            f"    endpoints: [{{name: health, url: '{health}'}}, {{name: ready, url: '{ready}'}}]",
        ]
    (directory / "inventories").mkdir()
    (directory / "inventories" / "bench.yml").write_text("\n".join(lines) + "\n")
    return urls


NAIVE = """\
import httpx
import pytest

URLS = {urls!r}

@pytest.mark.parametrize("url", URLS)
def test_endpoint(url):
    assert httpx.get(url, timeout=10).status_code == 200
"""

BARE = """\
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_nothing(i):
    pass
"""

FLOOR = """\
import asyncio, httpx, sys

URLS = {urls!r}

async def main():
    gate = asyncio.Semaphore(50)
    # Tuned: a keep-alive pool as large as max_connections makes httpx 4x slower here.
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        async def probe(url):
            async with gate:
                return (await client.get(url)).status_code
        codes = await asyncio.gather(*(probe(u) for u in URLS))
    assert all(code == 200 for code in codes), codes
    print(len(codes), "probes ok")

asyncio.run(main())
"""


FLOOR_TUNED = """\
import asyncio, httpx, ssl

URLS = {urls!r}

async def main():
    gate = asyncio.Semaphore(50)
    # deployproof's tuning: small pools (httpcore scans a pool per request), and one TLS
    # context that loads no CA bundle (there is no https URL here).
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
    verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    clients = [httpx.AsyncClient(limits=limits, timeout=10, verify=verify) for _ in range(5)]
    async def probe(index, url):
        async with gate:
            return (await clients[index % 5].get(url)).status_code
    codes = await asyncio.gather(*(probe(i, u) for i, u in enumerate(URLS)))
    for client in clients:
        await client.aclose()
    assert all(code == 200 for code in codes), codes
    print(len(codes), "probes ok")

asyncio.run(main())
"""


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, env=CHILD_ENV)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


# issue 22: the median of (a) within 10 % of the floor (c)
TARGET_A_OVER_C = 1.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=300)
    parser.add_argument("--delay-ms", type=int, default=100)
    parser.add_argument("--skip-naive", action="store_true", help="(b) takes N x delay seconds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    server = SlowServer(args.delay_ms / 1000)
    base = f"http://127.0.0.1:{server.port}"

    with tempfile.TemporaryDirectory(prefix="deployproof-bench-") as tmp:
        work = Path(tmp)
        urls = write_inventory(work, args.stacks, base)
        (work / "test_smoke.py").write_text(BUNDLED_SMOKE.read_text())
        (work / "naive").mkdir()
        (work / "naive" / "test_naive.py").write_text(NAIVE.format(urls=urls))
        (work / "bare").mkdir()
        (work / "bare" / "test_bare.py").write_text(BARE.format(n=len(urls)))
        (work / "floor.py").write_text(FLOOR.format(urls=urls))
        (work / "floor_tuned.py").write_text(FLOOR_TUNED.format(urls=urls))
        ours = [*PYTEST, "--env", "bench", "--deployproof-no-builtin", "-m", "smoke"]
        ours += ["-k", "test_endpoint_answers"]  # the copy in work/, not the bundled one
        variants = {
            "a": [*ours, "test_smoke.py"],
            "c": [sys.executable, "floor.py"],
            "tuned": [sys.executable, "floor_tuned.py"],
            "bare": [*PYTEST, "bare/test_bare.py"],
        }
        for argv in variants.values():
            timed(argv, work)  # warm-up: writes the bytecode caches
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, argv in variants.items():
                times[name].append(timed(argv, work))
        naive = 0.0 if args.skip_naive else timed([*PYTEST, "naive/test_naive.py"], work)

    a, c, tuned, bare = (statistics.median(times[name]) for name in variants)

    def shown(name: str) -> str:
        low, high = min(times[name]), max(times[name])
        return f"{statistics.median(times[name]):6.2f} s  ({low:.2f}-{high:.2f})"

    n = len(urls)
    print(f"{args.stacks} stacks x 2 endpoints = {n} probes, server latency {args.delay_ms} ms")
    print(f"medians of {args.rounds} interleaved rounds (range)")
    print(f"(a)  deployproof  pytest -m smoke          {shown('a')}")
    print(f"(b)  naive        sequential pytest        {naive:6.2f} s  (once)")
    print(f"(c)  floor        asyncio + httpx          {shown('c')}")
    print(f"(c') floor with deployproof's httpx tuning {shown('tuned')}")
    print(f"     bare pytest, {n} trivial tests         {shown('bare')}  (pytest's own cost)")
    print(f"(a)/(c)  = {a / c:.2f}  (target <= {TARGET_A_OVER_C})")
    print(f"(a)/(c') = {a / tuned:.2f}")
    print(f"bare/(c) = {bare / c:.2f}  (pytest alone, before any probing)")
    missed = a / c > TARGET_A_OVER_C
    if naive:
        print(f"(b)/(a)  = {naive / a:.1f}  (target >= 20)")
        missed = missed or naive / a < 20
    if args.check and missed:
        sys.exit("a target was missed")


if __name__ == "__main__":
    main()
