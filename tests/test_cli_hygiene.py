"""The operator CLI's hygiene and the packaging around it.

``--json`` carries the text form's data (masked as it is), with the exit code unchanged;
every command's help has examples and the top-level help the exit codes; the completion
script completes commands and options in a real bash; psycopg and redis are optional
(a check that needs a missing one is INCONCLUSIVE naming the extra, simulated by blocking
the import); the built sdist and wheel carry the version and the extras. No Docker.
"""

from __future__ import annotations

import argparse
import email
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pytest_deployproof import __version__
from pytest_deployproof.deploy.backups import Backups
from pytest_deployproof.deploy.history import History
from pytest_deployproof.deploy.promotion import record_verified
from pytest_deployproof.errors import Inconclusive
from pytest_deployproof.inventory.load import load_environment
from pytest_deployproof.inventory.model import Database, ProbeSettings
from pytest_deployproof.observe.databases import driver, probe_database
from pytest_deployproof.ops.cli import build_parser, main
from pytest_deployproof.reach.hosts import HostAccess
from pytest_deployproof.secrets import Masker
from tests.support.repo import REPO, SUITES

NEED_PSYCOPG = "PostgreSQL checks need psycopg: pip install 'pytest-deployproof[postgres]'"
NEED_REDIS = "Redis checks need redis: pip install 'pytest-deployproof[redis]'"
JSON_COMMANDS = ["affected", "check", "history", "restore", "rollback", "verified"]
HISTORY_FIELDS = ["timestamp", "stack", "env", "action", "version", "status", "notes"]


def write_inventory(root: Path, name: str = "staging", extra: str = "") -> list[str]:
    """A local environment of two stacks (``web`` runs WEB_TAG=v2 from its env file, ``api``
    has no history); returns the CLI arguments that name it."""
    for stack in ("web", "api"):
        (root / stack).mkdir(parents=True, exist_ok=True)
        (root / stack / "compose.yaml").write_text("services: {app: {image: 'busybox:1'}}\n")
        (root / stack / ".env").write_text("WEB_TAG=v2\n")
    (root / f"{name}.yml").write_text(
        "hosts: {here: {spec: 'local://'}}\nstate_dir: state\nstacks:\n"
        f"  web: {{layer: platform, host: here, run_dir: {root / 'web'}, "
        "image_tag_var: WEB_TAG, services: {app: {}}}\n"
        f"  api: {{layer: platform, host: here, run_dir: {root / 'api'}, "
        "image_tag_var: WEB_TAG, services: {app: {}}}\n" + extra
    )
    return ["--env", name, "--inventory", str(root)]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def at(minute: int) -> datetime:
    return datetime(2026, 1, 30, 10, minute, tzinfo=UTC)


# -- --json ---------------------------------------------------------------------------------


