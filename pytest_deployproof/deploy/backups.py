"""Backups before a deploy, and restoring one (DEP-3).

A backup is a directory ``<backups>/<stack>/<UTC timestamp>/`` on the stack's
host: the compose file, the env file, one ``pg_dump -Fc`` per declared
PostgreSQL database, and ``manifest.json`` saying what each file is, its size
and SHA-256, and which version was running. It is assembled under a hidden
name and renamed into place only when complete, so a directory that is listed
is a whole backup and a failed one leaves nothing behind.

Everything runs on the stack's host through :class:`~.hosts.HostAccess`, the
way the operator's backup.sh did: the dump is written where the data lives and
never travels. The database password goes to ``pg_dump`` in a ``PGPASSFILE``
of mode 0600 that is removed afterwards: never on a command line, never in
an environment string another user's ``ps`` could read.

Retention keeps the newest ``keep`` backups, and never deletes the only backup
of the last version that was verified good: that one is what a bad day needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import Inconclusive
from ..inventory.model import Database, Stack
from ..observe.databases import password_for
from ..reach.hosts import HostAccess
from ..secrets import Masker

__all__ = ["Backup", "BackupError", "Backups"]

MANIFEST = "manifest.json"

log = logging.getLogger(__name__)

# The newest pg_dump/pg_restore of the host's PostgreSQL installations, else the one on PATH
# (a dump must be made by a pg_dump at least as new as the server).
_PG_TOOL = (
    "{name}=$(ls -1 /usr/lib/postgresql/*/bin/{tool} 2>/dev/null | sort -V | tail -n 1); "
    '[ -n "${name}" ] || {name}=$(command -v {tool}) || '
    '{{ echo "{tool} is not installed on this host" >&2; exit 127; }}; '
)


class BackupError(Exception):
    """A backup could not be made or used; the message says which file and why."""


@dataclass(frozen=True)
class Backup:
    """One complete backup, as its manifest describes it."""

    name: str  # the directory name: a UTC timestamp
    path: PurePosixPath
    manifest: dict[str, Any]

    @property
    def version(self) -> str | None:
        version = self.manifest.get("version")
        return str(version) if version else None

    @property
    def created(self) -> str:
        return str(self.manifest.get("created", ""))

    def describe(self) -> str:
        files = self.manifest.get("files", [])
        size = sum(int(f.get("size", 0)) for f in files)
        return f"{self.name}  version {self.version or '?'}  {len(files)} files, {size} bytes"


def _pgpass(database: Database, password: str) -> str:
    """A pgpass line; ``:`` and ``\\`` are escaped as libpq expects."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    fields = [database.host, str(database.port or 5432), database.dbname or "*"]
    return ":".join([*map(escape, fields), escape(database.user or "*"), escape(password)])


