"""A real PostgreSQL server for this session, started from the machine's server binaries.

The ``postgres`` fixture (this module is a pytest plugin) serves the database and
backup tests; ``Postgres.sql`` runs statements as the superuser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.compose import ComposeStack
from tests.support.deploying import deploy_inventory
from tests.support.need import need
from tests.support.network import free_port
from tests.support.sshhosts import SUBNET


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1, also reachable from the test's ssh hosts
    (superuser `postgres`, trusted on 127.0.0.1 only)."""

    port: int
    bindir: Path

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, autocommit=True
        ) as connection:
            connection.execute(statement)


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server started from the machine's server binaries, for this session."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        need("PostgreSQL server binaries", "no /usr/lib/postgresql/*/bin/initdb")
    bindir = found[-1].parent
    root = Path(tempfile.mkdtemp(prefix="deployproof-pg-"))
    root.chmod(0o755)
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
        check=True,
        capture_output=True,
    )
    # The superuser is trusted; every other role must give its password over TCP.
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
        f"host all all {SUBNET}.0.0/16 scram-sha-256\n"  # the ssh hosts in namespaces
    )
    options = f"-p {port} -c listen_addresses=* -k {root}"
    start = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]
    done = subprocess.run(_as_postgres(start), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"PostgreSQL did not start: {done.stderr}\n{log.read_text()}", pytrace=False)
    try:
        yield Postgres(port, bindir)
    finally:
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_postgres(stop), capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


# -- a stack's own database, for the deploy tests -----------------------------------


def app_database(postgres: Postgres) -> tuple[str, str]:
    """A database and its owner with a password, as every service of a stack gets one."""
    name, password = f"app_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    postgres.sql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    postgres.sql(f"CREATE DATABASE {name} OWNER {name}")
    return name, password


def connect(postgres: Postgres, name: str, password: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host="127.0.0.1",
        port=postgres.port,
        user=name,
        password=password,
        dbname=name,
        autocommit=True,
    )


def rows(postgres: Postgres, name: str, password: str) -> list[tuple[object, ...]]:
    with connect(postgres, name, password) as db:
        return db.execute("SELECT id, item FROM orders ORDER BY id").fetchall()


def with_database(
    pytester: pytest.Pytester,
    app: ComposeStack,
    state: Path,
    postgres: Postgres,
    name: str,
    password: str,
    extra: str = "",
) -> None:
    """The stack's inventory declares its database; its env file holds the password."""
    (app.run_dir / ".env").write_text(f"APP_IMAGE_TAG=v1.0.0\nDB_PASSWORD={password}\n")
    database = (
        f"    databases: {{main: {{host: 127.0.0.1, port: {postgres.port}, dbname: {name}, "
        f"user: {name}, password_key: DB_PASSWORD}}}}\n"
    )
    (pytester.path / "inventories" / "test.yml").write_text(
        deploy_inventory(app, state, database + extra)
    )
