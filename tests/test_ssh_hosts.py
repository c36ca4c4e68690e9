"""Checks on hosts reached over ssh (INV-4, SEL-3): real hosts in network namespaces.

Three hosts, each a network namespace with its own address, its own sshd and its own
files (the stacks' folders exist only inside each host's mount namespace, so a check
can only read them through ssh); one Docker engine behind them all, reached from each
host through its socket, forwarded over ssh. The bundled preflight and smoke suites run
against a stack on each host, driven by the deployproof inventory or by an Ansible one.
"""

from __future__ import annotations

import re
import stat
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pytest_deployproof.deploy.history import History
from tests.support import junit
from tests.support.compose import ComposeStack, compose_binary, write_compose_stack
from tests.support.engine import IMAGE
from tests.support.junit import Outcome
from tests.support.need import need
from tests.support.repo import SUITES
from tests.support.sshhosts import SshHosts, missing_parts

HOSTS = ("h1", "h2", "h3")
CHECKS = {name: SUITES[name] for name in ("test_preflight", "test_smoke")}
CONNECT_TIMEOUT_S = 2


@dataclass
class Fleet:
    hosts: SshHosts
    stacks: dict[str, ComposeStack]  # host name -> its stack

    def host_entry(self, name: str) -> dict[str, object]:
        host = self.hosts.hosts[name]
        return {
            "spec": host.spec,
            "ssh_config": str(self.hosts.ssh_config),
            "connect_timeout_s": CONNECT_TIMEOUT_S,
            "compose": compose_binary(),
        }

    def stack_entry(self, host: str) -> dict[str, object]:
        stack = self.stacks[host]
        return {
            "layer": "platform",
            "host": host,
            "run_dir": str(self.hosts.remote / stack.name),
            "project": stack.project,
            "image_tag_var": "APP_IMAGE_TAG",
            "services": {"web": {"critical": True}},
            "endpoints": [{"name": "health", "url": f"{stack.url}/cgi-bin/health"}],
        }

    def inventory(self, hosts: dict[str, object] | None = None, **extra: object) -> str:
        document: dict[str, object] = {
            "layers": {"platform": {"order": 2, "engine": "compose"}},
            "probes": {"tries": 2, "interval_s": 0.2, "deadline_s": 8},
            "stacks": {f"app-{name}": self.stack_entry(name) for name in self.stacks},
            **extra,
        }
        if hosts is not None:
            document["hosts"] = hosts
        return yaml.safe_dump(document, sort_keys=False)