class Backups:
    """The backups of one stack on its host."""

    def __init__(self, stack: Stack, access: HostAccess, environment: str, masker: Masker):
        self.stack = stack
        self.access = access
        self.environment = environment
        self.masker = masker
        root = Path(stack.backup.path) if stack.backup.path else stack.run_dir.parent / "backups"
        self.root = PurePosixPath(root) / stack.name

    # -- reading ------------------------------------------------------------

    def all(self) -> list[Backup]:
        """Complete backups, oldest first (by the time in their manifests)."""
        script = (
            f"cd {shlex.quote(str(self.root))} 2>/dev/null || exit 0; "
            f'for m in */{MANIFEST}; do [ -f "$m" ] || continue; '
            'printf "%s\\t" "${m%%/*}"; tr -d "\\n" < "$m"; echo; done'
        )
        done = self.access.run("sh", "-c", script)
        backups = []
        for line in done.stdout.splitlines():
            name, _, text = line.partition("\t")
            try:
                manifest = json.loads(text)
            except ValueError:
                continue  # not ours, or damaged: never treated as a backup
            backups.append(Backup(name, self.root / name, manifest))
        return sorted(backups, key=lambda b: (b.created, b.name))

    def find(self, name: str | None) -> Backup:
        """The backup called ``name`` (a timestamp), or the newest when ``name`` is None."""
        backups = self.all()
        if not backups:
            raise BackupError(f"stack {self.stack.name} has no backups in {self.root}")
        if name is None or name == "latest":
            return backups[-1]
        for backup in backups:
            if backup.name == name:
                return backup
        known = ", ".join(b.name for b in backups[-5:])
        raise BackupError(f"no backup {name!r} of {self.stack.name}; the newest are: {known}")

    # -- taking -------------------------------------------------------------

    def take(
        self, version: str | None, env: dict[str, str | None] | None, secrets_prefix: str | None
    ) -> Backup:
        """Back the stack up as it is now (running ``version``); raise :class:`BackupError`
        and leave nothing behind when any part fails."""
        now = datetime.now(UTC)
        name = base = now.strftime("%Y%m%dT%H%M%SZ")
        taken = {backup.name for backup in self.all()}
        for number in range(2, 1000):
            if name not in taken:
                break
            name = f"{base}-{number}"
        final = self.root / name
        work = self.root / f".{name}.partial"
        q = shlex.quote
        steps = ["set -e; umask 077"]  # the work directory: made by _prepare
        entries: list[dict[str, Any]] = []
        compose_file = self.access.compose_file(self.stack)
        for kind, source in (("compose", compose_file), ("env", self.stack.env_path)):
            target = f"{kind}-{source.name}"
            steps.append(f"cp -p -- {q(str(source))} {q(str(work / target))}")
            entries.append({"name": target, "kind": kind, "source": str(source)})
        skipped = []
        passfiles = []
        for db_name, database in self.stack.databases.items():
            if database.kind != "postgresql":
                skipped.append(
                    {"database": db_name, "reason": f"{database.kind}: persistence is the server's"}
                )
                continue
            target = f"db-{db_name}.dump"
            passfile = work / f".pgpass-{db_name}"
            password = password_for(database, env, secrets_prefix)
            if password is not None:
                passfiles.append((passfile, _pgpass(database, password)))
            steps.append(
                _PG_TOOL.format(name="PG_DUMP", tool="pg_dump")
                + f'PGPASSFILE={q(str(passfile))} PGCONNECT_TIMEOUT=10 "$PG_DUMP" -Fc '
                + " ".join(q(a) for a in _connection_args(database))
                + f" -f {q(str(work / target))}"
            )
            entries.append(
                {"name": target, "kind": "pg_dump", "database": db_name, "dbname": database.dbname}
            )
        manifest: dict[str, Any] = {
            "stack": self.stack.name,
            "environment": self.environment,
            "version": version,
            "created": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "files": entries,
            "skipped": skipped,
        }
        parts = ["compose file", "env file"]
        parts += [f"{e['database']} (pg_dump)" for e in entries if e["kind"] == "pg_dump"]
        log.info("%s: backup of %s into %s", self.stack.name, ", ".join(parts), final)
        try:
            self._remove_unfinished()
            self._prepare(work, passfiles)
            done = self.access.run("sh", "-c", "; ".join(steps))
            if done.rc != 0:
                raise BackupError(
                    f"backup of {self.stack.name} failed: {self._last_line(done.stderr, done.rc)}"
                )
            self._remove(*(str(p) for p, _ in passfiles))
            for entry in entries:
                entry["size"], entry["sha256"] = self._digest(work / entry["name"])
            self.access.write(Path(str(work / MANIFEST)), json.dumps(manifest, indent=2) + "\n")
            moved = self.access.run("mv", "-T", "--", str(work), str(final))
            if moved.rc != 0:
                raise BackupError(f"cannot put the backup in place: {moved.stderr.strip()}")
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the next backup removes what is left
                self._remove(str(work))
            if isinstance(exc, Inconclusive):  # a full disk, a lost host: the backup failed
                raise BackupError(f"backup of {self.stack.name} failed: {exc}") from None
            raise
        return Backup(name, final, manifest)

    def _remove_unfinished(self) -> None:
        """Backups a killed run left half-made (``.<name>.partial``, perhaps with a pgpass
        file in them): their secrets first, then the rest. The stack's lease is held, so
        none of them is still being written."""
        script = (
            f"cd {shlex.quote(str(self.root))} 2>/dev/null || exit 0; "
            'for d in .*.partial; do [ -d "$d" ] || continue; '
            'rm -f -- "$d"/.pgpass-*; rm -rf -- "$d"; done'
        )
        self.access.run("sh", "-c", script)

    def _prepare(self, work: PurePosixPath, passfiles: list[tuple[PurePosixPath, str]]) -> None:
        done = self.access.run("sh", "-c", f"umask 077 && mkdir -p {shlex.quote(str(work))}")
        if done.rc != 0:
            raise BackupError(f"cannot create {work}: {done.stderr.strip()}")
        for path, text in passfiles:
            self.access.write(Path(str(path)), text + "\n", private=True)

    def _digest(self, path: PurePosixPath) -> tuple[int, str]:
        done = self.access.run(
            "sh", "-c", f"wc -c < {shlex.quote(str(path))}; sha256sum -- {shlex.quote(str(path))}"
        )
        lines = done.stdout.split("\n")
        if done.rc != 0 or len(lines) < 2:
            raise BackupError(f"cannot checksum {path}: {done.stderr.strip()}")
        return int(lines[0].strip()), lines[1].split()[0]

    def _remove(self, *paths: str) -> None:
        if paths:
            self.access.run("rm", "-rf", "--", *paths)

    def _last_line(self, stderr: str, rc: int) -> str:
        """The line that says why: pg_dump follows its error with lines of context."""
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        errors = [  # judged without its quoted parts: a path may well say "failed"
            line
            for line in lines
            if re.search(r"error|fatal|failed|denied", re.sub(r'"[^"]*"', "", line), re.I)
        ]
        return self.masker((errors or lines or [f"exit code {rc}"])[-1])

    # -- retention ----------------------------------------------------------

    def prune(self, keep: int, last_good: str | None) -> list[Backup]:
        """Delete all but the newest ``keep`` backups, except the newest backup of
        ``last_good`` when no kept one holds it. Returns what was deleted."""
        backups = self.all()
        kept, old = backups[-keep:], backups[:-keep] if len(backups) > keep else []
        if last_good and old and not any(b.version == last_good for b in kept):
            of_good = [b for b in old if b.version == last_good]
            if of_good:
                old.remove(of_good[-1])
        self._remove(*(str(b.path) for b in old))
        return old

    # -- restoring ----------------------------------------------------------

    def verify(self, backup: Backup) -> list[str]:
        """What is wrong with ``backup``'s files (missing, other size or checksum)."""
        problems = []
        for entry in backup.manifest.get("files", []):
            path = backup.path / entry["name"]
            try:
                size, digest = self._digest(path)
            except BackupError:
                problems.append(f"{entry['name']} is missing")
                continue
            if (size, digest) != (entry.get("size"), entry.get("sha256")):
                problems.append(f"{entry['name']} does not match its checksum")
        return problems

    def restore_databases(
        self, backup: Backup, env: dict[str, str | None] | None, secrets_prefix: str | None
    ) -> list[str]:
        """``pg_restore`` each dump into its database, each in one transaction (a failed
        restore leaves that database as it was). Returns the databases restored."""
        restored = []
        q = shlex.quote
        for entry in backup.manifest.get("files", []):
            if entry.get("kind") != "pg_dump":
                continue
            database = self.stack.databases.get(entry["database"])
            if database is None:
                raise BackupError(
                    f"backup {backup.name} holds database {entry['database']!r}, which the "
                    f"inventory no longer declares for {self.stack.name}"
                )
            passfile = backup.path.parent / f".pgpass-restore-{backup.name}"
            password = password_for(database, env, secrets_prefix)
            log.info("%s: restoring database %s (pg_restore) from backup %s", self.stack.name,
                     entry["database"], backup.name)  # fmt: skip
            if password is not None:
                self.access.write(
                    Path(str(passfile)), _pgpass(database, password) + "\n", private=True
                )
            script = (
                _PG_TOOL.format(name="PG_RESTORE", tool="pg_restore")
                + f'PGPASSFILE={q(str(passfile))} PGCONNECT_TIMEOUT=10 "$PG_RESTORE" '
                "--clean --if-exists --no-owner --no-privileges --single-transaction "
                "--exit-on-error "
                + " ".join(q(a) for a in _connection_args(database))
                + f" {q(str(backup.path / entry['name']))}"
            )
            try:
                done = self.access.run("sh", "-c", script)
            finally:
                self._remove(str(passfile))
            if done.rc != 0:
                raise BackupError(
                    f"restoring database {entry['database']} from {backup.name} failed "
                    f"(it is unchanged): {self._last_line(done.stderr, done.rc)}"
                )
            restored.append(entry["database"])
        return restored

    def restore_files(self, backup: Backup) -> list[str]:
        """Put the compose and env files back (each replaced atomically)."""
        log.info("%s: restoring the compose and env files from backup %s", self.stack.name,
                 backup.name)  # fmt: skip
        restored = []
        for entry in backup.manifest.get("files", []):
            if entry.get("kind") not in ("compose", "env"):
                continue
            source, target = backup.path / entry["name"], entry["source"]
            temporary = f"{target}.deployproof.tmp"
            done = self.access.run(
                "sh",
                "-c",
                f"cp -p -- {shlex.quote(str(source))} {shlex.quote(temporary)} && "
                f"mv -f -- {shlex.quote(temporary)} {shlex.quote(target)}",
            )
            if done.rc != 0:
                raise BackupError(f"cannot restore {target}: {done.stderr.strip()}")
            restored.append(target)
        return restored


def _connection_args(database: Database) -> list[str]:
    args = ["-h", database.host, "-p", str(database.port or 5432)]
    if database.user:
        args += ["-U", database.user]
    return [*args, "-w", "-d", database.dbname or database.user or "postgres"]
