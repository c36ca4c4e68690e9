"""A real single-node Docker Swarm, and two-service stacks deployed on it (fixtures; a
pytest plugin).

``swarm`` makes the engine a swarm manager for the tests that need one and leaves it
as found: the workers of a run count their users in a file, under a lock, and the
last one out leaves the swarm if the run made it. ``swarm_stack`` writes a stack of
two services, ``web`` (HTTP on a host-mode port, healthcheck) and ``worker`` (its own
image, healthcheck), whose images are tagged per version:

* v1.0.0, v2.0.0: both good;
* v3.0.0: ``web`` answers its healthcheck with 503 (Swarm rolls that one service back);
* v4.0.0: ``web`` is good, ``worker`` exits at once (it never starts).

Each stack has its own namespace and port, and is removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from tests.support.need import need
from tests.support.network import free_port

WEB = "deployproof-swarm/web"
WORKER = "deployproof-swarm/worker"
VERSIONS = ("v1.0.0", "v2.0.0", "v3.0.0", "v4.0.0")


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{done.stderr}")
    return done


def swarm_state() -> str:
    return _docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()


def _outside_problem() -> str | None:
    """What deployproof says of the local engine as a swarm host (before it is one)."""
    from pytest_deployproof.inventory.model import Host
    from pytest_deployproof.orchestrators.swarm_services import HostSwarm
    from pytest_deployproof.reach import docker_client

    try:
        return HostSwarm(Host(name="here", spec="local://")).manager_problem()
    finally:
        docker_client.close_all()


@pytest.fixture(scope="session")
def swarm(docker_engine: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """The engine as a single-node swarm manager while this worker's swarm tests run;
    the value is what deployproof said of the engine before this run made it a swarm
    (``None`` when it already was one)."""
    shared = tmp_path_factory.getbasetemp().parent
    lock, users = FileLock(str(shared / "swarm.lock")), shared / "swarm-users.json"
    with lock:
        record = json.loads(users.read_text()) if users.exists() else {"users": 0, "made": False}
        if swarm_state() != "active":
            record["outside"] = _outside_problem()
            # Swarm makes this bridge and leaves it behind when the node leaves the swarm.
            bridge = _docker("network", "inspect", "docker_gwbridge", check=False)
            record["bridge_made"] = bridge.returncode != 0
            done = _docker("swarm", "init", "--advertise-addr", "127.0.0.1", check=False)
            if done.returncode != 0:
                need("a single-node Docker Swarm", done.stderr.strip())
            record["made"] = True
        record["users"] += 1
        users.write_text(json.dumps(record))
    yield record.get("outside")
    with lock:
        record = json.loads(users.read_text())
        record["users"] -= 1
        if record["users"] == 0 and record["made"]:
            _docker("swarm", "leave", "--force", check=False)
            if record.get("bridge_made"):
                _docker("network", "rm", "docker_gwbridge", check=False)
            record["made"] = False
        users.write_text(json.dumps(record))


@pytest.fixture(scope="session")
def swarm_images(demo_image: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The web and worker images of every version (built once per run)."""
    lock = tmp_path_factory.getbasetemp().parent / "swarm-images.lock"
    with FileLock(str(lock)):
        context = tmp_path_factory.mktemp("swarm-images")
        builds = {
            f"{WEB}:v3.0.0": "ENV HEALTH_STATUS=503\n",
            f"{WORKER}:v4.0.0": 'CMD ["/bin/sh", "-c", "echo cannot start; exit 3"]\n',
        }
        for image, extra in builds.items():
            (context / "Dockerfile").write_text(f"FROM {demo_image}:v1.0.0\n{extra}")
            done = subprocess.run(
                ["docker", "build", "-q", "-t", image, str(context)],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
            )
            assert done.returncode == 0, done.stderr
        for version in VERSIONS:
            for repository in (WEB, WORKER):
                if f"{repository}:{version}" not in builds:
                    _docker("tag", f"{demo_image}:v1.0.0", f"{repository}:{version}")


