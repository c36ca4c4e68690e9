"""A deploy that pulls from a real registry (DEP-1, PRE-7): Debian's docker-registry on
loopback holds the only copy of each release; ``--deploy`` must pull it. A pull that
cannot succeed (a tag the registry lacks, a registry that is down, a registry that lost
a layer) changes nothing: the env file, the running container and the history's
verified versions stay as they were, and one line names the image and the registry.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.compose import ComposeStack
from tests.support.deploying import container, deploy, deploy_inventory, history_lines
from tests.support.need import need
from tests.support.registry import Publish, serve_registry
from tests.support.repo import SUITES


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def on_host(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


def pulled_stack(
    compose_stack: Callable[..., ComposeStack], repository: str, pytester: pytest.Pytester,
    state: Path,
) -> ComposeStack:  # fmt: skip
    """A stack whose image is ``<repository>:${APP_IMAGE_TAG}``, up at v1.0.0 (Compose
    pulled it), and an inventory for deploying it."""
    app = compose_stack("app", compose={"web": {"image": f"{repository}:${{APP_IMAGE_TAG}}"}})
    app.up()
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(deploy_inventory(app, state))
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    return app


def release_in(app: ComposeStack) -> str:
    """What the running container's own files say it is (its release layer)."""
    return docker("exec", app.container("web"), "cat", "/release").stdout.strip()


def assert_refused(
    pytester: pytest.Pytester, app: ComposeStack, state: Path, version: str, why: str
) -> None:
    """``--deploy version`` is refused with ``why`` (an fnmatch pattern) and changes nothing:
    the env file, the container (id, image, health) and the verified versions in history."""
    __tracebackhide__ = True
    env_before, running = (app.run_dir / ".env").read_bytes(), container(app)
    result = deploy(pytester, version)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [f"DEPLOY FAILED: deploy of app {version} refused, nothing changed: {why}"]
    )
    assert (app.run_dir / ".env").read_bytes() == env_before
    assert container(app) == running  # the same container id, image and health
    deployed = [line for line in history_lines(state) if line[2] == "success"]
    assert [line[:3] for line in deployed] == [("deploy", "v2.0.0", "success")][: len(deployed)]
    assert history_lines(state)[-1][:3] == ("deploy", version, "fail")


def test_deploy_pulls_the_release_from_the_registry_and_a_missing_tag_changes_nothing(
    publish: Publish,
    registry: str,
    compose_stack: Callable[..., ComposeStack],
    pytester: pytest.Pytester,
    tmp_path: Path,
) -> None:
    repository = publish(registry)
    state = tmp_path / "state"
    app = pulled_stack(compose_stack, repository, pytester, state)
    assert release_in(app) == f"{repository}:v1.0.0"
    assert not on_host(f"{repository}:v2.0.0")

    result = deploy(pytester, "v2.0.0")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["app: v2.0.0 deployed and verified"])
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v2.0.0\n"
    running = container(app)
    assert running["image"] == f"{repository}:v2.0.0"
    assert running["health"] == "healthy"
    assert release_in(app) == f"{repository}:v2.0.0"  # the pushed v2's own layer
    digests = json.loads(docker("image", "inspect", running["image"]).stdout)[0]["RepoDigests"]
    assert [d.partition("@")[0] for d in digests] == [repository]  # it came from the registry
    assert [line[:3] for line in history_lines(state)] == [("deploy", "v2.0.0", "success")]

    # (a) A tag the registry does not have: refused before anything is touched.
    assert_refused(
        pytester, app, state, "v3.0.0",
        f"{repository}:v3.0.0 is not on host here, nor in registry {registry}: *",
    )  # fmt: skip


