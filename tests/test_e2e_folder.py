"""Where E2E suites are found (#20, E2E-1): the ini key ``deployproof_e2e_dir``, for
``--suite`` under pytest and for the comment hook's ``/e2e <suite>``. Collection only:
the stacks' hosts are never contacted."""

from __future__ import annotations

import argparse
import logging
from fnmatch import fnmatch
from pathlib import Path

import pytest

from pytest_deployproof.e2e_fixtures import suite_of
from pytest_deployproof.ops.commands import parse
from pytest_deployproof.ops.hook_commands import _hook_settings

INVENTORY = """\
hosts:
  vps1: {spec: "docker://vps1"}
layers:
  platform: {order: 1, engine: compose}
stacks:
  app: {layer: platform, host: vps1, run_dir: /srv/stacks/app, services: {web: {}}}
"""


def with_suites(root: Path, folder: str, *names: str) -> None:
    """A suite per name in ``root/folder``: one test of the stack each."""
    for name in names:
        suite = root / folder / name
        suite.mkdir(parents=True)
        (suite / f"test_{name}.py").write_text(f"def test_{name}(stack): pass\n")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """An inventory, a test of the project's own, and suites in two folders: the default
    one (suites/e2e/old) and checks/journeys (signup, billing)."""
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "staging.yml").write_text(INVENTORY)
    pytester.makepyfile(test_own="def test_own(stack): pass\n")
    with_suites(pytester.path, "suites/e2e", "old")
    with_suites(pytester.path, "checks/journeys", "signup", "billing")
    return pytester


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    """The tests of stack ``app`` collected, without their ids (the stack's, every time)."""
    args = ("--env", "staging", "--collect-only", "-q", "-p", "no:randomly", *args)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.OK, "\n".join(result.outlines + result.errlines)
    tests = [line for line in result.outlines if "::" in line]
    assert all(line.endswith("[staging/platform/app]") for line in tests), tests
    return [line.removesuffix("[staging/platform/app]") for line in tests]


def refused(pytester: pytest.Pytester, *args: str) -> str:
    """The usage error of a run: its message, once checked that no traceback came with it."""
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:randomly", *args)
    output = "\n".join(result.outlines + result.errlines)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert "Traceback" not in output
    return "\n".join(result.errlines)


def test_the_configured_folder_holds_the_suites(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\ndeployproof_e2e_dir = checks/journeys\n")

    assert collected(project) == [
        "suites/e2e/old/test_old.py::test_old",  # no longer a suite: an ordinary test
        "test_own.py::test_own",
    ]
    assert collected(project, "--suite", "signup") == [
        "checks/journeys/signup/test_signup.py::test_signup"
    ]
    assert collected(project, "--suite", "signup,billing", "-m", "e2e") == [
        "checks/journeys/billing/test_billing.py::test_billing",
        "checks/journeys/signup/test_signup.py::test_signup",
    ]
    assert collected(project, "-m", "not e2e") == [  # suites/e2e is not special any more
        "suites/e2e/old/test_old.py::test_old",
        "test_own.py::test_own",
    ]
    message = refused(project, "--env", "staging", "--suite", "old")
    assert f"--suite: no E2E suite 'old' in {project.path / 'checks/journeys'}; " in message
    assert "known are: billing, signup" in message


def test_the_default_folder_is_suites_e2e(project: pytest.Pytester) -> None:
    assert collected(project) == [  # checks/journeys is an ordinary folder of tests
        "checks/journeys/billing/test_billing.py::test_billing",
        "checks/journeys/signup/test_signup.py::test_signup",
        "test_own.py::test_own",
    ]
    assert collected(project, "--suite", "old", "-m", "e2e") == [
        "suites/e2e/old/test_old.py::test_old"
    ]
    message = refused(project, "--env", "staging", "--suite", "signup")
    assert f"no E2E suite 'signup' in {project.path / 'suites/e2e'}; known are: old" in message


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("../elsewhere", "leads to */elsewhere, outside the rootdir"),
        ("ABSOLUTE", "is absolute: the E2E folder is in the rootdir"),
        ("out/journeys", "leads to */outside*/journeys, outside the rootdir"),
        ("checks/../..", "leads to *, outside the rootdir"),
        (".", "is the rootdir * itself"),
    ],
)
def test_a_folder_leading_out_of_the_rootdir_is_refused(
    project: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, value: str, says: str
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "journeys" / "evil").mkdir(parents=True)
    (project.path / "out").symlink_to(outside)
    value = str(outside) if value == "ABSOLUTE" else value
    project.makeini(f"[pytest]\ndeployproof_e2e_dir = {value}\n")

    for args in (("--env", "staging", "--suite", "evil"), ()):  # refused with or without --env
        message = refused(project, *args)
        assert "deployproof_e2e_dir = " in message
        assert "e.g. suites/e2e" in message  # the fix
        assert fnmatch(message, f"*{says}*"), message