def test_history_json_is_the_text_forms_entries_with_notes_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = write_inventory(tmp_path)
    history = History(tmp_path / "state" / "deploy-history.log", Masker(["hunter2-secret"]))
    history.record("web", "staging", "deploy", "v1", "success", when=at(0))
    history.record(
        "web", "staging", "deploy", "v2", "fail", notes="login hunter2-secret | no", when=at(1)
    )
    history.record("web", "staging", "rollback", "v1", "success", when=at(2))

    code, text, _ = cli(capsys, "history", *env, "web")
    json_code, out, _ = cli(capsys, "history", *env, "web", "--json")
    assert code == json_code == 0
    entries = json.loads(out)
    assert [list(entry) for entry in entries] == [HISTORY_FIELDS] * 3
    assert entries[1] == {
        "timestamp": "2026-01-30T10:01:00Z",
        "stack": "web",
        "env": "staging",
        "action": "deploy",
        "version": "v2",
        "status": "fail",
        "notes": "login ******** / no",
    }
    assert "hunter2-secret" not in out
    for line, entry in zip(text.splitlines(), entries, strict=True):  # the same data
        when = entry["timestamp"].replace("T", " ").removesuffix("Z")
        assert [part.strip() for part in line.split("|")] == [when, *list(entry.values())[1:]]

    _, out, _ = cli(capsys, "history", *env, "web", "--status", "fail", "--json")
    assert [entry["version"] for entry in json.loads(out)] == ["v2"]
    _, out, _ = cli(capsys, "history", *env, "--limit", "1", "--json")
    assert [entry["action"] for entry in json.loads(out)] == ["rollback"]

    # --last-good: the entry that made it good; none: null, and exit 1 as the text form.
    assert cli(capsys, "history", *env, "web", "--last-good")[1] == "v1\n"
    code, out, _ = cli(capsys, "history", *env, "web", "--last-good", "--json")
    assert (code, json.loads(out)) == (0, entries[2])
    assert cli(capsys, "history", *env, "api", "--last-good")[0] == 1
    code, out, err = cli(capsys, "history", *env, "api", "--last-good", "--json")
    assert (code, json.loads(out)) == (1, None)
    assert "no good version of api in staging yet" in err

    # A usage error is exit 2 with nothing on stdout.
    code, out, err = cli(capsys, "history", "--env", "nope", "--inventory", str(tmp_path), "--json")
    assert (code, out) == (2, "")
    assert "nope" in err


def test_rollback_list_json_marks_the_running_version_and_json_needs_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = write_inventory(tmp_path)
    history = History(tmp_path / "state" / "deploy-history.log")
    for minute, (version, status) in enumerate([("v1", "success"), ("v2", "success")]):
        history.record("web", "staging", "deploy", version, status, when=at(minute))
    history.record("web", "staging", "deploy", "v3", "fail", when=at(3))

    code, text, _ = cli(capsys, "rollback", *env, "web", "--list")
    assert (code, text) == (0, "v2  (running)\nv1\n")
    code, out, _ = cli(capsys, "rollback", *env, "web", "--list", "--json")
    assert code == 0
    assert json.loads(out) == [
        {"version": "v2", "running": True},
        {"version": "v1", "running": False},
    ]

    before = (tmp_path / "state" / "deploy-history.log").read_text()
    code, out, err = cli(capsys, "rollback", *env, "web", "v1", "--json")
    assert (code, out) == (2, "")
    assert "--json goes with --list" in err
    assert (tmp_path / "state" / "deploy-history.log").read_text() == before  # nothing done
    assert (tmp_path / "web" / ".env").read_text() == "WEB_TAG=v2\n"


def test_restore_list_json_describes_each_backup_as_its_text_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = write_inventory(tmp_path)
    stack = load_environment(tmp_path, "staging").stacks["web"]
    backups = Backups(
        stack, HostAccess(load_environment(tmp_path, "staging").hosts["here"]), "x", Masker()
    )
    taken = [backups.take(version, {"WEB_TAG": version}, None) for version in ("v1", "v2")]

    code, text, _ = cli(capsys, "restore", *env, "web", "--list")
    assert code == 0
    assert text.splitlines() == [backup.describe() for backup in taken]
    code, out, _ = cli(capsys, "restore", *env, "web", "--list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(b["name"], b["version"], b["files"]) for b in listed] == [
        (backup.name, backup.version, 2) for backup in taken
    ]
    for line, backup in zip(text.splitlines(), listed, strict=True):
        assert line == (
            f"{backup['name']}  version {backup['version']}  "
            f"{backup['files']} files, {backup['bytes']} bytes"
        )
        assert datetime.fromisoformat(backup["created"]).tzinfo is not None

    code, out, _ = cli(capsys, "restore", *env, "api", "--list", "--json")
    assert (code, json.loads(out)) == (0, [])
    assert cli(capsys, "restore", *env, "api", "--list")[2] == "api: no backups\n"


