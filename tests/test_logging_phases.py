"""Long work is logged as it happens (the adoption issue: a deploy was silent until it ended).

On the real Docker engine: a deploy and a failing deploy (rolled back) under pytest's
``--log-cli-level`` show their phases live and in order; ``deployproof rollback`` shows its
phases on stderr, its answer alone on stdout. Secrets planted in the env file (a database
password pg_dump really uses, a token the compose file interpolates, so ``docker compose
config`` prints it) appear in no line, DEBUG included. Without Docker: the CLI's progress
line counts seconds on a terminal only, and its logging setup is undone after a command.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deployproof.inventory.model import Host
from pytest_deployproof.ops import progress
from pytest_deployproof.reach.hosts import HostAccess
from pytest_deployproof.secrets import Masker
from tests.support.compose import ComposeStack
from tests.support.deploying import deploy_inventory
from tests.support.postgres import Postgres, app_database
from tests.support.repo import SUITES


def test_deploy_rollback_and_the_cli_log_their_phases_in_order_and_no_secret(
    pytester: pytest.Pytester,
    compose_stack: Callable[..., ComposeStack],
    postgres: Postgres,
    bad_image: str,
    tmp_path: Path,
) -> None:
    name, password = app_database(postgres)
    token = f"planted-token-{uuid.uuid4().hex}"
    app = compose_stack("app", web={"API_TOKEN": "${API_TOKEN}"})  # `compose config` shows it
    (app.run_dir / ".env").write_text(
        f"APP_IMAGE_TAG=v1.0.0\nDB_PASSWORD={password}\nAPI_TOKEN={token}\n"
    )
    app.up()
    state = tmp_path / "state"
    database = (
        f"    databases: {{main: {{host: 127.0.0.1, port: {postgres.port}, dbname: {name}, "
        f"user: {name}, password_key: DB_PASSWORD}}}}\n"
    )
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(deploy_inventory(app, state, database))
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])

    def deploy(version: str, level: str) -> str:
        result = pytester.runpytest_subprocess(
            "--env", "test", "--deploy", version, "-m", "smoke", "-p", "no:cacheprovider",
            f"--log-cli-level={level}",
        )  # fmt: skip
        return result.stdout.str() + result.stderr.str()

    # A good deploy, at INFO: each phase as it starts, in order.
    output = deploy("v2.0.0", "INFO")
    assert "app: v2.0.0 deployed and verified" in output, output
    phases = [
        "*INFO*app: deploying v2.0.0 to test (host here)",
        "*INFO*app: lock taken (run *",
        "*INFO*app: preflight *",
        "*INFO*app: backup of compose file, env file, main (pg_dump) into *",
        "*INFO*app: backup * taken",
        "*INFO*app: pulling 1 images",
        "*INFO*app: writing v2.0.0 into APP_IMAGE_TAG of *",
        "*INFO*app: compose up --wait (timeout 60s)",
        "*INFO*app: up in *s",
        "*INFO*app: verified v2.0.0",
    ]
    pytest.LineMatcher(output.splitlines()).fnmatch_lines(phases)

    outputs = [output]

    # A failing deploy, at DEBUG: the same phases, then the rollback; the commands run.
    output = deploy(bad_image, "DEBUG")
    outputs.append(output)
    assert "rolled back to v2.0.0, verified" in output, output
    pytest.LineMatcher(output.splitlines()).fnmatch_lines(
        [
            *(line.replace("v2.0.0", bad_image) for line in phases[:-1]),
            f"*INFO*app: {bad_image} failed: 1 checks failed: *",
            f"*INFO*app: rolling back to v2.0.0 (after {bad_image}: *",
            "*INFO*app: writing v2.0.0 into APP_IMAGE_TAG of *",
            "*DEBUG*here$ (in *) *compose * up -d --wait --wait-timeout 60",
            "*INFO*app: up in *s",
            "*INFO*app: verifying v2.0.0 (services, endpoints)",
            "*INFO*app: verified v2.0.0",
        ]
    )
    assert " config --format json" in output  # whose output holds the token: not logged

    # `deployproof rollback`: its phases on stderr (plain lines: not a terminal), DEBUG too.
    done = subprocess.run(
        [sys.executable, "-m", "pytest_deployproof.ops.cli", "rollback", "-v", "--env", "test",
         "--inventory", str(pytester.path / "inventories"), "app", "v1.0.0"],
        capture_output=True, text=True, check=False, cwd=pytester.path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "app: rolled back to v1.0.0, verified\n"
    assert "\r" not in done.stderr
    pytest.LineMatcher(done.stderr.splitlines()).fnmatch_lines(
        [
            "??:??:?? INFO pytest_deployproof.deploy.operator: app: rollback to v1.0.0 in test*",
            "*INFO*app: lock taken (run *",
            "*INFO*app: checking that the 1 images of v1.0.0 exist",
            "*INFO*app: rolling back to v1.0.0 (by hand)",
            "*INFO*app: writing v1.0.0 into APP_IMAGE_TAG of *",
            "*INFO*app: compose up --wait (timeout 60s)",
            "*DEBUG*here$ (in *) *compose * up -d --wait --wait-timeout 60",
            "*INFO*app: up in *s",
            "*INFO*app: verified v1.0.0",
        ]
    )

    for text in (*outputs, done.stderr, done.stdout):
        assert password not in text
        assert token not in text
        assert "API_TOKEN=" not in text  # the env file's content is in no line at all


def test_the_progress_line_counts_seconds_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(progress, "TICK_S", 0.05)
    log = logging.getLogger("pytest_deployproof.test_progress")
    for stream, counts in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with progress.cli_logging(0):
            log.info("web: compose up --wait (timeout 60s)", extra=progress.WAITING)
            time.sleep(0.3)
            log.info("web: up in 0.3s")
            log.debug("not shown at INFO")
        lines = stream.getvalue().split("\n")
        assert lines[-1] == ""
        assert lines[-2].endswith(" web: up in 0.3s")
        assert "not shown" not in stream.getvalue()
        if counts:  # redrawn in place, ending with the time it took
            assert lines[0].count("\r") >= 2
            assert lines[0].endswith("web: compose up --wait (timeout 60s) ... 0s")
        else:
            assert "\r" not in stream.getvalue()
            assert lines[0].endswith(" web: compose up --wait (timeout 60s)")


def test_cli_logging_is_undone_and_a_nested_command_shows_each_line_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    package = logging.getLogger("pytest_deployproof")
    handlers, level = list(package.handlers), package.level
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with progress.cli_logging(1), progress.cli_logging(-1):
        logging.getLogger("pytest_deployproof.x").debug("once")
    assert stream.getvalue().count("once") == 1
    assert "DEBUG pytest_deployproof.x: once" in stream.getvalue()
    assert (package.handlers, package.level) == (handlers, level)


def test_commands_are_logged_masked_and_testinfra_does_not_log_their_output(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = f"planted-{uuid.uuid4().hex}"
    access = HostAccess(Host(name="here", spec="local://"))
    access.masker = Masker([secret])
    with caplog.at_level(logging.DEBUG):
        done = access.run("sh", "-c", f"echo {secret}", "x", f"API_TOKEN={secret}x", "A=b")
    assert done.stdout.strip() == secret  # what the command printed: the caller's, not logged
    assert secret not in caplog.text
    [line] = [r.getMessage() for r in caplog.records]
    assert line == "here$ sh -c 'echo ********' x 'API_TOKEN=********' A=b"
