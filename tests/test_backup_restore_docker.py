"""Nothing lost (DEP-3, DEP-11): backups with a real pg_dump, restore, migrations, gates.

A real PostgreSQL cluster holds the stack's database, reached as the stack's
own user with the password from its env file; the stack itself runs on the
real Docker engine.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from pytest_deployproof.observe.stackfiles import env_value
from pytest_deployproof.ops.cli import main
from tests.support.compose import ComposeStack
from tests.support.deploying import container, deploy, deploy_inventory, history_lines
from tests.support.postgres import Postgres, app_database, connect, rows, with_database
from tests.support.repo import SUITES


def test_rows_survive_a_rollback_and_a_backup_gives_them_back(
    pytester: pytest.Pytester,
    deploy_project: tuple[ComposeStack, Path],
    postgres: Postgres,
    bad_image: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, state = deploy_project
    name, password = app_database(postgres)
    with_database(pytester, app, state, postgres, name, password)
    pytester.makepyfile(test_smoke=SUITES["test_smoke"], test_health=SUITES["test_health"])
    with connect(postgres, name, password) as db:
        db.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
        db.execute("INSERT INTO orders VALUES (1, 'tea'), (2, 'bread'), (3, 'soap')")
    backups = app.run_dir.parent / "backups" / "app"

    # A good deploy takes a backup first: files and a pg_dump, with checksums.
    result = deploy(pytester, "v2.0.0", "smoke or health")
    result.assert_outcomes(passed=3, skipped=1)  # no health endpoint declared
    [first] = sorted(backups.iterdir())
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["version"] == "v1.0.0"
    assert [f["kind"] for f in manifest["files"]] == ["compose", "env", "pg_dump"]
    dump = first / "db-main.dump"
    assert dump.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
    assert manifest["files"][2]["size"] == dump.stat().st_size
    assert not list(backups.glob("**/.pgpass*"))  # the password file is gone
    assert history_lines(state)[-1][3] == f"backup {first.name}"
    for text in (result.stdout.str(), (first / "manifest.json").read_text()):
        assert password not in text
    assert password not in (state / "deploy-history.log").read_text()

    # Rows written before a failed deploy are all there after its rollback.
    with connect(postgres, name, password) as db:
        db.execute("INSERT INTO orders VALUES (4, 'milk'), (5, 'eggs')")
    before = rows(postgres, name, password)
    deploy(pytester, bad_image, "smoke or health").assert_outcomes(passed=2, failed=1, skipped=1)
    assert history_lines(state)[-1][:3] == ("rollback", "v2.0.0", "success")
    assert rows(postgres, name, password) == before
    assert len(before) == 5

    # The database is emptied by mistake; the newest backup gives back the same rows.
    with connect(postgres, name, password) as db:
        db.execute("DROP TABLE orders")
    args = ["--env", "test", "--inventory", str(pytester.path / "inventories"), "app"]
    capsys.readouterr()
    assert main(["restore", *args, "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == sorted(p.name for p in backups.iterdir())
    assert "version v2.0.0" in listed[-1]

    assert main(["restore", *args]) == 0
    newest = listed[-1].split()[0]
    assert capsys.readouterr().out == (
        f"app: restored files, database main from backup {newest}, verified\n"
    )
    assert rows(postgres, name, password) == before
    assert env_value((app.run_dir / ".env").read_text(), "APP_IMAGE_TAG") == "v2.0.0"
    assert container(app)["health"] == "healthy"
    assert history_lines(state)[-1] == (
        "restore",
        "v2.0.0",
        "success",
        f"backup {newest}: files, database main",
    )

    # A damaged backup is refused before anything is touched.
    with connect(postgres, name, password) as db:
        db.execute("INSERT INTO orders VALUES (6, 'salt')")
    with (backups / newest / "db-main.dump").open("ab") as damaged:
        damaged.write(b"\0")
    assert main(["restore", *args, newest]) == 1
    assert (
        f"restore of app v2.0.0 refused, nothing changed: backup {newest} is damaged: "
        "db-main.dump does not match its checksum" in capsys.readouterr().err
    )
    assert len(rows(postgres, name, password)) == 6


def started_at(app: ComposeStack) -> datetime:
    done = subprocess.run(
        ["docker", "inspect", app.container("web"), "--format", "{{.State.StartedAt}}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", done.stdout.strip()))


def test_the_migration_runs_in_the_new_version_before_it_serves_and_a_failed_one_rolls_back(
    pytester: pytest.Pytester,
    compose_stack: Callable[..., ComposeStack],
    tmp_path: Path,
) -> None:
    log = tmp_path / "migrations"
    log.mkdir()
    log.chmod(0o777)
    app = compose_stack("app", compose={"web": {"volumes": [f"{log}:/migrations"]}})
    app.up()
    state = tmp_path / "state"
    pytester.mkdir("inventories")
    inventory = pytester.path / "inventories" / "test.yml"
    migrate = "sh -c 'sleep 1; echo \"$VERSION $(date +%s)\" >> /migrations/log'"
    inventory.write_text(
        deploy_inventory(
            app, state, f"    migration: {{service: web, command: {json.dumps(migrate)}}}\n"
        )
    )
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])

    result = pytester.runpytest_subprocess(
        "--env", "test", "--deploy", "v2.0.0", "-p", "no:cacheprovider", "--alluredir", "allure"
    )
    result.assert_outcomes(passed=2)
    # Each phase is a step of the deploy fixture in the Allure results (REP-1).
    containers = [
        json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-container.json")
    ]
    [fixture] = [b for c in containers for b in c.get("befores", []) if b["name"] == "deployment"]
    assert [step["name"] for step in fixture["steps"]] == [
        f"deploy app v2.0.0: {phase}"
        for phase in ("lock", "preflight", "backup", "pull", "tag", "migrate", "up")
    ]
    assert {step["status"] for step in fixture["steps"]} == {"passed"}
    version, seconds = (log / "log").read_text().split()
    assert version == "v2.0.0"  # the new image's environment
    assert int(seconds) <= started_at(app).timestamp()  # before the new container started
    serving = container(app)

    failing = "sh -c 'echo schema conflict >&2; exit 3'"
    inventory.write_text(
        deploy_inventory(
            app, state, f"    migration: {{service: web, command: {json.dumps(failing)}}}\n"
        )
    )
    result = deploy(pytester, "v1.0.0")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "DEPLOY FAILED: migration `sh -c 'echo schema conflict >&2; exit 3'` of app v1.0.0 "
            "failed (exit code 3): schema conflict; what it changed in databases is not undone: "
            "backup * holds the state before",
            "app: v1.0.0 failed (*); rolled back to v2.0.0, verified",
        ]
    )
    assert env_value((app.run_dir / ".env").read_text(), "APP_IMAGE_TAG") == "v2.0.0"
    assert container(app) == serving  # never stopped: the old container kept serving


def test_a_failed_preflight_gate_refuses_the_deploy(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path]
) -> None:
    app, state = deploy_project
    (pytester.path / "inventories" / "test.yml").write_text(
        deploy_inventory(app, state, "    required_env: [APP_IMAGE_TAG, SMTP_HOST]\n")
    )
    pytester.makepyfile(test_preflight=SUITES["test_preflight"], test_smoke=SUITES["test_smoke"])
    running = container(app)

    result = pytester.runpytest_subprocess(
        "--env", "test", "--deploy", "v2.0.0", "-p", "no:cacheprovider", "-rA"
    )
    outcomes = result.parseoutcomes()
    assert (outcomes["failed"], outcomes["errors"]) == (1, 2), outcomes
    result.stdout.fnmatch_lines(
        [
            "test_preflight.py ..F*",
            "test_smoke.py EE*",
            "DEPLOY FAILED: deploy of app v2.0.0 refused, nothing changed: preflight failed: "
            "test/platform/app test_env_file_complete",
            "*SMTP_HOST*",
        ]
    )
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
    assert container(app) == running