def test_suite_of_is_the_first_folder_under_the_e2e_folder(tmp_path: Path) -> None:
    folder = tmp_path / "checks" / "journeys"
    assert suite_of(folder / "signup" / "deep" / "test_a.py", folder) == "signup"
    assert suite_of(folder, folder) == ""
    assert suite_of(tmp_path / "suites" / "e2e" / "old" / "test_old.py", folder) is None


def hook_suites(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    """The suites the comment hook offers when run in ``root``, as ``deployproof comment``
    builds its settings there."""
    monkeypatch.chdir(root)
    monkeypatch.delenv("DEPLOYPROOF_COMMIT_VERSION", raising=False)
    args = argparse.Namespace(inventory="inventories")
    suites: tuple[str, ...] = _hook_settings(args, lambda argv: 0).suites
    return suites


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with suites in the default folder and in checks/journeys."""
    root = tmp_path / "repo"
    with_suites(root, "suites/e2e", "old")
    with_suites(root, "checks/journeys", "signup", "billing")
    return root


JOURNEYS = ("billing", "signup")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, ("old",)),
        ({"pyproject.toml": '[tool.pytest.ini_options]\ndeployproof_e2e_dir = "checks/journeys"\n'},
         JOURNEYS),
        ({"pyproject.toml": '[tool.pytest]\ndeployproof_e2e_dir = "checks/journeys"\n'}, JOURNEYS),
        ({"pyproject.toml": "[tool.ruff]\nline-length = 100\n"}, ("old",)),
        ({"pytest.ini": "[pytest]\ndeployproof_e2e_dir = checks/journeys\n"}, JOURNEYS),
        ({"tox.ini": "[pytest]\ndeployproof_e2e_dir = checks/journeys\n"}, JOURNEYS),
        ({"setup.cfg": "[tool:pytest]\ndeployproof_e2e_dir = checks/journeys\n"}, JOURNEYS),
        ({"pytest.toml": '[pytest]\ndeployproof_e2e_dir = "checks/journeys"\n'}, JOURNEYS),
        # pytest's precedence: pytest.ini, even without the key (or a [pytest] section), wins.
        ({"pytest.ini": "[pytest]\ndeployproof_e2e_dir = checks/journeys\n",
          "pyproject.toml": '[tool.pytest.ini_options]\ndeployproof_e2e_dir = "suites/e2e"\n'},
         JOURNEYS),
        ({"pytest.ini": "# empty\n",
          "pyproject.toml": '[tool.pytest.ini_options]\ndeployproof_e2e_dir = "checks/journeys"\n'},
         ("old",)),
        # a setup.cfg without [tool:pytest] is not pytest's: the next file is.
        ({"setup.cfg": "[metadata]\nname = x\n",
          "tox.ini": "[pytest]\ndeployproof_e2e_dir = checks/journeys\n"}, JOURNEYS),
    ],
)  # fmt: skip
def test_the_comment_hook_offers_the_suites_of_the_configured_folder(
    repo: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], expected: tuple[str, ...]
) -> None:
    for name, text in files.items():
        (repo / name).write_text(text)
    suites = hook_suites(repo, monkeypatch)
    assert suites == expected
    command = parse(f"/e2e {expected[-1]}", suites)
    assert command is not None
    assert command.pytest_args == ("--dp-suite", expected[-1])


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        ("pytest.ini=../elsewhere", "leads to"),
        ("pytest.ini=ABSOLUTE", "is absolute"),
        ("pyproject.toml=out", "outside the rootdir"),
        ("symlinked pytest.ini", "pytest.ini is a symlink out of the repository"),
        ("broken pyproject.toml", "cannot read pyproject.toml"),
        ("pyproject.toml=[1]", "must be a string"),
    ],
)
def test_the_comment_hook_offers_no_suite_when_the_folder_leads_out(
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    setup: str,
    says: str,
) -> None:
    outside = repo.parent / "outside"
    with_suites(outside, ".", "stolen")
    (repo / "out").symlink_to(outside)
    value = setup.partition("=")[2].replace("ABSOLUTE", str(outside))
    if setup.startswith("pytest.ini="):
        (repo / "pytest.ini").write_text(f"[pytest]\ndeployproof_e2e_dir = {value}\n")
    elif setup == "pyproject.toml=[1]":
        (repo / "pyproject.toml").write_text("[tool.pytest]\ndeployproof_e2e_dir = [1]\n")
    elif setup.startswith("pyproject.toml="):
        toml = f'[tool.pytest.ini_options]\ndeployproof_e2e_dir = "{value}"\n'
        (repo / "pyproject.toml").write_text(toml)
    elif setup == "symlinked pytest.ini":
        (outside / "pytest.ini").write_text("[pytest]\ndeployproof_e2e_dir = checks/journeys\n")
        (repo / "pytest.ini").symlink_to(outside / "pytest.ini")
    else:
        (repo / "pyproject.toml").write_text("[tool.pytest\n")

    with caplog.at_level(logging.WARNING, logger="pytest_deployproof"):
        assert hook_suites(repo, monkeypatch) == ()
    assert "no E2E suite can be named in a comment" in caplog.text
    assert says in caplog.text
