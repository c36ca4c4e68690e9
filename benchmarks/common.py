"""What every benchmark's child pytest runs share, so the figures are comparable."""

from __future__ import annotations

import os
import sys

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
