"""A real image registry for this session (Debian's docker-registry) on loopback.

The ``registry`` fixture (this module is a pytest plugin) lets the engine tests
push images and find them in a registry rather than on the host.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.need import need
from tests.support.network import free_port, wait_for_port


@pytest.fixture(scope="session")
def registry(docker_engine: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real image registry (Debian's docker-registry) on 127.0.0.1; yields host:port."""
    with serve_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@contextlib.contextmanager
def serve_registry(root: Path) -> Iterator[str]:
    """A docker-registry storing under ``root/data`` on a free loopback port, stopped on
    exit; yields host:port. A test that stops or damages a registry starts its own."""
    binary = shutil.which("docker-registry")
    if binary is None:
        need("docker-registry", "not on PATH (apt-get install docker-registry)")
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
