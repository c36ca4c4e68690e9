"""A deploy is recorded good only when it was proven good (TRU-1, TRU-2, BYD-1), on real parts.

Each test injects one fault into a real ``pytest --deploy`` of a real Compose stack whose
service has its own PostgreSQL database (rows written before the deploy, the password in
the env file), and asserts what the operator relies on afterwards: the exit code, the
rollback where one is due, the history lines, the verified record (never written for a
version that was not proven), the env file's tag and mode (0600, kept through every
write), the database rows (all still there), and the password (in no output).

| #  | fault injected                                   | exit  | rollback / outcome      | env  |
|----|--------------------------------------------------|-------|-------------------------|------|
| 1  | SIGINT to the process group during `up`          | 2     | rolled back, verified   | v1   |
| 2  | SIGINT during the tests                          | 2     | rolled back, verified   | v1   |
| 3  | SIGTERM during the tests (a cancelled CI job)    | 2     | rolled back, verified   | v1   |
| 4  | SIGKILL of pytest mid-deploy                     | -9, 0 | by the next run         | v2 * |
| 5  | the ssh host's link goes down during `up`        | 1     | fails, said; by hand ** | v1   |
| 6  | the lease taken away during `up` (heartbeat)     | 1     | rolled back, verified   | v1   |
| 7  | a live holder whose lease expired                | 1     | refused, nothing changed| v1   |
| 8  | the backup's disk is full                        | 1     | refused, nothing changed| v1   |
| 9  | the backup fails (the database refuses the dump) | 1     | refused, nothing changed| v1   |
| 10 | the state disk fills during the tests            | 1     | rolled back, gap said   | v1   |
| 11 | a torn history line before the deploy            | 1     | rolled back to v1       | v1   |
| 12 | a torn verified line in the source environment   | 1     | refused, nothing changed| v1   |
| 13 | the image of the version is missing              | 1     | refused, nothing changed| v1   |
| 14 | health fails after `up`                          | 1     | rolled back, verified   | v1   |
| 15 | the migration fails                              | 1     | rolled back, verified   | v1   |
| 16 | every check of the stack skipped                 | 6     | held: not verified      | v2   |
| 17 | a check inconclusive (`on_inconclusive` policy)  | 1     | held / rolled back      | v2/v1|
| 18 | only a preflight check passed                    | 6     | held: not verified      | v2   |
| 19 | empty selection: nothing selected / all skipped  | 5 / 6 | nothing deployed        | v1   |
| 20 | `up_timeout_s: .inf`                             | 4     | refused, nothing changed| v1   |
| 21 | the default state dir inside a git checkout      | 4     | refused, nothing changed| -    |
| 22 | `up` exits 0 having changed nothing (a pull that | 1     | rolled back, verified   | v1   |
|    | failed inside Compose): old containers healthy;  |       |                         |      |
|    | or changed only what the inventory lists; a     |       |                         |      |
|    | one-off `compose run` container does not count  | 0     | deployed, verified      | v2   |
| 23 | the host's data disk below `min_free_percent`    | 1     | refused, nothing changed| v1   |

Each test asserts the history lines too: a failed deploy line then a rollback line, a
refusal's one failed line, a held deploy's inconclusive line, or nothing new.
* 4: the killed run exits -9 leaving the stack unverified; the next run records that,
rolls it back to v1, verified, then deploys and proves v2 (the one verified record).
** 5: the rollback cannot reach the host either, so it fails and says how to finish it;
the link comes back and `deployproof rollback --last-good` does.

23 kinds, 27 test cases (17 has two policies, 19 two selections, 22 three variants).
** 4: the killed run exits -9; the next run exits 0 after it recorded and undid the
killed one, then deployed.
Elsewhere: torn lines and short writes appended by a size-limited process
(tests/test_durable_state.py); leases across PID namespaces and reused pids
(tests/test_history_and_locks.py); two runner deploys at the same instant, 50 rounds
(tests/test_runner_single_flight.py).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_deployproof.deploy.history import History
from pytest_deployproof.observe.stackfiles import env_value
from pytest_deployproof.state_dir import StateDir
from tests.support.compose import ComposeStack, compose_binary, write_compose_stack
from tests.support.deploying import (
    SLOW_CHECK,
    container,
    deploy_inventory,
    history_lines,
    wait_for,
)
from tests.support.filesystems import SmallDisk
from tests.support.need import need
from tests.support.postgres import Postgres, app_database, connect, rows
from tests.support.repo import SUITES
from tests.support.sshhosts import SshHosts, missing_parts

ROWS = [(1, "before-1"), (2, "before-2")]
PASSES = "def test_up(stack):\n    pass\n"

SLOW_UP = """#!/bin/sh
# Compose, with `up` held back a few seconds so that a fault lands while it runs.
case " $* " in
  *" up "*) touch "{mark}"; sleep 5 ;;
