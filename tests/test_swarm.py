"""``target: swarm`` on a real single-node Docker Swarm: deploy, verify and roll back a whole
stack of two services, honestly (issue 24).

Swarm's own rollback is per service, and ``docker stack deploy`` reports success after it;
here a failure of either service returns *both* to the last good version, verified.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pytest_deployproof.observe.drift import spec_drift
from pytest_deployproof.orchestrators.swarm import render_for_swarm
from tests.support.deploying import deploy, history_lines
from tests.support.need import need
from tests.support.repo import SUITES
from tests.support.swarm import SwarmStack, deploy_by_hand

MakeSwarmStack = Callable[[str], SwarmStack]


def _images(stack: SwarmStack) -> dict[str, str]:
    return {name: str(seen["image"]).rsplit(":", 1)[1] for name, seen in stack.services().items()}


def _version_served(stack: SwarmStack) -> str:
    return httpx.get(f"{stack.url}/cgi-bin/status", timeout=5).json()["version"]


def _setup(pytester: pytest.Pytester, stack: SwarmStack, tmp_path: Path) -> Path:
    state = tmp_path / "state"
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(stack.inventory(state))
    return state


def test_a_whole_stack_deploys_and_any_failing_service_takes_every_service_back(
    pytester: pytest.Pytester, swarm_stack: MakeSwarmStack, tmp_path: Path
) -> None:
    stack = swarm_stack("v1.0.0")
    deploy_by_hand(stack, "v1.0.0")  # what the user runs today
    state = _setup(pytester, stack, tmp_path)
    pytester.makepyfile(test_smoke=SUITES["test_smoke"], test_preflight=SUITES["test_preflight"])
    env_file = stack.run_dir / ".env"

    # 1. v1 -> v2: converged, verified, recorded; both services run v2 and it serves v2.
    result = deploy(pytester, "v2.0.0", "smoke or preflight")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["shop: v2.0.0 deployed and verified"])
    assert "PASSED test_preflight.py::test_target_ready[test/platform/shop]" in result.stdout.str()
    assert _images(stack) == {"web": "v2.0.0", "worker": "v2.0.0"}
    assert _version_served(stack) == "v2.0.0"
    assert env_file.read_text() == "TAG=v2.0.0\n"
    assert [line[:3] for line in history_lines(state)] == [("deploy", "v2.0.0", "success")]

    # 2. v3: web fails its healthcheck (Swarm starts rolling that one service back). The
    # deploy fails, and both services are returned to v2 and verified.
    result = deploy(pytester, "v3.0.0")
    output = result.stdout.str()
    assert result.ret != 0, output
    assert "docker stack deploy of shop v3.0.0 did not become healthy: service web:" in output
    assert "shop: v3.0.0 failed" in output
    assert "rolled back to v2.0.0, verified" in output
    assert _images(stack) == {"web": "v2.0.0", "worker": "v2.0.0"}
    assert _version_served(stack) == "v2.0.0"
    assert env_file.read_text() == "TAG=v2.0.0\n"
    assert [line[:3] for line in history_lines(state)[-2:]] == [
        ("deploy", "v3.0.0", "fail"),
        ("rollback", "v2.0.0", "success"),
    ]

    # 3. v4: web is fine but worker never starts: web is returned to v2 too.
    result = deploy(pytester, "v4.0.0")
    output = result.stdout.str()
    assert result.ret != 0, output
    # (worker's update_config says `continue`: Swarm would call that update done; its task
    # of v4 crashing is what fails it)
    assert (
        "docker stack deploy of shop v4.0.0 did not become healthy: service worker: a task of "
        "deployproof-swarm/worker:v4.0.0 failed: task: non-zero exit (3)" in output
    ), output
    assert "rolled back to v2.0.0, verified" in output
    assert _images(stack) == {"web": "v2.0.0", "worker": "v2.0.0"}
    assert _version_served(stack) == "v2.0.0"
    assert [line[:3] for line in history_lines(state)[-2:]] == [
        ("deploy", "v4.0.0", "fail"),
        ("rollback", "v2.0.0", "success"),
    ]

    # 4. The same bundled suites judge the swarm stack, unchanged: all pass on v2 ...
    pytester.makepyfile(test_health=SUITES["test_health"], test_drift=SUITES["test_drift"])
    result = pytester.runpytest_subprocess(
        "--env", "test", "-m", "smoke or health or drift", "-p", "no:cacheprovider", "-rA"
    )  # fmt: skip
    output = result.stdout.str()
    assert result.ret == 0, output
    for check in (
        "test_smoke.py::test_service_running[test/platform/shop/web]",
        "test_smoke.py::test_service_running[test/platform/shop/worker]",
        "test_health.py::test_health_endpoint[test/platform/shop/health]",
        "test_drift.py::test_config_as_deployed[test/platform/shop]",
        "test_drift.py::test_containers_as_declared[test/platform/shop]",
    ):
        assert f"PASSED {check}" in output, check

    # ... and a change by hand is drift, and a stopped replica is a failed smoke check.
    subprocess.run(
        ["docker", "service", "update", "--detach", "--env-add", "DEBUG=1",
         "--replicas", "0", f"{stack.namespace}_worker"],
        check=True, capture_output=True,
    )  # fmt: skip
    result = pytester.runpytest_subprocess(
        "--env", "test", "-m", "smoke or drift", "-p", "no:cacheprovider", "-rA"
    )  # fmt: skip
    output = result.stdout.str()
    assert result.ret == 1, output
    assert "FAILED test_drift.py::test_containers_as_declared[test/platform/shop]" in output
    assert "- service worker: 0 replicas, declared 1" in output
    assert "- service worker: environment DEBUG differs from the declared value" in output
    assert "FAILED test_smoke.py::test_service_running[test/platform/shop/worker]" in output
    # Scaled to 0, nothing is starting: judged on the first look, not at the probe deadline.
    assert "service worker: " in output
    assert "(after 1 observation in " in output, output


def test_a_deploy_killed_mid_convergence_is_rolled_back_by_the_next_run(
    pytester: pytest.Pytester, swarm_stack: MakeSwarmStack, tmp_path: Path
) -> None:
    stack = swarm_stack("v1.0.0")
    deploy_by_hand(stack, "v1.0.0")
    state = _setup(pytester, stack, tmp_path)
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    assert deploy(pytester, "v2.0.0").ret == 0

    # v3 never converges (web's healthcheck fails): kill the run while it waits.
    killed = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--env", "test", "--deploy", "v3.0.0", "-m", "smoke",
         "-p", "no:cacheprovider"],
        cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while _images(stack)["web"] != "v3.0.0":
        assert time.monotonic() < deadline, "the deploy never reached docker stack deploy"
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert (state / "locks" / "shop.lease").exists()

    result = deploy(pytester, "v2.0.0")
    output = result.stdout.str()
    assert result.ret == 0, output
    assert "shop: the interrupted deploy of v3.0.0 was rolled back to v2.0.0, verified" in output
    assert _images(stack) == {"web": "v2.0.0", "worker": "v2.0.0"}
    assert _version_served(stack) == "v2.0.0"
    lines = [line[:3] for line in history_lines(state)]
    assert lines[1:3] == [("deploy", "v3.0.0", "fail"), ("rollback", "v2.0.0", "success")]
    assert "died while it deployed" in history_lines(state)[1][3]
    assert not (state / "locks" / "shop.lease").exists()


def test_a_host_outside_a_swarm_is_named_and_an_engine_that_does_not_answer_never_passes(
    pytester: pytest.Pytester, swarm: str | None, tmp_path: Path
) -> None:
    # What the engine said before this run made it a swarm manager (tests/support/swarm.py
    # asks the product, on the real engine, just before `docker swarm init`).
    if swarm is None:
        need("an engine that was not a swarm before this run", "it already was one")
    assert swarm == (
        "host here is not part of a swarm (state inactive): `docker swarm init` there first"
    )
    run_dir = tmp_path / "shop"
    run_dir.mkdir()
    (run_dir / "compose.yaml").write_text("services: {web: {image: 'x:${TAG}'}}\n")
    (run_dir / ".env").write_text("TAG=v1\n")
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(
        "hosts: {here: {spec: 'local://', docker_url: 'unix:///nonexistent/docker.sock'}}\n"
        "stacks:\n"
        f"  shop: {{layer: platform, host: here, target: swarm, run_dir: {run_dir}, "
        "image_tag_var: TAG, services: {web: {}}}\n"
    )
    pytester.makepyfile(test_preflight=SUITES["test_preflight"])
    result = pytester.runpytest_subprocess(
        "--env", "test", "-k", "target_ready", "-p", "no:cacheprovider", "-rA"
    )  # fmt: skip
    output = result.stdout.str()
    assert "test_target_ready[test/platform/shop]" in output
    assert "PASSED" not in output, output
    assert "nonexistent/docker.sock" in output, output


def test_the_rendering_is_what_stack_deploy_takes() -> None:
    """Compose's JSON has nulls, a top-level name and string ports; the loader refuses them."""
    config = {
        "name": "shop",
        "services": {
            "web": {
                "image": "r/web:v2",
                "command": None,
                "ports": [{"target": 8080, "published": "18080", "mode": "host"}],
            }
        },
    }
    document, images = render_for_swarm(config)
    assert document == {
        "services": {
            "web": {
                "image": "r/web:v2",
                "ports": [{"target": 8080, "published": 18080, "mode": "host"}],
            }
        }
    }
    assert images == {"web": "r/web:v2"}


def test_spec_drift_names_each_difference() -> None:
    declared = {
        "web": {
            "image": "r/web:v2",
            "environment": {"A": "1"},
            "deploy": {"replicas": 2, "resources": {"limits": {"cpus": "0.5", "memory": "32M"}}},
        },
        "gone": {"image": "r/gone:v1"},
    }
    specs = {
        "web": {
            "Mode": {"Replicated": {"Replicas": 1}},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "r/web:v1@sha256:abc", "Env": ["A=2", "B=3"]},
                "Resources": {"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 64 * 2**20}},
            },
        },
        "extra": {"TaskTemplate": {"ContainerSpec": {"Image": "r/x:1"}}},
    }
    assert spec_drift(declared, specs) == [
        "service gone: declared, not deployed (removed by hand?)",
        "service extra: runs in the stack, not declared",
        "service web: image r/web:v1, declared r/web:v2",
        "service web: 1 replicas, declared 2",
        "service web: environment A differs from the declared value",
        "service web: environment B differs from the declared value",
        "service web: memory limit 67108864 bytes, declared 32M",
    ]
    json.dumps(specs)  # the specs are plain JSON, as the Docker API gives them
