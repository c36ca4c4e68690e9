"""A real PostgreSQL *container image*, built from the machine's own server binaries.

There is no public registry here, so ``postgres:15`` cannot be pulled. Stacks that run
their database as a Compose service (as most do) still need the real server: this
builds ``deployproof-test/postgres:<major>`` on top of the busybox demo image from
``/usr/lib/postgresql/<major>`` and exactly the shared libraries ``ldd`` says it needs.
Its entrypoint reads the variables the official image reads (POSTGRES_USER,
POSTGRES_PASSWORD, POSTGRES_DB), so a compose file written for ``postgres:15`` works
with it unchanged. Built once per machine (the tag names a hash of what went in).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from filelock import FileLock

from tests.support.need import need

REPOSITORY = "deployproof-test/postgres"
UID = 999  # the official image's `postgres` user

ENTRYPOINT = """#!/bin/sh
# The official image's contract, in short: initialise PGDATA on first start with the
# superuser POSTGRES_USER / POSTGRES_PASSWORD and the database POSTGRES_DB, then serve.
set -eu
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  pwfile=$(mktemp)
  printf '%s\\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > "$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -A scram-sha-256 --auth-local=trust \\
    -E UTF8 --locale=C >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \\"$db\\" OWNER \\"$user\\";" | postgres --single -D "$PGDATA" postgres \\
      >/dev/null
  fi
fi
exec postgres -D "$PGDATA"
"""

DOCKERFILE = f"""ARG BASE
FROM $BASE
COPY rootfs/ /
RUN ["/bin/sh", "-c", "chmod 755 /usr/local/bin/pg-entry && chmod 1777 /tmp && \
mkdir -p /var/lib/postgresql/data /var/run/postgresql && \
chown -R {UID}:{UID} /var/lib/postgresql /var/run/postgresql"]
ENV PATH=/usr/lib/postgresql/MAJOR/bin:/bin
USER {UID}
EXPOSE 5432
CMD ["/usr/local/bin/pg-entry"]
"""

BINARIES = ("postgres", "initdb", "pg_isready")


def _libraries(files: list[Path]) -> set[Path]:
    """The shared libraries ``files`` load, as ``ldd`` resolves them (and the loader)."""
    found: set[Path] = set()
    for file in files:
        done = subprocess.run(["ldd", str(file)], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            words = line.split()
            for word in words:
                if word.startswith("/") and Path(word).exists():
                    found.add(Path(word))
    return found


def _rootfs(major: Path, share: Path, context: Path) -> None:
    """Copy the server, its modules (not the LLVM JIT), its share dir and libraries."""
    root = context / "rootfs"
    modules = [p for p in (major / "lib").glob("*.so") if not p.name.startswith("llvmjit")]
    binaries = [major / "bin" / name for name in BINARIES]
    for source in [*binaries, *modules]:
        target = root / source.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    shutil.copytree(share, root / share.relative_to("/"), symlinks=True)
    for zone in ("UTC", "Etc/UTC", "GMT"):
        source = Path("/usr/share/zoneinfo") / zone
        if source.exists():
            target = root / source.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=True)
    for library in _libraries([*binaries, *modules]):
        for path in {library, library.resolve()}:
            target = root / path.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target, follow_symlinks=True)
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\npostgres:x:{UID}:{UID}::/var/lib/postgresql:/bin/sh\n"
    )
    (etc / "group").write_text(f"root:x:0:\npostgres:x:{UID}:\n")
    entry = root / "usr/local/bin/pg-entry"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(ENTRYPOINT)


def build_postgres_image(demo_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``deployproof-test/postgres:<major>``: a real PostgreSQL server image, built once per
    machine (a file lock serialises xdist workers). Call it from a session fixture."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        need("PostgreSQL server binaries", "no /usr/lib/postgresql/*/bin/postgres")
    major = found[-1].parent.parent
    share = Path("/usr/share/postgresql") / major.name
    if not share.is_dir():
        need("PostgreSQL's share directory", f"no {share}")
    image = f"{REPOSITORY}:{major.name}"
    lock = tmp_path_factory.getbasetemp().parent / "postgres-image.lock"
    with FileLock(str(lock)):
        digest = hashlib.sha256(
            (ENTRYPOINT + DOCKERFILE + str((major / "bin/postgres").stat().st_mtime)).encode()
        ).hexdigest()[:12]
        label = subprocess.run(
            ["docker", "image", "inspect", image, "--format",
             "{{index .Config.Labels \"deployproof.test.digest\"}}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if label.returncode == 0 and label.stdout.strip() == digest:
            return image
        context = tmp_path_factory.mktemp("postgres-image")
        _rootfs(major, share, context)
        dockerfile = DOCKERFILE.replace("MAJOR", major.name)
        (context / "Dockerfile").write_text(
            dockerfile + f'LABEL deployproof.test.digest="{digest}"\n'
        )
        done = subprocess.run(
            ["docker", "build", "-q", "--build-arg", f"BASE={demo_image}:v1.0.0", "-t", image,
             str(context)],
            capture_output=True, text=True, check=False,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )  # fmt: skip
        shutil.rmtree(context, ignore_errors=True)
    if done.returncode != 0:
        pytest.fail(f"building {image} failed:\n{done.stderr}", pytrace=False)
    return image