esac
exec {compose} "$@"
"""

NO_OP_UP = """#!/bin/sh
# Compose whose `up` exits 0 having changed nothing, as Compose 2.40 does when its own pull
# fails ("unknown blob"): the previous containers stay up and healthy.
case " $* " in
  *" up "*) exit 0 ;;
esac
exec {compose} "$@"
"""

ONLY_WEB_UP = """#!/bin/sh
# Compose whose `up` recreates only `web`: the sidecar, which the inventory does not list,
# stays on the previous image (a partial `up`, as when a service's own pull failed).
case " $* " in
  *" up "*) exec {compose} "$@" web ;;
esac
exec {compose} "$@"
"""

SKIPPING_CHECK = """
import pytest

def test_cannot_tell(stack):
    pytest.skip("nothing to look at")
"""

INCONCLUSIVE_CHECK = """
import pytest
from pytest_deployproof.errors import Inconclusive

@pytest.fixture
def unreachable(stack):
    raise Inconclusive("host vanished while looking")

def test_needs_the_host(stack, unreachable):
    pass
"""

FILLS_THE_STATE_DISK_THEN_FAILS = """
import os, pathlib

def test_fills_the_disk_and_fails(stack):
    with open(os.environ["BALLAST"], "ab") as ballast:
        try:
            while True:
                ballast.write(b"\\0" * 4096)
                ballast.flush()
        except OSError:
            pass
    assert False, "the new version is wrong"
"""

EXPIRED_HOLDER = """
import sys, time
from pathlib import Path
from pytest_deployproof.deploy.locks import StackLock
lock = StackLock(Path(sys.argv[1]), "app", run_id="slow-run", ttl_s=0.2)
lock.acquire()
print("held", flush=True)
time.sleep(120)  # alive, and nothing renews the lease
"""


@dataclass
class Case:
    """One stack at v1.0.0 (recorded good), its own database with two rows, a private env
    file holding the database password, and the inventory that declares them."""

    pytester: pytest.Pytester
    app: ComposeStack
    state: Path
    postgres: Postgres
    db: str
    password: str
    db_host: str = "127.0.0.1"

    @property
    def env_file(self) -> Path:
        return self.app.run_dir / ".env"

    def inventory(self, extra: str = "", **top: object) -> Path:
        """Write the inventory; ``extra`` adds lines to the stack, ``top`` top-level keys."""
        database = (
            f"    databases: {{main: {{host: {self.db_host}, port: {self.postgres.port}, "
            f"dbname: {self.db}, user: {self.db}, password_key: DB_PASSWORD}}}}\n"
        )
        text = deploy_inventory(self.app, self.state, database + extra)
        for key, value in top.items():
            text += f"{key}: {json.dumps(value)}\n"
        path = self.pytester.path / "inventories" / "test.yml"
        path.write_text(text)
        return path

    def slow_up(self) -> Path:
        """Make the host's Compose hold `up` back; returns the mark it leaves when `up` starts."""
        mark = self.pytester.path / "up-started"
        wrapper = self.pytester.path / "slow-compose"
        wrapper.write_text(SLOW_UP.format(mark=mark, compose=compose_binary()))
        wrapper.chmod(0o755)
        path = self.pytester.path / "inventories" / "test.yml"
        path.write_text(
            path.read_text().replace(
                "hosts: {here: {spec: 'local://'}}",
                f"hosts: {{here: {{spec: 'local://', compose: '{wrapper}'}}}}",
            )
        )
        return mark

    def start(self, version: str, *args: str) -> subprocess.Popen[str]:
        """``pytest --deploy`` in its own process group, as a terminal or a CI runner starts it."""
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", "--env", "test", "--deploy", version,
             "-p", "no:cacheprovider", "-rA", *args],
            cwd=self.pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )  # fmt: skip

    def deploy(self, version: str, *args: str) -> tuple[int, str]:
        run = self.start(version, *args)
        output, _ = run.communicate(timeout=240)
        return run.returncode, output

    def assert_refused(self, code: int, output: str, version: str, before: str) -> None:
        """A deploy refused before anything changed: one failed history line, the stack as
        it was (v1.0.0, the same container, not even recreated), nothing lost."""
        assert code == pytest.ExitCode.TESTS_FAILED, output
        assert f"deploy of app {version} refused, nothing changed: " in output
        assert _last(self, 1) == [("deploy", version, "fail")]
        self.assert_nothing_lost(output, tag="v1.0.0")
        assert container(self.app)["id"] == before

    def assert_nothing_lost(self, output: str, *, tag: str, verified: bool = False) -> None:
        """The env file names ``tag`` and still holds the password, is still 0600; no version
        was recorded verified (unless ``verified``); the rows are all there; no password
        was printed."""
        assert self.env_file.read_text() == f"APP_IMAGE_TAG={tag}\nDB_PASSWORD={self.password}\n"
        assert stat.S_IMODE(self.env_file.stat().st_mode) == 0o600
        assert StateDir(self.state).verified("app").exists() is verified
        assert rows(self.postgres, self.db, self.password) == ROWS
        assert self.password not in output


