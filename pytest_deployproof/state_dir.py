"""The one place that knows the layout of an environment's state directory.

Everyone who deploys an environment shares it (``state_dir`` in the inventory):
the deploy history, the stacks' leases, what each stack was verified with
(promotion) and what was deployed (drift). Observation reads it and deploying
writes it, so it lives below both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

__all__ = ["StateDir", "StateWriteError", "append_line", "read_lines", "skip_torn"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def history(self) -> Path:
        """The append-only deploy history (docs/requirements.md#dep-4)."""
        return self.root / "deploy-history.log"

    @property
    def locks(self) -> Path:
        """One lease file per stack being deployed (docs/requirements.md#dep-9)."""
        return self.root / "locks"

    def verified(self, stack: str) -> Path:
        """The versions and image identities ``stack`` was verified with (promotion)."""
        return self.root / "verified" / f"{stack}.jsonl"

    def deployed(self, stack: str) -> Path:
        """What was last brought up for ``stack``: config hashes, for drift."""
        return self.root / "deployed" / f"{stack}.json"

    def rendered(self, stack: str) -> Path:
        """What Compose last rendered of ``stack``'s files, keyed by their digest (drift)."""
        return self.root / "rendered" / f"{stack}.json"

    @property
    def serve_runs(self) -> Path:
        """Every ``deployproof serve`` run's verdicts (SQLite), read by ``deployproof trend``."""
        return self.root / "serve-runs.sqlite3"


class StateWriteError(OSError):
    """A state file could not be appended to; nothing of the line was left in it."""


def append_line(path: Path, line: str) -> None:
    """Append one whole line to ``path`` under its lock, and fsync it, or raise.

    A short write (a full disk) is continued until the line is whole; a write that fails
    truncates the file back to where it was, so no torn line is ever left for the next
    writer to glue its line to; and a torn line that an older writer or a crash left is
    ended first, so it stays the only unreadable one (docs/requirements.md#tru-2)."""
    data = (line.rstrip("\n") + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(fd).st_size
            if start and os.pread(fd, 1, start - 1) != b"\n":
                data = b"\n" + data  # end a torn line left by a crash: ours stays whole
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, start)
                raise StateWriteError(
                    exc.errno, f"cannot append to {path}: {exc.strerror}"
                ) from exc
        finally:
            os.close(fd)


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of every non-empty line; nothing when the file is absent."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def skip_torn(path: Path, number: int, why: object) -> None:
    """Say that one line is unreadable and is passed over: one torn line must never block
    a rollback, a promotion check or the history command."""
    log.warning("%s:%d: not a valid line, skipped (%s)", path, number, why)
