"""What a test does when a real part it needs (Docker, PostgreSQL, sshd...) is missing.

Integration tests use the real thing. When it is missing they FAIL under CI
(``CI=true``) and skip with the reason elsewhere: a green CI must never hide
checks that did not run. Every fixture and test that needs a real part asks here.
"""

from __future__ import annotations

import os

import pytest


def need(what: str, why: str) -> None:
    """Fail in CI, skip elsewhere: a missing real part is never silently ignored."""
    __tracebackhide__ = True
    message = f"{what} is not available: {why}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must provide it: scripts/setup.sh installs it)", pytrace=False)
    pytest.skip(message)
