"""A real image registry for this session (Debian's docker-registry) on loopback.

The ``registry`` fixture (this module is a pytest plugin) lets the engine tests
push images and find them in a registry rather than on the host; ``publish`` puts
two releases of a new repository there and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.need import need
from tests.support.network import free_port, wait_for_port

Publish = Callable[[str], str]


@pytest.fixture(scope="session")
def registry(docker_engine: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real image registry (Debian's docker-registry) on 127.0.0.1; yields host:port."""
    with serve_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@contextlib.contextmanager
def serve_registry(root: Path, port: int | None = None) -> Iterator[str]:
    """A docker-registry storing under ``root/data`` on ``port`` of loopback (a free one by
    default), stopped on exit; yields host:port. A test that stops or damages a registry
    starts its own."""
    binary = shutil.which("docker-registry")
    if binary is None:
        need("docker-registry", "not on PATH (apt-get install docker-registry)")
    port = port or free_port()
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
        time.sleep(0.2)  # a registry that cannot bind exits at once; another one may answer
        if process.poll() is not None:
            pytest.fail(f"docker-registry could not serve 127.0.0.1:{port} (is it taken?)")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def publish(demo_image: str, tmp_path: Path) -> Iterator[Publish]:
    """``publish(registry)`` pushes v1.0.0 and v2.0.0 of a new repository
    ``<registry>/app-<id>`` and removes them from the host: only the registry has them.
    Each release adds a layer of its own (``/release`` names it), so the host holds
    none of its content and a pull must fetch it. (Request this before
    ``compose_stack``: the images are removed after the stacks that run them.)"""
    made: list[str] = []

    def push(registry: str) -> str:
        repository = f"{registry}/app-{uuid.uuid4().hex[:8]}"
        made.append(repository)
        for version in ("v1.0.0", "v2.0.0"):
            context = tmp_path / f"build-{len(made)}-{version}"
            context.mkdir()
            (context / "release").write_text(f"{repository}:{version}\n")
            (context / "Dockerfile").write_text(
                f"FROM {demo_image}:{version}\nCOPY release /release\n"
            )
            image = f"{repository}:{version}"
            subprocess.run(
                ["docker", "build", "-q", "-t", image, str(context)],
                check=True,
                capture_output=True,
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
            )
            _docker("push", image)
            _docker("rmi", image)
        return repository

    yield push
    for repository in made:
        images = _docker("images", "-q", repository, check=False).stdout.split()
        if images:
            _docker("rmi", "-f", *set(images), check=False)
