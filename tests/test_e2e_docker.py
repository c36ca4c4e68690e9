"""The bundled E2E suites against real parts (E2E-1..4, DEP-10): each one passes on a sound
stack and fails, with its figures, on the fault it exists to catch."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.support.compose import ComposeStack, inventory_yaml
from tests.support.deploying import container, deploy_inventory, history_lines
from tests.support.junit import outcomes
from tests.support.postgres import Postgres, app_database, with_database
from tests.support.repo import REPO, SUITES

MakeStack = Callable[..., ComposeStack]
E2E = {path.parent.name: path.read_text() for path in (REPO / "suites" / "e2e").glob("*/test_*.py")}


def with_suites(pytester: pytest.Pytester, *names: str) -> None:
    """The project layout a user has: suites/ with the bundled checks and suites/e2e/<name>/."""
    for name in names:
        folder = pytester.path / "suites" / "e2e" / name
        folder.mkdir(parents=True)
        (folder / f"test_{name}.py").write_text(E2E[name])
    (pytester.path / "suites" / "test_smoke.py").write_text(SUITES["test_smoke"])


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("--env", "test", "-p", "no:cacheprovider", "-rA", *args)


def test_only_named_suites_run_and_an_unknown_one_is_a_usage_error(
    pytester: pytest.Pytester, compose_stack: MakeStack
) -> None:
    app = compose_stack("app")
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(inventory_yaml([app]))
    with_suites(pytester, "limits", "example")

    result = run(pytester, "--collect-only", "-q")
    assert "suites/e2e" not in result.stdout.str()  # E2E suites only when named
    result = run(pytester, "--suite", "limits", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["suites/e2e/limits/test_limits.py::test_limits_applied*"])
    assert "test_smoke" not in result.stdout.str()
    result = run(pytester, "--suite", "limits,example", "-m", "e2e", "--collect-only", "-q")
    assert "6 tests collected" in result.stdout.str()
    result = run(pytester, "--suite", "limts")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--suite: no E2E suite 'limts' in *suites/e2e; known are: example, limits"]
    )


def database_of(postgres: Postgres) -> tuple[str, str]:
    """A database and its owner, reachable by nobody else (REVOKE CONNECT FROM PUBLIC)."""
    name, password = f"e2e_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    postgres.sql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    postgres.sql(f"CREATE DATABASE {name} OWNER {name}")
    postgres.sql(f"REVOKE CONNECT ON DATABASE {name} FROM PUBLIC")
    return name, password


def test_isolation_passes_until_one_user_may_reach_another_stacks_database(
    pytester: pytest.Pytester, compose_stack: MakeStack, postgres: Postgres
) -> None:
    (shop_db, shop_pw), (blog_db, blog_pw) = database_of(postgres), database_of(postgres)
    shop = compose_stack("shop", env_file=f"APP_IMAGE_TAG=v1.0.0\nDB_PASSWORD={shop_pw}\n")
    blog = compose_stack("blog", env_file=f"APP_IMAGE_TAG=v1.0.0\nDB_PASSWORD={blog_pw}\n")
    inventory = yaml.safe_load(inventory_yaml([shop, blog]))
    for stack, db in ((shop, shop_db), (blog, blog_db)):
        inventory["stacks"][stack.name]["databases"] = {
            "main": {"port": postgres.port, "dbname": db, "user": db, "password_key": "DB_PASSWORD"}
        }
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(yaml.safe_dump(inventory))
    with_suites(pytester, "isolation", "example")

    run(pytester, "--suite", "isolation").assert_outcomes(passed=2)
    # The example suite's database test: the stack's own user, through `stack_db`.
    result = run(pytester, "--suite", "example", "-k", "order")
    result.assert_outcomes(passed=2)

    postgres.sql(f"GRANT CONNECT ON DATABASE {blog_db} TO {shop_db}")
    result = run(pytester, "--suite", "isolation")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"stack shop: isolation: user {shop_db} of stack shop can connect to database "
            f"{blog_db} of stack blog",
        ]
    )
    assert shop_pw not in result.stdout.str()


def test_limits_and_shutdown_pass_on_a_sound_stack_and_name_the_culprits(
    pytester: pytest.Pytester, compose_stack: MakeStack
) -> None:
    loop = "while true; do sleep 0.2; done"
    app = compose_stack(
        "app",
        compose={
            "good": {"command": ["sh", "-c", f"trap 'exit 0' TERM; {loop}"],
                     "healthcheck": None, "stop_grace_period": "2s"},
            "stubborn": {"command": ["sh", "-c", f"trap '' TERM; {loop}"],
                         "healthcheck": None, "stop_grace_period": "2s"},
        },
        web={}, good={}, stubborn={},
    )  # fmt: skip
    app.up()
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(inventory_yaml([app]))
    with_suites(pytester, "limits", "shutdown")

    run(pytester, "--suite", "limits").assert_outcomes(passed=3)
    # Declared limits that the running containers do not carry (changed, not recreated).
    compose = yaml.safe_load((app.run_dir / "compose.yaml").read_text())
    compose["services"]["good"]["deploy"]["resources"]["limits"] = {"cpus": "0.5", "memory": "64M"}
    (app.run_dir / "compose.yaml").write_text(yaml.safe_dump(compose))
    result = run(pytester, "--suite", "limits")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"stack app: limits: {app.container('good')}: cpus 0.25, declared 0.5; "
            f"{app.container('good')}: memory 33554432 bytes, declared 67108864"
        ]
    )

    result = run(pytester, "--suite", "shutdown", "-k", "good or stubborn")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"stack app: shutdown: {app.container('stubborn')} still runs 2.* s after SIGTERM "
            "(grace period 2 s): it ignores SIGTERM"
        ]
    )
    # Both were started again.
    states = app.compose("ps", "--format", "{{.Service}} {{.State}}").stdout.split("\n")
    assert sorted(line for line in states if line) == [
        "good running",
        "stubborn running",
        "web running",
    ]


def test_rollout_counts_failed_requests_of_an_in_place_recreate_against_the_budget(
    pytester: pytest.Pytester, compose_stack: MakeStack, tmp_path: Path
) -> None:
    app = compose_stack("app", compose={"web": {"stop_grace_period": "1s"}})
    app.up()
    state = tmp_path / "state"
    pytester.mkdir("inventories")
    inventory = pytester.path / "inventories" / "test.yml"
    inventory.write_text(deploy_inventory(app, state, "    rollout: {interval_ms: 50}\n"))
    with_suites(pytester, "rollout")

    # Compose recreates in place: stop the old container, then start the new one.
    result = run(pytester, "--suite", "rollout", "--deploy", "v2.0.0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "stack app: rollout of v2.0.0: * requests in * s, * failed (*%), longest gap "
            "without a good answer * s (first: health: *); budget 0 failed requests",
            "app: v2.0.0 failed (*); rolled back to v1.0.0, verified",
        ]
    )
    failed = int(result.stdout.str().split(" failed (")[0].rsplit(", ", 1)[1])
    assert failed > 0

    # A budget that allows the gap passes, and the figures are in the report.
    inventory.write_text(deploy_inventory(app, state, "    rollout: {budget: 100000}\n"))
    result = run(pytester, "--suite", "rollout", "--deploy", "v2.0.0", "--junitxml", "j.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["rollout of app v2.0.0: * requests in *, * failed (*%), *"])
    junit = (pytester.path / "j.xml").read_text()
    assert 'name="rollout_requests"' in junit
    assert 'name="rollout_failed"' in junit


def test_the_whole_example_suite_passes_on_a_real_stack_and_under_deploy(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path], postgres: Postgres
) -> None:
    """E2E-1: every fixture the example suite shows (stack_http, stack_db, stack_host,
    deployment with its version and previous) used against a stack and its database."""
    app, state = deploy_project
    name, password = app_database(postgres)
    with_database(pytester, app, state, postgres, name, password)
    with_suites(pytester, "example")

    result = run(pytester, "--suite", "example", "--junitxml", "plain.xml")
    result.assert_outcomes(passed=3, skipped=2)
    seen = outcomes(pytester.path / "plain.xml")
    assert {test: o.status for test, o in seen.items()} == {
        "test_the_home_page_answers[test/platform/app]": "passed",
        "test_the_deployed_version_is_the_one_serving[test/platform/app]": "skipped",
        "test_the_env_file_on_the_host_names_the_version[test/platform/app]": "passed",
        "test_the_upgrade_is_from_the_version_that_ran_before[test/platform/app]": "skipped",
        "test_an_order_is_stored_and_read_back[test/platform/app]": "passed",
    }
    assert all("not deploying" in o.message for o in seen.values() if o.status == "skipped")

    # Under --deploy every test runs and passes, against v2.0.0, upgraded from v1.0.0.
    result = run(pytester, "--suite", "example", "--deploy", "v2.0.0", "--junitxml", "up.xml")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["app: upgraded from v1.0.0 to v2.0.0"])
    assert (app.run_dir / ".env").read_text() == f"APP_IMAGE_TAG=v2.0.0\nDB_PASSWORD={password}\n"
    assert container(app)["image"].endswith(":v2.0.0")
    assert [line[:3] for line in history_lines(state)] == [("deploy", "v2.0.0", "success")]
    assert password not in result.stdout.str() + (pytester.path / "up.xml").read_text()


ROLLOUT_LINE = re.compile(
    r"rollout of (\w+) v2\.0\.0: (\d+) requests in ([\d.]+) s, (\d+) failed \(([\d.]+)%\), "
    r"longest gap without a good answer ([\d.]+) s"
)


def test_rollout_reports_the_share_failed_and_the_longest_gap_with_and_without_failures(
    pytester: pytest.Pytester, compose_stack: MakeStack, demo_image: str, tmp_path: Path
) -> None:
    """E2E-3, both ways in one deploy of two stacks. ``steady`` serves users from ``web``,
    pinned, while the version goes to ``api``, which Compose replaces and waits healthy:
    no request fails. ``late`` is replaced in place (Compose stops the old container, then
    starts the new) and the new one listens only after START_DELAY=2 s: requests fail
    for at least that long."""
    pinned = {"image": f"{demo_image}:v1.0.0", "environment": {"VERSION": "v1.0.0"}}
    steady = compose_stack("steady", compose={"web": pinned}, web={}, api={})
    late = compose_stack("late", compose={"web": {"stop_grace_period": "1s"}},
                         web={"START_DELAY": "2"})  # fmt: skip
    steady.up()
    late.up()
    state = tmp_path / "state"
    inventory = yaml.safe_load(deploy_inventory(steady, state, "    rollout: {interval_ms: 50}\n"))
    inventory["stacks"] = {
        "steady": {
            **inventory["stacks"]["app"],
            "services": {"web": {"critical": True}, "api": {"critical": False}},
        },
        "late": yaml.safe_load(
            deploy_inventory(late, state, "    rollout: {interval_ms: 50, budget: 100000}\n")
        )["stacks"]["app"],
    }
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(yaml.safe_dump(inventory))
    with_suites(pytester, "rollout")
    api_before, web_before = (container_id(steady, s) for s in ("api", "web"))

    result = run(pytester, "--suite", "rollout", "--deploy", "v2.0.0", "--junitxml", "j.xml")
    result.assert_outcomes(passed=2)
    # The deploy replaced api (and waited for it), never web: what users reach stayed up.
    assert container_id(steady, "api") != api_before
    assert container_id(steady, "web") == web_before

    printed = {m[1]: m.groups()[1:] for m in ROLLOUT_LINE.finditer(result.stdout.str())}
    assert sorted(printed) == ["late", "steady"], result.stdout.str()
    reported = {
        test.split("/")[-1].rstrip("]"): o.properties
        for test, o in outcomes(pytester.path / "j.xml").items()
    }
    for stack, (sent, duration, failed, percent, gap) in printed.items():
        properties = reported[stack]
        # The line and the JUnit properties say the same, and the share is failed/sent.
        assert (properties["rollout_requests"], properties["rollout_failed"]) == (sent, failed)
        assert float(properties["rollout_failed_percent"]) == float(percent)
        assert float(percent) == pytest.approx(100 * int(failed) / int(sent), abs=0.05)
        assert abs(float(properties["rollout_longest_gap_s"]) - float(gap)) <= 0.006
        assert 0 < float(gap) <= float(duration) + 0.05
    steady_figures, late_figures = printed["steady"], printed["late"]
    assert int(steady_figures[0]) > 10  # probed all along the rollout
    assert (steady_figures[2], steady_figures[3]) == ("0", "0.0")
    assert float(steady_figures[4]) < 1.5  # a probe's cadence and timeout, no outage
    assert int(late_figures[2]) > 0
    assert 0 < float(late_figures[3]) < 100
    assert float(late_figures[4]) >= 2.0  # at least START_DELAY without a good answer


def container_id(stack: ComposeStack, service: str) -> str:
    return stack.compose("ps", "-q", service).stdout.strip()
