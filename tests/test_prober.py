"""The prober process: endpoints probed in a child process while the tests run (issue #3).

Against a real HTTP server on loopback; the pytest runs are real subprocesses, and
the child is found the way an operator would, in the process tree.
"""

from __future__ import annotations

import io
import json
import os
import re
import time

import pytest

from pytest_deployproof.inventory.model import Endpoint, ProbeSettings
from pytest_deployproof.observe.prober import Prober, main
from pytest_deployproof.observe.probes import ProbeResult, probe_all
from tests.support.loopback import Handler
from tests.support.network import free_port
from tests.support.repo import SMOKE_SUITE

FAST = ProbeSettings(tries=3, interval_s=0.05, timeout_s=2, deadline_s=5)
HEADER = "deployproof: endpoint checks get their probes from a separate process, streamed*"


def endpoints(base: str, tag: str, closed: int) -> dict[str, Endpoint]:
    """One endpoint per way a probe can end, each path tagged so its hits count apart;
    ``closed`` is a port nothing listens on."""
    return {
        "late": Endpoint(url=f"{base}/fail-2?{tag}"),
        "down": Endpoint(url=f"{base}/fail-99?{tag}", tries=2),
        "json": Endpoint.model_validate(
            {"url": f"{base}/json?{tag}", "json": {"status": "down"}, "tries": 1}
        ),
        "slow": Endpoint(url=f"{base}/slow-300?{tag}", latency_ms=100, tries=1),
        "refused": Endpoint(url=f"http://127.0.0.1:{closed}/health", tries=1),
        "tcp-closed": Endpoint(url=f"tcp://127.0.0.1:{closed}", tries=1),
    }


def seen(result: ProbeResult, tag: str) -> tuple[object, ...]:
    """What a report says of a result, without the timings (they differ run to run)."""

    def same(text: str) -> str:
        return re.sub(r"\d+ ms", "N ms", text.replace(tag, "TAG"))

    return (
        result.passed,
        same(result.url),
        [(a.status, a.body, a.error, [same(p) for p in a.problems]) for a in result.attempts],
        same(result.describe().splitlines()[0]),
    )


def test_the_prober_process_reports_what_probing_here_reports(server: str) -> None:
    closed = free_port()
    here = probe_all(endpoints(server, "here", closed).items(), FAST)
    prober = Prober()
    try:
        prober.submit(endpoints(server, "there", closed), FAST)
        there = {key: prober.result(key, timeout_s=30) for key in here}
    finally:
        prober.close()
    for key, result in here.items():
        other = there[key]
        assert other is not None, key
        assert seen(other, "there") == seen(result, "here"), key
    assert [k for k, r in here.items() if r.passed] == ["late"]
    late, slow = there["late"], there["slow"]
    assert late is not None
    assert slow is not None
    assert [a.status for a in late.attempts] == [503, 503, 200]  # retried over there
    assert "latency 3" in slow.describe()  # "latency 3xx ms over the 100 ms budget"


def test_each_result_is_handed_over_as_soon_as_it_is_known(server: str) -> None:
    prober = Prober()
    try:
        prober.submit(
            {
                "slow": Endpoint(url=f"{server}/slow-2500?stream"),
                "fast": Endpoint(url=f"{server}/slow-10?stream"),
            },
            ProbeSettings(tries=1, timeout_s=10, deadline_s=20),
        )
        started = time.monotonic()
        fast = prober.result("fast", timeout_s=30)
        fast_at = time.monotonic() - started
        slow = prober.result("slow", timeout_s=30)
        slow_at = time.monotonic() - started
    finally:
        prober.close()
    assert fast is not None
    assert slow is not None
    assert fast.passed
    assert slow.passed
    assert fast_at + 1.5 < slow_at, (fast_at, slow_at)  # not held back for the batch


def test_a_child_given_nothing_ends_at_once() -> None:
    prober = Prober()
    prober.submit({}, FAST)
    assert not prober.expects("any")
    assert prober.result("any", timeout_s=30) is None
    delivered, reason = prober.abandon()
    assert (delivered, reason) == ({}, "it ended early (exit status 0)")


def test_a_child_that_sends_nothing_in_time_is_stopped_and_says_so(server: str) -> None:
    prober = Prober()
    prober.submit(
        {"stuck": Endpoint(url=f"{server}/slow-5000?stuck")},
        ProbeSettings(tries=1, timeout_s=10, deadline_s=20),
    )
    assert prober.result("stuck", timeout_s=0.5) is None
    delivered, reason = prober.abandon()
    assert (delivered, reason) == ({}, "it sent no result for too long (exit status -9)")


def test_the_child_writes_one_line_per_endpoint_as_each_ends(server: str) -> None:
    """The child's side of the pipe, run here: one batch in, one JSON line per result out."""
    batch = {
        "probes": {"tries": 1, "interval_s": 0, "timeout_s": 5, "deadline_s": 5, "concurrency": 2},
        "targets": [
            ["a", {"url": f"{server}/slow-400?wire", "status": 200, "body": None,
                   "json_fields": None, "latency_ms": None, "tries": None}],
            ["b", {"url": f"{server}/json?wire", "status": 201, "body": "nope",
                   "json_fields": {"status": "ok"}, "latency_ms": None, "tries": None}],
        ],
    }  # fmt: skip
    out = io.BytesIO()
    main(io.BytesIO(json.dumps(batch).encode() + b"\n"), out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["key"] for line in lines] == ["b", "a"]  # b answered first
    b = lines[0]["result"]["attempts"][0]
    assert (b["status"], b["problems"]) == (
        200,
        ["status 200, expected 201", "body does not contain 'nope'"],
    )
    empty = io.BytesIO()
    main(io.BytesIO(b""), empty)
    assert empty.getvalue() == b""


