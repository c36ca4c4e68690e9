"""Engine facts against the real Docker engine and a real registry on loopback (PRE-1, PRE-7)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deployproof.errors import Inconclusive
from pytest_deployproof.inventory.model import Host
from pytest_deployproof.observe.docker_engine import HostEngine, registry_of, repository_of
from pytest_deployproof.reach import docker_client
from tests.support.compose import ComposeStack, inventory_yaml
from tests.support.repo import SUITES

LOCAL = Host(name="here", spec="local://")


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True)


def test_an_image_pushed_to_its_registry_is_found_there_not_locally(
    demo_image: str, registry: str
) -> None:
    name = f"{registry}/app-{uuid.uuid4().hex[:8]}"
    docker("tag", f"{demo_image}:v1.0.0", f"{name}:v1.0.0")
    docker("push", f"{name}:v1.0.0")
    docker("rmi", f"{name}:v1.0.0")  # only the registry has it now

    engine = HostEngine(LOCAL)
    found = engine.image(f"{name}:v1.0.0")
    assert found.found
    assert found.where == f"registry {registry}"

    missing = engine.image(f"{name}:v9.9.9")
    assert not missing.found
    assert missing.where.startswith(f"not on host here, nor in registry {registry}: ")


def test_a_local_image_is_found_on_the_host(demo_image: str) -> None:
    assert HostEngine(LOCAL).image(f"{demo_image}:v1.0.0").where == "host here"


def test_an_implicit_docker_hub_name_is_never_looked_up(demo_image: str) -> None:
    lookup = HostEngine(LOCAL).image("deployproof-demo/never-built:v1")
    assert not lookup.found
    assert "not looked up in Docker Hub" in lookup.where


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("ghcr.io/seisei/www:sha-d75f3637", "ghcr.io"),
        ("127.0.0.1:5000/app:v1", "127.0.0.1:5000"),
        ("localhost/app", "localhost"),
        ("docker.io/library/busybox:1.36", "docker.io"),
        ("busybox:1.36", None),
        ("seisei/www:pin-1", None),
    ],
)
def test_registry_of(image: str, registry: str | None) -> None:
    assert registry_of(image) == registry


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("127.0.0.1:5000/app:v1", "127.0.0.1:5000/app"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000/app"),  # a port is not a tag
        ("nginx@sha256:" + "a" * 64, "nginx"),
        ("nginx:1.27@sha256:" + "a" * 64, "nginx"),
        ("ghcr.io/o/www:sha-d75f3637", "ghcr.io/o/www"),
    ],
)
def test_repository_of(image: str, repository: str) -> None:
    assert repository_of(image) == repository


def test_an_image_pinned_by_digest_is_pulled_by_that_digest(demo_image: str, registry: str) -> None:
    """``app@sha256:...`` is a digest, not a tag: split at the last colon, the pull asked the
    registry for a tag named after the digest's hex and failed (a deploy refused)."""
    name = f"{registry}/app-{uuid.uuid4().hex[:8]}"
    docker("tag", f"{demo_image}:v1.0.0", f"{name}:v1.0.0")
    docker("push", f"{name}:v1.0.0")
    docker("rmi", f"{name}:v1.0.0")
    engine = HostEngine(LOCAL)
    [pinned] = engine.identity(f"{name}:v1.0.0")  # only the registry has it: its digest
    assert pinned.startswith(f"{name}@sha256:")
    try:
        assert engine.image(pinned).found
        engine.pull(pinned)
        inspected = subprocess.run(
            ["docker", "image", "inspect", pinned], capture_output=True, text=True, check=True
        )
        assert pinned in json.loads(inspected.stdout)[0]["RepoDigests"]
    finally:
        subprocess.run(["docker", "rmi", "-f", pinned], capture_output=True, check=False)


def test_a_registry_that_never_answers_makes_the_lookup_inconclusive_not_a_traceback(
    docker_engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry behind a firewall that drops packets keeps the engine waiting past the
    client's timeout; docker-py then raises requests' ReadTimeout, not a DockerException.
    Injected: a loopback listener that accepts and never answers, the client's timeout 1 s."""
    monkeypatch.setattr(docker_client, "API_TIMEOUT_S", 1)
    monkeypatch.setattr(docker_client, "_local", threading.local())  # a client with that timeout
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        image = f"127.0.0.1:{silent.getsockname()[1]}/app:v1"
        with pytest.raises(Inconclusive, match=r"cannot look up .*/app:v1 in registry 127\.0\."):
            HostEngine(LOCAL).image(image)
        with pytest.raises(Exception) as pulled:
            HostEngine(LOCAL).pull(image)
        assert "failed" in str(pulled.value)  # PullError: the deploy is refused, not crashed


def test_networks_are_listed_once_per_host(docker_engine: object) -> None:
    name = f"dp-net-{uuid.uuid4().hex[:8]}"
    docker("network", "create", name)
    try:
        engine = HostEngine(LOCAL)
        assert name in engine.networks()
        assert name in engine.networks()  # cached: the same listing
    finally:
        docker("network", "rm", name)


def test_an_unreachable_engine_is_inconclusive() -> None:
    engine = HostEngine(Host(name="gone", spec="local://", docker_url="tcp://127.0.0.1:9"))
    with pytest.raises(Inconclusive, match="cannot reach Docker on host 'gone'"):
        engine.networks()


def test_docker_host_pointing_at_nothing_makes_each_check_inconclusive_in_one_line(
    pytester: pytest.Pytester,
    compose_stack: Callable[..., ComposeStack],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The socket named, the variable to set, and no traceback: docker-py's half-made
    client used to leak its socket, which `-W error` turned into a crash at exit."""
    app = compose_stack("app")  # written, never started: nothing is asked of the engine
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(inventory_yaml([app]))
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    socket = tmp_path / "no-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    result = pytester.runpytest_subprocess(
        "--env", "test", "-m", "smoke", "-W", "error", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [f"INCONCLUSIVE: cannot reach Docker on host 'here' at unix://{socket} (from "
         "DOCKER_HOST): No such file or directory; start the engine or set DOCKER_HOST to "
         "where it listens"]
    )  # fmt: skip
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "ResourceWarning" not in output