def _make_case(
    pytester: pytest.Pytester, app: ComposeStack, state: Path, postgres: Postgres, db_host: str
) -> Case:
    name, password = app_database(postgres)
    with connect(postgres, name, password) as db:
        db.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text)")
        db.execute("INSERT INTO orders (item) VALUES ('before-1'), ('before-2')")
    case = Case(pytester, app, state, postgres, name, password, db_host)
    case.env_file.write_text(f"APP_IMAGE_TAG=v1.0.0\nDB_PASSWORD={password}\n")
    case.env_file.chmod(0o600)
    (pytester.path / "inventories").mkdir(exist_ok=True)
    case.inventory()
    History(StateDir(state).history).record("app", "test", "deploy", "v1.0.0", "success")
    pytester.makepyfile(test_up=PASSES)
    return case


@pytest.fixture
def case(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path], postgres: Postgres
) -> Case:
    app, state = deploy_project
    return _make_case(pytester, app, state, postgres, "127.0.0.1")


def _last(case: Case, count: int) -> list[tuple[str, str, str]]:
    return [line[:3] for line in history_lines(case.state)[-count:]]


ROLLED_BACK = [("deploy", "v2.0.0", "fail"), ("rollback", "v1.0.0", "success")]


# -- 1-3: signals ------------------------------------------------------------------------


def test_sigint_during_compose_up_rolls_back_and_records_the_interrupted_deploy(
    case: Case,
) -> None:
    mark = case.slow_up()
    run = case.start("v2.0.0")
    wait_for(mark)  # the env file says v2.0.0 and `compose up` is running
    assert env_value(case.env_file.read_text(), "APP_IMAGE_TAG") == "v2.0.0"
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    output, _ = run.communicate(timeout=180)

    assert run.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "deployed and verified" not in output
    assert "rolled back to v1.0.0, verified" in output
    why = "the deploy was interrupted: SIGINT or SIGTERM"
    assert history_lines(case.state)[-2:] == [
        ("deploy", "v2.0.0", "fail", why),
        ("rollback", "v1.0.0", "success", f"after v2.0.0: {why}"),
    ]
    case.assert_nothing_lost(output, tag="v1.0.0")
    assert container(case.app)["image"].endswith(":v1.0.0")
    assert not (case.state / "locks" / "app.lease").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_tests_rolls_back_and_releases_the_lock(
    case: Case, signum: signal.Signals
) -> None:
    case.pytester.makepyfile(test_slow=SLOW_CHECK)
    run = case.start("v2.0.0", "test_slow.py")
    wait_for(case.pytester.path / "started")  # deployed, and its tests are running
    assert env_value(case.env_file.read_text(), "APP_IMAGE_TAG") == "v2.0.0"
    run.send_signal(signum)
    output, _ = run.communicate(timeout=120)

    assert run.returncode == pytest.ExitCode.INTERRUPTED, output
    why = "1 checks failed: the run was interrupted"
    assert f"app: v2.0.0 failed ({why}); rolled back to v1.0.0, verified" in output
    assert history_lines(case.state)[-2:] == [
        ("deploy", "v2.0.0", "fail", why),
        ("rollback", "v1.0.0", "success", f"after v2.0.0: {why}"),
    ]
    case.assert_nothing_lost(output, tag="v1.0.0")
    assert container(case.app)["image"].endswith(":v1.0.0")
    assert not (case.state / "locks" / "app.lease").exists()


# -- 4: SIGKILL ---------------------------------------------------------------------------


