"""``deployproof discover``: an inventory written from the Compose projects a host runs.

The projects are started the way people start them (``docker compose up -d`` in their
directory, no ``-p``): a ``docker-compose.yml`` in a directory named unlike its
service, a compose file with a top-level ``name:``, and a shop whose app image tag is an
env-file variable beside a real PostgreSQL service. The real CLI discovers them; the
inventory it writes must validate, name what Compose names, hold no secret, pass the
bundled smoke checks and carry a ``--deploy`` of the next version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_deployproof.inventory.load import load_file
from pytest_deployproof.ops.discover.endpoints import http_healthcheck, published_port
from pytest_deployproof.ops.discover.projects import Project
from pytest_deployproof.ops.discover.stacks import (
    build_stack,
    database_kind,
    image_tag_variable,
    password_key,
)
from tests.support.compose import compose_binary
from tests.support.network import free_port
from tests.support.pgimage import build_postgres_image

DEPLOYPROOF = str(Path(sys.executable).parent / "deployproof")
WGET = ["CMD", "wget", "-q", "-O", "/dev/null"]


@dataclass
class Started:
    """A project started with a plain `docker compose up -d` in its directory."""

    project: str
    run_dir: Path
    ports: dict[str, int]


def _environment(**extra: str) -> dict[str, str]:
    """The process environment a user has: none of the test run's pytest/deployproof knobs."""
    kept = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "DEPLOYPROOF_", "COV_"))
    }
    return {**kept, **extra}


def _run(cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, env=_environment(**env),
        timeout=600, check=False,
    )  # fmt: skip


