"""The bundled preflight, smoke and health suites against real stacks, one injected fault at a time.

Each case builds a real Compose stack on the Docker engine (with a real PostgreSQL and Redis
behind it), breaks exactly one thing, runs every bundled suite in a subprocess, and reads the
JUnit XML: the one check that should notice fails (or is skipped as blocked) with a message
naming the stack, the check and what was seen, and every other check passes.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.support import junit
from tests.support.compose import ComposeStack
from tests.support.junit import Outcome
from tests.support.network import free_port
from tests.support.postgres import Postgres
from tests.support.redis import Redis
from tests.support.repo import SUITES

MakeStack = Callable[..., ComposeStack]
# The preflight, smoke and health suites (drift has its own tests: it needs a recorded deploy).
CHECK_SUITES = {name: text for name, text in SUITES.items() if name != "test_drift"}
PG_PASSWORD = "pg-" + uuid.uuid4().hex[:10]

# Checks with nothing to parametrise in these stacks: pytest reports them as one skip.
EMPTY = {"test_health_endpoint[none-selected]"}


def run_suites(pytester: pytest.Pytester, inventory: str, *args: str) -> dict[str, Outcome]:
    (pytester.path / "inventories").mkdir(exist_ok=True)
    (pytester.path / "inventories" / "test.yml").write_text(inventory)
    pytester.makepyfile(**CHECK_SUITES)
    report = pytester.path / "report.xml"
    result = pytester.runpytest_subprocess(
        "--env", "test", "-p", "no:cacheprovider", f"--junitxml={report}", "-rs", *args
    )
    outcomes = junit.outcomes(report)
    outcomes["__output__"] = Outcome("", result.stdout.str() + result.stderr.str())
    return outcomes


@pytest.fixture
def database_env(postgres: Postgres, redis_server: Redis) -> dict[str, Any]:
    """A PostgreSQL role and database owned by the stack, and Redis, for its env file."""
    name = "app_" + uuid.uuid4().hex[:8]
    postgres.sql(f"CREATE ROLE {name} LOGIN PASSWORD '{PG_PASSWORD}'")
    postgres.sql(f"CREATE DATABASE {name} OWNER {name}")
    return {"pg": postgres, "redis": redis_server, "role": name}


def inventory_for(stack: ComposeStack, db: dict[str, Any], **extra: Any) -> str:
    """A full inventory entry: services, endpoints (HTTP and TCP), PostgreSQL and Redis."""
    endpoints = [
        {"name": "health", "url": f"{stack.url}/cgi-bin/health", "body": "ok"},
        {"name": "port", "url": f"tcp://127.0.0.1:{stack.port}"},
        # a service health endpoint: the health suite's, not smoke's
        {"name": "ready", "url": f"{stack.url}/cgi-bin/health", "health": True, "latency_ms": 5000},
        *extra.pop("endpoints", []),
    ]
    services = {s: {"critical": s == stack.services[0]} for s in stack.services}
    entry: dict[str, Any] = {
        "layer": "platform",
        "host": "here",
        "run_dir": str(stack.run_dir),
        "project": stack.project,
        "image_tag_var": "APP_IMAGE_TAG",
        "required_env": ["APP_IMAGE_TAG"],
        "services": services,
        "endpoints": endpoints,
        "databases": {
            "main": {
                "kind": "postgresql",
                "port": db["pg"].port,
                "dbname": db["role"],
                "user": db["role"],
                "password_key": "PG_PASSWORD",
            },
            "cache": {"kind": "redis", "port": db["redis"].port, "password_key": "REDIS_PASSWORD"},
        },
        **extra,
    }
    document = {
        "hosts": {"here": {"spec": "local://"}},
        "layers": {"platform": {"order": 2, "engine": "compose"}},
        "probes": {"tries": 2, "interval_s": 0.2, "deadline_s": 8},
        "stacks": {stack.name: entry},
    }
    return yaml.safe_dump(document, sort_keys=False)


def env_file(db: dict[str, Any], tag: str = "v1.0.0", pg_password: str = PG_PASSWORD) -> str:
    return (
        f"APP_IMAGE_TAG={tag}\nPG_PASSWORD={pg_password}\nREDIS_PASSWORD={db['redis'].password}\n"
    )


def assert_only(outcomes: dict[str, Outcome], expected: dict[str, tuple[str, list[str]]]) -> None:
    """The expected tests have the expected status and message fragments; all others pass."""
    for name, (status, fragments) in expected.items():
        assert name in outcomes, f"{name} was not run; ran: {sorted(outcomes)}"
        outcome = outcomes[name]
        assert outcome.status == status, f"{name}: {outcome.status}: {outcome.message}"
        for fragment in fragments:
            assert fragment in outcome.message, f"{name}: {fragment!r} not in {outcome.message!r}"
    others = {
        name: outcome.status
        for name, outcome in outcomes.items()
        if name not in expected and name not in EMPTY and name != "__output__"
    }
    assert set(others.values()) == {"passed"}, f"other checks did not all pass: {others}"
    assert {outcomes[name].status for name in EMPTY if name in outcomes} <= {"skipped"}


def test_a_healthy_stack_passes_every_check(
    pytester: pytest.Pytester, compose_stack: MakeStack, database_env: dict[str, Any]
) -> None:
    app = compose_stack("app", env_file=env_file(database_env), web={}, worker={})
    app.up()
    outcomes = run_suites(pytester, inventory_for(app, database_env))
    assert_only(outcomes, {})
    ran = {name.split("[")[0] for name in outcomes if name != "__output__"}
    assert ran >= {
        "test_compose_parses",
        "test_env_file_complete",
        "test_no_literal_secrets",
        "test_no_build_directive",
        "test_images_pinned",
        "test_resource_limits",
        "test_networks_exist",
        "test_images_available",
        "test_disk_free",
        "test_service_running",
        "test_endpoint_answers",
        "test_health_endpoint",
        "test_database_answers",
    }
    # The health/smoke split: the health endpoint is probed by the health suite only.
    assert outcomes[f"test_health_endpoint[{ID}/ready]"].status == "passed"
    assert f"test_endpoint_answers[{ID}/ready]" not in outcomes
    assert f"test_endpoint_answers[{ID}/health]" in outcomes


ID = "test/platform/app"


def fault_missing_network(make: MakeStack, db: dict[str, Any]) -> tuple[ComposeStack, str]:
    present = f"dp-edge-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "network", "create", present], check=True, capture_output=True)
    app = make(
        "app",
        env_file=env_file(db),
        compose={"web": {"networks": ["default", "edge"]}},
        networks={"edge": {"external": True, "name": present}},
    )
    app.networks_made.append(present)
    app.up()
    subprocess.run(
        ["docker", "network", "disconnect", "-f", present, app.container("web")],
        check=False,
        capture_output=True,
    )
    # The inventory says the stack also needs a network that nobody created.
    return app, inventory_for(app, db, networks=["absent-edge"])


FAULTS: dict[
    str, tuple[Callable[..., tuple[ComposeStack, str]], dict[str, tuple[str, list[str]]]]
] = {
    "missing-network": (
        fault_missing_network,
        {
            f"test_networks_exist[{ID}]": (
                "failed",
                ["stack app: external networks: network absent-edge does not exist on host here"],
            )
        },
    ),
    "latest-tag": (
        lambda make, db: _up(make("app", env_file=env_file(db, tag="latest")), db),
        {
            f"test_images_pinned[{ID}]": (
                "failed",
                [
                    "stack app: image tags: critical service web uses "
                    "deployproof-demo/busybox:latest"
                ],
            )
        },
    ),
    "local-pin-tag": (
        lambda make, db: _up(make("app", env_file=env_file(db, tag="pin-20260129-d75f3637")), db),
        {
            f"test_images_pinned[{ID}]": (
                "failed",
                ["tag 'pin-20260129-d75f3637' is not a registry tag"],
            )
        },
    ),
    "build-directive": (
        lambda make, db: _up(
            make("app", env_file=env_file(db), compose={"web": {"build": "."}}), db
        ),
        {
            f"test_no_build_directive[{ID}]": (
                "failed",
                ["stack app: build directive: service web has build:"],
            )
        },
    ),
    "no-limits": (
        lambda make, db: _up(
            make("app", env_file=env_file(db), compose={"web": {"deploy": None}}), db
        ),
        {
            f"test_resource_limits[{ID}]": (
                "failed",
                ["stack app: resource limits: service web has no cpus or memory limit"],
            )
        },
    ),
    "missing-env-key": (
        lambda make, db: _up(
            make("app", env_file=env_file(db)), db, required_env=["APP_IMAGE_TAG", "SMTP_HOST"]
        ),
        {
            f"test_env_file_complete[{ID}]": (
                "failed",
                ["stack app: env file: ", "does not set SMTP_HOST"],
            )
        },
    ),
    "literal-secret": (
        lambda make, db: _up(
            make(
                "app",
                env_file=env_file(db),
                compose={
                    "web": {
                        "environment": {
                            "VERSION": "${APP_IMAGE_TAG}",
                            "SMTP_PASSWORD": "planted-literal-secret",
                        }
                    }
                },
            ),
            db,
        ),
        {
            f"test_no_literal_secrets[{ID}]": (
                "failed",
                ["service web sets SMTP_PASSWORD to a literal value in compose.yaml"],
            )
        },
    ),
    "broken-compose": (
        lambda make, db: _break_compose(make("app", env_file=env_file(db)), db),
        {
            f"test_compose_parses[{ID}]": (
                "failed",
                ["stack app: compose config: docker compose config rejects"],
            ),
            **{
                f"{check}[{ID}]": (
                    "skipped",
                    [f"blocked by test_preflight.py::test_compose_parses[{ID}]"],
                )
                for check in (
                    "test_no_build_directive",
                    "test_images_pinned",
                    "test_resource_limits",
                    "test_networks_exist",
                    "test_images_available",
                )
            },
        },
    ),
    "image-absent": (
        lambda make, db: _retag(make("app", env_file=env_file(db)), db, "v9.9.9"),
        {
            f"test_images_available[{ID}]": (
                "failed",
                [
                    "stack app: images: service web: image deployproof-demo/busybox:v9.9.9 "
                    "is not on host here"
                ],
            )
        },
    ),
    "container-stopped": (
        lambda make, db: _stop(make("app", env_file=env_file(db), web={}, worker={}), db, "worker"),
        {
            f"test_service_running[{ID}/worker]": (
                "failed",
                ["service worker: ", ": exited (Exited ("],
            )
        },
    ),
    "critical-container-stopped": (
        lambda make, db: _stop(make("app", env_file=env_file(db), web={}, worker={}), db, "web"),
        {
            f"test_service_running[{ID}/web]": ("failed", ["service web: ", "exited"]),
            **{
                f"{check}[{ID}/{name}]": (
                    "skipped",
                    [f"blocked by test_smoke.py::test_service_running[{ID}/web]"],
                )
                for check, name in (
                    ("test_endpoint_answers", "health"),
                    ("test_endpoint_answers", "port"),
                    ("test_health_endpoint", "ready"),
                    ("test_database_answers", "main"),
                    ("test_database_answers", "cache"),
                )
            },
        },
    ),
    "unhealthy": (
        lambda make, db: _up(
            make(
                "app",
                env_file=env_file(db),
                compose={
                    "web": {
                        "healthcheck": {
                            "test": [
                                "CMD",
                                "wget",
                                "-q",
                                "-O",
                                "/dev/null",
                                "http://127.0.0.1:8080/cgi-bin/health",
                            ],
                            "interval": "1s",
                            "retries": 2,
                        }
                    }
                },
                web={"HEALTH_STATUS": "503"},
            ),
            db,
            wait=False,
        ),
        {
            f"test_service_running[{ID}/web]": ("failed", ["health unhealthy", "not healthy"]),
            f"test_endpoint_answers[{ID}/health]": ("skipped", ["blocked by"]),
            f"test_endpoint_answers[{ID}/port]": ("skipped", ["blocked by"]),
            f"test_health_endpoint[{ID}/ready]": ("skipped", ["blocked by"]),
            f"test_database_answers[{ID}/main]": ("skipped", ["blocked by"]),
            f"test_database_answers[{ID}/cache]": ("skipped", ["blocked by"]),
        },
    ),
    "endpoint-503": (
        lambda make, db: _up(
            make(
                "app",
                env_file=env_file(db),
                web={"HEALTH_STATUS": "503", "HEALTH_BODY": "database unreachable"},
            ),
            db,
        ),
        {
            f"test_endpoint_answers[{ID}/health]": (
                "failed",
                [
                    "GET http://127.0.0.1:",
                    "/cgi-bin/health: status 503, expected 200",
                    "seen: HTTP 503 in",
                    "2 attempts in",
                    "body: 'database unreachable\\n'",
                ],
            ),
            # the service health endpoint is the same URL here: it fails in the health suite
            f"test_health_endpoint[{ID}/ready]": ("failed", ["status 503, expected 200"]),
        },
    ),
    "endpoint-slow": (
        lambda make, db: _up(
            make("app", env_file=env_file(db), web={"HEALTH_DELAY": "1"}),
            db,
            endpoints=[{"name": "fast", "url": "{url}/cgi-bin/health", "latency_ms": 300}],
        ),
        {f"test_endpoint_answers[{ID}/fast]": ("failed", ["ms over the 300 ms budget"])},
    ),
    "health-over-budget": (
        lambda make, db: _up(
            make("app", env_file=env_file(db), web={"HEALTH_DELAY": "1"}),
            db,
            endpoints=[
                {"name": "live", "url": "{url}/cgi-bin/health", "health": True, "latency_ms": 300}
            ],
        ),
        {f"test_health_endpoint[{ID}/live]": ("failed", ["ms over the 300 ms budget"])},
    ),
    "wrong-body": (
        lambda make, db: _up(
            make("app", env_file=env_file(db), web={"HEALTH_BODY": "degraded"}), db
        ),
        {
            f"test_endpoint_answers[{ID}/health]": (
                "failed",
                ["body does not contain 'ok'", "'degraded\\n'"],
            )
        },
    ),
    "port-closed": (
        lambda make, db: _up(
            make("app", env_file=env_file(db)),
            db,
            endpoints=[{"name": "admin", "url": f"tcp://127.0.0.1:{free_port()}"}],
        ),
        {
            f"test_endpoint_answers[{ID}/admin]": (
                "failed",
                ["CONNECT tcp://127.0.0.1:", "no answer", "expected a connection"],
            )
        },
    ),
    "postgres-wrong-password": (
        lambda make, db: _up(
            make("app", env_file=env_file(db, pg_password="not-the-password")), db
        ),
        {
            f"test_database_answers[{ID}/main]": (
                "failed",
                ["password authentication failed", "2 attempts"],
            )
        },
    ),
    "postgres-down": (
        lambda make, db: _up(make("app", env_file=env_file(db)), db, pg_port=free_port()),
        {
            f"test_database_answers[{ID}/main]": (
                "failed",
                ["stack app: postgresql app_", "connection", "refused"],
            )
        },
    ),
}


def _up(
    app: ComposeStack,
    db: dict[str, Any],
    wait: bool = True,
    pg_port: int | None = None,
    **extra: Any,
) -> tuple[ComposeStack, str]:
    if wait:
        app.up()
    else:
        app.compose("up", "-d")
    for endpoint in extra.get("endpoints", []):
        endpoint["url"] = endpoint["url"].replace("{url}", app.url)
    text = inventory_for(app, db, **extra)
    if pg_port is not None:
        text = text.replace(f"port: {db['pg'].port}", f"port: {pg_port}")
    return app, text


def _break_compose(app: ComposeStack, db: dict[str, Any]) -> tuple[ComposeStack, str]:
    app.up()
    compose = app.run_dir / "compose.yaml"
    compose.write_text(
        compose.read_text().replace("    healthcheck:", "    bogus_key: 1\n    healthcheck:", 1)
    )
    return app, inventory_for(app, db)


def _retag(app: ComposeStack, db: dict[str, Any], tag: str) -> tuple[ComposeStack, str]:
    app.up()
    (app.run_dir / ".env").write_text(env_file(db, tag=tag))
    return app, inventory_for(app, db)


def _stop(app: ComposeStack, db: dict[str, Any], service: str) -> tuple[ComposeStack, str]:
    app.up()
    subprocess.run(
        ["docker", "stop", "-t", "1", app.container(service)], check=True, capture_output=True
    )
    return app, inventory_for(app, db)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_one_fault_fails_exactly_its_check(
    pytester: pytest.Pytester, compose_stack: MakeStack, database_env: dict[str, Any], fault: str
) -> None:
    build, expected = FAULTS[fault]
    _, inventory = build(compose_stack, database_env)
    outcomes = run_suites(pytester, inventory)
    assert_only(outcomes, expected)
    output = outcomes["__output__"].message
    for secret in (
        PG_PASSWORD,
        database_env["redis"].password,
        "planted-literal-secret",
        "not-the-password",
    ):
        assert secret not in output, f"a secret value reached the terminal output ({fault})"
        assert all(secret not in o.message for o in outcomes.values() if o.status)


def test_a_late_start_passes_after_retries_and_says_so(
    pytester: pytest.Pytester, compose_stack: MakeStack, database_env: dict[str, Any]
) -> None:
    app = compose_stack("app", env_file=env_file(database_env), web={"START_DELAY": "8"})
    # Not waiting: the server listens only after 8 s, longer than pytest takes to start
    # even on a loaded machine, so the first probe must find it closed.
    app.compose("up", "-d")
    inventory = inventory_for(app, database_env).replace(
        "probes: {tries: 2, interval_s: 0.2, deadline_s: 8}",
        "probes: {tries: 30, interval_s: 0.5, deadline_s: 30}",
    )
    inventory = inventory.replace(
        "probes:\n  tries: 2\n  interval_s: 0.2\n  deadline_s: 8",
        "probes:\n  tries: 30\n  interval_s: 0.5\n  deadline_s: 30",
    )
    outcomes = run_suites(pytester, inventory, "-k", "test_endpoint_answers and health")
    outcome = outcomes[f"test_endpoint_answers[{ID}/health]"]
    assert outcome.status == "passed", outcome.message
    assert int(outcome.properties["deployproof_attempts"]) > 1
    assert float(outcome.properties["deployproof_elapsed_s"]) >= 1.0


def test_the_suites_give_the_same_verdicts_under_xdist(
    pytester: pytest.Pytester, compose_stack: MakeStack, database_env: dict[str, Any]
) -> None:
    app = compose_stack("app", env_file=env_file(database_env), web={}, worker={})
    other = compose_stack("other", env_file=env_file(database_env), web={}, worker={})
    app.up()
    other.up()
    subprocess.run(
        ["docker", "stop", "-t", "1", other.container("worker")], check=True, capture_output=True
    )
    document = yaml.safe_load(inventory_for(app, database_env))
    document["stacks"].update(yaml.safe_load(inventory_for(other, database_env))["stacks"])
    text = yaml.safe_dump(document, sort_keys=False)

    serial = run_suites(pytester, text)
    parallel = run_suites(pytester, text, "-n", "2", "--dist", "loadgroup")

    verdicts = {name: o.status for name, o in serial.items() if name != "__output__"}
    assert verdicts == {name: o.status for name, o in parallel.items() if name != "__output__"}
    assert {name for name, status in verdicts.items() if status == "failed"} == {
        "test_service_running[test/platform/other/worker]"
    }
    assert len(verdicts) > 20
