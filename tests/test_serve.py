"""``deployproof serve`` against a real Compose stack, scraped by a real Prometheus server.

One serve process (interval 2 s, a bearer token) watches a stack of two services and an
endpoint; Debian's ``prometheus`` scrapes its /metrics every second with that token, and
the series are read back through Prometheus's HTTP query API. A container is stopped
(/healthz goes 503 ``failed`` and the verdict gauge flips within two intervals), started
again (it recovers; the flips make it flaky under ``--flaky 2/10``), concurrent on-demand
requests share one run, and SIGTERM ends serve with exit 0 and no pytest left behind. A
second serve on the same port, with Docker pointed at nothing, is ``inconclusive``
(503), never healthy, and Prometheus sees that too. No mocks: the real engine, Compose,
pytest runs and Prometheus.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pytest_deployproof.ops.serve.http import ServeServer
from pytest_deployproof.ops.serve.metrics import Exposition
from pytest_deployproof.ops.serve.results import Health, Status, judge
from pytest_deployproof.ops.serve.runs import Pending, RunCommand, Runs
from pytest_deployproof.report.run_history import FlakyRule
from pytest_deployproof.secrets import Masker
from pytest_deployproof.signed_http import KEEPALIVE_RESERVE, MAX_CONNECTIONS
from tests.support.compose import ComposeStack, inventory_yaml
from tests.support.need import need
from tests.support.network import free_port

MakeStack = Callable[..., ComposeStack]
INTERVAL_S = 2.0
TOKEN = "serve-token-0123456789"
DEPLOYPROOF = str(Path(sys.executable).parent / "deployproof")


@dataclass
class Answer:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def http(url: str, *, method: str = "GET", token: str | None = TOKEN) -> Answer:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return Answer(answer.status, answer.read().decode())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read().decode())


def wait_until(what: str, probe: Callable[[], Any], timeout_s: float) -> tuple[Any, float]:
    """Poll ``probe`` until it returns something truthy; that value and the seconds it took."""
    start = time.monotonic()
    last: Any = None
    while time.monotonic() - start < timeout_s:
        last = probe()
        if last:
            return last, time.monotonic() - start
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {timeout_s:g} s (last: {last!r})", pytrace=False)


class Serve:
    """A ``deployproof serve`` process of this test, stopped (and checked) at the end."""

    def __init__(self, root: Path, port: int, *extra: str, env: dict[str, str] | None = None):
        self.root, self.port = root, port
        environment = {k: v for k, v in os.environ.items() if k != "DEPLOYPROOF_BUILTIN"}
        environment |= {"DP_SERVE_TOKEN": TOKEN, **(env or {})}
        argv = [DEPLOYPROOF, "serve", "--env", "test", "-m", "smoke", "--port", str(port)]
        argv += ["--interval", f"{INTERVAL_S:g}s", "--token-env", "DP_SERVE_TOKEN", *extra]
        self.log = root / f"serve-{port}-{time.monotonic_ns()}.log"
        # The bundled checks are collected (DEPLOYPROOF_BUILTIN unset), from this directory.
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=root, env=environment, stdout=log, stderr=subprocess.STDOUT
            )
        start = time.monotonic()
        while not _listening(port):
            if self.process.poll() is not None or time.monotonic() - start > 20:
                self.stop()
                pytest.fail(f"deployproof serve did not listen:\n{self.output()}", pytrace=False)
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz(self, path: str = "/healthz") -> Answer:
        return http(self.url + path)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pytest_processes(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (our inventory's path)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if marker in line and "pytest" in line:
            found.append(f"{proc.name}: {line}")
    return found


@dataclass
class Prometheus:
    url: str

    def query(self, expression: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=10) as answer:
            document = json.load(answer)
        assert document["status"] == "success", document
        return list(document["data"]["result"])

    def value(self, expression: str) -> float | None:
        """The one sample of ``expression`` now, or None when it has none (yet)."""
        result = self.query(expression)
        return float(result[0]["value"][1]) if len(result) == 1 else None


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], Prometheus]]:
    """Start Debian's Prometheus on loopback, scraping a serve port every second (with the
    bearer token); stopped afterwards. Never the package's own service."""
    binary = shutil.which("prometheus")
    if binary is None:
        need("prometheus", "Debian's prometheus package (scripts/setup.sh installs it)")
    started: list[subprocess.Popen[bytes]] = []

    def start(target_port: int) -> Prometheus:
        home = tmp_path / "prometheus"
        home.mkdir()
        (home / "token").write_text(TOKEN)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "deployproof",
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "authorization": {"credentials_file": str(home / "token")},
                    "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                }
            ],
        }
        (home / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        port = free_port()
        with (home / "prometheus.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={home / 'prometheus.yml'}",
                    f"--storage.tsdb.path={home / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        server = Prometheus(f"http://127.0.0.1:{port}")
        wait_until("prometheus ready", lambda: _ready(server.url), 30)
        return server

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def checks_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["check"]: check for check in document["checks"]}


def verdict_series(check: str, verdict: str) -> str:
    return f'deployproof_check_verdict{{check="{check}",verdict="{verdict}",stack="app"}}'


def test_serve_follows_a_real_stack_through_healthz_and_prometheus(
    tmp_path: Path, compose_stack: MakeStack, prometheus: Callable[[int], Prometheus]
) -> None:
    app = compose_stack("app", web={}, worker={})
    app.up()
    print(f"compose project {app.project}")
    (tmp_path / "inventories").mkdir()
    inventory = tmp_path / "inventories" / "test.yml"
    inventory.write_text(inventory_yaml([app]) + f"state_dir: {tmp_path / 'state'}\n")
    port = free_port()
    serve = Serve(tmp_path, port, "--flaky", "2/10")
    try:
        server = prometheus(port)

        # Healthy: every check passed in a fresh run; Prometheus reads the same.
        wait_until("a healthy run", lambda: serve.healthz().status == 200, 40)
        document = serve.healthz().json()
        assert document["status"] == "healthy"
        checks = checks_by_name(document)
        assert set(checks) == {"service_running/web", "service_running/worker",
                               "endpoint_answers/health"}  # fmt: skip
        assert {c["verdict"] for c in checks.values()} == {"passed"}
        assert checks["endpoint_answers/health"]["attempts"] == 1  # BYD-3, from the report
        assert checks["endpoint_answers/health"]["elapsed_s"] is not None
        assert serve.healthz("/healthz/app?format=text").body.startswith("HEALTHY test/app:")
        assert serve.healthz("/healthz/nope").status == 404
        assert http(serve.url + "/healthz", token=None).status == 401
        assert http(serve.url + "/metrics", token="wrong").status == 401
        wait_until(
            "prometheus sees the worker passed",
            lambda: server.value(verdict_series("service_running/worker", "passed")) == 1.0,
            15,
        )
        assert server.value('deployproof_healthy{env="test"}') == 1.0
        # The latency histogram reaches Prometheus (gzipped, as it asks): a run per count.
        probes = 'deployproof_check_latency_seconds_count{check="endpoint_answers/health"}'
        assert (server.value(probes) or 0) >= 1

        # /metrics parses with prometheus_client's own parser: one verdict per check is 1.
        families = {
            f.name: f for f in text_string_to_metric_families(serve.healthz("/metrics").body)
        }
        verdicts = families["deployproof_check_verdict"].samples
        for check in checks:
            ones = [
                s.labels["verdict"] for s in verdicts if s.labels["check"] == check and s.value == 1
            ]
            assert ones == ["passed"], (check, ones)
        assert {
            "deployproof_check_attempts",
            "deployproof_check_elapsed_seconds",
            "deployproof_check_flaky",
            "deployproof_check_latency_seconds",
            "deployproof_last_run_timestamp_seconds",
            "deployproof_last_run_duration_seconds",
            "deployproof_runs",
        } <= set(families)

        # A stopped container: 503 "failed" within two intervals (plus the run that sees it).
        subprocess.run(["docker", "stop", "-t", "1", app.container("worker")], check=True,
                       capture_output=True)  # fmt: skip
        _, took = wait_until(
            "/healthz 503 failed", lambda: _status(serve) == (503, "failed"), 4 * INTERVAL_S + 6
        )
        document = serve.healthz().json()
        worker = checks_by_name(document)["service_running/worker"]
        assert worker["verdict"] == "failed"
        assert app.container("worker") in worker["message"]
        assert checks_by_name(document)["service_running/web"]["verdict"] == "passed"
        assert serve.healthz("/healthz/app").status == 503
        assert serve.healthz("/healthz?format=text").body.startswith("FAILED test:")
        wait_until(
            "prometheus sees the worker failed",
            lambda: server.value(verdict_series("service_running/worker", "failed")) == 1.0,
            4 * INTERVAL_S,
        )
        assert server.value(verdict_series("service_running/worker", "passed")) == 0.0
        assert server.value('deployproof_healthy{env="test"}') == 0.0
        print(f"stopped container seen by /healthz after {took:.1f} s")

        # Started again: recovers; the two flips make it flaky under --flaky 2/10.
        subprocess.run(["docker", "start", app.container("worker")], check=True,
                       capture_output=True)  # fmt: skip
        _, took = wait_until("/healthz 200 again", lambda: serve.healthz().status == 200, 30)
        print(f"recovery seen by /healthz after {took:.1f} s")
        worker = checks_by_name(serve.healthz().json())["service_running/worker"]
        assert worker["verdict"] == "passed"
        assert worker["flaky"]["flaky"] is True, worker
        assert worker["flaky"]["flips"] >= 2, worker  # failed, then passed again
        wait_until(
            "prometheus sees the worker flaky",
            lambda: server.value('deployproof_check_flaky{check="service_running/worker"}') == 1.0,
            4 * INTERVAL_S,
        )
        assert server.value('deployproof_check_flaky{check="service_running/web"}') == 0.0

        # Single-flight: concurrent on-demand requests share one run.
        answers: list[Answer] = []
        threads = [
            threading.Thread(target=lambda: answers.append(http(serve.url + "/run", method="POST")))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a.status for a in answers] == [200] * 8, [a.body for a in answers]
        run_ids = {a.json()["run"]["id"] for a in answers}
        assert len(run_ids) == 1, run_ids

        # SIGTERM, a run in flight: exit 0, and no pytest of ours left.
        http(serve.url + "/healthz")
        wait_until("a run in flight", lambda: serve.healthz().json()["running"], 10)
        assert pytest_processes(str(inventory.parent)), "a run should be in flight"
        assert serve.stop() == 0, serve.output()
        assert pytest_processes(str(inventory.parent)) == []

        # Runs never overlapped: each started after the one before finished.
        with sqlite3.connect(tmp_path / "state" / "serve-runs.sqlite3") as db:
            runs = db.execute("SELECT id, started, finished FROM runs ORDER BY id").fetchall()
        assert len(runs) >= 5
        for before, after in itertools.pairwise(runs):
            assert after[1] >= before[2], (before, after)
        assert max(run_ids) in {run[0] for run in runs}

        # `deployproof trend` reads the same memory.
        trend = subprocess.run(
            [DEPLOYPROOF, "trend", "--env", "test", "app", "--json"],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        )  # fmt: skip
        by_check = {t["check"]: t for t in json.loads(trend.stdout)}
        assert by_check["service_running/web"]["pass_rate"] == 1.0
        assert 0 < by_check["service_running/worker"]["pass_rate"] < 1
        assert by_check["service_running/worker"]["flips"] >= 2
        assert by_check["endpoint_answers/health"]["p50_elapsed_s"] is not None

        # Docker unreachable: inconclusive (503), never healthy; Prometheus sees it too.
        serve = Serve(tmp_path, port, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
        _, took = wait_until(
            "/healthz 503 inconclusive",
            lambda: _status(serve) == (503, "inconclusive"),
            4 * INTERVAL_S + 6,
        )
        document = serve.healthz().json()
        assert {c["verdict"] for c in document["checks"]} == {"inconclusive"}
        assert "cannot reach Docker" in document["reason"]
        wait_until(
            "prometheus sees inconclusive",
            lambda: server.value(verdict_series("service_running/web", "inconclusive")) == 1.0,
            4 * INTERVAL_S,
        )
        assert server.value('deployproof_healthy{env="test"}') == 0.0
        assert TOKEN not in serve.healthz("/metrics").body + serve.healthz().body
        assert serve.stop() == 0, serve.output()
        assert pytest_processes(str(inventory.parent)) == []
    finally:
        serve.stop()


def _status(serve: Serve) -> tuple[int, str]:
    answer = serve.healthz()
    return answer.status, answer.json().get("status", "")


HOLD_TEST = '''
import time
from pathlib import Path

import pytest


@pytest.mark.smoke
def test_gate_opens():
    """The project's own check, run by serve beside the selection: it waits while ./hold exists."""
    while Path("hold").exists():
        time.sleep(0.05)
'''


def test_serve_says_unknown_then_cuts_a_hung_run_and_calls_an_old_result_stale(
    tmp_path: Path,
) -> None:
    """Without Docker: the project's own smoke check, which hangs while a file exists. No run
    finished yet is ``unknown``; a run past --timeout is killed with its pytest (inconclusive,
    naming the deadline); a result older than two intervals is ``stale``: all 503."""
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "test.yml").write_text(
        f"hosts: {{here: {{spec: 'local://'}}}}\nstate_dir: {tmp_path / 'state'}\n"
    )
    (tmp_path / "test_hold.py").write_text(HOLD_TEST)
    hold = tmp_path / "hold"
    hold.touch()
    # A deadline with room for a pytest start on a loaded machine (3 s was cut in CI).
    serve = Serve(tmp_path, free_port(), "--interval", "1s", "--timeout", "5s",
                  env={"DEPLOYPROOF_BUILTIN": "0"})  # fmt: skip
    try:
        document = serve.healthz().json()
        assert (document["status"], document["run"]) == ("unknown", None)
        assert serve.healthz().status == 503

        wait_until(
            "the hung run cut at its deadline", lambda: _status(serve)[1] == "inconclusive", 15
        )
        document = serve.healthz().json()
        assert "stopped at its deadline of 5 s" in document["reason"]
        assert document["run"]["outcome"] == "error"
        assert document["checks"][0]["verdict"] == "inconclusive"
        assert 4.5 < document["run"]["duration_s"] < 12, document["run"]

        hold.unlink()
        wait_until("healthy once the check can pass", lambda: serve.healthz().status == 200, 30)
        assert checks_by_name(serve.healthz().json()).keys() == {"gate_opens"}

        hold.touch()  # the next run hangs: what we know ages past two intervals
        wait_until("stale", lambda: _status(serve) == (503, "stale"), 15)
        assert "too old" in serve.healthz().json()["reason"]
        assert serve.stop() == 0, serve.output()
        assert pytest_processes(str(tmp_path / "inventories")) == []
    finally:
        serve.stop()


class Flapping(ThreadingHTTPServer):
    """Answers 200 and 503 in turn: the endpoint of a check that flaps."""

    def __init__(self) -> None:
        self.served = 0
        super().__init__(("127.0.0.1", 0), _FlapHandler)


class _FlapHandler(BaseHTTPRequestHandler):
    server: Flapping

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self.server.served += 1
        status = 200 if self.server.served % 2 else 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def flapping() -> Iterator[Callable[[], Flapping]]:
    servers: list[Flapping] = []

    def start() -> Flapping:
        server = Flapping()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_flapping_endpoint_is_flaky_after_the_configured_runs(
    tmp_path: Path, flapping: Callable[[], Flapping]
) -> None:
    """Two endpoints on servers failing every other request: one probed once per run
    (pass, fail, pass: flips), one with two tries (always passes, on its second attempt:
    retries). Under --flaky 3/10 both are flaky after enough runs, in /healthz, /metrics
    and `deployproof trend`; a steady passing run is not."""
    once, retried = flapping(), flapping()
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "test.yml").write_text(
        "hosts: {here: {spec: 'local://'}}\n"
        f"state_dir: {tmp_path / 'state'}\n"
        "probes: {tries: 1, interval_s: 0.05, deadline_s: 5}\n"
        "stacks:\n"
        "  flap:\n"
        f"    {{layer: platform, host: here, run_dir: {tmp_path}, services: {{app: {{}}}},\n"
        "      endpoints: [\n"
        f"      {{name: once, url: 'http://127.0.0.1:{once.server_port}/', health: true}},\n"
        f"      {{name: retried, url: 'http://127.0.0.1:{retried.server_port}/', health: true,"
        " tries: 2}]}\n"
    )
    # Only the health checks: a deselected container check blocks nothing (no containers).
    serve = Serve(tmp_path, free_port(), "-m", "health", "--interval", "0.5s", "--flaky", "3/10")
    try:

        def flaky() -> dict[str, Any] | None:
            checks = checks_by_name(serve.healthz().json())
            flags = {
                name: (check["flaky"] or {}).get("flaky")
                for name, check in checks.items()
                if name.startswith("health_endpoint/")
            }
            return checks if flags == {"health_endpoint/once": True,
                                       "health_endpoint/retried": True} else None  # fmt: skip

        checks, _ = wait_until("both endpoints flaky", flaky, 40)
        assert checks["health_endpoint/once"]["flaky"]["flips"] >= 3
        assert checks["health_endpoint/retried"]["flaky"]["retried"] >= 3
        assert checks["health_endpoint/retried"]["verdict"] == "passed"
        assert checks["health_endpoint/retried"]["attempts"] == 2
        families = text_string_to_metric_families(serve.healthz("/metrics").body)
        flaky_gauge = next(f for f in families if f.name == "deployproof_check_flaky")
        assert {s.labels["check"]: s.value for s in flaky_gauge.samples} == {
            "health_endpoint/once": 1.0,
            "health_endpoint/retried": 1.0,
            "database_answers": 0.0,  # none declared: skipped, never flaky
        }
        assert serve.stop() == 0, serve.output()
    finally:
        serve.stop()
    trend = subprocess.run(
        [DEPLOYPROOF, "trend", "--env", "test", "flap"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = trend.stdout.splitlines()
    assert len(lines) == 2, trend.stdout  # the stack's two checks
    assert all(line.endswith(" FLAKY") for line in lines), trend.stdout

    # A plain pytest run of the environment reads the same memory: the terminal, the
    # dashboard and Allure name both checks flaky, and only those.
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "--env", "test", "-m", "health", "-p", "no:cacheprovider",
         "--alluredir", "allure", "--dashboard", "dashboard.md"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={k: v for k, v in os.environ.items() if k != "DEPLOYPROOF_BUILTIN"},
    )  # fmt: skip
    section = plain.stdout.split("deployproof: flaky checks (memory of past runs)")[-1]
    flagged = [line for line in section.splitlines() if line.startswith("test/")]
    assert [line.split(": ")[0] for line in flagged] == [
        "test/platform/flap/once",
        "test/platform/flap/retried",
    ], plain.stdout + plain.stderr
    said = (
        r"\S+: test_health_endpoint: (\d+) of the last (\d+) runs \(retried (\d+), flipped (\d+)\)"
    )
    seen = [re.fullmatch(said, line) for line in flagged]
    assert all(seen), flagged
    (_, _, _, once_flips), (_, _, retried, _) = (
        tuple(int(n) for n in match.groups()) for match in seen if match
    )
    assert once_flips >= 3, flagged
    assert retried >= 3, flagged
    assert "**Flaky**" in (tmp_path / "dashboard.md").read_text()
    tags = {
        json.loads(path.read_text())["name"]: [
            label["value"]
            for label in json.loads(path.read_text())["labels"]
            if label["name"] == "tag"
        ]
        for path in (tmp_path / "allure").glob("*-result.json")
    }
    assert {name for name, values in tags.items() if "flaky" in values} == {
        "test_health_endpoint[test/platform/flap/once]",
        "test_health_endpoint[test/platform/flap/retried]",
    }, tags


HELD_RUN = """
import sys, time
from pathlib import Path

here = Path(sys.argv[1])
with (here / "starts").open("a") as starts:
    starts.write(f"{time.time()}\\n")
while (here / "hold").exists():
    time.sleep(0.02)
"""


class HeldCommand(RunCommand):
    """A run that is a tiny script, not pytest: it notes when it started and lasts while
    ``cwd/hold`` exists, so a test holds a run in flight without Docker or a suite."""

    def argv(self, results: Path) -> list[str]:
        return [sys.executable, "-c", HELD_RUN, str(self.cwd)]


def starts(where: Path) -> list[float]:
    path = where / "starts"
    return [float(line) for line in path.read_text().split()] if path.exists() else []


@pytest.fixture
def held_runs(tmp_path: Path) -> Iterator[Callable[[], Runs]]:
    """Make the ``Runs`` of a serve whose runs are :class:`HeldCommand`; stopped after."""
    made: list[Runs] = []

    def make() -> Runs:
        runs = Runs(
            HeldCommand("test", tmp_path / "inventories", cwd=tmp_path),
            interval_s=3600,  # no scheduled run after the first: only those asked for
            timeout_s=30,
            history=None,
            flaky_rule=FlakyRule(),
            masker=Masker(),
        )
        made.append(runs)
        return runs

    yield make
    for runs in made:
        runs.stop()


def test_a_requested_run_starts_after_the_request_not_the_one_in_flight(
    tmp_path: Path, held_runs: Callable[[], Runs]
) -> None:
    """POST /run after a deploy must not be answered with a run begun before it: the run in
    flight ends, then one more starts, shared by every request that came in meanwhile."""
    (tmp_path / "hold").touch()
    runs = held_runs()
    runs.start()
    wait_until("the first run in flight", lambda: runs.running and starts(tmp_path), 20)
    asked = time.time()
    pendings: list[Pending] = []
    threads = [threading.Thread(target=lambda: pendings.append(runs.request())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(pending) for pending in pendings}) == 1  # coalesced onto one next run
    assert not pendings[0].done.is_set()
    (tmp_path / "hold").unlink()
    result = pendings[0].wait(30)
    assert result is not None
    assert result.id == 2
    assert result.started >= asked
    assert len(starts(tmp_path)) == 2  # the one in flight, and the one asked for: no more


def test_a_request_after_serve_stopped_is_answered_as_abandoned(
    held_runs: Callable[[], Runs],
) -> None:
    runs = held_runs()
    runs.stop()
    pending = runs.request()
    assert (pending.done.is_set(), pending.wait(0)) == (True, None)


SCRIPTED_RUN = """
import shutil, sys
from pathlib import Path

here = Path(sys.argv[1])
shutil.copyfile(here / "next.jsonl", sys.argv[2])
sys.exit(int((here / "next.code").read_text()))
"""


class ScriptedCommand(RunCommand):
    """A run that is a tiny script, not pytest: it hands back ``cwd/next.jsonl`` as the
    collector would have written it and exits with ``cwd/next.code``, so a test decides
    each run's verdicts and probe times exactly, without Docker or a suite."""

    def argv(self, results: Path) -> list[str]:
        return [sys.executable, "-c", SCRIPTED_RUN, str(self.cwd), str(results)]


@dataclass(frozen=True)
class Seen:
    """One check of a scripted run: what it is (stack, kind, name) and what it concluded."""

    stack: str
    kind: str
    check: str
    verdict: str = "passed"
    elapsed_s: float | None = None

    def collected(self) -> dict[str, Any]:
        return {"id": f"t.py::{self.stack}/{self.check}", "env": "test", "layer": "platform",
                "stack": self.stack, "kind": self.kind, "check": self.check}  # fmt: skip

    def reported(self) -> dict[str, Any]:
        attempts = None if self.elapsed_s is None else 1
        return {"check": self.collected(), "verdict": self.verdict, "message": "",
                "attempts": attempts, "elapsed_s": self.elapsed_s}  # fmt: skip


class Scripted:
    """The ``Runs`` of a serve whose runs are :class:`ScriptedCommand`, and its /metrics."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.runs = Runs(
            ScriptedCommand("test", where / "inventories", cwd=where),
            interval_s=3600,  # only the first run and those asked for
            timeout_s=30,
            history=None,
            flaky_rule=FlakyRule(),
            masker=Masker(),
        )
        self.healthy = True
        self.metrics = Exposition("test", self.runs, self._health)

    def _health(self, run: Any) -> Health:
        return judge(run) if self.healthy else Health(Status.STALE, "pretend it aged")

    def run(self, checks: list[Seen], code: int = 1) -> None:
        """One run that reports ``checks`` and exits ``code`` (1: judged, some failed)."""
        lines = [{"collected": [seen.collected() for seen in checks]}]
        lines += [seen.reported() for seen in checks] + [{"exitstatus": code}]
        (self.where / "next.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        (self.where / "next.code").write_text(str(code))
        if self.runs.latest is None and not self.runs.running:
            self.runs.start()  # its first run starts at once
            wait_until("the first run", lambda: self.runs.latest, 20)
            return
        assert self.runs.request().wait(30) is not None

    def families(self) -> dict[str, Any]:
        text = self.metrics.body().decode()
        return {family.name: family for family in text_string_to_metric_families(text)}

    def samples(self, family: str, **labels: str) -> dict[tuple[str, ...], float]:
        """``family``'s samples whose labels include ``labels``: (sample name, the other
        labels' values...) -> value."""
        found = {}
        for sample in self.families()[family].samples:
            if labels.items() <= sample.labels.items():
                rest = tuple(v for k, v in sorted(sample.labels.items()) if k not in labels)
                found[(sample.name, *rest)] = sample.value
        return found


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[Scripted]:
    made = Scripted(tmp_path)
    yield made
    made.runs.stop()


LATENCY = "deployproof_check_latency_seconds"
BOUNDS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0"]


def latency(scripted: Scripted, check: str) -> dict[str, float]:
    """The histogram of ``check``: each bucket by its bound, then ``count`` and ``sum``."""
    shown = {}
    for sample in scripted.families()[LATENCY].samples:
        if sample.labels["check"] == check:
            name = sample.name.removeprefix(LATENCY + "_")
            shown[sample.labels["le"] if name == "bucket" else name] = sample.value
    return shown


def buckets(*observed: float) -> dict[str, float]:
    """What a histogram holding ``observed`` shows: cumulative bucket counts, count, sum."""
    shown = {b: float(sum(1 for o in observed if o <= float(b))) for b in BOUNDS}
    return {**shown, "+Inf": float(len(observed)), "count": float(len(observed)),
            "sum": pytest.approx(sum(observed))}  # fmt: skip


def test_latency_histograms_count_each_finished_run_once_however_often_scraped(
    scripted: Scripted,
) -> None:
    """Each finished run adds one observation per probing check (its elapsed_s) to a
    histogram that keeps growing over serve's lifetime; scrapes, many or none between
    runs, add nothing; a check that does not probe has no histogram."""
    fast, slow, container = "endpoint/fast", "endpoint/slow", "service_running/web"
    times = [(0.003, 0.3), (0.02, 0.3), (0.07, 12.0)]  # the last slow one: past every bucket
    for index, (a, b) in enumerate(times):
        scripted.run([Seen("web", "health", fast, elapsed_s=a),
                      Seen("web", "health", slow, elapsed_s=b, verdict="failed"),
                      Seen("web", "smoke", container)])  # fmt: skip
        for _ in range(3 if index else 0):  # no scrape after the first run, three after others
            scripted.families()
        assert latency(scripted, fast) == buckets(*(t[0] for t in times[: index + 1]))
        assert latency(scripted, slow) == buckets(*(t[1] for t in times[: index + 1]))
        assert scripted.samples(LATENCY, check=container) == {}
    assert latency(scripted, fast)["0.005"] == 1.0  # only the first run's 3 ms
    assert latency(scripted, fast)["0.1"] == 3.0
    assert latency(scripted, slow)["10.0"] == 2.0  # 12 s is in +Inf only
    assert latency(scripted, slow)["+Inf"] == 3.0

    # A run that did not judge (pytest exited 3) still made its probes: they count.
    scripted.run([Seen("web", "health", fast, elapsed_s=0.004)], code=3)
    assert latency(scripted, fast)["count"] == 4.0
    assert latency(scripted, fast)["0.005"] == 2.0
    # A check gone from the selection keeps its series (cumulative, as Prometheus expects).
    assert latency(scripted, slow)["count"] == 3.0


def test_a_scrape_sees_one_run_whole(scripted: Scripted) -> None:
    """Scrapes racing the runs: in every scrape the histogram's count is the number of runs
    that scrape's counters show finished, and the last run's verdict gauges are there."""
    check = Seen("web", "health", "endpoint/health", elapsed_s=0.01)
    scripted.run([check])
    mismatches: list[tuple[float, float]] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            families = scripted.families()
            runs = sum(s.value for s in families["deployproof_runs"].samples
                       if s.name.endswith("_total"))  # fmt: skip
            counts = [s.value for s in families[LATENCY].samples if s.name.endswith("_count")]
            if counts != [runs]:
                mismatches.append((runs, counts[0] if counts else -1))

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for _ in range(5):
            scripted.run([check])
    finally:
        done.set()
        scraper.join()
    assert mismatches == []
    assert latency(scripted, "endpoint/health")["count"] == 6.0


DRIFT = "deployproof_stack_drift"


def drift(scripted: Scripted) -> dict[str, float]:
    return {rest[-1]: value for (_, *rest), value in scripted.samples(DRIFT, env="test").items()}


def test_the_drift_gauge_is_1_for_a_failure_0_when_in_sync_and_absent_when_unknown(
    scripted: Scripted,
) -> None:
    """Per stack, from the last complete run: a failed drift check is 1, drift checks that
    all passed (a skipped one does not count) are 0, and a stack whose drift checks did not
    run or could not decide has no series at all, never 0."""
    scripted.run([
        Seen("drifted", "drift", "config_as_deployed", "failed"),
        Seen("drifted", "drift", "containers_as_declared", "passed"),
        Seen("synced", "drift", "config_as_deployed", "passed"),
        Seen("synced", "drift", "parity", "skipped"),  # not applicable: does not count
        Seen("unsure", "drift", "config_as_deployed", "passed"),
        Seen("unsure", "drift", "containers_as_declared", "inconclusive"),
        Seen("blocked", "drift", "containers_as_declared", "blocked"),
        Seen("skipped", "drift", "config_as_deployed", "skipped"),
        Seen("smoked", "smoke", "service_running/web", "failed"),  # no drift check at all
        Seen("-", "drift", "layer_in_sync", "failed"),  # a layer's: not a stack's
    ])  # fmt: skip
    assert drift(scripted) == {"drifted": 1.0, "synced": 0.0}
    assert scripted.families()[DRIFT].type == "gauge"

    # Repaired: the next run decides, and the gauge follows it.
    scripted.run([Seen("drifted", "drift", "config_as_deployed", "passed"),
                  Seen("synced", "drift", "config_as_deployed", "failed")])  # fmt: skip
    assert drift(scripted) == {"drifted": 0.0, "synced": 1.0}

    # A run that did not judge (pytest exited 3): a failure it saw stands, a pass does not.
    scripted.run([Seen("drifted", "drift", "config_as_deployed", "passed"),
                  Seen("synced", "drift", "config_as_deployed", "failed")], code=3)  # fmt: skip
    assert drift(scripted) == {"synced": 1.0}


def test_the_rendered_metrics_follow_health_between_runs(scripted: Scripted) -> None:
    """The body is rendered once per run and served again, but health ages without a run
    (fresh, then stale): deployproof_healthy must follow it all the same."""
    scripted.run([Seen("web", "health", "endpoint/health", elapsed_s=0.01)], code=0)
    assert scripted.samples("deployproof_healthy") == {("deployproof_healthy", "test"): 1.0}
    first = scripted.metrics.body()
    assert scripted.metrics.body() is first  # served again, not rendered again
    scripted.healthy = False
    assert scripted.samples("deployproof_healthy") == {("deployproof_healthy", "test"): 0.0}


@pytest.fixture
def served(held_runs: Callable[[], Runs]) -> Iterator[ServeServer]:
    """A serve HTTP server (bearer token ``TOKEN``) over held runs, on a free loopback port."""
    server = ServeServer(("127.0.0.1", 0), held_runs(), env="test", stacks=[], token=TOKEN,
                         masker=Masker())  # fmt: skip
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def exchange(server: ServeServer, raw: bytes) -> tuple[list[bytes], bytes, bool]:
    """Send ``raw`` (one or more requests) on one connection: the answers' status codes, the
    bytes read, and whether the server closed the connection after them."""
    port = server.server_address[1]
    data, closed = b"", False
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        sock.settimeout(3)
        try:
            while chunk := sock.recv(65536):
                data += chunk
            closed = True
        except TimeoutError:
            pass  # still open: keep-alive
    return re.findall(rb"^HTTP/1\.1 (\d{3}) ", data, re.MULTILINE), data, closed


AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()
SMUGGLED = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + AUTH
        + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED)
        + SMUGGLED,
        b"POST /run HTTP/1.1\r\nHost: x\r\n"
        + AUTH
        + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED)
        + SMUGGLED,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + AUTH
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(SMUGGLED)
        + SMUGGLED
        + b"\r\n0\r\n\r\n",
    ],
    ids=["get-with-body", "post-run-with-body", "chunked"],
)
def test_a_body_that_is_not_read_closes_the_connection(served: ServeServer, raw: bytes) -> None:
    """Served, unread, the body would be parsed as the next request on the connection (here a
    request of its own): answered once with ``Connection: close``, then closed."""
    statuses, data, closed = exchange(served, raw)
    assert len(statuses) == 1, data
    assert b"\r\nConnection: close\r\n" in data.split(b"\r\n\r\n")[0] + b"\r\n"
    assert closed
    assert b"deployproof_" not in data  # the smuggled /metrics was never served