def test_after_sigkill_the_next_deploy_reclaims_the_lock_records_and_rolls_back(
    case: Case,
) -> None:
    case.pytester.makepyfile(test_slow=SLOW_CHECK)
    killed = case.start("v2.0.0", "test_slow.py")
    wait_for(case.pytester.path / "started")
    lease = json.loads((case.state / "locks" / "app.lease").read_text())
    assert lease["pid"] == killed.pid
    killed.kill()  # SIGKILL: no teardown, no rollback, the lease stays behind
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert (case.state / "locks" / "app.lease").exists()
    assert not StateDir(case.state).verified("app").exists()

    (case.pytester.path / "started").unlink()
    code, output = case.deploy("v2.0.0", "test_up.py")
    assert code == 0, output
    assert "app: reclaimed the lease of " in output
    assert f"(pid {killed.pid}, run {lease['run_id']})" in output
    assert f"its process {killed.pid} is gone" in output
    # The killed run had changed the stack and never verified it: that is recorded, the
    # version before it is put back and verified, and then this deploy runs from there.
    assert "app: the interrupted deploy of v2.0.0 was rolled back to v1.0.0, verified" in output
    assert "app: v2.0.0 deployed and verified" in output
    assert _last(case, 3) == [*ROLLED_BACK, ("deploy", "v2.0.0", "success")]
    interrupted = history_lines(case.state)[-3][3]
    assert (
        interrupted
        == f"interrupted: run {lease['run_id']} (pid {killed.pid}) died while it deployed"
    )
    # Verified only by the run that proved it: one record.
    case.assert_nothing_lost(output, tag="v2.0.0", verified=True)
    assert len(StateDir(case.state).verified("app").read_text().splitlines()) == 1
    assert not (case.state / "locks" / "app.lease").exists()


# -- 5: the network drops -----------------------------------------------------------------


@pytest.fixture
def remote_case(
    pytester: pytest.Pytester, demo_image: str, postgres: Postgres, tmp_path: Path
) -> Iterator[tuple[Case, SshHosts]]:
    """The stack on a host in its own network namespace, reached over ssh; its database
    on this side, which the host reaches (pg_dump runs there) through the same link."""
    why = missing_parts()
    if why:
        need("hosts in network namespaces", why)
    lock = tmp_path.parent.parent / "netns.lock"
    hosts = SshHosts(tmp_path / "ssh", lock, tmp_path / "remote")
    app: ComposeStack | None = None
    try:
        host = hosts.add("h1")
        app = write_compose_stack(host.files, "app", demo_image)
        app.up()
        case = _make_case(pytester, app, tmp_path / "state", postgres, host.gateway)
        case.slow_up()  # the wrapper; the host entry below points at it
        entry = {
            "spec": host.spec,
            "ssh_config": str(hosts.ssh_config),
            "connect_timeout_s": 2,
            "compose": str(pytester.path / "slow-compose"),
        }
        path = case.inventory()
        text = path.read_text().replace(f"run_dir: {app.run_dir}", f"run_dir: {hosts.remote}/app")
        local = "hosts: {here: {spec: 'local://'}}"
        path.write_text(text.replace(local, f"hosts: {{here: {json.dumps(entry)}}}"))
        yield case, hosts
    finally:
        if app is not None:
            app.compose("down", "-v", "-t", "1", check=False)
        hosts.remove()


def test_an_ssh_host_cut_off_during_up_fails_the_deploy_and_says_how_to_put_it_back(
    remote_case: tuple[Case, SshHosts],
) -> None:
    from pytest_deployproof.ops.cli import main

    case, hosts = remote_case
    host = hosts.hosts["h1"]
    run = case.start("v2.0.0", "test_up.py")
    wait_for(case.pytester.path / "up-started")
    host.cut(off=True)  # packets vanish: ssh learns it from its keepalives, nothing refuses
    try:
        output, _ = run.communicate(timeout=180)
    finally:
        host.cut(off=False)

    assert run.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "deployed and verified" not in output
    assert "host 'here' is unreachable over ssh" in output
    assert "ROLLBACK TO v1.0.0 FAILED" in output
    assert "deployproof rollback --env test app --last-good" in output  # what to do next
    assert _last(case, 2) == [("deploy", "v2.0.0", "fail"), ("rollback", "v1.0.0", "fail")]
    assert not StateDir(case.state).verified("app").exists()
    assert not (case.state / "locks" / "app.lease").exists()

    # The host answers again: the operator does what the summary said.
    inventory = str(case.pytester.path / "inventories")
    assert main(["rollback", "--env", "test", "--inventory", inventory, "app", "--last-good"]) == 0
    assert _last(case, 1) == [("rollback", "v1.0.0", "success")]
    case.assert_nothing_lost(output, tag="v1.0.0")
    assert container(case.app)["image"].endswith(":v1.0.0")


# -- 6-7: leases --------------------------------------------------------------------------


