"""Secrets never appear in any output (REP-3, TRU-3): distinctive values are planted in a
real stack's env file (the database password its PostgreSQL really checks, an API token,
an SMTP password, a session cookie), then a whole life is run over it: checks, a deploy
that succeeds, one that fails and is rolled back, the history, the rollback list, the
CLI's lock status, and a check that fails quoting the env file. Every stream and every
file written (terminal, JUnit, Allure results, dashboard, history, verified records,
deployed state, leases) is searched for each value. Only the env file itself and the
backups (0600 copies of it, by design) may hold them.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.compose import ComposeStack
from tests.support.deploying import deploy_inventory
from tests.support.postgres import Postgres, app_database
from tests.support.repo import SUITES

LEAKY_CHECK = """
import pathlib

def test_quotes_the_env_file(stack):
    text = (pathlib.Path(str(stack.run_dir)) / ".env").read_text()
    assert "nothing" in text, f"the env file says: {text}"
"""


def test_planted_secrets_are_in_no_output(
    pytester: pytest.Pytester,
    deploy_project: tuple[ComposeStack, Path],
    postgres: Postgres,
    bad_image: str,
    tmp_path: Path,
) -> None:
    app, state = deploy_project
    name, password = app_database(postgres)
    token, smtp, cookie = (f"planted-{kind}-{uuid.uuid4().hex}" for kind in "tsc")
    secrets = {"DB_PASSWORD": password, "API_TOKEN": token, "SMTP_PASS": smtp,
               "SESSION_COOKIE": cookie}  # fmt: skip
    env = "APP_IMAGE_TAG=v1.0.0\n" + "".join(f"{k}={v}\n" for k, v in secrets.items())
    (app.run_dir / ".env").write_text(env)
    (app.run_dir / ".env").chmod(0o600)
    database = (
        f"    databases: {{main: {{host: 127.0.0.1, port: {postgres.port}, dbname: {name}, "
        f"user: {name}, password_key: DB_PASSWORD}}}}\n"
    )
    (pytester.path / "inventories" / "test.yml").write_text(deploy_inventory(app, state, database))
    pytester.makepyfile(**{k: v for k, v in SUITES.items() if k != "test_drift"})
    pytester.makepyfile(test_leaky=LEAKY_CHECK)
    outputs: list[str] = []

    def pytest_run(*args: str) -> int:
        result = pytester.runpytest_subprocess(
            "--env", "test", "-p", "no:cacheprovider", "-rA", "--alluredir", "allure",
            "--junitxml", f"junit-{len(outputs)}.xml", "--dashboard", f"dash-{len(outputs)}.md",
            *args,
        )  # fmt: skip
        outputs.append(result.stdout.str() + result.stderr.str())
        return result.ret

    def cli(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "pytest_deployproof.ops.cli", *args, "--env", "test",
             "--inventory", str(pytester.path / "inventories")],
            capture_output=True, text=True, check=False, cwd=pytester.path,
        )  # fmt: skip
        outputs.append(done.stdout + done.stderr)

    checks = pytest_run("-m", "preflight or smoke or health")
    assert checks == pytest.ExitCode.OK, outputs[-1]
    assert pytest_run("-k", "test_quotes_the_env_file") == pytest.ExitCode.TESTS_FAILED
    assert pytest_run("--deploy", "v2.0.0", "-m", "smoke") == pytest.ExitCode.OK
    assert pytest_run("--deploy", bad_image, "-m", "smoke") == pytest.ExitCode.TESTS_FAILED
    cli("history")
    cli("rollback", "app", "--list")
    cli("lock", "app")
    assert "rolled back to v2.0.0, verified" in outputs[3]
    assert any("the env file says:" in output for output in outputs)  # the leak was tried

    written = [
        path
        for root in (pytester.path, state)
        for path in root.rglob("*")
        if path.is_file()
        and path != app.run_dir / ".env"
        and "backups" not in path.parts  # copies of the env file, 0600, by design
    ]
    assert any(p.suffix == ".xml" for p in written)
    assert any("allure" in p.parts for p in written)
    assert (state / "deploy-history.log") in written
    leaks = [
        (key, where)
        for key, value in secrets.items()
        for where, text in [
            *((f"output {i}", out) for i, out in enumerate(outputs)),
            *((str(p), p.read_bytes().decode(errors="replace")) for p in written),
        ]
        if value in text
    ]
    assert leaks == []
