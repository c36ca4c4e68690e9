"""The real Docker engine and the images the tests run on it (fixtures; a pytest plugin).

The demo image is the repository's busybox image (demo/image), built once per run;
the bad image is a variant of it whose health endpoint fails.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from filelock import FileLock

from tests.support.need import need
from tests.support.repo import REPO

IMAGE = "deployproof-demo/busybox"
IMAGE_TAGS = ("v1.0.0", "v2.0.0", "latest", "pin-20260129-d75f3637")


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