@dataclass
class SwarmStack:
    """A two-service stack on the swarm, made for one test."""

    name: str
    namespace: str
    run_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def services(self) -> dict[str, dict[str, object]]:
        """Each service's image, replicas and last update state, as the manager says."""
        listed = _docker(
            "service", "ls", "--filter", f"label=com.docker.stack.namespace={self.namespace}",
            "--format", "{{.Name}}",
        ).stdout.split()  # fmt: skip
        seen = {}
        for name in listed:
            [spec] = json.loads(_docker("service", "inspect", name).stdout)
            seen[name.removeprefix(f"{self.namespace}_")] = {
                "image": spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0],
                "replicas": spec["Spec"]["Mode"]["Replicated"]["Replicas"],
                "update": (spec.get("UpdateStatus") or {}).get("State"),
            }
        return seen

    def inventory(self, state: Path, extra: str = "") -> str:
        return (
            "hosts: {here: {spec: 'local://'}}\n"
            "layers: {platform: {order: 2, engine: compose}}\n"
            "probes: {tries: 2, interval_s: 0.2, deadline_s: 20}\n"
            f"state_dir: {state}\n"
            "up_timeout_s: 90\n"
            "stacks:\n"
            f"  {self.name}:\n    layer: platform\n    host: here\n    target: swarm\n"
            f"    run_dir: {self.run_dir}\n    project: {self.namespace}\n"
            "    image_tag_var: TAG\n"
            "    services: {web: {critical: true, healthcheck: true}, "
            "worker: {critical: true, healthcheck: true}}\n"
            f"    endpoints: [{{name: health, url: '{self.url}/cgi-bin/health', health: true}}]\n"
            + extra
        )


def _compose(port: int) -> str:
    check = "http://127.0.0.1:{}/cgi-bin/health"
    return f"""services:
  web:
    image: {WEB}:${{TAG}}
    environment: {{VERSION: "${{TAG}}"}}
    ports: [{{target: 8080, published: {port}, mode: host, protocol: tcp}}]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "{check.format(8080)}"]
      interval: 1s
      timeout: 2s
      retries: 2
    deploy:
      replicas: 1
      update_config: {{failure_action: rollback, monitor: 2s, order: stop-first}}
      rollback_config: {{monitor: 2s, order: stop-first}}
      resources: {{limits: {{cpus: "0.25", memory: 32M}}}}
  worker:
    image: {WORKER}:${{TAG}}
    environment: {{PORT: "8081", VERSION: "${{TAG}}"}}
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "{check.format(8081)}"]
      interval: 1s
      timeout: 2s
      retries: 2
    deploy:
      replicas: 1
      # continue: Swarm itself would call the update done while the task keeps crashing
      update_config: {{failure_action: continue, monitor: 2s, order: stop-first}}
      resources: {{limits: {{cpus: "0.25", memory: 32M}}}}
"""


def deploy_by_hand(stack: SwarmStack, version: str) -> None:
    """Render the stack at ``version`` and ``docker stack deploy`` it, as a user would."""
    from pytest_deployproof.orchestrators.swarm import render_for_swarm
    from tests.support.compose import compose_binary

    done = subprocess.run(
        [compose_binary(), "config", "--format", "json"],
        cwd=stack.run_dir,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TAG": version},
    )
    document, _ = render_for_swarm(json.loads(done.stdout))
    rendered = stack.run_dir / "by-hand.json"
    rendered.write_text(json.dumps(document))
    _docker("stack", "deploy", "--detach=false", "-c", str(rendered), stack.namespace)


@pytest.fixture
def swarm_stack(
    swarm: str | None, swarm_images: None, tmp_path: Path
) -> Iterator[Callable[[str], SwarmStack]]:
    """``make(version)``: a two-service stack written at ``version``, not yet deployed."""
    made: list[SwarmStack] = []

    def make(version: str = "v1.0.0") -> SwarmStack:
        namespace = f"dpsw{uuid.uuid4().hex[:8]}"
        run_dir = tmp_path / namespace
        run_dir.mkdir()
        port = free_port()
        (run_dir / "compose.yaml").write_text(_compose(port))
        (run_dir / ".env").write_text(f"TAG={version}\n")
        stack = SwarmStack("shop", namespace, run_dir, port)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        _docker("stack", "rm", stack.namespace, check=False)
