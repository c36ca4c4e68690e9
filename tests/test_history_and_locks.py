"""Deploy history (DEP-4) and the stack lease (DEP-9, BYD-7) with real processes and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pytest_deployproof.deploy.history import Entry, History
from pytest_deployproof.deploy.locks import Lease, LockHeldError, LockLostError, StackLock
from pytest_deployproof.secrets import Masker
from tests.support.filesystems import SmallDisk


def at(minute: int) -> datetime:
    return datetime(2026, 1, 30, 10, minute, tzinfo=UTC)


def test_history_lines_have_the_seed_format_and_parse_back(tmp_path: Path) -> None:
    history = History(tmp_path / "deploy-history.log")
    history.record("odoo18-prod", "prod", "deploy", "sha-19b9b98", "success", when=at(0))
    history.record(
        "odoo18-prod",
        "prod",
        "rollback",
        "sha-4b1ce21",
        "success",
        notes="smoke failed",
        when=at(15),
    )
    assert (tmp_path / "deploy-history.log").read_text() == (
        "2026-01-30 10:00:00 | odoo18-prod | prod | deploy | sha-19b9b98 | success |\n"
        "2026-01-30 10:15:00 | odoo18-prod | prod | rollback | sha-4b1ce21 | success"
        " | smoke failed\n"
    )
    assert history.entries()[1] == Entry(
        at(15), "odoo18-prod", "prod", "rollback", "sha-4b1ce21", "success", "smoke failed"
    )


def test_notes_stay_on_one_line_and_secrets_are_masked(tmp_path: Path) -> None:
    history = History(tmp_path / "h.log", Masker(["hunter2-secret"]))
    history.record(
        "web", "staging", "deploy", "v2", "fail", notes="a|b\nlogin hunter2-secret failed"
    )
    text = (tmp_path / "h.log").read_text()
    assert text.count("\n") == 1
    assert "hunter2-secret" not in text
    assert history.entries()[0].notes == "a/b login ******** failed"


def test_queries_last_good_and_rollback_targets(tmp_path: Path) -> None:
    history = History(tmp_path / "h.log")
    for minute, (stack, action, version, status) in enumerate(
        [
            ("web", "deploy", "v1", "success"),
            ("api", "deploy", "a1", "success"),
            ("web", "deploy", "v2", "success"),
            ("web", "deploy", "v3", "fail"),
            ("web", "rollback", "v2", "success"),
            ("web", "deploy", "v4", "inconclusive"),
            ("web", "promote", "v9", "success"),
        ]
    ):
        history.record(stack, "staging", action, version, status, when=at(minute))
    last = history.last_good("web", "staging")
    assert last is not None
    assert (last.action, last.version) == ("rollback", "v2")
    assert history.good_versions("web", "staging") == ["v2", "v1"]
    assert [e.version for e in history.entries("web", status="fail")] == ["v3"]
    assert history.last_good("web", "production") is None
    assert History(tmp_path / "absent.log").entries() == []


def test_a_hand_edited_broken_line_is_reported_with_its_number_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "h.log"
    History(path).record("web", "staging", "deploy", "v1", "success")
    with path.open("a") as handle:
        handle.write("garbage without fields\n")
    History(path).record("web", "staging", "deploy", "v2", "success")
    assert [e.version for e in History(path).entries()] == ["v1", "v2"]
    assert "h.log:2: not a valid line, skipped (not a history line" in caplog.text


WRITER = """
import sys
from pathlib import Path
from pytest_deployproof.deploy.history import History
history = History(Path(sys.argv[1]))
for i in range(int(sys.argv[3])):
    history.record("web", "staging", "deploy", f"{sys.argv[2]}-{i}", "success", notes="x" * 300)
