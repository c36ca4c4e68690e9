"""What a test run must leave as it found it, checked at its end (a pytest plugin).

* Docker: every container, network and volume the run made is gone when it ends. They are
  told apart from what was there before by a listing at the start; a few seconds are allowed
  for what is removed asynchronously (``docker stack rm``). Survivors fail the run, named.
* Under CI (``CI=true``) no test may be skipped: a skip there means a check that did not run
  (a missing real part FAILS there already, see need.py); the count is printed either way.

Only the controlling process checks (under xdist its workers share one engine).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

_KINDS = {
    "container": ["docker", "ps", "-a", "--format", "{{.ID}} {{.Names}}"],
    "network": ["docker", "network", "ls", "--format", "{{.ID}} {{.Name}}"],
    "volume": ["docker", "volume", "ls", "--format", "{{.Name}} {{.Name}}"],
}
_BEFORE = pytest.StashKey[dict[str, set[str]] | None]()
GRACE_S = 30.0


def _docker_objects() -> dict[str, set[str]] | None:
    """Each kind's objects as "id name" lines; ``None`` without an engine to ask."""
    found: dict[str, set[str]] = {}
    for kind, argv in _KINDS.items():
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return None
        found[kind] = set(done.stdout.split("\n")) - {""}
    return found


def _controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    if _controller(session.config):
        session.config.stash[_BEFORE] = _docker_objects()


def _survivors(before: dict[str, set[str]]) -> dict[str, list[str]]:
    deadline = time.monotonic() + GRACE_S
    while True:
        now = _docker_objects() or {}
        left = {
            kind: sorted(line.split(" ", 1)[-1] for line in now.get(kind, set()) - seen)
            for kind, seen in before.items()
        }
        left = {kind: names for kind, names in left.items() if names}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not _controller(config):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str, **markup: bool) -> None:
        if reporter is not None:
            reporter.write_line(line, **markup)
        else:
            print(line)

    before = config.stash.get(_BEFORE, None)
    if before is not None:
        left = _survivors(before)
        for kind, names in left.items():
            write(f"LEFT BEHIND by the tests ({kind}s): {', '.join(names)}", red=True)
        if left and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    write(f"skipped tests: {skipped}")
    if skipped and os.environ.get("CI") and session.exitstatus == 0:
        write("CI: a skipped test is a check that did not run; none may be skipped", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