@pytest.mark.parametrize("body", [b"", SMUGGLED], ids=["no-body", "body"])
def test_a_401_closes_the_connection(served: ServeServer, body: bytes) -> None:
    raw = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    statuses, data, closed = exchange(served, raw + SMUGGLED)
    assert statuses == [b"401"], data
    assert b"\r\nConnection: close\r\n" in data
    assert closed


def test_requests_without_a_body_keep_the_connection_alive(served: ServeServer) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n"
    statuses, data, closed = exchange(served, request + SMUGGLED)
    assert len(statuses) == 2, data
    assert b"Connection: close" not in data
    assert not closed


def _answer_head(sock: socket.socket) -> bytes:
    """The status line and headers of one answer (the body is read by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_keep_alive_clients_cannot_take_the_last_slots(served: ServeServer) -> None:
    """70 scrapers that keep their connections open: the first ones keep alive, but once
    fewer than KEEPALIVE_RESERVE slots are free each answer closes its connection, so a
    load balancer's new connection is still answered by /healthz, not refused by the cap."""
    port = served.server_address[1]
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n"
    held, closing = [], 0
    try:
        for _ in range(70):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append(sock)
            sock.sendall(request)
            head = _answer_head(sock)
            assert b"Content-Length: 0" not in head, head  # never the cap's empty 503
            closing += b"Connection: close" in head
        kept = 70 - closing
        assert MAX_CONNECTIONS - KEEPALIVE_RESERVE <= kept <= MAX_CONNECTIONS - 1, closing
        with socket.create_connection(("127.0.0.1", port), timeout=10) as balancer:
            balancer.sendall(request)
            head = _answer_head(balancer)
        assert head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 503 ")), head
        assert b"application/json" in head, head  # /healthz's own answer
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(
    ("accept", "zipped"),
    [(None, False), ("gzip", True), ("deflate, gzip;q=0.5", True), ("gzip;q=0", False)],
)
def test_metrics_are_gzipped_for_a_scraper_that_accepts_it(
    served: ServeServer, accept: str | None, zipped: bool
) -> None:
    """Prometheus asks for gzip: the same body, compressed (once per rendering)."""
    wait_until("a run", lambda: served.runs.latest, 20)
    connection = HTTPConnection("127.0.0.1", served.server_address[1], timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connection.request("GET", "/metrics", headers=headers)
    plain = connection.getresponse().read()
    connection.putrequest("GET", "/metrics", skip_accept_encoding=True)
    for name, value in {**headers, **({"Accept-Encoding": accept} if accept else {})}.items():
        connection.putheader(name, value)
    connection.endheaders()
    answer = connection.getresponse()
    body = answer.read()
    connection.close()
    assert answer.getheader("Content-Encoding") == ("gzip" if zipped else None)
    assert answer.getheader("Vary") == "Accept-Encoding"
    assert (gzip.decompress(body) if zipped else body) == plain
    assert b"deployproof_runs_total" in plain


def test_serve_with_a_state_dir_it_cannot_create_says_so_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """A usage error naming the path (exit 2, as an inventory that does not load), no
    traceback, and no working directory left behind in $TMPDIR."""
    (tmp_path / "blocker").write_text("a file where the state directory should go\n")
    state = tmp_path / "blocker" / "state"
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "test.yml").write_text(
        f"hosts: {{here: {{spec: 'local://'}}}}\nstate_dir: {state}\n"
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [DEPLOYPROOF, "serve", "--env", "test", "--port", str(free_port())],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(
        f"error: cannot keep serve's runs in {state / 'serve-runs.sqlite3'}: "
    ), done.stderr
    assert "set state_dir in the inventory to a directory serve can create" in done.stderr
    assert list(scratch.iterdir()) == []