def discover(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _run(cwd, DEPLOYPROOF, "discover", *args, **env)


def pytest_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pytest`` as a user runs it in their repository: the bundled checks, no test path."""
    return _run(cwd, sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-rfE")


class Projects:
    """Starts projects in a directory and takes every one of them down afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Started] = []

    def start(
        self, directory: str, project: str, compose_file: str, definition: dict[str, Any],
        env: str | None, ports: dict[str, int],
    ) -> Started:  # fmt: skip
        run_dir = self.root / directory
        run_dir.mkdir()
        (run_dir / compose_file).write_text(yaml.safe_dump(definition, sort_keys=False))
        if env is not None:
            (run_dir / ".env").write_text(env)
        started = Started(project, run_dir, ports)
        self.started.append(started)  # taken down even when `up` fails half-way
        done = subprocess.run(
            [compose_binary(), "up", "-d", "--wait", "--wait-timeout", "90"],
            cwd=run_dir, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{directory}: compose up failed:\n{done.stderr}"
        return started

    def down(self) -> None:
        for started in self.started:
            subprocess.run(
                [compose_binary(), "-p", started.project, "down", "-v", "-t", "1"],
                cwd=started.run_dir, capture_output=True, check=False,
            )  # fmt: skip
            label = f"label=com.docker.compose.project={started.project}"
            left = subprocess.run(
                ["docker", "ps", "-aq", "--filter", label],
                capture_output=True, text=True, check=False,
            ).stdout.split()  # fmt: skip
            if left:
                subprocess.run(
                    ["docker", "rm", "-f", "-v", *left], capture_output=True, check=False
                )


@pytest.fixture(scope="session")
def database_image(demo_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real PostgreSQL server image (there is no registry to pull `postgres` from)."""
    return build_postgres_image(demo_image, tmp_path_factory)


@pytest.fixture
def projects(docker_engine: object, tmp_path: Path) -> Iterator[Projects]:
    """Compose projects started by a test in tmp_path/stacks, all taken down afterwards."""
    made = Projects(tmp_path / "stacks")
    made.root.mkdir()
    try:
        yield made
    finally:
        made.down()


def _web(image: str, port: int, test: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "image": image,
        "ports": [f"127.0.0.1:{port}:8080"],
        "healthcheck": {"test": test, "interval": "1s", "timeout": "2s", "retries": 3},
        **extra,
    }


def start_front(projects: Projects, image: str, suffix: str) -> Started:
    """(1) docker-compose.yml in `Shop.Front-<id>`: Compose names it `shopfront-<id>`;
    its service is `web`, its image tag literal, and it has no env file."""
    port = free_port()
    web = _web(f"{image}:v1.0.0", port, [*WGET, "http://127.0.0.1:8080/cgi-bin/health"])
    return projects.start(
        f"Shop.Front-{suffix}", f"shopfront-{suffix}", "docker-compose.yml",
        {"services": {"web": web}}, None, {"web": port},
    )  # fmt: skip


def start_billing(projects: Projects, image: str, suffix: str) -> Started:
    """(2) compose.yaml with `name: billing-<id>` in `api-<id>`: the name wins."""
    port = free_port()
    check = ["CMD-SHELL", "wget -q -O - http://localhost:8080/cgi-bin/status || exit 1"]
    api = _web(f"{image}:${{API_TAG:-v1.0.0}}", port, check)
    return projects.start(
        f"api-{suffix}", f"billing-{suffix}", "compose.yaml",
        {"name": f"billing-{suffix}", "services": {"api": api}}, "API_TAG=v1.0.0\n", {"api": port},
    )  # fmt: skip


def start_shop(
    projects: Projects, image: str, database_image: str, suffix: str, password: str
) -> Started:
    """(3) `shop-<id>`: the app's tag is ${APP_TAG} from .env, beside a real PostgreSQL."""
    app_port, db_port = free_port(), free_port()
    app = _web(
        f"{image}:${{APP_TAG}}", app_port, [*WGET, "http://localhost:8080/cgi-bin/health"],
        environment={"VERSION": "${APP_TAG}",
                     "DATABASE_URL": "postgres://shop:${DB_PASSWORD}@db:5432/shop"},
        depends_on={"db": {"condition": "service_healthy"}},
    )  # fmt: skip
    db = {
        "image": database_image,
        "environment": {
            "POSTGRES_USER": "shop",
            "POSTGRES_DB": "shop",
            "POSTGRES_PASSWORD": "${DB_PASSWORD}",
        },
        "ports": [f"127.0.0.1:{db_port}:5432"],
        "volumes": ["pgdata:/var/lib/postgresql/data"],
        "healthcheck": {
            "test": ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "shop"],
            "interval": "1s", "timeout": "2s", "retries": 30,
        },
    }  # fmt: skip
    return projects.start(
        f"shop-{suffix}", f"shop-{suffix}", "compose.yaml",
        {"services": {"app": app, "db": db}, "volumes": {"pgdata": {}}},
        f"APP_TAG=v1.0.0\nDB_PASSWORD={password}\n", {"app": app_port, "db": db_port},
    )  # fmt: skip


def test_discovered_stacks_validate_pass_smoke_and_deploy(
    projects: Projects, demo_image: str, database_image: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    password = f"pw-{uuid.uuid4().hex}"
    front = start_front(projects, demo_image, suffix)
    billing = start_billing(projects, demo_image, suffix)
    shop = start_shop(projects, demo_image, database_image, suffix, password)
    work = tmp_path / "repo"
    work.mkdir()

    done = discover(work, "--env", "prod", "--project", f"*-{suffix}")
    assert done.returncode == 0, done.stderr
    for started, count in ((front, "1 service"), (billing, "1 service"), (shop, "2 services")):
        assert f"discover: project {started.project} ({count}) in {started.run_dir}" in done.stderr
    written = work / "inventories" / "prod.yml"
    assert f"wrote {Path('inventories/prod.yml')}: 3 stacks" in done.stdout
    text = written.read_text()
    assert password not in text + done.stdout + done.stderr  # never a secret value

    inventory = load_file(written)  # what `pytest --env prod` loads
    assert sorted(inventory.stacks) == sorted(s.project for s in (front, billing, shop))
    assert list(inventory.hosts) == ["local"]
    assert [layer.name for layer in inventory.layers_in_order()] == ["apps"]
    one, two, three = (inventory.stacks[s.project] for s in (front, billing, shop))
    # (1) named by its directory, as Compose names it: no `project:`; the file is not the default
    assert (one.run_dir, one.project, one.project_name) == (front.run_dir, None, front.project)
    assert one.compose == "docker-compose.yml"
    assert one.image_tag_var is None  # a literal tag
    assert [(e.url, e.service) for e in one.endpoints] == [
        (f"http://127.0.0.1:{front.ports['web']}/cgi-bin/health", "web")
    ]
    # (2) the compose file's `name:` differs from the directory's: repeated as `project:`
    assert (two.run_dir, two.project) == (billing.run_dir, billing.project)
    written_stacks = yaml.safe_load(text)["stacks"]
    assert "compose" not in written_stacks[billing.project]  # compose.yaml: found by default
    assert two.image_tag_var == "API_TAG"  # ${API_TAG:-v1.0.0}
    assert [e.url for e in two.endpoints] == [
        f"http://127.0.0.1:{billing.ports['api']}/cgi-bin/status"
    ]
    # (3) the env-file tag variable, and the database by its password's KEY
    assert (three.run_dir, three.project, three.env_file) == (shop.run_dir, None, ".env")
    assert {"project", "compose", "env_file"}.isdisjoint(written_stacks[shop.project])
    assert three.image_tag_var == "APP_TAG"
    assert sorted(three.services) == ["app", "db"]
    assert all(service.critical for service in three.services.values())
    [database] = three.databases.values()
    assert (database.name, database.kind, database.port) == ("db", "postgresql", shop.ports["db"])
    assert (database.user, database.dbname, database.password_key) == (
        "shop",
        "shop",
        "DB_PASSWORD",
    )
    assert [e.url for e in three.endpoints] == [
        f"http://127.0.0.1:{shop.ports['app']}/cgi-bin/health"
    ]  # the database's port is a database, not an endpoint

    # The bundled smoke checks pass on what was discovered, as a user runs them.
    smoke = pytest_run(work, "--env", "prod", "-m", "smoke", "-q")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "7 passed" in smoke.stdout  # 4 services running, 3 endpoints answering
    assert password not in smoke.stdout + smoke.stderr

    # The next version of the tagged stack deploys (backup of the database included) and
    # is verified by the same checks.
    deployed = pytest_run(
        work, "--env", "prod", "--deploy", "v2.0.0", "--stack", shop.project, "-m", "smoke"
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert f"{shop.project}: v2.0.0 deployed and verified" in deployed.stdout
    assert (shop.run_dir / ".env").read_text() == f"APP_TAG=v2.0.0\nDB_PASSWORD={password}\n"
    image = subprocess.run(
        ["docker", "inspect", f"{shop.project}-app-1", "--format", "{{.Config.Image}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert image == f"{demo_image}:v2.0.0"
    assert password not in deployed.stdout + deployed.stderr


def test_json_summary_and_refusing_to_overwrite(
    projects: Projects, demo_image: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    front = start_front(projects, demo_image, suffix)
    output = tmp_path / "out" / "edge.yml"

    done = discover(tmp_path, "--json", "--project", front.project, "--output", str(output))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # stdout is the JSON document, nothing else
    assert set(summary) == {"env", "host", "output", "projects", "stacks", "warnings"}
    assert (summary["env"], summary["output"]) == ("edge", str(output))
    assert summary["host"] == {"name": "local", "spec": "local://"}
    [project] = summary["projects"]
    assert project["name"] == front.project
    assert project["working_dir"] == str(front.run_dir)
    assert project["config_files"] == [str(front.run_dir / "docker-compose.yml")]
    assert (project["services"], project["stack"]) == (["web"], front.project)
    [stack] = summary["stacks"]
    assert stack["name"] == front.project
    assert (stack["run_dir"], stack["compose"]) == (str(front.run_dir), "docker-compose.yml")
    assert stack["endpoints"] == [
        {"name": "web", "url": f"http://127.0.0.1:{front.ports['web']}/cgi-bin/health",
         "service": "web"}
    ]  # fmt: skip
    assert summary["warnings"] == []
    assert load_file(output).stacks[front.project].services["web"].critical

    # The file exists now: not overwritten without --force (a usage error, exit 2) ...
    before = output.read_text()
    again = discover(tmp_path, "--project", front.project, "--output", str(output))
    assert again.returncode == 2
    assert (
        again.stderr
        == f"error: {output} exists; pass --force to overwrite it, or --output another file\n"
    )
    assert output.read_text() == before
    # ... and replaced with it.
    forced = discover(tmp_path, "--project", front.project, "--output", str(output), "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"wrote {output}: 1 stack ({front.project})" in forced.stdout


def test_an_unreachable_docker_is_one_line_naming_it_and_exit_1(tmp_path: Path) -> None:
    done = discover(tmp_path, DOCKER_HOST="unix:///nonexistent")
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: cannot reach Docker on host 'local' at unix:///nonexistent")
    assert not (tmp_path / "inventories").exists()


def test_an_unreachable_ssh_host_is_one_line_naming_it_and_exit_1(tmp_path: Path) -> None:
    done = discover(tmp_path, "--host", "ssh://deploy@127.0.0.1:1")  # port 1: refused
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(
        "error: host '127.0.0.1' is unreachable over ssh (ssh://deploy@127.0.0.1:1): "
    )
    assert not (tmp_path / "inventories").exists()


def test_usage_errors_exit_2_before_docker_is_asked(tmp_path: Path) -> None:
    bad = discover(tmp_path, "--host", "ftp://vps1")
    assert bad.returncode == 2
    assert "discover reads local:// or ssh://user@host[:port] hosts" in bad.stderr
    dash = discover(tmp_path, "--host", "ssh://-oProxyCommand=x")
    assert dash.returncode == 2
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "prod.yml").write_text("hosts: {}\n")
    # The file is there: refused before the (unreachable) engine is asked.
    exists = discover(tmp_path, DOCKER_HOST="unix:///nonexistent")
    assert exists.returncode == 2
    assert "inventories/prod.yml exists; pass --force" in exists.stderr
    both = discover(tmp_path, "--output", "-", "--json")
    assert (both.returncode, both.stderr.startswith("error: --output - prints")) == (2, True)


@pytest.mark.parametrize("env", ["prod\n", "prod\nstaging", ".prod", "prod env"])
def test_an_environment_name_is_matched_whole(tmp_path: Path, env: str) -> None:
    """``$`` also matches before a final newline: only the whole value is a name (it becomes
    a file name, ``inventories/<env>.yml``)."""
    done = discover(tmp_path, "--env", env, "--output", "-", DOCKER_HOST="unix:///nonexistent")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "an environment name is letters, digits, '.', '_' and '-'" in done.stderr
    assert not (tmp_path / "inventories").exists()


# -- the rules, without an engine ------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "variable"),
    [
        ("ghcr.io/o/app:${APP_TAG}", "APP_TAG"),
        ("ghcr.io/o/app:${APP_TAG:-v1.0.0}", "APP_TAG"),
        ("ghcr.io/o/app:${APP_TAG?set it}", "APP_TAG"),
        ("127.0.0.1:5000/app:$TAG", "TAG"),
        ("${REGISTRY}/app:v1.0.0", None),  # the registry, not the tag
        ("app:v${VERSION}", None),  # a deploy writes a whole tag
        ("app:${VERSION}-alpine", None),
        ("app", None),
    ],
)
def test_the_image_tag_variable_is_a_whole_tag(image: str, variable: str | None) -> None:
    assert image_tag_variable(image) == variable


@pytest.mark.parametrize(
    ("test", "found"),
    [
        ([*WGET, "http://127.0.0.1:8080/cgi-bin/health"], (8080, "/cgi-bin/health")),
        (
            ["CMD-SHELL", "curl -fsS http://localhost/healthz?full=1 || exit 1"],
            (80, "/healthz?full=1"),
        ),
        (["CMD-SHELL", "curl http://localhost:3000/health"], None),  # exits 0 on a 500
        (["CMD", "pg_isready"], None),
        (["CMD", "wget", "-q", "http://db.internal:8080/"], None),  # not this container
        (["CMD-SHELL", "wget -q http://localhost:$$PORT/"], None),
        (["NONE"], None),
    ],
)
def test_only_an_http_fetch_of_a_local_path_is_an_http_healthcheck(
    test: list[str], found: tuple[int, str] | None
) -> None:
    assert http_healthcheck(test) == found


def test_a_published_port_counts_only_at_a_fixed_number() -> None:
    ports = [
        {"target": 8080, "published": "18080", "host_ip": "127.0.0.1", "protocol": "tcp"},
        {"target": 9090, "protocol": "tcp"},  # ephemeral: changes with every container
        {"target": 53, "published": "5353", "protocol": "udp"},
    ]
    assert published_port(ports, 8080) == ("127.0.0.1", 18080)
    assert published_port(ports, 9090) is None
    assert published_port(ports, 53) is None


@pytest.mark.parametrize(
    ("kind", "raw", "env_keys", "key", "note"),
    [
        ("postgresql", {"environment": {"POSTGRES_PASSWORD": "${DB_PASSWORD}"}}, {"DB_PASSWORD"},
         "DB_PASSWORD", None),
        ("postgresql", {"environment": ["POSTGRES_PASSWORD=${PG_PW:?required}"]}, {"PG_PW"},
         "PG_PW", None),
        ("postgresql", {"environment": ["POSTGRES_PASSWORD"]}, {"POSTGRES_PASSWORD"},
         "POSTGRES_PASSWORD", None),
        ("postgresql", {"env_file": [".env"]}, {"POSTGRES_PASSWORD"}, "POSTGRES_PASSWORD", None),
        ("postgresql", {"environment": {"POSTGRES_PASSWORD": "hunter22"}}, set(), None,
         "its password is written into the compose file"),
        ("postgresql", {"environment": {"POSTGRES_PASSWORD": "${DB_PASSWORD}"}}, set(),
         "DB_PASSWORD", "the env file does not set DB_PASSWORD"),
        ("redis", {"command": "redis-server --requirepass ${REDIS_PW}"}, {"REDIS_PW"},
         "REDIS_PW", None),
        ("redis", {"command": ["redis-server"]}, set(), None, None),
    ],
)  # fmt: skip
def test_a_database_password_is_named_by_its_key_never_copied(
    kind: str, raw: dict[str, Any], env_keys: set[str], key: str | None, note: str | None
) -> None:
    found_key, found_note = password_key(kind, "db", raw, env_keys)
    assert found_key == key
    assert (found_note is None) if note is None else (note in str(found_note))
    assert "hunter22" not in str(found_note)


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("postgres:16", "postgresql"),
        ("docker.io/bitnami/postgresql:16", "postgresql"),
        ("127.0.0.1:5000/deployproof-test/postgres:15@sha256:abc", "postgresql"),
        ("redis:7-alpine", "redis"),
        ("ghcr.io/o/postgres-exporter:v1", None),  # not the server
        ("ghcr.io/o/app:postgres", None),  # a tag says nothing
        ("busybox", None),
    ],
)
def test_a_database_is_known_by_its_image_name(image: str, kind: str | None) -> None:
    assert database_kind(image) == kind


def test_a_stack_says_only_what_the_defaults_would_not_find() -> None:
    """Several files, several tag variables, a Redis, an ephemeral and a remote-loopback
    port, an endpoint that does not answer: each is said, or left out with a warning."""
    http = {"test": [*WGET, "http://localhost:8080/ready"]}
    project = Project(
        name="shop",
        status="running(4)",
        working_dir="/srv/Shop",  # Compose would name it `shop`: no `project:` needed
        config_files=("/srv/Shop/compose.yml", "/srv/Shop/compose.prod.yml"),
        env_files=("/srv/Shop/.env",),
        running={"web": ["running"], "worker": ["running"], "cache": ["running"],
                 "admin": ["exited"]},
        config={"services": {
            "web": {"image": "app:v1", "healthcheck": http, "ports": [
                {"target": 8080, "published": "8080", "protocol": "tcp"},
                {"target": 9000, "published": "9000", "host_ip": "127.0.0.1", "protocol": "tcp"},
            ]},
            "worker": {"image": "worker:v1", "ports": [{"target": 7000, "protocol": "tcp"}]},
            "admin": {"image": "admin:v1", "healthcheck": http,
                      "ports": [{"target": 8080, "published": "8081", "protocol": "tcp"}]},
            "cache": {"image": "redis:7", "ports": [
                {"target": 6379, "published": "6380", "host_ip": "0.0.0.0", "protocol": "tcp"}]},
        }},
        raw={"web": {"image": "app:${WEB_TAG}"}, "worker": {"image": "worker:${WEB_TAG}"},
             "admin": {"image": "admin:${ADMIN_TAG:-v1}"},
             "cache": {"image": "redis:${REDIS_TAG}",
                       "command": "redis-server --requirepass ${CACHE_PASSWORD}"}},
        env={"WEB_TAG": "v1", "CACHE_PASSWORD": "s3cret-value"},
    )  # fmt: skip

    def where(ip: str) -> str | None:  # an ssh host `vps1`: its loopback is not ours
        return None if ip.startswith("127.") else "vps1"

    def verify(url: str) -> str | None:
        return "HTTP 503, not 200" if ":8081" in url else None

    found = build_stack(project, "vps1", where, verify)
    assert found.entry == {
        "layer": "apps", "host": "vps1", "run_dir": "/srv/Shop", "compose": "compose.yml",
        "image_tag_var": "WEB_TAG",
        "services": {name: {"critical": True} for name in ("admin", "cache", "web", "worker")},
        "endpoints": [{"name": "web", "url": "http://vps1:8080/ready", "service": "web"}],
        "databases": {"cache": {"kind": "redis", "port": 6380, "password_key": "CACHE_PASSWORD",
                                "service": "cache"}},
    }  # fmt: skip
    text = "\n".join(found.warnings)
    assert "Compose runs it from 2 files" in text
    assert "so this names the first" in text
    assert "several tag variables: ADMIN_TAG (admin); WEB_TAG (web, worker)" in text
    assert "service admin is not running (exited)" in text
    assert "port 9000 is published on 127.0.0.1, which checks running elsewhere" in text
    assert "endpoint http://vps1:8081/ready (service admin) left out: HTTP 503" in text
    assert "s3cret-value" not in text + str(found.entry)
