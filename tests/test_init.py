"""`deployproof init`: a repository gets a valid inventory, the schema, an example E2E
suite and CI workflows that are pinned and least-privileged, and is never half-changed."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from pytest_deployproof import __version__
from pytest_deployproof.inventory.schema import schema_text
from tests.support.compose import compose_binary, service_block
from tests.support.network import free_port

DEPLOYPROOF = str(Path(sys.executable).parent / "deployproof")
WRITTEN = [
    ".github/workflows/deployproof-comment.yml",
    ".github/workflows/deployproof-deploy.yml",
    ".github/workflows/deployproof-drift.yml",
    ".github/workflows/deployproof-preflight.yml",
    "inventories/qa.yml",
    "inventory.schema.json",
    "suites/e2e/example/test_example.py",
]
# what a job may write, and why: the comment hook's dashboard and reactions
MAY_WRITE = {"deployproof-comment.yml": {"issues", "pull-requests"}}


def deployproof(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DEPLOYPROOF, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def files_in(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git/" not in str(path)
    }


def test_init_writes_a_repository_that_checks_and_collects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEPLOYPROOF_BUILTIN")  # the bundled checks, as a user's run has them
    done = deployproof("init", "--env", "qa", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(files_in(tmp_path)) == WRITTEN
    assert (tmp_path / "inventory.schema.json").read_text() == schema_text()
    checked = deployproof("check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "qa: 1 stacks, 1 hosts" in checked.stdout
    # The example suite is found in the repository, the bundled checks in the package.

    def collected(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "--env", "qa", *args, "--collect-only", "-q",
             "-p", "no:cacheprovider"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        ).stdout  # fmt: skip

    example = "suites/e2e/example/test_example.py::test_the_home_page_answers"
    assert example in collected("--suite", "example")
    bundled = collected("-m", "preflight")
    assert re.search(r"test_preflight\.py::test_compose_parses\[qa/platform/web\]", bundled)


@pytest.mark.parametrize("name", [path for path in WRITTEN if path.startswith(".github")])
def test_every_workflow_is_pinned_and_least_privileged(tmp_path: Path, name: str) -> None:
    assert deployproof("init", "--env", "qa", cwd=tmp_path).returncode == 0
    text = (tmp_path / name).read_text()
    workflow = yaml.safe_load(text)
    assert "$deployproof" not in text  # every placeholder filled
    allowed = MAY_WRITE.get(Path(name).name, set())
    permissions = workflow["permissions"]
    assert permissions["contents"] == "read"
    assert {key for key, value in permissions.items() if value == "write"} == allowed
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    uses = [step["uses"] for step in steps if "uses" in step]
    assert uses
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", use) for use in uses), uses
    installs = [step["run"] for step in steps if "pip install" in step.get("run", "")]
    assert installs == [f'pip install "pytest-deployproof=={__version__}"'] * len(installs)
    assert installs
    for job_name, job in workflow["jobs"].items():
        # a job's own permissions replace the workflow's: they too write only what is allowed
        own = job.get("permissions", {"contents": "read"})
        assert own["contents"] == "read"
        assert {key for key, value in own.items() if value == "write"} <= allowed
        checkouts = [step for step in job["steps"] if "checkout" in step.get("uses", "")]
        # only the Allure report job works on artifacts alone, without the repository
        assert len(checkouts) == (0 if job_name == "report" else 1), job_name
        for checkout in checkouts:
            assert checkout.get("with", {}).get("persist-credentials") is False
        # the environment's own runner, or GitHub's where no host is needed
        assert job["runs-on"] in (["self-hosted", "qa"], "ubuntu-latest")


def test_pull_request_preflight_runs_no_code_from_the_pull_request(tmp_path: Path) -> None:
    assert deployproof("init", "--env", "qa", cwd=tmp_path).returncode == 0
    workflow = yaml.safe_load(
        (tmp_path / ".github/workflows/deployproof-preflight.yml").read_text()
    )
    validate, preflight = workflow["jobs"]["validate"], workflow["jobs"]["preflight"]
    assert validate["runs-on"] == "ubuntu-latest"  # no host reachable from there
    assert preflight["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    step = preflight["steps"][-1]
    assert step["working-directory"] == "${{ runner.temp }}"  # not the checkout: no conftest
    assert "--noconftest" in step["run"]


def test_a_second_init_writes_nothing_unless_forced(tmp_path: Path) -> None:
    assert deployproof("init", "--env", "qa", cwd=tmp_path).returncode == 0
    (tmp_path / "inventories/qa.yml").write_text("# mine\n")
    before = files_in(tmp_path)
    again = deployproof("init", "--env", "qa", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.startswith("error: .github/workflows/deployproof-comment.yml, ")
    assert again.stderr.rstrip().endswith("nothing was written (--force replaces them)")
    assert files_in(tmp_path) == before
    forced = deployproof("init", "--env", "qa", "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert (tmp_path / "inventories/qa.yml").read_text() != "# mine\n"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--env", "Prod Env"], "error: --env 'Prod Env' is not a name"),
        (["--dir", "nowhere"], "error: --dir nowhere is not a directory"),
    ],
)
def test_init_mistakes_are_one_line_and_exit_2(tmp_path: Path, args: list[str], said: str) -> None:
    done = deployproof("init", *args, cwd=tmp_path)
    assert (done.returncode, done.stderr.splitlines()) == (
        2,
        [said + done.stderr[len(said) :].rstrip()],
    )
    assert done.stderr.startswith(said)
    assert files_in(tmp_path) == {}


def test_init_with_discover_writes_the_running_stacks(tmp_path: Path, demo_image: str) -> None:
    run_dir = tmp_path / f"shop{uuid.uuid4().hex[:6]}"
    run_dir.mkdir()
    service = service_block(demo_image, free_port(), {}, {})
    (run_dir / "compose.yaml").write_text(yaml.safe_dump({"services": {"web": service}}))
    (run_dir / ".env").write_text("APP_IMAGE_TAG=v1.0.0\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    compose = [compose_binary(), "up", "-d", "--wait"]
    subprocess.run(compose, cwd=run_dir, check=True, capture_output=True)
    try:
        done = deployproof("init", "--env", "qa", "--discover", cwd=repo)
        assert done.returncode == 0, done.stderr
        inventory = yaml.safe_load((repo / "inventories/qa.yml").read_text())
        assert inventory["stacks"][run_dir.name]["run_dir"] == str(run_dir)
        assert inventory["stacks"][run_dir.name]["image_tag_var"] == "APP_IMAGE_TAG"
        assert sorted(files_in(repo)) == WRITTEN
    finally:
        subprocess.run(
            [compose_binary(), "down", "-t", "1"], cwd=run_dir, capture_output=True, check=False
        )


def _link_workflows(repo: Path, outside: Path) -> Path:
    (repo / ".github").mkdir()
    (repo / ".github/workflows").symlink_to(outside, target_is_directory=True)
    return repo / ".github/workflows"


def _link_github(repo: Path, outside: Path) -> Path:
    (repo / ".github").symlink_to(outside, target_is_directory=True)
    return repo / ".github"


def _link_inventory(repo: Path, outside: Path) -> Path:
    (outside / "qa.yml").write_text("# someone else's file\n")
    (repo / "inventories").mkdir()
    (repo / "inventories/qa.yml").symlink_to(outside / "qa.yml")
    return repo / "inventories/qa.yml"


def _dangling_schema(repo: Path, outside: Path) -> Path:
    (repo / "inventory.schema.json").symlink_to(outside / "created-by-init.json")
    return repo / "inventory.schema.json"


@pytest.mark.parametrize(
    "plant",
    [_link_workflows, _link_github, _link_inventory, _dangling_schema],
    ids=["workflows-dir", "github-dir", "target-file", "dangling-target"],
)
@pytest.mark.parametrize("force", [False, True], ids=["plain", "forced"])
def test_init_writes_through_no_symlink_out_of_the_repository(
    tmp_path: Path, plant: Callable[[Path, Path], Path], force: bool
) -> None:
    """A cloned repository may hold links pointing anywhere the user can write: init
    refuses (even with --force), names the link, and writes nothing anywhere."""
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    repo.mkdir()
    outside.mkdir()
    link = plant(repo, outside)
    before = files_in(outside)
    done = deployproof("init", "--env", "qa", *(["--force"] if force else []), cwd=repo)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        f"error: {link.relative_to(repo)} is a symbolic link and init writes through none: "
        "remove it (or init another --dir); nothing was written\n"
    )
    assert files_in(outside) == before
    assert not (repo / "inventories/qa.yml").exists() or link.name == "qa.yml"
    assert not (repo / "suites").exists()


def test_init_into_a_linked_directory_is_fine(tmp_path: Path) -> None:
    """The repository itself may be reached through a link (--dir is the user's choice)."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "here").symlink_to(tmp_path / "repo", target_is_directory=True)
    done = deployproof("init", "--env", "qa", "--dir", "here", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(files_in(tmp_path / "repo")) == WRITTEN


def test_forced_init_replaces_each_file_whole(tmp_path: Path) -> None:
    """Replaced by a rename: a file hard-linked from elsewhere is not written through, and no
    temporary file is left behind."""
    assert deployproof("init", "--env", "qa", cwd=tmp_path).returncode == 0
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere.yml"
    elsewhere.write_text("# another file, hard-linked into the repository\n")
    (tmp_path / "inventories/qa.yml").unlink()
    os.link(elsewhere, tmp_path / "inventories/qa.yml")
    try:
        done = deployproof("init", "--env", "qa", "--force", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert elsewhere.read_text() == "# another file, hard-linked into the repository\n"
    finally:
        elsewhere.unlink()
    assert sorted(files_in(tmp_path)) == WRITTEN  # no .qa.yml.XXXX left
    assert (tmp_path / "inventories/qa.yml").stat().st_nlink == 1


def test_forced_init_writes_every_file_or_none_and_keeps_their_modes(tmp_path: Path) -> None:
    """A target that cannot be written (a directory where a workflow goes) stops init before
    any file is replaced; files it replaces keep the mode their owner gave them."""
    assert deployproof("init", "--env", "qa", cwd=tmp_path).returncode == 0
    inventory = tmp_path / "inventories/qa.yml"
    inventory.write_text("# the user's own inventory\n")
    inventory.chmod(0o600)
    workflow = tmp_path / ".github/workflows/deployproof-drift.yml"
    workflow.unlink()
    workflow.mkdir()

    done = deployproof("init", "--env", "qa", "--force", cwd=tmp_path)

    assert done.returncode == 2, done.stderr
    assert "deployproof-drift.yml: a directory where init writes a file" in done.stderr
    assert "nothing was written" in done.stderr
    assert inventory.read_text() == "# the user's own inventory\n"  # not replaced
    workflow.rmdir()
    done = deployproof("init", "--env", "qa", "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert inventory.read_text() != "# the user's own inventory\n"
    assert stat.S_IMODE(inventory.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "state_dir", ["/srv/deploy: prod", "/srv/deploy #2", '/srv/it\'s "here"', "/srv/é/\U0001f600"]
)
def test_init_state_dir_is_written_as_one_yaml_string(tmp_path: Path, state_dir: str) -> None:
    done = deployproof("init", "--env", "qa", "--state-dir", state_dir, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    inventory = yaml.safe_load((tmp_path / "inventories/qa.yml").read_text())
    assert inventory["state_dir"] == state_dir
    checked = deployproof("check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