def test_a_lease_lost_during_the_deploy_fails_it_at_the_next_phase_and_rolls_back(
    case: Case,
) -> None:
    from pytest_deployproof.ops.cli import main

    mark = case.slow_up()
    run = case.start("v2.0.0")
    wait_for(mark)
    inventory = str(case.pytester.path / "inventories")
    assert main(["lock", "--env", "test", "--inventory", inventory, "app", "--break"]) == 0
    output, _ = run.communicate(timeout=180)

    assert run.returncode == pytest.ExitCode.TESTS_FAILED, output
    lost = "the deploy was interrupted: LockLostError: the lease of stack app is now held by"
    assert lost in output
    assert "rolled back to v1.0.0, verified" in output
    assert _last(case, 2) == ROLLED_BACK
    case.assert_nothing_lost(output, tag="v1.0.0")


def test_a_live_holder_keeps_its_expired_lease_and_the_deploy_is_refused(case: Case) -> None:
    (case.state / "locks").mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", EXPIRED_HOLDER, str(case.state / "locks")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        time.sleep(0.5)  # its lease has expired; the holder is alive
        before = container(case.app)["id"]
        code, output = case.deploy("v2.0.0")
    finally:
        holder.kill()
        holder.communicate()

    case.assert_refused(code, output, "v2.0.0", before)
    assert (
        "DEPLOY FAILED: deploy of app v2.0.0 refused, nothing changed: stack app is being" in output
    )
    assert "run slow-run" in output


# -- 8-10: disks and backups --------------------------------------------------------------


def test_a_full_disk_during_the_backup_refuses_the_deploy_before_anything_changes(
    case: Case, small_disk: SmallDisk
) -> None:
    case.inventory(f"    backup: {{path: '{small_disk.path}'}}\n")
    small_disk.fill()
    before = container(case.app)["id"]
    code, output = case.deploy("v2.0.0")

    case.assert_refused(code, output, "v2.0.0", before)
    assert "DEPLOY FAILED: deploy of app v2.0.0 refused, nothing changed:" in output
    assert "No space left on device" in output
    assert list(small_disk.path.glob("app/*")) == []  # no half-made backup left
    assert list(small_disk.path.glob("app/.*")) == []


def test_a_failed_backup_blocks_the_deploy_and_changes_nothing(case: Case) -> None:
    case.postgres.sql(f"ALTER ROLE {case.db} PASSWORD 'changed-behind-our-back'")
    try:
        before = container(case.app)
        code, output = case.deploy("v2.0.0")
    finally:
        case.postgres.sql(f"ALTER ROLE {case.db} PASSWORD '{case.password}'")

    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert (
        "DEPLOY FAILED: deploy of app v2.0.0 refused, nothing changed: backup of app failed: "
        in output
    )
    assert f'password authentication failed for user "{case.db}"' in output
    assert container(case.app) == before
    assert list((case.app.run_dir.parent / "backups" / "app").iterdir()) == []
    assert _last(case, 1) == [("deploy", "v2.0.0", "fail")]
    case.assert_nothing_lost(output, tag="v1.0.0")