@pytest.fixture(scope="module")
def fleet(demo_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    why = missing_parts()
    if why:
        need("hosts in network namespaces", why)
    base = tmp_path_factory.mktemp("fleet")
    lock = tmp_path_factory.getbasetemp().parent / "netns.lock"
    hosts = SshHosts(base / "ssh", lock, base / "remote")
    stacks: dict[str, ComposeStack] = {}
    try:
        for name in HOSTS:
            host = hosts.add(name)
            stacks[name] = write_compose_stack(host.files, f"app-{name}", demo_image)
        with ThreadPoolExecutor(len(stacks)) as pool:
            list(pool.map(lambda stack: stack.up(), stacks.values()))
        yield Fleet(hosts, stacks)
    finally:
        for stack in stacks.values():
            stack.compose("down", "-v", "-t", "1", check=False)
        hosts.remove()


def run_checks(pytester: pytest.Pytester, inventory: str, *args: str) -> dict[str, Outcome]:
    """Run the bundled preflight and smoke suites; each test's outcome, by test id."""
    (pytester.path / "inventories").mkdir(exist_ok=True)
    (pytester.path / "inventories" / "test.yml").write_text(inventory)
    pytester.makepyfile(**CHECKS)
    report = pytester.path / "report.xml"
    result = pytester.runpytest_subprocess(
        "--env", "test", "-p", "no:cacheprovider", "-v", f"--junitxml={report}", *args
    )
    output = result.stdout.str()
    outcomes = junit.outcomes(report, junit.workers(output))
    assert outcomes, output
    return outcomes


def host_of(test_id: str) -> str:
    """h1 for test_service_running[test/platform/app-h1/web] and test_disk_free[test/h1]."""
    found = re.search(r"\[test/(?:platform/app-)?(h\d)\b", test_id)
    assert found, test_id
    return found.group(1)


def test_preflight_and_smoke_run_on_three_ssh_hosts(
    fleet: Fleet, pytester: pytest.Pytester
) -> None:
    hosts = {name: fleet.host_entry(name) for name in HOSTS}
    before = {name: fleet.hosts.hosts[name].connections() for name in HOSTS}

    outcomes = run_checks(pytester, fleet.inventory(hosts))

    assert {host_of(test) for test in outcomes} == set(HOSTS)
    assert {o.status for o in outcomes.values()} == {"passed"}, outcomes
    # 9 preflight gates + 1 service + 1 endpoint per stack, and the disk of each host.
    assert len(outcomes) == 3 * 11 + 3
    # The stacks' files exist only on the hosts: the gates read them through ssh.
    assert not (fleet.hosts.remote / "app-h1").exists()
    # One ssh connection per host for the whole run: commands and the Docker API
    # (containers, networks, images) all went through it.
    after = {name: fleet.hosts.hosts[name].connections() for name in HOSTS}
    assert {name: after[name] - before[name] for name in HOSTS} == dict.fromkeys(HOSTS, 1)


def test_a_file_missing_on_one_host_fails_only_that_hosts_gate(
    fleet: Fleet, pytester: pytest.Pytester
) -> None:
    env_file = fleet.stacks["h2"].run_dir / ".env"
    saved = env_file.read_text()
    env_file.unlink()  # on host h2 only: the other hosts have their own files
    try:
        outcomes = run_checks(pytester, fleet.inventory({n: fleet.host_entry(n) for n in HOSTS}))
    finally:
        env_file.write_text(saved)
    failed = {test for test, o in outcomes.items() if o.status != "passed"}
    assert failed
    assert {host_of(test) for test in failed} == {"h2"}, failed
    gate = outcomes["test_env_file_complete[test/platform/app-h2]"]
    assert gate.status == "failed"
    assert "stack app-h2" in gate.message
    assert ".env" in gate.message


def test_xdist_keeps_each_hosts_tests_on_one_worker_from_an_ansible_yaml_inventory(
    fleet: Fleet, pytester: pytest.Pytester
) -> None:
    ansible = {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(fleet.hosts.identity),
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={fleet.hosts.known_hosts}",
                "deployproof_compose": compose_binary(),
                "deployproof_connect_timeout_s": CONNECT_TIMEOUT_S,
            },
            "children": {
                "web": {"hosts": {n: {"ansible_host": fleet.hosts.hosts[n].address} for n in HOSTS}}
            },
        }
    }
    (pytester.path / "hosts.yml").write_text(yaml.safe_dump(ansible))
    # The deployproof inventory names the Ansible one and says nothing else about hosts.
    inventory = fleet.inventory(ansible_inventory="../hosts.yml")
    before = {name: fleet.hosts.hosts[name].connections() for name in HOSTS}

    outcomes = run_checks(pytester, inventory, "-n", "2", "--dist", "loadgroup")

    assert {o.status for o in outcomes.values()} == {"passed"}, outcomes
    workers: dict[str, set[str | None]] = {}
    for test, outcome in outcomes.items():
        workers.setdefault(host_of(test), set()).add(outcome.worker)
    assert all(len(seen) == 1 and None not in seen for seen in workers.values()), workers
    assert len(set().union(*workers.values())) == 2  # both workers had hosts to check
    # Two connections per host: the worker that owns it, and the controller, which reads
    # the env files once to mask secrets in the reports it writes and hands them to the
    # workers (so no worker connects to a host it has no tests for).
    after = {name: fleet.hosts.hosts[name].connections() for name in HOSTS}
    assert {name: after[name] - before[name] for name in HOSTS} == dict.fromkeys(HOSTS, 2)