# -- through pytest -------------------------------------------------------------

CHILDREN = """\
import os
from pathlib import Path

def prober_children():
    pid = os.getpid()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child) for child in children
        if b"pytest_deployproof.observe.prober" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
"""


def project(pytester: pytest.Pytester, base: str, paths: list[str], concurrency: int) -> None:
    """One stack per path, each with one endpoint; its container check is deselected."""
    lines = [
        "hosts: {here: {spec: 'local://'}}",
        "layers: {platform: {order: 2, engine: compose}}",
        f"probes: {{tries: 1, timeout_s: 10, deadline_s: 20, concurrency: {concurrency}}}",
        "stacks:",
    ]
    for i, path in enumerate(paths):
        lines += [
            f"  s{i}: {{layer: platform, host: here, run_dir: /srv/s{i},",
            "        services: {web: {critical: true}},",
            f"        endpoints: [{{name: health, url: '{base}{path}'}}]}}",
        ]
    (pytester.path / "inventories").mkdir(exist_ok=True)
    (pytester.path / "inventories" / "test.yml").write_text("\n".join(lines) + "\n")
    pytester.makepyfile(test_smoke=SMOKE_SUITE, children=CHILDREN)


def run(pytester: pytest.Pytester, *args: str, keyword: str = "") -> pytest.RunResult:
    """The endpoint checks (and the project's own tests); their container checks need Docker."""
    selected = "(test_endpoint_answers or test_a_)" + (f" and {keyword}" if keyword else "")
    return pytester.runpytest_subprocess(
        "--env", "test", "-k", selected, "-p", "no:cacheprovider", "-v", "-rw", *args
    )  # fmt: skip


def test_a_large_selection_is_probed_by_a_child_while_its_tests_run(
    pytester: pytest.Pytester, server: str
) -> None:
    paths = [f"/slow-300?large{i}" for i in range(6)]
    project(pytester, server, paths, concurrency=2)
    pytester.makepyfile(
        test_a_child="""
        from children import prober_children

        def test_a_prober_child_runs_while_the_tests_do():
            assert len(prober_children()) == 1
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines([HEADER])
    assert [Handler.hits.get(path) for path in paths] == [1] * 6  # probed once, over there


def test_only_what_the_run_selected_is_probed(pytester: pytest.Pytester, server: str) -> None:
    paths = [f"/slow-10?selected{i}" for i in range(5)]
    project(pytester, server, paths, concurrency=1)
    result = run(pytester, keyword="not s3")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([HEADER])
    assert [Handler.hits.get(path) for path in paths] == [1, 1, 1, None, 1]

    listed = run(pytester, "--collect-only")
    listed.stdout.no_fnmatch_line(HEADER)
    assert [Handler.hits.get(path) for path in paths] == [1, 1, 1, None, 1]


def test_one_round_of_probes_or_xdist_workers_probe_in_their_own_process(
    pytester: pytest.Pytester, server: str
) -> None:
    small = [f"/slow-10?small{i}" for i in range(2)]
    project(pytester, server, small, concurrency=2)
    result = run(pytester)
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line(HEADER)
    assert [Handler.hits.get(path) for path in small] == [1, 1]

    spread = [f"/slow-10?spread{i}" for i in range(4)]
    project(pytester, server, spread, concurrency=1)
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=4)
    result.stdout.no_fnmatch_line(HEADER)
    assert [Handler.hits.get(path) for path in spread] == [1] * 4


KILL_THE_PROBER = """\
import os
import signal
import time
from pathlib import Path

import pytest
from children import prober_children

@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    for pid in prober_children():
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
            time.sleep(0.01)  # dead, not yet reaped
"""


def test_a_prober_that_dies_is_replaced_by_probing_here_with_a_warning(
    pytester: pytest.Pytester, server: str
) -> None:
    paths = [f"/slow-10?died{i}" for i in range(4)]
    project(pytester, server, paths, concurrency=1)
    pytester.makeconftest(KILL_THE_PROBER)
    result = run(pytester)
    result.stdout.fnmatch_lines(
        [
            HEADER,
            "*deployproof: the prober process failed: it ended early (exit status -9); "
            "probing the rest of the endpoints in this process",
        ]
    )
    result.assert_outcomes(passed=4)
    assert all(Handler.hits.get(path) for path in paths)


def test_an_interrupted_run_leaves_no_prober_behind(pytester: pytest.Pytester, server: str) -> None:
    paths = [f"/slow-4000?stop{i}" for i in range(5)]
    project(pytester, server, paths, concurrency=1)
    pytester.makepyfile(
        test_a_first="""
        from children import prober_children

        def test_a_failure_stops_the_run(rootpath):
            (rootpath / "prober.pid").write_text(str(prober_children()[0]))
            assert False, "stop here, under -x"
        """
    )
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def rootpath(request):
            return request.config.rootpath
        """
    )
    started = time.monotonic()
    result = run(pytester, "-x")
    elapsed = time.monotonic() - started
    result.assert_outcomes(failed=1)
    pid = int((pytester.path / "prober.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped
    # Its five slow probes would take 20 s in a row: it was stopped, not waited for.
    assert elapsed < 15, elapsed
    assert sum(Handler.hits.get(path, 0) for path in paths) <= 2