def test_a_full_state_disk_after_up_still_rolls_back_and_says_what_went_unrecorded(
    case: Case, small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    case.state = small_disk.path / "state"
    History(StateDir(case.state).history).record("app", "test", "deploy", "v1.0.0", "success")
    case.inventory()
    case.pytester.makepyfile(test_up=FILLS_THE_STATE_DISK_THEN_FAILS)
    monkeypatch.setenv("BALLAST", str(small_disk.path / ".ballast"))
    code, output = case.deploy("v2.0.0")

    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "rolled back to v1.0.0, verified" in output
    # The new deployed-state file could not be written: said, not hidden, and no rollback
    # was given up for it. (The history lines fit in the file's last allocated page.)
    assert (
        "NOT RECORDED (state directory): deployed state of v1.0.0 ([Errno 28] No space left "
        "on device)" in output
    )
    assert container(case.app)["image"].endswith(":v1.0.0")
    small_disk.make_room()
    assert [line[:3] for line in history_lines(case.state)] == [  # every line whole
        ("deploy", "v1.0.0", "success"),
        *ROLLED_BACK,
    ]
    case.assert_nothing_lost(output, tag="v1.0.0")
    assert not list(StateDir(case.state).root.rglob("*.tmp"))  # no half-written record left


# -- 11-12: torn state --------------------------------------------------------------------


def test_a_torn_history_line_does_not_stop_the_rollback_to_the_last_good_version(
    case: Case, bad_image: str
) -> None:
    history = StateDir(case.state).history
    with history.open("a") as torn:  # a writer killed mid-line, long ago
        torn.write("2026-01-01T00:00:00Z | app | test | depl")
    case.pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    code, output = case.deploy(bad_image, "-m", "smoke")

    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "rolled back to v1.0.0, verified" in output
    lines = history_lines(case.state)
    assert [line[:3] for line in lines] == [
        ("deploy", "v1.0.0", "success"),
        ("deploy", bad_image, "fail"),
        ("rollback", "v1.0.0", "success"),
    ]
    case.assert_nothing_lost(output, tag="v1.0.0")
    assert container(case.app)["image"].endswith(":v1.0.0")


def test_a_torn_verified_line_in_the_source_environment_is_skipped_not_promoted(
    case: Case,
) -> None:
    staging = case.pytester.path / "staging-state"
    verified = StateDir(staging).verified("app")
    verified.parent.mkdir(parents=True)
    whole = {"stack": "app", "version": "v1.0.0", "images": {}, "at": time.time()}
    verified.write_text(json.dumps(whole) + '\n{"stack": "app", "version": "v2.0.0", "ima')
    text = case.inventory().read_text()
    (case.pytester.path / "inventories" / "staging.yml").write_text(
        text.replace(f"state_dir: {case.state}", f"state_dir: {staging}")
    )
    case.inventory(promotion={"source": "staging", "require_tag": False})
    code, output = case.deploy("v2.0.0")

    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "v2.0.0 was never verified in staging (verified there: v1.0.0)" in output
    assert f"{verified}:2: not a valid line, skipped" in output
    assert "Traceback" not in output
    assert _last(case, 1) == [("deploy", "v2.0.0", "fail")]
    case.assert_nothing_lost(output, tag="v1.0.0")


# -- 13-15: the new version itself --------------------------------------------------------


def test_a_missing_image_refuses_the_deploy_before_anything_changes(case: Case) -> None:
    before = container(case.app)["id"]
    code, output = case.deploy("v9.9.9")

    case.assert_refused(code, output, "v9.9.9", before)
    assert "busybox:v9.9.9 is not on host here" in output


def test_health_failing_after_up_rolls_back(case: Case, bad_image: str) -> None:
    case.pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    code, output = case.deploy(bad_image, "-m", "smoke")

    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert f"app: {bad_image} failed (" in output
    assert "rolled back to v1.0.0, verified" in output
    assert _last(case, 2) == [("deploy", bad_image, "fail"), ("rollback", "v1.0.0", "success")]
    case.assert_nothing_lost(output, tag="v1.0.0")
    assert container(case.app)["image"].endswith(":v1.0.0")


def test_an_up_that_changed_nothing_is_not_verified_but_rolled_back(case: Case) -> None:
    """Running and healthy is not the new version: the containers must run the image the
    stack's files now name."""
    wrapper = case.pytester.path / "no-op-up-compose"
    wrapper.write_text(NO_OP_UP.format(compose=compose_binary()))
    wrapper.chmod(0o755)
    path = case.inventory()
    path.write_text(
        path.read_text().replace(
            "hosts: {here: {spec: 'local://'}}",
            f"hosts: {{here: {{spec: 'local://', compose: '{wrapper}'}}}}",
        )
    )
    before = container(case.app)["id"]
    code, output = case.deploy("v2.0.0")

    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "app: v2.0.0 failed (" in output
    assert ":v1.0.0, not deployproof-demo/busybox:v2.0.0" in output
    assert "rolled back to v1.0.0, verified" in output
    assert _last(case, 2) == ROLLED_BACK
    case.assert_nothing_lost(output, tag="v1.0.0")
    assert container(case.app)["id"] == before  # nothing was ever recreated


def test_a_service_the_inventory_does_not_list_is_checked_for_its_image_too(
    pytester: pytest.Pytester, compose_stack: Callable[..., ComposeStack], tmp_path: Path
) -> None:
    """22, second variant: every container of the project must run what the files name,
    not only the services the inventory lists. Here `up` recreates `web` alone; the
    sidecar the inventory never mentions keeps v1.0.0, so v2.0.0 is not what runs."""
    app = compose_stack("app", web={}, sidecar={})
    app.up()
    state = tmp_path / "state"
    wrapper = pytester.path / "only-web-compose"
    wrapper.write_text(ONLY_WEB_UP.format(compose=compose_binary()))
    wrapper.chmod(0o755)
    (pytester.path / "inventories").mkdir()
    (pytester.path / "inventories" / "test.yml").write_text(
        deploy_inventory(app, state).replace(
            "hosts: {here: {spec: 'local://'}}",
            f"hosts: {{here: {{spec: 'local://', compose: '{wrapper}'}}}}",
        )
    )
    History(StateDir(state).history).record("app", "test", "deploy", "v1.0.0", "success")
    pytester.makepyfile(test_up=PASSES)

    result = pytester.runpytest_subprocess(
        "--env", "test", "--deploy", "v2.0.0", "-p", "no:cacheprovider", "-rA"
    )
    output = result.stdout.str()

    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert "app: v2.0.0 failed (" in output
    assert f"{app.project}-sidecar-1" in output
    assert ":v1.0.0, not deployproof-demo/busybox:v2.0.0" in output
    assert "rolled back to v1.0.0, verified" in output
    assert [line[:3] for line in history_lines(state)[-2:]] == ROLLED_BACK
    assert not StateDir(state).verified("app").exists()


def test_a_one_off_container_left_by_compose_run_does_not_hold_the_deploy_back(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path]
) -> None:
    """Beside 22: a `docker compose run` without --rm (a migration, a debug shell) leaves a
    one-off container on the old image. It is not what `up` deploys, so it neither fails
    the image check nor makes every later deploy roll back."""
    app, state = deploy_project
    app.compose("run", "-d", "--name", f"{app.project}-debug", "web", "sleep", "120")
    History(StateDir(state).history).record("app", "test", "deploy", "v1.0.0", "success")
    pytester.makepyfile(test_up=PASSES)

    result = pytester.runpytest_subprocess(
        "--env", "test", "--deploy", "v2.0.0", "-p", "no:cacheprovider", "-rA"
    )

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["app: v2.0.0 deployed and verified"])
    assert container(app)["image"].endswith(":v2.0.0")