def layer_blob(root: Path, repository: str, tag: str) -> Path:
    """Where the registry stores the last layer (the release's own) of ``repository:tag``."""
    registry, _, name = repository.partition("/")
    request = urllib.request.Request(
        f"http://{registry}/v2/{name}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        digest = json.load(answer)["layers"][-1]["digest"].partition(":")[2]
    blob = root / "data/docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"
    assert blob.is_file(), blob
    return blob


def test_a_registry_that_lost_a_layer_or_is_down_changes_nothing(
    publish: Publish,
    compose_stack: Callable[..., ComposeStack],
    pytester: pytest.Pytester,
    tmp_path: Path,
) -> None:
    """Its own registry: this test damages it, then stops it."""
    root = tmp_path / "registry"
    root.mkdir()
    state = tmp_path / "state"
    with serve_registry(root) as registry:
        repository = publish(registry)
        app = pulled_stack(compose_stack, repository, pytester, state)

        # (c) The manifest is there (preflight finds the image), a layer is not: the pull
        # itself fails, after the preflight and the backup, before the env file is written.
        layer_blob(root, repository, "v2.0.0").unlink()
        assert_refused(
            pytester, app, state, "v2.0.0",
            f"pulling {repository}:v2.0.0 on host here failed: *",
        )  # fmt: skip
        assert not on_host(f"{repository}:v2.0.0")

    # (b) The registry is down (stopped): refused at preflight, naming image and registry.
    assert_refused(
        pytester, app, state, "v2.0.0",
        f"{repository}:v2.0.0 is not on host here, nor in registry {registry}: *",
    )  # fmt: skip
    assert [line[:3] for line in history_lines(state)] == [("deploy", "v2.0.0", "fail")] * 2


HUB_MIRROR = "127.0.0.1:5099"  # scripts/setup.sh: dockerd --registry-mirror=http://127.0.0.1:5099


@pytest.fixture
def hub_mirror(docker_engine: object, tmp_path: Path) -> Iterator[str]:
    """A stand-in for Docker Hub where the engine looks for it: the registry mirror its
    daemon is configured with, a real docker-registry on that address. A name without a
    registry host (``app-1234:v2.0.0``) is pulled from here as ``library/app-1234``."""
    mirrors = docker("info", "--format", "{{json .RegistryConfig.Mirrors}}").stdout
    if f"http://{HUB_MIRROR}/" not in json.loads(mirrors):
        need(
            f"the Docker engine's registry mirror {HUB_MIRROR}",
            f"its mirrors are {mirrors.strip()} (start dockerd with scripts/setup.sh)",
        )
    (tmp_path / "hub").mkdir()
    with serve_registry(tmp_path / "hub", port=int(HUB_MIRROR.rpartition(":")[2])) as address:
        yield address


@pytest.fixture
def short_named(publish: Publish, hub_mirror: str) -> Iterator[tuple[str, str]]:
    """(short name, where it was pushed) of two releases only the Docker Hub stand-in holds;
    the images pulled by their short names go when the stacks that run them have gone
    (request this before ``compose_stack``)."""
    pushed = publish(f"{hub_mirror}/library")
    short = pushed.rpartition("/")[2]
    yield short, pushed
    images = docker("images", "-q", short, check=False).stdout.split()
    if images:
        docker("rmi", "-f", *set(images), check=False)


def test_short_image_names_are_a_setting_of_the_host_and_looked_up_through_its_mirror(
    short_named: tuple[str, str],
    compose_stack: Callable[..., ComposeStack],
    pytester: pytest.Pytester,
    tmp_path: Path,
) -> None:
    """``app-1234:v2.0.0`` means Docker Hub to the engine, which asks its registry mirror
    first. By default a short name is refused, with the setting that allows it named; with
    ``short_image_names: docker.io`` the lookup goes through the engine (so through its
    mirror, as the pull will) and says so; a tag Docker Hub lacks changes nothing."""
    short, pushed = short_named
    state = tmp_path / "state"
    app = pulled_stack(compose_stack, short, pytester, state)  # Compose pulled v1.0.0
    assert release_in(app) == f"{pushed}:v1.0.0"
    assert not on_host(f"{short}:v2.0.0")

    assert_refused(
        pytester, app, state, "v2.0.0",
        f"{short}:v2.0.0 is not on host here (a name without a registry host is not looked up "
        "in Docker Hub; write docker.io/... or set the host's short_image_names: docker.io to "
        "allow it)",
    )  # fmt: skip
    assert not on_host(f"{short}:v2.0.0")

    inventory = pytester.path / "inventories" / "test.yml"
    inventory.write_text(
        inventory.read_text().replace(
            "{spec: 'local://'}", "{spec: 'local://', short_image_names: docker.io}", 1
        )
    )
    via = f"registry docker.io (through the engine's mirror http://{HUB_MIRROR}/)"
    result = pytester.runpytest_subprocess(
        "--env", "test", "--deploy", "v2.0.0", "-m", "smoke", "-p", "no:cacheprovider",
        "--log-cli-level=INFO",
    )  # fmt: skip

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"*image {short}:v2.0.0: found in {via}*"])
    result.stdout.fnmatch_lines(["app: v2.0.0 deployed and verified"])
    running = container(app)
    assert running["image"] == f"{short}:v2.0.0"
    assert release_in(app) == f"{pushed}:v2.0.0"  # the release layer pushed to the stand-in
    digests = json.loads(docker("image", "inspect", running["image"]).stdout)[0]["RepoDigests"]
    assert [d.partition("@")[0] for d in digests] == [short]  # a Docker Hub name, pulled

    assert_refused(
        pytester, app, state, "v3.0.0", f"{short}:v3.0.0 is not on host here, nor in {via}: *"
    )  # fmt: skip
