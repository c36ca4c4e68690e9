"""Endpoint probing in a child process, each result handed over as it arrives.

Why a process: probing hundreds of endpoints is CPU-bound in httpx, and so is
pytest's own per-test work. In one process they take turns on one GIL: probing
everything first makes the tests wait for the whole batch, and streaming from
a thread was measured slower still. A child process probes on another core
while the tests run, and each test waits only for its own endpoint
(benchmarks/smoke_probe.py).

The child is started before collection, so its interpreter and httpx are
loaded while pytest collects; it sends nothing until it is told which
endpoints the collected, selected tests check (one JSON line on its stdin).
It writes one JSON line per result and exits at the end of its batch, or at
once when its stdin closes without one. The parent kills it at the end of the
session, so an interrupted run leaves no prober behind.

The wire format is explicit dictionaries, not the inventory model: the child
does not import pydantic (half its start-up time).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

from .probes import Attempt, EndpointSpec, Pace, ProbeResult, probe_many

__all__ = ["Prober"]

# The child imports this module from the same place the parent did, even when the
# package is not installed (a source checkout on sys.path).
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from pytest_deployproof.observe.prober import main; main()"
)
_STDERR_TAIL = 2000


class Prober:
    """A child process that probes one batch of endpoints (see the module docstring)."""

    def __init__(self) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(Path(__file__).resolve().parent.parent)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._results: dict[str, ProbeResult] = {}
        self._keys: frozenset[str] = frozenset()
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="deployproof-prober", daemon=True)
        self._reader.start()

    def submit(self, targets: Mapping[str, EndpointSpec], probes: Pace) -> None:
        """Start probing ``targets`` (the only batch); an empty one ends the child."""
        stdin = self._process.stdin
        assert stdin is not None
        self._keys = frozenset(targets)
        try:
            if targets:
                batch = {
                    "probes": {name: getattr(probes, name) for name in _PACE},
                    "targets": [[key, _endpoint_wire(e)] for key, e in targets.items()],
                }
                stdin.write(json.dumps(batch).encode() + b"\n")
            stdin.close()
        except OSError:  # the child died early: result() will say so
            self._keys = frozenset()

    def expects(self, key: str) -> bool:
        return key in self._keys

    def result(self, key: str, timeout_s: float) -> ProbeResult | None:
        """``key``'s result once the child has it; ``None`` if the child ended without it
        or sent nothing for it within ``timeout_s``."""
        with self._changed:
            self._changed.wait_for(lambda: key in self._results or self._ended, timeout_s)
            return self._results.get(key)

    def abandon(self) -> tuple[dict[str, ProbeResult], str]:
        """Stop the child after it failed to deliver: what it did deliver, and why it
        failed (its exit status and the end of its stderr), for a warning."""
        with self._changed:
            hung = not self._ended  # its output ends just before it exits: ask the reader
        if hung:
            self._process.kill()
        self._process.wait()
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace")[-_STDERR_TAIL:].strip()
        self.close()
        reason = "it sent no result for too long" if hung else "it ended early"
        reason += f" (exit status {self._process.returncode}" + (f": {tail})" if tail else ")")
        with self._changed:
            return dict(self._results), reason

    def close(self) -> None:
        """Stop the child (if still probing) and release its pipes."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._reader.join()
        for stream in (self._process.stdin, self._process.stdout, self._stderr):
            if stream is not None and not stream.closed:
                stream.close()

    def _read(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            for line in stdout:
                key, result = _result_from_wire(json.loads(line))
                with self._changed:
                    self._results[key] = result
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()


# -- the wire format -----------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    url: str
    status: int
    body: str | None
    json_fields: dict[str, Any] | None
    latency_ms: float | None
    tries: int | None


@dataclass(frozen=True)
class _Pace:
    tries: int
    interval_s: float
    timeout_s: float
    deadline_s: float
    concurrency: int


# What crosses the pipe: the fields of these two records, read off the parent's objects.
_ENDPOINT = tuple(field.name for field in fields(_Endpoint))
_PACE = tuple(field.name for field in fields(_Pace))


def _endpoint_wire(endpoint: EndpointSpec) -> dict[str, Any]:
    return {name: getattr(endpoint, name) for name in _ENDPOINT}


def _result_wire(key: str, result: ProbeResult) -> dict[str, Any]:
    wire = asdict(result)
    del wire["passed"]  # derived
    return {"key": key, "result": wire}


def _result_from_wire(wire: dict[str, Any]) -> tuple[str, ProbeResult]:
    result = wire["result"]
    attempts = tuple(
        Attempt(
            status=a["status"],
            latency_ms=a["latency_ms"],
            body=a["body"],
            error=a["error"],
            problems=tuple(a["problems"]),
            headers=tuple((name, value) for name, value in a["headers"]),
        )
        for a in result["attempts"]
    )
    return wire["key"], ProbeResult(
        result["url"], result["expected_status"], attempts, result["elapsed_s"]
    )


# -- the child -----------------------------------------------------------------


def main(stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> None:
    """The child: read one batch, write each result as it completes, exit."""
    source = stdin or sys.stdin.buffer
    sink = stdout or sys.stdout.buffer
    line = source.readline()
    if not line.strip():
        return  # nothing to probe: the run selected no endpoint checks
    batch = json.loads(line)
    probes = _Pace(**batch["probes"])
    targets = {key: _Endpoint(**spec) for key, spec in batch["targets"]}

    def done(key: str, result: ProbeResult) -> None:
        sink.write(json.dumps(_result_wire(key, result)).encode() + b"\n")
        sink.flush()

    asyncio.run(probe_many(targets, probes, done))
