"""A deploy is recorded good only when it was proven good (TRU-1, BYD-1), on the real engine.

Each test injects one fault into a real ``pytest --deploy`` of a real Compose stack and
asserts the verdict, the rollback where one is due, the history lines, the verified
record (never written for a version that was not proven), and the env file's tag and
mode afterwards.

| fault injected                     | exit | rollback | history               | verified | env  |
|------------------------------------|------|----------|-----------------------|----------|------|
| SIGINT to the group during `up` *  | 2    | yes      | fail, rollback        | none     | v1   |
| every check of the stack skipped   | 6    | no: held | inconclusive          | none     | v2   |
| a check of the stack inconclusive  | 1    | no: held | inconclusive          | none     | v2   |
| the same, `on_inconclusive: rollback` | 1 | yes      | inconclusive, rollback| none     | v1   |
| `up_timeout_s: .inf`               | 4    | nothing changed | none           | none     | v1   |
| the lease broken during `up`       | 1    | yes      | fail, rollback        | none     | v1   |
| default state dir in a git checkout | 4   | nothing changed | none           | none     | -    |
| the backup's disk is full          | 1    | nothing changed | fail (refused) | none     | v1   |
| the state disk fills during the tests | 1 | yes      | not written: reported | none  | v1   |
| only a preflight check passed      | 6    | no: held | inconclusive          | none     | v2   |

The env file keeps its mode (0600) through every write. * The stack there has its own
PostgreSQL database: the rows written before the deploy are all there afterwards.

Torn history and verified lines and a full disk while appending are shown in
tests/test_durable_state.py; SIGINT/SIGTERM during the tests, SIGKILL mid-run (the next
run records the interrupted deploy and rolls it back), a live lock and two concurrent
deploys in tests/test_deploy_docker.py; leases (a live holder past expiry, a reused pid,
another PID namespace, a heartbeat on a full disk) in tests/test_history_and_locks.py; two
runner deploys at the same instant in tests/test_runner_single_flight.py.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_deployproof.observe.stackfiles import env_value
from pytest_deployproof.state_dir import StateDir
from tests.support.compose import ComposeStack, compose_binary
from tests.support.deploying import container, deploy_inventory, history_lines, wait_for
from tests.support.filesystems import SmallDisk
from tests.support.postgres import Postgres, app_database, connect, rows, with_database

SLOW_UP = """#!/bin/sh
# Compose, with `up` held back a few seconds so that a signal lands while it runs.
case " $* " in
  *" up "*) touch "{mark}"; sleep 5 ;;
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


