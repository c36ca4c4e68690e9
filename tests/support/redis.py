"""A real redis-server for this session, on loopback and password protected.

The ``redis_server`` fixture (this module is a pytest plugin) serves the checks
that talk to Redis.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.need import need
from tests.support.network import free_port, wait_for_port


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
