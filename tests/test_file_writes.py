"""Writing a file on a stack's host (TRU-5): atomic, the target's mode and owner kept,
never the content on a command line, and a broken write leaves the target as it was.

The local host is written from this process; the shell script that ssh hosts run (content
on stdin) and other backends run (content as base64, decoded in the script) is run here
with the real ``sh``, as a remote shell would."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path

from pytest_deployproof.inventory.model import Host
from pytest_deployproof.reach.hosts import _WRITE_SCRIPT, HostAccess

LOCAL = HostAccess(Host(name="here", spec="local://"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_local_write_keeps_the_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("TAG=v1\nDB_PASSWORD=s3cret\n")
    env.chmod(0o600)
    LOCAL.write(env, "TAG=v2\nDB_PASSWORD=s3cret\n")
    assert env.read_text() == "TAG=v2\nDB_PASSWORD=s3cret\n"
    assert mode(env) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_new_files_are_0644_and_private_ones_0600(tmp_path: Path) -> None:
    LOCAL.write(tmp_path / "manifest.json", "{}\n")
    LOCAL.write(tmp_path / ".pgpass", "db:5432:app:app:pw\n", private=True)
    assert mode(tmp_path / "manifest.json") == 0o644
    assert mode(tmp_path / ".pgpass") == 0o600


def _script(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["sh", "-c", _WRITE_SCRIPT, "write", *args], input=stdin, capture_output=True, check=False
    )


def test_the_remote_script_writes_from_stdin_keeping_mode_and_owner(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("TAG=v1\n")
    env.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(env, 1234, 1234)
    done = _script(str(env), "keep", "stdin", stdin=b"TAG=v2\n")
    assert done.returncode == 0, done.stderr
    assert env.read_text() == "TAG=v2\n"
    assert mode(env) == 0o640
    if os.geteuid() == 0:
        assert (env.stat().st_uid, env.stat().st_gid) == (1234, 1234)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_a_failed_decode_fails_the_write_and_leaves_the_target(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("TAG=v1\n")
    good = base64.b64encode(b"TAG=v2\n").decode()
    assert _script(str(env), "keep", good).returncode == 0
    assert env.read_text() == "TAG=v2\n"
    broken = _script(str(env), "keep", "!!not base64!!")
    assert broken.returncode != 0
    assert env.read_text() == "TAG=v2\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]  # no temporary left


def test_private_files_are_0600_over_the_remote_script_too(tmp_path: Path) -> None:
    passfile = tmp_path / ".pgpass"
    passfile.write_text("old\n")
    passfile.chmod(0o644)
    assert _script(str(passfile), "private", "stdin", stdin=b"db:5432:a:a:pw\n").returncode == 0
    assert mode(passfile) == 0o600
