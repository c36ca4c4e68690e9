"""Signals during a deploy: SIGTERM stops a run like Ctrl-C, and a rollback is not cut short.

CI runners cancel a job with SIGINT, then SIGTERM, then SIGKILL. Python turns
SIGINT into ``KeyboardInterrupt`` and pytest then tears the session down, so the
deploy fixture's teardown rolls back; SIGTERM would kill the process on the
spot. Under ``--deploy`` it is made to behave like SIGINT (DEP-2).

While a rollback runs, another SIGINT or SIGTERM must not interrupt it halfway
(an env file rewritten but the old containers not yet up is the worst state to
leave). :func:`deferred` holds them until the block ends and tells the caller,
who knows whether the run is already stopping.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["deferred", "restore_terminate", "terminate_as_interrupt"]

_saved: dict[int, Any] = {}  # the handlers replaced by terminate_as_interrupt


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise ``KeyboardInterrupt`` in this process (main thread only)."""
    if _in_main_thread() and signal.SIGTERM not in _saved:
        _saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)


def restore_terminate() -> None:
    if _in_main_thread() and signal.SIGTERM in _saved:
        signal.signal(signal.SIGTERM, _saved.pop(signal.SIGTERM))


@contextmanager
def deferred(why: str) -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM until the block ends; yields the list of those received."""
    received: list[int] = []
    if not _in_main_thread():
        yield received
        return

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        print(f"\ndeployproof: {name} received; finishing first: {why}", file=sys.stderr)

    saved = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