def test_a_nearly_full_data_disk_fails_its_gate_and_refuses_the_deploy(
    case: Case, small_disk: SmallDisk
) -> None:
    """A real filesystem (tmpfs) as the host's data path, filled to under 20 % free."""
    path = case.inventory()
    path.write_text(
        path.read_text().replace(
            "hosts: {here: {spec: 'local://'}}",
            f"hosts: {{here: {{spec: 'local://', data_path: '{small_disk.path}'}}}}",
        )
    )
    small_disk.fill(leave=24 * 1024)  # ~9 % of 256 KiB
    case.pytester.makepyfile(test_preflight=SUITES["test_preflight"])
    gate = case.pytester.runpytest_subprocess(
        "--env", "test", "-m", "preflight", "-k", "disk_free", "-p", "no:cacheprovider"
    )  # fmt: skip
    gate.assert_outcomes(failed=1)
    gate.stdout.fnmatch_lines([f"*host here: {small_disk.path} (on *) has *% free (0 MiB), "
                               "below the 20% threshold*"])  # fmt: skip
    before = container(case.app)["id"]
    code, output = case.deploy("v2.0.0", "-k", "test_up")

    case.assert_refused(code, output, "v2.0.0", before)
    assert f"host here: {small_disk.path} (on " in output
    small_disk.make_room()
    assert case.deploy("v2.0.0", "-k", "test_up")[0] == 0  # the same deploy, with room


def test_a_failed_migration_rolls_back_and_keeps_the_rows(case: Case) -> None:
    failing = "sh -c 'echo schema conflict >&2; exit 3'"
    case.inventory(f"    migration: {{service: web, command: {json.dumps(failing)}}}\n")
    code, output = case.deploy("v2.0.0")

    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "failed (exit code 3): schema conflict" in output
    assert "rolled back to v1.0.0, verified" in output
    assert _last(case, 2) == ROLLED_BACK
    case.assert_nothing_lost(output, tag="v1.0.0")


# -- 16-19: nothing decided ---------------------------------------------------------------


def test_a_deploy_whose_checks_all_skipped_is_held_not_verified(case: Case) -> None:
    case.pytester.makepyfile(test_up=SKIPPING_CHECK)
    code, output = case.deploy("v2.0.0")

    assert code == 6, output  # held: neither a pass nor a failure
    assert "app: v2.0.0 HELD, not verified (no check of the stack ran and passed)" in output
    assert history_lines(case.state)[-1] == (
        "deploy",
        "v2.0.0",
        "inconclusive",
        "no check of the stack ran and passed",
    )
    case.assert_nothing_lost(output, tag="v2.0.0")  # held, not undone


