"""The project's own tests: their fixtures come from the plugins in ``tests/support/``.

Integration tests use the real Docker engine (and PostgreSQL, redis-server, a
registry, sshd). When a part is missing they FAIL under CI (``CI=true``) and skip
with the reason elsewhere (``tests/support/need.py``): a green CI must never hide
checks that did not run.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "pytester",
    "tests.support.engine",
    "tests.support.compose",
    "tests.support.deploying",  # before postgres, which imports it (assert rewriting)
    "tests.support.postgres",
    "tests.support.redis",
    "tests.support.registry",
    "tests.support.loopback",
    "tests.support.filesystems",
    "tests.support.swarm",
    "tests.support.leftovers",
]


# hypothesis is one of our dev tools (tests/test_inventory_fuzz.py, tests/test_versions.py),
# not a plugin a user runs deployproof with; its pytest plugin imports all of hypothesis,
# ~0.8 s of CPU in every pytest process the tests start (more under coverage), and the suite
# starts hundreds. They leave it out; this session's own processes keep it.
ADDOPTS = "-p no:hypothesispytest"


@pytest.fixture(autouse=True)
def _only_the_checks_each_test_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test writes the checks it runs into its pytester directory (copies of the bundled
    ones, or its own): the pytest runs it starts must not also collect the bundled copy.
    Tests of the bundled collection itself take this away (``monkeypatch.delenv``).
    (An environment variable: pytester clears PYTEST_ADDOPTS, see ``pytester`` below.)"""
    monkeypatch.setenv("DEPLOYPROOF_BUILTIN", "0")
    monkeypatch.setenv("PYTEST_ADDOPTS", ADDOPTS)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's own ``pytester``, with ``ADDOPTS`` put back: it clears PYTEST_ADDOPTS so a
    user's options do not leak into the runs it starts, which also took ours away."""
    monkeypatch.setenv("PYTEST_ADDOPTS", ADDOPTS)
    return pytester