"""


def test_concurrent_writers_never_interleave_or_lose_a_line(tmp_path: Path) -> None:
    path = tmp_path / "h.log"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{n}", "60"]) for n in range(6)
    ]
    assert [writer.wait(timeout=60) for writer in writers] == [0] * 6
    entries = History(path).entries()
    assert len(entries) == 360
    assert {e.version for e in entries} == {f"w{n}-{i}" for n in range(6) for i in range(60)}


HOLDER = """
import sys, time
from pathlib import Path
from pytest_deployproof.deploy.locks import StackLock
ttl = float(sys.argv[4]) if len(sys.argv) > 4 else 900
lock = StackLock(Path(sys.argv[1]), "web", run_id=sys.argv[2], ttl_s=ttl)
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[3]))
lock.release()
"""


@pytest.fixture
def hold(tmp_path: Path) -> Iterator[Callable[[str, float], subprocess.Popen[str]]]:
    """Start a process that holds the `web` lease in tmp_path for some seconds."""
    started: list[subprocess.Popen[str]] = []

    def start(run_id: str, seconds: float) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(tmp_path), run_id, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_acquire_and_release(tmp_path: Path) -> None:
    lock = StackLock(tmp_path, "web", run_id="run-1")
    assert lock.acquire() is None
    lease = json.loads((tmp_path / "web.lease").read_text())
    assert (lease["pid"], lease["run_id"], lease["stack"]) == (os.getpid(), "run-1", "web")
    lock.release()
    assert not (tmp_path / "web.lease").exists()


def test_a_live_holder_makes_others_wait_then_refuses_naming_it(
    tmp_path: Path, hold: Callable[[str, float], subprocess.Popen[str]]
) -> None:
    holder = hold("run-holder", 30)
    started = time.monotonic()
    with pytest.raises(LockHeldError) as refused:
        StackLock(tmp_path, "web").acquire(timeout_s=1.0)
    assert 0.9 <= time.monotonic() - started < 5
    message = str(refused.value)
    assert f"(pid {holder.pid}, run run-holder)" in message
    assert message.startswith("stack web is being deployed by ")


def test_a_waiter_gets_the_lock_when_the_holder_releases(
    tmp_path: Path, hold: Callable[[str, float], subprocess.Popen[str]]
) -> None:
    holder = hold("run-holder", 1.0)
    waiter = StackLock(tmp_path, "web", run_id="run-waiter")
    assert waiter.acquire(timeout_s=20) is None
    assert holder.wait(timeout=20) == 0
    current = waiter.holder()
    assert current is not None
    assert current.run_id == "run-waiter"
    waiter.release()


def test_a_killed_holder_is_reclaimed_and_the_next_run_says_so(
    tmp_path: Path, hold: Callable[[str, float], subprocess.Popen[str]]
) -> None:
    holder = hold("run-crashed", 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    note = StackLock(tmp_path, "web", run_id="run-next").acquire(timeout_s=0)
    assert note is not None
    assert f"(pid {holder.pid}, run run-crashed)" in note
    assert note.endswith(f"its process {holder.pid} is gone")


def test_an_expired_lease_of_another_host_is_reclaimed_a_live_one_is_not(tmp_path: Path) -> None:
    def foreign(expires_at: float) -> None:
        lease = Lease("web", "ops@elsewhere", "elsewhere", 1, "run-far", time.time(), expires_at)
        (tmp_path / "web.lease").write_text(json.dumps(lease.__dict__))

    foreign(time.time() + 600)
    with pytest.raises(LockHeldError, match="ops@elsewhere"):
        StackLock(tmp_path, "web").acquire(timeout_s=0)
    foreign(time.time() - 1)
    note = StackLock(tmp_path, "web").acquire(timeout_s=0)
    assert note is not None
    assert note.endswith("it expired without being renewed")


def test_a_live_holder_keeps_its_lease_after_it_expired(tmp_path: Path) -> None:
    """Expiry is for holders we cannot see: a live process on this host (same machine,
    boot and PID namespace) is never robbed of its lease; only --break takes it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "run-slow", "30", "0.2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        time.sleep(0.5)  # its 0.2 s lease has expired, and nothing renews it
        lease = StackLock(tmp_path, "web").holder()
        assert lease is not None
        assert lease.expires_at < time.time()
        assert lease.started > 0
        assert lease.pid_namespace.startswith("pid:[")
        with pytest.raises(LockHeldError, match=r"run run-slow"):
            StackLock(tmp_path, "web").acquire(timeout_s=0.5)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    note = StackLock(tmp_path, "web").acquire(timeout_s=0)  # dead now: reclaimed
    assert note is not None
    assert note.endswith(f"its process {holder.pid} is gone")


def test_a_reused_pid_does_not_keep_a_dead_holders_lease(tmp_path: Path) -> None:
    """Our own pid stands in for a pid the kernel gave to a new process: the lease names
    another start time, so its holder is gone."""
    lease = StackLock(tmp_path, "web", run_id="run-old")
    lease.acquire()
    data = json.loads((tmp_path / "web.lease").read_text())
    data["started"] -= 1  # the process that took it started earlier than the one with its pid
    (tmp_path / "web.lease").write_text(json.dumps(data))
    note = StackLock(tmp_path, "web", run_id="run-new").acquire(timeout_s=0)
    assert note is not None
    assert note.endswith("(the pid now belongs to another process)")


def test_a_lease_from_another_pid_namespace_is_judged_by_its_expiry(tmp_path: Path) -> None:
    """Two containers can share a hostname and a pid: a lease written in another PID
    namespace is not ours to check by pid, so it holds until it expires."""
    lock = StackLock(tmp_path, "web", run_id="run-container")
    lock.acquire()
    data = json.loads((tmp_path / "web.lease").read_text())
    data["pid_namespace"] = "pid:[4026531999]"
    data["pid"] = 999_999  # no such process here, which means nothing across namespaces
    (tmp_path / "web.lease").write_text(json.dumps(data))
    with pytest.raises(LockHeldError, match="run run-container"):
        StackLock(tmp_path, "web").acquire(timeout_s=0)
    data["expires_at"] = time.time() - 1
    (tmp_path / "web.lease").write_text(json.dumps(data))
    note = StackLock(tmp_path, "web").acquire(timeout_s=0)
    assert note is not None
    assert note.endswith("it expired without being renewed")