@pytest.mark.parametrize("policy", ["hold", "rollback"])
def test_an_inconclusive_check_holds_unless_the_inventory_says_roll_back(
    case: Case, policy: str
) -> None:
    case.inventory(on_inconclusive=policy)
    case.pytester.makepyfile(test_up=INCONCLUSIVE_CHECK)
    code, output = case.deploy("v2.0.0")

    assert code == pytest.ExitCode.TESTS_FAILED, output  # the error is reported
    reason = "1 checks inconclusive: INCONCLUSIVE test/platform/app test_needs_the_host"
    if policy == "hold":
        assert history_lines(case.state)[-1] == ("deploy", "v2.0.0", "inconclusive", reason)
        case.assert_nothing_lost(output, tag="v2.0.0")
    else:
        failed = reason.replace("inconclusive", "failed")
        assert history_lines(case.state)[-2:] == [
            ("deploy", "v2.0.0", "inconclusive", failed),
            ("rollback", "v1.0.0", "success", f"after v2.0.0: {failed}"),
        ]
        case.assert_nothing_lost(output, tag="v1.0.0")


def test_a_passing_preflight_is_no_evidence_for_the_deploy(case: Case) -> None:
    case.pytester.makepyfile(
        test_up="import pytest\n\n@pytest.mark.preflight\ndef test_gate(stack):\n    pass\n",
        test_skips=SKIPPING_CHECK,
    )
    code, output = case.deploy("v2.0.0")

    assert code == 6, output
    assert history_lines(case.state)[-1][:3] == ("deploy", "v2.0.0", "inconclusive")
    case.assert_nothing_lost(output, tag="v2.0.0")


@pytest.mark.parametrize("selection", ["nothing-selected", "all-skipped"])
def test_an_empty_selection_deploys_nothing_and_is_not_green(case: Case, selection: str) -> None:
    """-k that matches nothing: pytest's own exit code 5. A selection whose every test is
    skipped (here: the health endpoint check, and the stack declares none): 6, said."""
    case.pytester.makepyfile(test_health=SUITES["test_health"])
    before = container(case.app)["id"]
    if selection == "nothing-selected":
        code, output = case.deploy("v2.0.0", "-k", "no_such_test")
        assert code == pytest.ExitCode.NO_TESTS_COLLECTED, output
    else:
        code, output = case.deploy("v2.0.0", "-m", "health", "-k", "endpoint")
        assert code == 6, output
        assert "INCONCLUSIVE: nothing was checked (1 skipped, none ran and passed)" in output
    assert "deployed and verified" not in output
    assert len(history_lines(case.state)) == 1  # only the v1.0.0 recorded by the fixture
    case.assert_nothing_lost(output, tag="v1.0.0")
    assert container(case.app)["id"] == before


# -- 20-21: refused at the start ----------------------------------------------------------


def test_an_infinite_up_timeout_is_refused_before_anything_changes(case: Case) -> None:
    path = case.inventory()
    path.write_text(path.read_text().replace("up_timeout_s: 60", "up_timeout_s: .inf"))
    code, output = case.deploy("v2.0.0")

    assert code == pytest.ExitCode.USAGE_ERROR, output
    assert "up_timeout_s" in output
    assert "Traceback" not in output
    assert len(history_lines(case.state)) == 1  # only the v1.0.0 recorded by the fixture
    case.assert_nothing_lost(output, tag="v1.0.0")


def test_deploy_refuses_a_default_state_directory_inside_a_git_checkout(
    pytester: pytest.Pytester,
) -> None:
    subprocess.run(["git", "init", "-q", str(pytester.path)], check=True)
    (pytester.path / "inventories").mkdir()
    (pytester.path / "inventories" / "test.yml").write_text(
        "hosts: {here: {spec: 'local://'}}\n"
        "stacks:\n  app: {layer: platform, host: here, run_dir: /nonexistent/app,\n"
        "        image_tag_var: TAG, services: {web: {}}}\n"
    )
    pytester.makepyfile(test_up=PASSES)
    result = pytester.runpytest_subprocess(
        "--env", "test", "--deploy", "v2", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--deploy: the default state directory */inventories/.deployproof/test is inside the "
         "git work tree*Set state_dir in the inventory*"]
    )  # fmt: skip
    assert not (pytester.path / "inventories" / ".deployproof").exists()
    # Said explicitly, the same place is accepted (the deploy then fails on the missing stack).
    text = (pytester.path / "inventories" / "test.yml").read_text()
    (pytester.path / "inventories" / "test.yml").write_text("state_dir: .deployproof/test\n" + text)
    again = pytester.runpytest_subprocess(
        "--env", "test", "--deploy", "v2", "-p", "no:cacheprovider"
    )
    assert again.ret != pytest.ExitCode.USAGE_ERROR
