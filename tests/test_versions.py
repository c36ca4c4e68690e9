"""Release versions from real git tags (DEP-6): every rule, conflicts, and properties."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_deployproof.deploy.versions import VersionError, latest, next_version, parse_tag
from pytest_deployproof.ops.cli import main


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def repo_with(path: Path, *tags: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    git(path, "commit", "-q", "--allow-empty", "-m", "start")
    for tag in tags:
        git(path, "tag", tag)
    return path


@pytest.mark.parametrize(
    ("tags", "kind", "base", "expected"),
    [
        (["v1.2.3"], "staging", None, "v1.2.4"),
        (["v1.2.3", "v1.2.10", "v1.2.9"], "staging", None, "v1.2.11"),  # numeric, not text
        (["v1.2.4"], "production", None, "v1.3.0"),
        (["v1.2.4", "v1.9.0"], "production", "v1.2.4", "v1.3.0"),
        (["v1.3.0"], "hotfix", None, "v1.3.1"),
        (["v1.3.0", "v2.0.0-rc.1"], "staging", None, "v1.3.1"),  # pre-releases are no base
        (["v0.9.9", "release-7", "vnext"], "staging", None, "v0.9.10"),  # others ignored
    ],
)
def test_rules(tmp_path: Path, tags: list[str], kind: str, base: str | None, expected: str) -> None:
    assert next_version(repo_with(tmp_path, *tags), kind, base) == expected


def test_conflicts_and_bad_input_are_named(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "v1.2.3", "v1.2.4")
    commit = git(repo, "rev-parse", "HEAD")[:7]
    with pytest.raises(VersionError, match=rf"tag v1.2.4 already exists \(at {commit}\)"):
        next_version(repo, "staging", "v1.2.3")
    with pytest.raises(VersionError, match=r"'1\.2\.3' is not a vX\.Y\.Z tag"):
        next_version(repo, "staging", "1.2.3")
    with pytest.raises(VersionError, match=r"no vX\.Y\.Z tag to start from"):
        next_version(repo_with(tmp_path / "empty"), "staging")


def test_the_cli_prints_the_next_tag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = repo_with(tmp_path, "v1.2.4")
    assert main(["version", "next", "--env", "production", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out == "v1.3.0\n"
    assert main(["version", "next", "--env", "staging", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out == "v1.2.5\n"
    git(repo, "commit", "-q", "--allow-empty", "-m", "later work")
    assert main(["promote", "--repo", str(repo)]) == 0  # v1.2.4's commit, tagged v1.3.0
    assert capsys.readouterr().out == "v1.3.0\n"
    assert git(repo, "rev-list", "-n", "1", "v1.3.0") == git(repo, "rev-list", "-n", "1", "v1.2.4")
    assert main(["version", "next", "--env", "production", "--hotfix", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out == "v1.3.1\n"
    again = ["version", "next", "--env", "production", "--from", "v1.2.4", "--repo", str(repo)]
    assert main(again) == 1
    assert "tag v1.3.0 already exists" in capsys.readouterr().err


versions = st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))


@settings(max_examples=40, deadline=None)
@given(major_minor_patch=versions)
def test_properties(
    tmp_path_factory: pytest.TempPathFactory, major_minor_patch: tuple[int, int, int]
) -> None:
    major, minor, patch = major_minor_patch
    tag = f"v{major}.{minor}.{patch}"
    repo = repo_with(tmp_path_factory.mktemp("repo"), tag)
    assert latest(repo) == tag
    staging = next_version(repo, "staging")
    promoted = next_version(repo, "production")
    assert parse_tag(staging) == parse_tag(tag).bump_patch()  # type: ignore[union-attr]
    assert (parse_tag(promoted).major, parse_tag(promoted).minor, parse_tag(promoted).patch) == (  # type: ignore[union-attr]
        major, minor + 1, 0,
    )  # fmt: skip
    assert parse_tag(staging) > parse_tag(tag)  # type: ignore[operator]
    assert parse_tag(promoted) > parse_tag(staging)  # type: ignore[operator]
