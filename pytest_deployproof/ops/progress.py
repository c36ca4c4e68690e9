"""What the operator CLI shows while it works: the library's log records, as they happen.

The library only logs (one ``logging.getLogger(__name__)`` per module, all under the
``pytest_deployproof`` logger) and never configures logging: under pytest,
``--log-cli-level=INFO`` shows the phases of a deploy live, the way every pytest plugin's
logs are shown. The CLI has no pytest to do that for it, so ``main()`` wraps each command
in :func:`cli_logging`: INFO and above to stderr by default (``-v`` adds DEBUG: the
commands run, secrets masked; ``-q`` leaves warnings only), stdout staying the command's
answer for scripts.

A long wait (``compose up --wait``, a swarm converging) is logged once, when it starts,
with ``extra={"waiting": True}``. On a terminal that line then counts the seconds until
the next record ends the wait, so an operator sees the command is alive; anywhere else
(CI logs, a file) it stays one plain line, without carriage returns in the log.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["WAITING", "add_verbosity", "cli_logging"]

#: ``extra=WAITING`` marks a record that starts a long wait (see the module docstring)
WAITING = {"waiting": True}
PACKAGE = "pytest_deployproof"
TICK_S = 1.0


def add_verbosity(parser: argparse.ArgumentParser, *, inherit: bool = False) -> None:
    """``-v``/``-q`` on ``parser``. ``inherit``: a subcommand's copy sets nothing unless
    given, so ``deployproof -v rollback ...`` and ``deployproof rollback -v ...`` agree."""
    default = argparse.SUPPRESS if inherit else 0
    parser.add_argument(
        "-v", "--verbose", action="count", default=default,
        help="also show the commands run (secrets masked)",
    )  # fmt: skip
    parser.add_argument(
        "-q", "--quiet", action="count", default=default, help="show warnings and errors only"
    )


class ProgressHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes records to the *current* ``sys.stderr`` (tests and pytest swap it), and on
    a terminal keeps a waiting record's line counting seconds until the next record."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: tuple[str, float] | None = None  # the line shown, when it started
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self._end_wait()
            if getattr(record, "waiting", False) and self._tty():
                self._waiting = (text, time.monotonic())
                self.stream.write(text)
                self.stream.flush()
                self._start_ticker()
                return
            self.stream.write(text + "\n")
            self.stream.flush()
        except Exception:  # pragma: no cover - logging's own convention
            self.handleError(record)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2 * TICK_S)
        self.acquire()
        try:
            self._end_wait()
        finally:
            self.release()
        super().close()

    def _tty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):  # no stderr, or a closed one
            return False

    def _end_wait(self) -> None:
        """Finish the counting line with its final time (called with the lock held)."""
        if self._waiting is not None:
            self._redraw()
            self.stream.write("\n")
            self._waiting = None

    def _redraw(self) -> None:
        assert self._waiting is not None
        text, started = self._waiting
        self.stream.write(f"\r{text} ... {time.monotonic() - started:.0f}s")
        self.stream.flush()

    def _start_ticker(self) -> None:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="deployproof-progress")
            self._ticker.daemon = True
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            self.acquire()
            try:
                if self._waiting is not None:
                    self._redraw()
            except (OSError, ValueError):  # stderr went away: stop counting
                return
            finally:
                self.release()


@contextmanager
def cli_logging(verbosity: int) -> Iterator[None]:
    """Show the package's log records on stderr for one CLI command: ``verbosity`` 0 is
    INFO, above is DEBUG, below is WARNING. Everything is put back afterwards (the CLI also
    runs inside other programs and tests), and a nested command keeps the outer setting."""
    logger = logging.getLogger(PACKAGE)
    if any(isinstance(h, ProgressHandler) for h in logger.handlers):
        yield  # a command run by a command (the comment hook's revert): already shown
        return
    level = logging.DEBUG if verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    handler = ProgressHandler()
    if level <= logging.DEBUG:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
        handler.close()
