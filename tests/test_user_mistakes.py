"""A new user's first runs: the bundled checks are found, their own options keep working,
and each common mistake gets one clear line and pytest's exit code for it, never a
traceback (exit 4: a usage or inventory error; 2: a CLI option error)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

INVENTORY = """
hosts: {here: {spec: 'local://'}}
stacks:
  web: {layer: platform, host: here, run_dir: /srv/web, services: {web: {}}}
  api: {layer: platform, host: here, run_dir: /srv/api, services: {api: {}}}
"""


@pytest.fixture
def repo(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A repository holding only an inventory; the bundled checks collected as for users."""
    monkeypatch.delenv("DEPLOYPROOF_BUILTIN")
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "prod.yml").write_text(INVENTORY)
    return pytester


def _collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if "::" in line]


def test_the_bundled_checks_are_collected_unless_turned_off_or_paths_are_named(
    repo: pytest.Pytester,
) -> None:
    listing = ("--collect-only", "-q", "-p", "no:cacheprovider")
    found = _collected(repo.runpytest_subprocess("--env", "prod", *listing))
    # The package's files (this repository holds none), named by their file as pytest
    # names files outside the rootdir.
    modules = {line.split("::")[0] for line in found}
    assert modules == {"test_preflight.py", "test_smoke.py", "test_health.py", "test_drift.py"}
    assert not list(repo.path.glob("test_*.py"))
    assert "test_smoke.py::test_service_running[prod/platform/web/web]" in found

    repo.makepyfile(test_mine="def test_mine(stack):\n    pass\n")
    off = _collected(
        repo.runpytest_subprocess("--env", "prod", "--deployproof-no-builtin", *listing)
    )
    assert off == [
        "test_mine.py::test_mine[prod/platform/api]",
        "test_mine.py::test_mine[prod/platform/web]",
    ]
    named = _collected(repo.runpytest_subprocess("--env", "prod", "test_mine.py", *listing))
    assert named == off  # naming a path runs just that
    both = _collected(repo.runpytest_subprocess("--env", "prod", *listing))
    assert len(both) == len(found) + 2  # the project's own tests beside the bundled ones
    # Without --env the plugin stays out of the way: nothing of ours is collected.
    plain = _collected(repo.runpytest_subprocess(*listing))
    assert plain == ["test_mine.py::test_mine"]


def test_a_project_option_named_like_ours_takes_the_short_spelling(repo: pytest.Pytester) -> None:
    repo.makeconftest(
        "def pytest_addoption(parser):\n"
        "    parser.addoption('--env', default='dev')\n"
        "    parser.addoption('--host', action='store')\n"
    )
    repo.makepyfile(
        test_mine="def test_theirs(request):\n    assert request.config.getoption('env') == 'qa'\n"
    )
    theirs = repo.runpytest_subprocess("--env", "qa", "test_mine.py", "-p", "no:cacheprovider")
    assert theirs.ret == pytest.ExitCode.OK, theirs.stdout.str() + theirs.stderr.str()
    theirs.stdout.fnmatch_lines(
        [
            "deployproof: --env is this project's own option; deployproof's is --dp-env",
            "deployproof: --host is this project's own option; deployproof's is --dp-host",
        ]
    )
    ours = repo.runpytest_subprocess(
        "--env", "qa", "--dp-env", "prod", "--dp-stack", "web", "--collect-only", "-q",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    assert ours.ret == pytest.ExitCode.OK, ours.stdout.str() + ours.stderr.str()
    ids = [line.split("[")[-1].rstrip("]") for line in _collected(ours) if "[" in line]
    targets = set(ids) - {"none-selected"}
    assert "prod/platform/web/web" in targets
    assert all(t.startswith("prod/") for t in targets), targets
    assert not [t for t in targets if "api" in t]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--stack", ""),
            "ERROR: --stack was given an empty value: name at least one (is a CI variable "
            "unset?), or leave --stack out to select every one",
        ),
        (
            ("--layer", ","),
            "ERROR: --layer was given an empty value: *",
        ),
        (
            ("-m", "drift", "--parity", "nope"),
            "ERROR: --parity nope: --env 'nope' is not in */inventories: known are prod",
        ),
        (
            ("--stack", "nosuch"),
            "ERROR: --stack 'nosuch' is not in this environment: known are api, web",
        ),
    ],
    ids=["empty-stack", "empty-layer", "unknown-parity", "unknown-stack"],
)
def test_a_selection_mistake_is_one_line_and_exit_4(
    repo: pytest.Pytester, args: tuple[str, ...], message: str
) -> None:
    result = repo.runpytest_subprocess("--env", "prod", *args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "error: --event {event}: cannot read the event: [Errno 2] No such file"),
        ("{bad", "error: --event {event}: cannot read the event: Expecting property name"),
        ("[1, 2]", "error: --event {event}: not a GitHub event (a JSON object)"),
    ],
    ids=["missing", "not-json", "not-an-object"],
)
def test_a_bad_event_file_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, message: str
) -> None:
    event = tmp_path / "event.json"
    if content is not None:
        event.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "pytest_deployproof.ops.cli", "comment", "--event", str(event)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(message.format(event=event))


def test_the_cli_reads_the_environment_from_deployproof_env(
    repo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_deployproof.ops.cli import main

    monkeypatch.chdir(repo.path)
    monkeypatch.setenv("DEPLOYPROOF_ENV", "staging")  # as pytest reads it: no --env needed
    assert main(["history"]) != 0
    assert "'staging' is not in" in capsys.readouterr().err
    monkeypatch.delenv("DEPLOYPROOF_ENV")
    with pytest.raises(SystemExit) as exit_code:  # argparse: --env is required then
        main(["history"])
    assert exit_code.value.code == 2