def test_check_json_reports_every_environment_with_the_text_forms_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_inventory(tmp_path, "staging")
    write_inventory(tmp_path, "production", extra="  web2: {lyer: platform}\n")

    code, text, text_err = cli(capsys, "check", "--inventory", str(tmp_path))
    json_code, out, json_err = cli(capsys, "check", "--inventory", str(tmp_path), "--json")
    assert code == json_code == 1  # one file is invalid either way
    assert text == f"ok: staging: 2 stacks, 1 hosts ({tmp_path / 'staging.yml'})\n"
    results = {result["env"]: result for result in json.loads(out)}
    assert results["staging"] == {
        "env": "staging",
        "path": str(tmp_path / "staging.yml"),
        "ok": True,
        "stacks": 2,
        "hosts": 1,
        "error": None,
    }
    broken = results["production"]
    assert (broken["ok"], broken["stacks"], broken["hosts"]) == (False, None, None)
    assert "unknown field 'lyer'" in broken["error"]
    assert broken["error"] in text_err == json_err  # the errors still go to stderr too

    code, out, _ = cli(capsys, "check", "--inventory", str(tmp_path), "--env", "staging", "--json")
    assert (code, [r["env"] for r in json.loads(out)]) == (0, ["staging"])
    code, out, _ = cli(capsys, "check", "--inventory", str(tmp_path), "--env", "nope", "--json")
    assert (code, out) == (2, "")


