"""Backups on a local host, without databases (DEP-3): layout, manifest, retention, damage.

The databases part (pg_dump and pg_restore against a real server) is in
test_backup_restore_docker.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pytest_deployproof.deploy.backups import Backup, BackupError, Backups
from pytest_deployproof.inventory.model import Host, Stack
from pytest_deployproof.reach.hosts import HostAccess
from pytest_deployproof.secrets import Masker


def make_backups(tmp_path: Path, keep: int = 10) -> Backups:
    run_dir = tmp_path / "web"
    run_dir.mkdir()
    (run_dir / "compose.yaml").write_text("services: {web: {image: busybox}}\n")
    (run_dir / ".env").write_text("TAG=v1\n")
    stack = Stack(
        name="web",
        layer="platform",
        host="here",
        run_dir=run_dir,
        services={"web": {}},
        backup={"keep": keep},
    )
    access = HostAccess(Host(name="here", spec="local://"))
    return Backups(stack, access, "test", Masker())


def test_a_backup_holds_both_files_and_a_manifest_with_their_checksums(tmp_path: Path) -> None:
    backups = make_backups(tmp_path)
    taken = backups.take("v1", {"TAG": "v1"}, None)

    assert taken.path.parent == tmp_path / "backups" / "web"
    files = sorted(p.name for p in Path(taken.path).iterdir())
    assert files == ["compose-compose.yaml", "env-.env", "manifest.json"]
    manifest = json.loads((Path(taken.path) / "manifest.json").read_text())
    assert manifest["stack"] == "web"
    assert manifest["version"] == "v1"
    for entry in manifest["files"]:
        content = (Path(taken.path) / entry["name"]).read_bytes()
        assert entry["size"] == len(content)
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
    assert oct(os.stat(taken.path).st_mode & 0o777) == "0o700"  # env files hold secrets
    assert backups.verify(taken) == []


def test_two_backups_in_one_second_get_distinct_names_in_order(tmp_path: Path) -> None:
    backups = make_backups(tmp_path)
    names = [backups.take(f"v{n}", {}, None).name for n in range(3)]
    assert len(set(names)) == 3
    assert [b.version for b in backups.all()] == ["v0", "v1", "v2"]
    assert backups.find(None).version == "v2"
    assert backups.find(names[0]).version == "v0"


def test_retention_keeps_the_newest_and_the_only_backup_of_the_last_good_version(
    tmp_path: Path,
) -> None:
    backups = make_backups(tmp_path, keep=2)
    for version in ["v1", "v2", "v2", "v3", "v4"]:
        backups.take(version, {}, None)

    deleted = backups.prune(2, last_good="v2")
    # v3 and v4 are the newest two; v2 is the last good: its newest backup stays.
    assert [b.version for b in deleted] == ["v1", "v2"]
    assert [b.version for b in backups.all()] == ["v2", "v3", "v4"]
    assert not any(Path(b.path).exists() for b in deleted)

    backups.take("v5", {}, None)
    assert [b.version for b in backups.prune(2, last_good="v4")] == ["v2", "v3"]
    assert [b.version for b in backups.all()] == ["v4", "v5"]


def test_a_damaged_or_unknown_backup_is_refused_by_name(tmp_path: Path) -> None:
    backups = make_backups(tmp_path)
    taken = backups.take("v1", {}, None)
    (Path(taken.path) / "env-.env").write_text("TAG=v9\n")
    (Path(taken.path) / "compose-compose.yaml").unlink()
    assert sorted(backups.verify(taken)) == [
        "compose-compose.yaml is missing",
        "env-.env does not match its checksum",
    ]
    with pytest.raises(BackupError, match=r"no backup 'nope' of web; the newest are: \d{8}T"):
        backups.find("nope")


def test_a_failed_backup_leaves_nothing_behind(tmp_path: Path) -> None:
    backups = make_backups(tmp_path)
    (tmp_path / "web" / ".env").unlink()
    with pytest.raises(BackupError, match=r"backup of web failed: .*\.env"):
        backups.take("v1", None, None)
    assert list((tmp_path / "backups" / "web").iterdir()) == []
    assert backups.all() == []
    with pytest.raises(BackupError, match="web has no backups"):
        backups.find(None)


def test_files_that_are_not_backups_are_ignored(tmp_path: Path) -> None:
    backups = make_backups(tmp_path)
    stray = tmp_path / "backups" / "web" / "notes"
    stray.mkdir(parents=True)
    (stray / "manifest.json").write_text("not json")
    taken = backups.take("v1", {}, None)
    assert [b.name for b in backups.all()] == [taken.name]
    assert isinstance(backups.all()[0], Backup)


def test_a_half_made_backup_left_by_a_killed_run_is_removed_secrets_and_all(
    tmp_path: Path,
) -> None:
    backups = make_backups(tmp_path)
    left = tmp_path / "backups" / "web" / ".20260101T000000Z.partial"
    left.mkdir(parents=True)
    (left / ".pgpass-db").write_text("db:5432:app:app:planted-pgpass-secret\n")
    (left / "env-.env").write_text("TAG=v0\n")
    taken = backups.take("v1", {"TAG": "v1"}, None)
    assert not left.exists()
    assert [p.name for p in (tmp_path / "backups" / "web").iterdir()] == [taken.name]