def test_unreachable_hosts_error_quickly_and_only_their_tests(
    fleet: Fleet, pytester: pytest.Pytester
) -> None:
    """h2's sshd is stopped (refused); h4 accepts TCP and never speaks (a hung host).
    Driven by an Ansible INI inventory given as testinfra's --ansible-inventory."""
    hung = fleet.hosts.hosts.get("h4") or fleet.hosts.add("h4", silent=True)
    addresses = {name: host.address for name, host in fleet.hosts.hosts.items()}
    (pytester.path / "hosts.ini").write_text(
        "[web]\n"
        + "".join(f"{n} ansible_host={addresses[n]}\n" for n in ("h1", "h2"))
        + "[edge]\n"
        + "".join(f"{n} ansible_host={addresses[n]}\n" for n in ("h3", "h4"))
        + "[all:vars]\nansible_user=root\n"
        + f"deployproof_ssh_config={fleet.hosts.ssh_config}\n"
        + f"deployproof_connect_timeout_s={CONNECT_TIMEOUT_S}\n"
        + f"deployproof_compose={compose_binary()}\n"
    )
    stacks = {f"app-{n}": fleet.stack_entry(n) for n in HOSTS}
    stacks["app-h4"] = {**fleet.stack_entry("h1"), "host": "h4", "project": "dp-hung"}
    document = yaml.safe_load(fleet.inventory())
    inventory = yaml.safe_dump({**document, "stacks": stacks}, sort_keys=False)
    # A user's own testinfra check, given each host's testinfra `host`.
    pytester.makepyfile(
        test_own="def test_hostname(host):\n    assert host.file('/etc').is_directory\n"
    )
    fleet.hosts.hosts["h2"].stop_sshd()
    try:
        started = time.monotonic()
        outcomes = run_checks(pytester, inventory, "--ansible-inventory", "hosts.ini")
        elapsed = time.monotonic() - started
    finally:
        fleet.hosts.hosts["h2"].start_sshd()

    by_host: dict[str, dict[str, Outcome]] = {}
    for test, outcome in outcomes.items():
        by_host.setdefault(host_of(test), {})[test] = outcome
    for name in ("h1", "h3"):
        assert {o.status for o in by_host[name].values()} == {"passed"}, by_host[name]
    for name, why in (("h2", "Connection refused"), ("h4", "timed out")):
        assert {o.status for o in by_host[name].values()} == {"error"}, by_host[name]
        for outcome in by_host[name].values():
            assert f"host '{name}' is unreachable over ssh" in outcome.message
            assert why in outcome.message
    assert outcomes["test_hostname[test/h1]"].status == "passed"  # through h1's connection
    # The hung host cost one connect timeout, not one per test (12 tests on it).
    assert sum(o.seconds for o in by_host["h4"].values()) < 2 * CONNECT_TIMEOUT_S + 2
    assert elapsed < 60
    assert hung.process is not None
    assert hung.process.poll() is None


LOSE_HOST = """
import subprocess

def pytest_runtest_setup(item):
    # h2 has served its stack's checks through its connection; now it goes away entirely
    # (every process in its namespace, the sshd serving that connection included).
    if item.name == "test_disk_free[test/h2]":
        pids = subprocess.run(["ip", "netns", "pids", "{namespace}"], capture_output=True,
                              text=True).stdout.split()
        subprocess.run(["kill", "-9", *pids])
"""


