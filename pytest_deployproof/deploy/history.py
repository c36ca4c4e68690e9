"""The deploy history: an append-only log, one line per action (DEP-4).

The format is the one deploy scripts commonly write, so operators' ``grep`` queries
keep working::

    2026-01-30 10:00:00 | odoo18-prod | prod | deploy | sha-19b9b98 | success |
    2026-01-30 10:15:00 | odoo18-prod | prod | rollback | sha-4b1ce21 | success | smoke failed

Timestamps are UTC. A field never contains ``|`` or a line break (they are
replaced), so every action stays one line. Lines are appended whole or not at
all, under a file lock (:func:`~pytest_deployproof.state_dir.append_line`), so
concurrent deploys (xdist workers, two operators) never interleave or lose a
line and a full disk leaves no torn one. A line that does not parse (a hand
edit, a crash of an older writer) is skipped with a warning naming the file and
line number: one bad line must never stop a rollback from finding its target.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..secrets import Masker
from ..state_dir import append_line, read_lines, skip_torn

__all__ = ["Entry", "History"]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SEPARATOR = " | "
FIELDS = 7
# Actions whose success means "this version is now what runs".
RUNNING_ACTIONS = frozenset({"deploy", "rollback", "restore"})


@dataclass(frozen=True)
class Entry:
    timestamp: datetime
    stack: str
    env: str
    action: str  # deploy, rollback, restore, promote, ...
    version: str
    status: str  # success, fail, inconclusive, skipped, ...
    notes: str = ""

    def line(self) -> str:
        fields = [
            self.timestamp.astimezone(UTC).strftime(TIME_FORMAT),
            self.stack,
            self.env,
            self.action,
            self.version,
            self.status,
            self.notes,
        ]
        return SEPARATOR.join(_clean(field) for field in fields).rstrip() + "\n"

    @classmethod
    def parse(cls, line: str) -> Entry:
        parts = [part.strip() for part in line.rstrip("\n").split("|")]
        if len(parts) != FIELDS:
            raise ValueError(f"expected {FIELDS} fields separated by '|', found {len(parts)}")
        when = datetime.strptime(parts[0], TIME_FORMAT).replace(tzinfo=UTC)
        return cls(when, *parts[1:])


def _clean(field: str) -> str:
    return " ".join(field.replace("|", "/").split())


class History:
    """One history file; every method re-reads it, so other writers' lines are seen."""

    def __init__(self, path: Path, masker: Masker | None = None) -> None:
        self.path = path
        self.masker = masker or Masker()

    def record(
        self,
        stack: str,
        env: str,
        action: str,
        version: str,
        status: str,
        *,
        notes: str = "",
        when: datetime | None = None,
    ) -> Entry:
        """Append one action; secrets in the notes are masked before they are written."""
        entry = Entry(
            when or datetime.now(UTC), stack, env, action, version, status, self.masker(notes)
        )
        append_line(self.path, entry.line())
        return entry

    def _read(self) -> Iterator[Entry]:
        for number, line in read_lines(self.path):
            try:
                yield Entry.parse(line)
            except ValueError as exc:
                skip_torn(self.path, number, f"not a history line: {exc}")

    def entries(
        self,
        stack: str | None = None,
        env: str | None = None,
        *,
        action: str | None = None,
        status: str | None = None,
    ) -> list[Entry]:
        """Entries in the order they were written, filtered by what is given."""
        return [
            entry
            for entry in self._read()
            if (stack is None or entry.stack == stack)
            and (env is None or entry.env == env)
            and (action is None or entry.action == action)
            and (status is None or entry.status == status)
        ]

    def last_good(self, stack: str, env: str) -> Entry | None:
        """The last version that was put in place and verified: what a rollback returns to."""
        good = [
            entry
            for entry in self.entries(stack, env, status="success")
            if entry.action in RUNNING_ACTIONS
        ]
        return good[-1] if good else None

    def good_versions(self, stack: str, env: str) -> list[str]:
        """Versions that ran successfully, newest first, each once: the rollback targets."""
        seen: dict[str, None] = {}
        for entry in reversed(self.entries(stack, env, status="success")):
            if entry.action in RUNNING_ACTIONS:
                seen.setdefault(entry.version, None)
        return list(seen)
