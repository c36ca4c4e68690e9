"""Connecting to a stack's databases as the stack's own user (SMK-4).

The password never comes from the inventory: ``password_key`` names a key in
the stack's env file (or, with the environment's ``secrets_prefix``, in the
process environment), and every message is masked before it leaves here.
"""

from __future__ import annotations

import importlib
import os
import re
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import Inconclusive
from ..inventory.model import Database, Inventory, ProbeSettings, Stack
from ..secrets import Masker

__all__ = ["DatabaseResult", "IsolationSeen", "driver", "observe_isolation", "probe_database"]

# The drivers are optional (extras [postgres], [redis]): a kind -> (module, what to install).
_DRIVERS = {
    "postgresql": (
        "psycopg",
        "PostgreSQL checks need psycopg: pip install 'pytest-deployproof[postgres]'",
    ),
    "redis": ("redis", "Redis checks need redis: pip install 'pytest-deployproof[redis]'"),
}


def driver(kind: str) -> ModuleType:
    """The client library for a database of ``kind``, imported when a check first needs it.

    Without it the check cannot look: :class:`Inconclusive` (an error, not a failed
    database), in one line naming the extra that installs it."""
    module, missing = _DRIVERS[kind]
    try:
        return importlib.import_module(module)
    except ImportError:  # absent, or psycopg without a libpq it can load
        raise Inconclusive(missing) from None


@dataclass(frozen=True)
class DatabaseResult:
    where: str
    ok: bool
    attempts: int
    elapsed_s: float
    error: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"{self.where}: ok after {self.attempts} attempts in {self.elapsed_s:.2f} s"
        return f"{self.where}: {self.error} ({self.attempts} attempts in {self.elapsed_s:.2f} s)"


def password_for(
    database: Database, env: dict[str, str | None] | None, prefix: str | None
) -> str | None:
    key = database.password_key
    if key is None:
        return None
    value = (env or {}).get(key)
    if value is None and prefix:
        value = os.environ.get(prefix + key)
    return value


def _where(database: Database) -> str:
    port = database.port or (5432 if database.kind == "postgresql" else 6379)
    user = f"{database.user}@" if database.user else ""
    name = f"/{database.dbname}" if database.dbname else ""
    return f"{database.kind} {user}{database.host}:{port}{name}"


def connect_postgres(database: Database, password: str | None, timeout_s: float = 5) -> Any:
    """A psycopg connection (autocommit) to ``database`` as its user."""
    psycopg = driver("postgresql")
    return psycopg.connect(
        host=database.host,
        port=database.port or 5432,
        dbname=database.dbname or database.user or "postgres",
        user=database.user,
        password=password,
        connect_timeout=max(1, int(timeout_s)),
        autocommit=True,
    )


def _connect_once(database: Database, password: str | None, timeout_s: float) -> None:
    if database.kind == "postgresql":
        with connect_postgres(database, password, timeout_s) as connection:
            connection.execute("SELECT 1").fetchone()
        return
    client = driver("redis").Redis(
        host=database.host,
        port=database.port or 6379,
        username=database.user,
        password=password,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    try:
        if not client.ping():
            raise ConnectionError("PING was not answered with PONG")
    finally:
        client.close()


def probe_database(
    database: Database,
    env: dict[str, str | None] | None,
    probes: ProbeSettings,
    masker: Masker,
    secrets_prefix: str | None = None,
) -> DatabaseResult:
    where = _where(database)
    password = password_for(database, env, secrets_prefix)
    if database.password_key and password is None:
        return DatabaseResult(
            where, False, 0, 0.0, f"password key {database.password_key} is not set in the env file"
        )
    masker = masker.plus(password) if password else masker
    driver(database.kind)  # missing, it is Inconclusive here, not a failed connection below
    started = time.monotonic()
    error = "not tried"
    attempts = 0
    while attempts < probes.tries:
        if attempts:
            if time.monotonic() - started + probes.interval_s > probes.deadline_s:
                break
            time.sleep(probes.interval_s)
        attempts += 1
        try:
            _connect_once(database, password, probes.timeout_s)
        except Exception as exc:  # every driver error is a failed connection
            error = masker(" ".join(str(exc).split()) or type(exc).__name__)
            continue
        return DatabaseResult(where, True, attempts, time.monotonic() - started)
    return DatabaseResult(where, False, attempts, time.monotonic() - started, error)


# What a server says when it refuses a user (as opposed to not answering at all).
_REFUSED = re.compile(r"permission denied|not permitted|does not exist|authentication failed", re.I)


@dataclass(frozen=True)
class IsolationSeen:
    """E2E-2's observation: can the stack's user reach its own database, and which other
    stacks' databases on the same server it reaches too."""

    user: str
    own_refused: str | None  # why its own database refused it, masked; None: it connected
    reached: tuple[tuple[str, str], ...]  # (other stack, database name) it could connect to


def observe_isolation(
    inventory: Inventory, stack: Stack, database: Database, password: str | None, masker: Masker
) -> IsolationSeen:
    """Connect as ``database``'s user to its own database, then to every other stack's on the
    same server. A server that does not answer is :class:`Inconclusive`, not a refusal."""
    psycopg = driver("postgresql")
    user = database.user or "(default user)"
    try:
        connect_postgres(database, password).close()
    except psycopg.OperationalError as exc:
        reason = masker(" ".join(str(exc).split()))
        if not _REFUSED.search(reason):
            raise Inconclusive(f"stack {stack.name}: database {database.name}: {reason}") from None
        return IsolationSeen(user, reason, ())
    server = (database.host, database.port or 5432)
    reached = []
    for other in inventory.stacks.values():
        for theirs in other.postgres_databases:
            same_server = (theirs.host, theirs.port or 5432) == server
            if other.name == stack.name or not same_server or theirs.dbname == database.dbname:
                continue
            try:
                connect_postgres(
                    database.model_copy(update={"dbname": theirs.dbname}), password
                ).close()
            except psycopg.OperationalError:
                continue  # refused: as it should be
            reached.append((other.name, str(theirs.dbname)))
    return IsolationSeen(user, None, tuple(reached))