def test_verified_json_lists_versions_newest_first_with_every_image_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = write_inventory(tmp_path)
    state = load_environment(tmp_path, "staging").state
    identity = {v: [f"sha256:{v[-1] * 64}", f"registry/web@sha256:{v[-1] * 64}"] for v in "12"}
    for n in "12":
        record_verified(state, "web", f"v{n}", {f"registry/web:v{n}": identity[n]})

    code, text, _ = cli(capsys, "verified", *env, "web")
    assert (code, text) == (
        0,
        f"v2  registry/web:v2 sha256:{'2' * 12}\nv1  registry/web:v1 sha256:{'1' * 12}\n",
    )
    code, out, _ = cli(capsys, "verified", *env, "web", "--json")
    assert code == 0
    records = json.loads(out)
    assert [(r["version"], r["images"]) for r in records] == [
        ("v2", {"registry/web:v2": identity["2"]}),
        ("v1", {"registry/web:v1": identity["1"]}),
    ]
    for record in records:
        seen = datetime.strptime(record["verified_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs(seen.timestamp() - time.time()) < 60
    assert cli(capsys, "verified", *env, "api", "--json")[1] == "[]\n"


def test_affected_json_holds_the_stacks_and_the_skipped_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    inventories = tmp_path / "inventories"
    inventories.mkdir()
    (inventories / "staging.yml").write_text(
        "hosts: {here: {spec: 'local://'}}\nstate_dir: /tmp/unused\n"
        "skip_paths: {'bootstrap/**': applied manually}\nstacks:\n"
        "  web: {layer: platform, host: here, run_dir: /srv/web, services: {web: {}}, "
        "paths: ['web/**']}\n"
        "  api: {layer: platform, host: here, run_dir: /srv/api, services: {api: {}}, "
        "paths: ['api/**']}\n"
    )
    for name in ("web/app.py", "api/app.py", "bootstrap/main.tf"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    git("add", "-A")
    git("commit", "-q", "-m", "base")
    git("tag", "base")
    for name in ("web/app.py", "bootstrap/main.tf"):
        (tmp_path / name).write_text("v2\n")
    args = ["affected", "--env", "staging", "--inventory", str(inventories), "--since", "base"]

    code, text, err = cli(capsys, *args)
    assert (code, text) == (0, "web\n")
    assert "# skipped bootstrap/main.tf: applied manually" in err
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0
    assert json.loads(out) == {
        "stacks": ["web"],
        "skipped": {"bootstrap/main.tf": "applied manually"},
    }
    assert err == ""  # what the text form says on stderr is in the document


# -- help, exit codes, completion ------------------------------------------------------------


def command_names() -> list[str]:
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(commands.choices)


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_code:
        main([*argv, "--help"])
    assert exit_code.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", command_names())
def test_every_command_ends_its_help_with_an_example_of_itself(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    text = help_of(capsys, name)
    assert "example" in text
    # Written as it is (RawDescriptionHelpFormatter): an indented command line of its own.
    assert re.search(rf"^  (\S+=\S+ )*deployproof {name}\b", text, re.MULTILINE), text
    if name in JSON_COMMANDS:
        assert re.search(r"^--json( \(with --list\))? prints", text, re.MULTILINE)  # its fields


def test_the_json_commands_take_json_and_the_top_level_help_lists_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with_json = [name for name in command_names() if "--json" in help_of(capsys, name)]
    assert set(JSON_COMMANDS) <= set(with_json)
    text = help_of(capsys)
    codes = text.split("exit codes:\n", 1)[1]
    for code in ("0  done", "1  failed", "2  usage"):
        assert f"\n  {code}" in "\n" + codes
    assert "4 usage or\n  inventory error" in codes
    assert "6 inconclusive" in codes
    # The documented codes are what comes back: argparse's usage error is 2 as well.
    with pytest.raises(SystemExit) as usage:
        main(["history", "--no-such-option"])
    assert usage.value.code == 2


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers after ``words`` (the last one being completed), with the script sourced."""
    quoted = " ".join(f"'{word}'" for word in words)
    program = (
        f"source '{script}'; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; _shtab_deployproof; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return sorted(filter(None, done.stdout.splitlines()))


def test_the_bash_completion_offers_every_command_and_each_commands_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, script, _ = cli(capsys, "completion", "bash")
    assert code == 0
    path = tmp_path / "deployproof.bash"
    path.write_text(script)
    assert complete(path, "deployproof", "") == command_names()  # generated from the parser
    assert complete(path, "deployproof", "hi") == ["history"]
    assert complete(path, "deployproof", "rollback", "--l") == [
        "--last-good",
        "--list",
        "--lock-wait",
    ]
    assert complete(path, "deployproof", "history", "--j") == ["--json"]
    assert complete(path, "deployproof", "completion", "") == ["bash", "zsh"]
    assert complete(path, "deployproof", "version", "next", "--env", "") == [
        "production",
        "staging",
    ]


def test_the_zsh_completion_names_the_program_and_its_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, script, _ = cli(capsys, "completion", "zsh")
    assert code == 0
    assert script.startswith("#compdef deployproof\n")
    for name in command_names():
        assert f"\n    {name}:'" in script  # offered, with its help
        assert f"\n        {name}) _arguments" in script  # and its options
    if shutil.which("zsh"):  # a syntax check where zsh is installed
        (tmp_path / "_deployproof").write_text(script)
        subprocess.run(["zsh", "-n", str(tmp_path / "_deployproof")], check=True)
    with pytest.raises(SystemExit):
        main(["completion", "fish"])
    assert "invalid choice: 'fish'" in capsys.readouterr().err


# -- the database drivers are optional ------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "module", "message"),
    [("postgresql", "psycopg", NEED_PSYCOPG), ("redis", "redis", NEED_REDIS)],
)
def test_a_database_check_without_its_driver_is_inconclusive_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, kind: str, module: str, message: str
) -> None:
    database = Database(name="main", kind=kind, host="127.0.0.1", port=1)
    assert driver(kind).__name__ == module  # installed here (the dev extra)
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    started = time.monotonic()
    with pytest.raises(Inconclusive) as raised:
        probe_database(database, {}, ProbeSettings(tries=5, interval_s=1), Masker())
    assert str(raised.value) == message
    assert time.monotonic() - started < 0.5  # said at once: no connection was retried


def test_the_plugin_and_the_cli_import_no_driver(tmp_path: Path) -> None:
    modules = [
        "pytest_deployproof.plugin",
        "pytest_deployproof.hooks",
        "pytest_deployproof.fixtures",
        "pytest_deployproof.e2e_fixtures",
        "pytest_deployproof.observe.observations",
        "pytest_deployproof.deploy.deployer",
        "pytest_deployproof.deploy.operator",
        "pytest_deployproof.ops.cli",
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'redis')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


def test_health_checks_without_the_drivers_error_as_inconclusive_in_one_line(
    pytester: pytest.Pytester,
) -> None:
    run_dir = pytester.mkdir("web")
    (run_dir / "compose.yaml").write_text("services: {web: {image: 'busybox:1'}}\n")
    (run_dir / ".env").write_text("PG_PASSWORD=hunter2-secret\n")
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(
        f"hosts: {{here: {{spec: 'local://'}}}}\nstate_dir: {pytester.path / 'state'}\nstacks:\n"
        f"  web:\n    layer: platform\n    host: here\n    run_dir: {run_dir}\n"
        "    services: {web: {}}\n    databases:\n"
        "      main: {kind: postgresql, port: 1, user: app, password_key: PG_PASSWORD}\n"
        "      cache: {kind: redis, port: 1}\n"
    )
    pytester.makepyfile(test_health=SUITES["test_health"])
    pytester.makeconftest(  # psycopg and redis absent, as in a plain `pip install`
        "import sys\nsys.modules['psycopg'] = None\nsys.modules['redis'] = None\n"
    )
    result = pytester.runpytest_subprocess(
        "--env", "test", "-p", "no:cacheprovider", "-k", "test_database_answers"
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines_random(
        [f"INCONCLUSIVE: {NEED_PSYCOPG}", f"INCONCLUSIVE: {NEED_REDIS}"]
    )
    output = result.stdout.str() + result.stderr.str()
    for noise in ("Traceback", "ImportError", "ModuleNotFoundError", "hunter2-secret"):
        assert noise not in output


# -- packaging ------------------------------------------------------------------------------


def test_the_drivers_are_extras_that_the_dev_extra_installs() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    required = " ".join(project["dependencies"])
    assert "psycopg" not in required
    assert "redis" not in required
    extras = project["optional-dependencies"]
    assert extras["postgres"] == ["psycopg[binary]>=3.1"]
    assert extras["redis"] == ["redis>=5.0"]
    assert extras["all"] == ["pytest-deployproof[postgres,redis,ansible]"]
    assert "pytest-deployproof[all]" in extras["dev"]  # the suite runs the real database tests
    assert {"build", "twine"} <= {re.split(r"[<>=\[]", r)[0] for r in extras["dev"]}
    assert project["dynamic"] == ["version"]


def test_the_built_sdist_and_wheel_carry_the_version_the_extras_and_the_changelog(
    tmp_path: Path,
) -> None:
    # A copy of the sources: a build in the checkout would race test_installed's, which
    # writes the same egg-info there.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "pytest_deployproof",
        source / "pytest_deployproof",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    dist = tmp_path / "dist"
    build = ["--no-isolation", "--quiet", "--outdir", str(dist), str(source)]
    subprocess.run([sys.executable, "-m", "build", *build], check=True, capture_output=True)
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
        check=True,
        capture_output=True,
    )

    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(name))
    assert metadata["Version"] == __version__
    assert {"postgres", "redis", "ansible", "all"} <= set(metadata.get_all("Provides-Extra"))
    drivers = [r for r in metadata.get_all("Requires-Dist") if r.startswith(("psycopg", "redis"))]
    assert drivers == ['psycopg[binary]>=3.1; extra == "postgres"', 'redis>=5.0; extra == "redis"']
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert "CHANGELOG.md" in names
    assert not any(n.startswith("tests/") for n in names)
    assert f"## [{__version__}]" in (REPO / "CHANGELOG.md").read_text()
