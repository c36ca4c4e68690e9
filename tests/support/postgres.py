"""A real PostgreSQL server for this session, started from the machine's server binaries.

The ``postgres`` fixture (this module is a pytest plugin) serves the database and
backup tests; ``Postgres.sql`` runs statements as the superuser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.need import need
from tests.support.network import free_port


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (superuser `postgres`, trusted locally)."""

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
    )
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root}"
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
