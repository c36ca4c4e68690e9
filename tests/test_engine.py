"""Engine facts against the real Docker engine and a real registry on loopback (PRE-1, PRE-7)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deployproof.errors import Inconclusive
from pytest_deployproof.inventory.model import Host
from pytest_deployproof.observe.docker_engine import HostEngine, registry_of
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