def test_a_host_lost_mid_run_errors_its_later_checks_and_the_run_goes_on(
    fleet: Fleet, pytester: pytest.Pytester
) -> None:
    host = fleet.hosts.hosts["h2"]
    pytester.makeconftest(LOSE_HOST.format(namespace=host.namespace))
    try:
        started = time.monotonic()
        outcomes = run_checks(pytester, fleet.inventory({n: fleet.host_entry(n) for n in HOSTS}))
        elapsed = time.monotonic() - started
    finally:
        host.stop_sshd()
        host.start_sshd()
    lost = outcomes.pop("test_disk_free[test/h2]")
    assert lost.status == "error"
    assert "host 'h2' is unreachable over ssh" in lost.message
    assert "Connection refused" in lost.message
    # Everything else, h2's stack checks included (they ran before), passed.
    assert {o.status for o in outcomes.values()} == {"passed"}, outcomes
    assert elapsed < 60


def test_host_groups_from_ansible_select_hosts(fleet: Fleet, pytester: pytest.Pytester) -> None:
    (pytester.path / "hosts.ini").write_text(
        "[web]\nh1\nh2\n[edge]\nh3\n[all:vars]\nansible_connection=local\n"
    )
    (pytester.path / "inventories").mkdir()
    (pytester.path / "inventories" / "test.yml").write_text(fleet.inventory())
    pytester.makepyfile(**CHECKS)
    result = pytester.runpytest_subprocess(
        "--env", "test", "--ansible-inventory", "hosts.ini", "--host", "edge",
        "--collect-only", "-q", "-p", "no:cacheprovider",
    )  # fmt: skip
    collected = [line for line in result.stdout.lines if "::" in line]
    assert collected
    assert {host_of(line.split("::")[1]) for line in collected} == {"h3"}


def test_a_failed_deploy_over_ssh_rolls_back_on_each_host_once(
    fleet: Fleet, pytester: pytest.Pytester, bad_image: str, tmp_path: Path
) -> None:
    """--deploy of a version whose health check fails, to the stacks on h1 and h2, on two
    xdist workers: each stack is deployed once (its tests share a worker), backed up,
    verified and rolled back on its own host, all through that host's ssh connection."""
    state = tmp_path / "state"
    hosts = {name: fleet.host_entry(name) for name in HOSTS}
    inventory = fleet.inventory(hosts, state_dir=str(state), up_timeout_s=60)
    (pytester.path / "inventories").mkdir()
    (pytester.path / "inventories" / "test.yml").write_text(inventory)
    pytester.makepyfile(**CHECKS)
    before = {name: fleet.stacks[name].container("web") for name in ("h1", "h2")}
    for name in ("h1", "h2"):  # env files hold passwords: they stay private through writes
        (fleet.stacks[name].run_dir / ".env").chmod(0o600)

    result = pytester.runpytest_subprocess(
        "--env", "test", "--deploy", bad_image, "--stack", "app-h1,app-h2", "-m", "smoke",
        "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
    )  # fmt: skip

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    history = [
        (e.stack, e.action, e.version, e.status)
        for e in History(state / "deploy-history.log").entries()
    ]
    for name in ("h1", "h2"):
        stack = fleet.stacks[name]
        actions = [entry[1:] for entry in history if entry[0] == stack.name]
        assert actions == [("deploy", bad_image, "fail"), ("rollback", "v1.0.0", "success")]
        # On the host: the env file names the old version again, and a backup was taken there.
        assert "APP_IMAGE_TAG=v1.0.0" in (stack.run_dir / ".env").read_text()
        assert stat.S_IMODE((stack.run_dir / ".env").stat().st_mode) == 0o600
        assert not list(stack.run_dir.glob(".deployproof.*"))  # no temporary left behind
        backups = fleet.hosts.hosts[name].files / "backups" / stack.name
        assert [p for p in backups.iterdir() if (p / "manifest.json").is_file()]
        assert container_image(before[name]) == f"{IMAGE}:v1.0.0"


def container_image(name: str) -> str:
    done = subprocess.run(
        ["docker", "inspect", name, "--format", "{{.Config.Image}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()