RACER = """
import sys
from pathlib import Path
from pytest_deployproof.deploy.locks import StackLock, LockHeldError
lock = StackLock(Path(sys.argv[1]), "web")
try:
    lock.acquire(timeout_s=0)
except LockHeldError:
    sys.exit(3)
import time; time.sleep(3)
"""


def test_of_many_racing_runs_exactly_one_gets_the_lock(tmp_path: Path) -> None:
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path)]) for _ in range(8)]
    codes = sorted(racer.wait(timeout=60) for racer in racers)
    assert codes == [0] + [3] * 7


def test_heartbeat_renews_and_a_broken_lease_is_noticed(tmp_path: Path) -> None:
    lock = StackLock(tmp_path, "web", ttl_s=2)
    lock.acquire()
    first = lock.holder()
    assert first is not None
    lock.start_heartbeat(interval_s=0.1)
    time.sleep(0.5)
    renewed = lock.holder()
    assert renewed is not None
    assert renewed.expires_at > first.expires_at
    assert renewed.acquired_at == first.acquired_at
    broken = StackLock.break_lease(tmp_path, "web")
    assert broken is not None
    assert broken.run_id == lock.run_id
    with pytest.raises(LockLostError, match="nobody"):
        lock.renew()
    time.sleep(0.3)  # the heartbeat finds it too, and says so at the next phase boundary
    assert lock.lost is not None
    with pytest.raises(LockLostError, match="renewing the lease of stack web failed"):
        lock.check()
    lock.release()  # stops the heartbeat; nothing of ours left to remove


def test_a_heartbeat_that_cannot_write_is_noticed_at_the_next_check(
    small_disk: SmallDisk,
) -> None:
    """A full disk stops the renewal; the holder is told at its next phase boundary
    instead of deploying on without a lease."""
    lock = StackLock(small_disk.path, "web", ttl_s=2)
    lock.acquire()
    lock.check()  # still ours: renewed
    small_disk.fill()
    lock.start_heartbeat(interval_s=0.1)
    deadline = time.monotonic() + 5
    while lock.lost is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.lost is not None
    with pytest.raises(LockLostError, match="No space left on device"):
        lock.check()
    small_disk.make_room()
    lock.release()
    assert not (small_disk.path / "web.lease").exists()


def test_a_torn_lease_file_counts_as_stale(tmp_path: Path) -> None:
    (tmp_path / "web.lease").write_text("{not json")
    note = StackLock(tmp_path, "web").acquire()
    assert note is not None
    assert "unreadable lease" in note


def test_cli_history_and_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_deployproof.ops.cli import main

    (tmp_path / "staging.yml").write_text(
        "hosts: {here: {spec: 'local://'}}\nstate_dir: state\nstacks:\n"
        "  web: {layer: platform, host: here, run_dir: /srv/web, services: {web: {}}}\n"
    )
    history = History(tmp_path / "state" / "deploy-history.log")
    history.record("web", "staging", "deploy", "v1", "success", when=at(0))
    history.record("web", "staging", "deploy", "v2", "fail", notes="smoke failed", when=at(1))
    history.record("web", "staging", "rollback", "v1", "success", when=at(2))
    args = ["--env", "staging", "--inventory", str(tmp_path)]

    assert main(["history", *args, "web", "--status", "fail"]) == 0
    assert capsys.readouterr().out == (
        "2026-01-30 10:01:00 | web | staging | deploy | v2 | fail | smoke failed\n"
    )
    assert main(["history", *args, "web", "--last-good"]) == 0
    assert capsys.readouterr().out == "v1\n"
    assert main(["history", *args, "api", "--last-good"]) == 2  # no such stack here
    assert "no stack 'api' in staging: known are web" in capsys.readouterr().err

    assert main(["lock", *args, "web"]) == 0
    assert capsys.readouterr().out == "web: not locked\n"
    lock = StackLock(tmp_path / "state" / "locks", "web", run_id="run-7")
    lock.acquire()
    assert main(["lock", *args, "web", "--status"]) == 0
    assert f"web: locked by {getpass_user()}" in capsys.readouterr().out
    assert main(["lock", *args, "web", "--break"]) == 0
    assert "broke the lease of" in capsys.readouterr().out
    assert lock.holder() is None
    assert main(["history", "--env", "nope", "--inventory", str(tmp_path)]) == 2

    # A stack name is checked before it becomes part of a path: nothing outside is touched.
    outside = tmp_path / "x.lease"
    outside.write_text("not ours")
    capsys.readouterr()
    assert main(["lock", *args, "../../" + str(tmp_path.name) + "/x", "--break"]) == 2
    assert "no stack '../../" in capsys.readouterr().err
    assert outside.read_text() == "not ours"


def getpass_user() -> str:
    import getpass

    return getpass.getuser()