def _run_deploy(pytester: pytest.Pytester, version: str) -> subprocess.Popen[str]:
    """``pytest --deploy`` in its own process group, as a terminal or a CI runner starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "--env", "test", "--deploy", version,
         "-p", "no:cacheprovider", "-rA"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip


def _env_mode(app: ComposeStack) -> int:
    return stat.S_IMODE((app.run_dir / ".env").stat().st_mode)


@pytest.fixture
def app_at_v1(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path]
) -> tuple[ComposeStack, Path]:
    """The deploy project with v1.0.0 recorded as good and its env file private (0600)."""
    app, state = deploy_project
    from pytest_deployproof.deploy.history import History

    History(StateDir(state).history).record("app", "test", "deploy", "v1.0.0", "success")
    (app.run_dir / ".env").chmod(0o600)
    return app, state


def test_sigint_during_compose_up_rolls_back_and_records_the_interrupted_deploy(
    pytester: pytest.Pytester, app_at_v1: tuple[ComposeStack, Path], postgres: Postgres
) -> None:
    app, state = app_at_v1
    # The stack's own database: its rows, written before the deploy, must all be there after.
    name, password = app_database(postgres)
    with connect(postgres, name, password) as db:
        db.execute("CREATE TABLE orders (id serial PRIMARY KEY, item text)")
        db.execute("INSERT INTO orders (item) VALUES ('before-1'), ('before-2')")
    with_database(pytester, app, state, postgres, name, password)
    (app.run_dir / ".env").chmod(0o600)
    mark = _slow_up_inventory(pytester)
    pytester.makepyfile(test_up="def test_up(stack):\n    pass\n")

    run = _run_deploy(pytester, "v2.0.0")
    wait_for(mark)  # the env file says v2.0.0 and `compose up` is running
    assert env_value((app.run_dir / ".env").read_text(), "APP_IMAGE_TAG") == "v2.0.0"
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    output, _ = run.communicate(timeout=180)

    assert run.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "deployed and verified" not in output
    assert "the deploy was interrupted: SIGINT or SIGTERM" in output
    assert "rolled back to v1.0.0, verified" in output
    assert history_lines(state)[-2:] == [
        ("deploy", "v2.0.0", "fail", "the deploy was interrupted: SIGINT or SIGTERM"),
        (
            "rollback",
            "v1.0.0",
            "success",
            "after v2.0.0: the deploy was interrupted: SIGINT or SIGTERM",
        ),
    ]
    assert (app.run_dir / ".env").read_text() == f"APP_IMAGE_TAG=v1.0.0\nDB_PASSWORD={password}\n"
    assert _env_mode(app) == 0o600
    assert container(app)["image"].endswith(":v1.0.0")
    assert not StateDir(state).verified("app").exists()
    assert not (state / "locks" / "app.lease").exists()
    assert rows(postgres, name, password) == [(1, "before-1"), (2, "before-2")]
    assert password not in output


def _slow_up_inventory(pytester: pytest.Pytester) -> Path:
    """Point the inventory's host at a Compose wrapper that holds `up` back; returns the
    mark it leaves when `up` starts."""
    mark = pytester.path / "up-started"
    wrapper = pytester.path / "slow-compose"
    wrapper.write_text(SLOW_UP.format(mark=mark, compose=compose_binary()))
    wrapper.chmod(0o755)
    inventory_file = pytester.path / "inventories" / "test.yml"
    inventory = inventory_file.read_text().replace(
        "hosts: {here: {spec: 'local://'}}",
        f"hosts: {{here: {{spec: 'local://', compose: '{wrapper}'}}}}",
    )
    inventory_file.write_text(inventory)
    return mark


def test_a_lease_lost_during_the_deploy_fails_it_at_the_next_phase_and_rolls_back(
    pytester: pytest.Pytester, app_at_v1: tuple[ComposeStack, Path]
) -> None:
    from pytest_deployproof.ops.cli import main

    app, state = app_at_v1
    mark = _slow_up_inventory(pytester)
    pytester.makepyfile(test_up="def test_up(stack):\n    pass\n")
    run = _run_deploy(pytester, "v2.0.0")
    wait_for(mark)
    inventory = str(pytester.path / "inventories")
    assert main(["lock", "--env", "test", "--inventory", inventory, "app", "--break"]) == 0
    output, _ = run.communicate(timeout=180)

    assert run.returncode == pytest.ExitCode.TESTS_FAILED, output
    lost = "the deploy was interrupted: LockLostError: the lease of stack app is now held by"
    assert lost in output
    assert "rolled back to v1.0.0, verified" in output
    assert [line[:3] for line in history_lines(state)[-2:]] == [
        ("deploy", "v2.0.0", "fail"),
        ("rollback", "v1.0.0", "success"),
    ]
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
    assert not StateDir(state).verified("app").exists()


def test_a_full_disk_during_the_backup_refuses_the_deploy_before_anything_changes(
    pytester: pytest.Pytester, app_at_v1: tuple[ComposeStack, Path], small_disk: SmallDisk
) -> None:
    app, state = app_at_v1
    inventory = deploy_inventory(app, state, extra=f"    backup: {{path: '{small_disk.path}'}}\n")
    (pytester.path / "inventories" / "test.yml").write_text(inventory)
    pytester.makepyfile(test_up="def test_up(stack):\n    pass\n")
    small_disk.fill()
    before = container(app)["id"]
    run = _run_deploy(pytester, "v2.0.0")
    output, _ = run.communicate(timeout=180)

    assert run.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "DEPLOY FAILED: deploy of app v2.0.0 refused, nothing changed:" in output
    assert "No space left on device" in output
    assert history_lines(state)[-1][:3] == ("deploy", "v2.0.0", "fail")
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
    assert _env_mode(app) == 0o600
    assert container(app)["id"] == before  # not even recreated
    assert list(small_disk.path.glob("app/*")) == []  # no half-made backup left
    assert list(small_disk.path.glob("app/.*")) == []
    assert not StateDir(state).verified("app").exists()


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


def test_a_full_state_disk_after_up_still_rolls_back_and_says_what_went_unrecorded(
    pytester: pytest.Pytester,
    deploy_project: tuple[ComposeStack, Path],
    small_disk: SmallDisk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _ = deploy_project
    state = small_disk.path / "state"
    from pytest_deployproof.deploy.history import History

    History(StateDir(state).history).record("app", "test", "deploy", "v1.0.0", "success")
    (pytester.path / "inventories" / "test.yml").write_text(deploy_inventory(app, state))
    pytester.makepyfile(test_fills=FILLS_THE_STATE_DISK_THEN_FAILS)
    monkeypatch.setenv("BALLAST", str(small_disk.path / ".ballast"))
    run = _run_deploy(pytester, "v2.0.0")
    output, _ = run.communicate(timeout=180)

    assert run.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "rolled back to v1.0.0, verified" in output
    # The new deployed-state file could not be written: said, not hidden, and no rollback
    # was given up for it. (The history lines fit in the file's last allocated page.)
    assert (
        "NOT RECORDED (state directory): deployed state of v1.0.0 ([Errno 28] No space left "
        "on device)" in output
    )
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
    assert container(app)["image"].endswith(":v1.0.0")
    small_disk.make_room()
    assert [line[:3] for line in history_lines(state)] == [  # every line whole
        ("deploy", "v1.0.0", "success"),
        ("deploy", "v2.0.0", "fail"),
        ("rollback", "v1.0.0", "success"),
    ]
    assert not StateDir(state).verified("app").exists()
    assert not list(StateDir(state).root.rglob("*.tmp"))  # no half-written record left


def test_a_passing_preflight_is_no_evidence_for_the_deploy(
    pytester: pytest.Pytester, app_at_v1: tuple[ComposeStack, Path]
) -> None:
    _, state = app_at_v1
    pytester.makepyfile(
        test_gate="import pytest\n\n@pytest.mark.preflight\ndef test_gate(stack):\n    pass\n",
        test_skips=SKIPPING_CHECK,
    )
    run = _run_deploy(pytester, "v2.0.0")
    output, _ = run.communicate(timeout=180)

    assert run.returncode == 6, output
    assert history_lines(state)[-1][:3] == ("deploy", "v2.0.0", "inconclusive")
    assert not StateDir(state).verified("app").exists()


def test_a_deploy_whose_checks_all_skipped_is_held_not_verified(
    pytester: pytest.Pytester, app_at_v1: tuple[ComposeStack, Path]
) -> None:
    app, state = app_at_v1
    pytester.makepyfile(test_skips=SKIPPING_CHECK)
    run = _run_deploy(pytester, "v2.0.0")
    output, _ = run.communicate(timeout=180)

    assert run.returncode == 6, output  # held: neither a pass nor a failure
    assert "app: v2.0.0 HELD, not verified (no check of the stack ran and passed)" in output
    assert history_lines(state)[-1] == (
        "deploy",
        "v2.0.0",
        "inconclusive",
        "no check of the stack ran and passed",
    )
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v2.0.0\n"  # held, not undone
    assert _env_mode(app) == 0o600
    assert not StateDir(state).verified("app").exists()


@pytest.mark.parametrize("policy", ["hold", "rollback"])
def test_an_inconclusive_check_holds_unless_the_inventory_says_roll_back(
    pytester: pytest.Pytester, app_at_v1: tuple[ComposeStack, Path], policy: str
) -> None:
    app, state = app_at_v1
    inventory = deploy_inventory(app, state).replace(
        "up_timeout_s: 60\n", f"up_timeout_s: 60\non_inconclusive: {policy}\n"
    )
    (pytester.path / "inventories" / "test.yml").write_text(inventory)
    pytester.makepyfile(test_inconclusive=INCONCLUSIVE_CHECK)
    run = _run_deploy(pytester, "v2.0.0")
    output, _ = run.communicate(timeout=180)

    assert run.returncode == pytest.ExitCode.TESTS_FAILED, output  # the error is reported
    reason = "1 checks inconclusive: INCONCLUSIVE test/platform/app test_needs_the_host"
    if policy == "hold":
        assert history_lines(state)[-1] == ("deploy", "v2.0.0", "inconclusive", reason)
        assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v2.0.0\n"
    else:
        failed = reason.replace("inconclusive", "failed")
        assert history_lines(state)[-2:] == [
            ("deploy", "v2.0.0", "inconclusive", failed),
            ("rollback", "v1.0.0", "success", f"after v2.0.0: {failed}"),
        ]
        assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
    assert not StateDir(state).verified("app").exists()


def test_an_infinite_up_timeout_is_refused_before_anything_changes(
    pytester: pytest.Pytester, app_at_v1: tuple[ComposeStack, Path]
) -> None:
    app, state = app_at_v1
    inventory = deploy_inventory(app, state).replace("up_timeout_s: 60", "up_timeout_s: .inf")
    (pytester.path / "inventories" / "test.yml").write_text(inventory)
    pytester.makepyfile(test_up="def test_up(stack):\n    pass\n")
    run = _run_deploy(pytester, "v2.0.0")
    output, _ = run.communicate(timeout=120)

    assert run.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "up_timeout_s" in output
    assert "Traceback" not in output
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
    assert len(history_lines(state)) == 1  # only the v1.0.0 recorded by the fixture


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
    pytester.makepyfile(test_up="def test_up(stack):\n    pass\n")
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
