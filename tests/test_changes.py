"""--changed-since maps a real git change set to stacks (INV-5, seed 000 §4.5)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_deployproof.inventory._glob import GlobError, compile_glob
from tests.test_selection import INVENTORY


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(pytester: pytest.Pytester) -> pytest.Pytester:
    """A git repository holding the inventory, the tests and some infrastructure code."""
    path = pytester.path
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.invalid")
    git(path, "config", "user.name", "t")
    pytester.mkdir("inventories")
    (path / "inventories" / "staging.yml").write_text(INVENTORY)
    pytester.makepyfile(test_checks="def test_stack(stack): pass")
    for name in (
        "web/app.py",
        "libs/common.py",
        "bootstrap/main.tf",
        "platform/01.postgres/x.sql",
        "data/etl/job.py",
        "finance/ledger.py",
        "README.md",
    ):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("v1\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    git(path, "tag", "base")
    return pytester


def selected(pytester: pytest.Pytester, *args: str) -> set[str]:
    result = pytester.runpytest("--env", "staging", "--collect-only", "-q", *args)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    return {line.split("/")[-1].rstrip("]") for line in result.outlines if "test_stack[" in line}


def change(repo: pytest.Pytester, *names: str, commit: bool = True) -> None:
    for name in names:
        (repo.path / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.path / name).write_text("v2\n")
    if commit:
        git(repo.path, "add", "-A")
        git(repo.path, "commit", "-q", "-m", "change")


@pytest.mark.parametrize(
    ("files", "stacks"),
    [
        pytest.param(("web/app.py",), {"web-seisei"}, id="stack-path"),
        pytest.param(("platform/01.postgres/x.sql",), {"postgres"}, id="single-star"),
        pytest.param(("libs/common.py",), {"postgres", "web-seisei"}, id="layer-path"),
        pytest.param(("data/etl/job.py", "web/app.py"), {"etl", "web-seisei"}, id="two"),
    ],
)
def test_a_change_selects_the_stacks_it_touches(
    repo: pytest.Pytester, files: tuple[str, ...], stacks: set[str]
) -> None:
    change(repo, *files)
    assert selected(repo, "--changed-since", "base") == stacks


def test_uncommitted_and_untracked_files_count(repo: pytest.Pytester) -> None:
    change(repo, "web/app.py", commit=False)
    change(repo, "data/etl/new_job.py", commit=False)
    assert selected(repo, "--changed-since", "HEAD") == {"web-seisei", "etl"}


def test_skip_rules_map_changes_to_nothing_and_say_why(repo: pytest.Pytester) -> None:
    change(repo, "bootstrap/main.tf", "finance/ledger.py")
    result = repo.runpytest("--env", "staging", "--changed-since", "base", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "deployproof: change set: 2 changed files -> 0 stacks, 2 skipped "
            "(applied manually; has its own CI)",
            "*no stack selected: the change set touches none*",
        ]
    )


def test_changed_since_combines_with_other_filters(repo: pytest.Pytester) -> None:
    change(repo, "libs/common.py")
    assert selected(repo, "--changed-since", "base", "--host", "vps1") == {"postgres"}


def test_an_unknown_revision_is_a_usage_error(repo: pytest.Pytester) -> None:
    result = repo.runpytest("--env", "staging", "--changed-since", "no-such-rev")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--changed-since: 'no-such-rev' is not a revision of *"])


def test_outside_a_repository_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "staging.yml").write_text(INVENTORY)
    pytester.makepyfile("def test_stack(stack): pass")
    result = pytester.runpytest("--env", "staging", "--changed-since", "HEAD")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*is not inside a git repository*"])


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("web/**", ["web/a.py", "web/x/y/z.py"], ["webx/a.py", "api/web/a.py"]),
        ("**/Dockerfile", ["Dockerfile", "a/b/Dockerfile"], ["a/Dockerfile.bak"]),
        ("platform/*/compose.yaml", ["platform/pg/compose.yaml"], ["platform/a/b/compose.yaml"]),
        ("libs/?.py", ["libs/a.py"], ["libs/ab.py"]),
        ("data/[ab]*.sql", ["data/a1.sql", "data/b.sql"], ["data/c.sql"]),
        ("data/[!ab]*.sql", ["data/c.sql"], ["data/a.sql"]),
        ("a.b+c/(x)", ["a.b+c/(x)"], ["aXb+c/(x)"]),
    ],
)
def test_glob_semantics(pattern: str, matches: list[str], misses: list[str]) -> None:
    rule = compile_glob(pattern)
    assert [p for p in matches if rule.match(p)] == matches
    assert [p for p in misses if rule.match(p)] == []


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "empty"),
        ("/etc/*", "absolute"),
        ("web/[abc", "unclosed"),
        ("web]x", "without a matching"),
        ("a/**b", "whole path segment"),
        ("a//b", "empty path segment"),
        ("a\\b", "use '/'"),
    ],
)
def test_bad_globs_are_rejected_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(GlobError, match=reason):
        compile_glob(pattern)


def test_affected_prints_the_stacks_a_change_touches_and_why_others_are_skipped(
    repo: pytest.Pytester, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_deployproof.ops.cli import main

    change(repo, "libs/common.py", "bootstrap/main.tf")
    monkeypatch.chdir(repo.path)
    assert main(["affected", "--env", "staging", "--since", "base"]) == 0
    out, err = capfd.readouterr()
    assert out.splitlines() == ["postgres", "web-seisei"]  # libs -> every platform stack
    assert "# skipped bootstrap/main.tf: applied manually" in err
    assert main(["affected", "--env", "staging", "--since", "nope"]) == 2
