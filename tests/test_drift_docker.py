"""Drift of a deployed stack on the real Docker engine (DRF-1, DRF-2): changed by hand in each
way an operator can, the right drift test fails with a diff; untouched, both pass."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deployproof.inventory.model import Host
from pytest_deployproof.observe.docker_engine import HostEngine
from pytest_deployproof.observe.drift import (
    HASH_LABEL,
    ONEOFF_LABEL,
    computed_service_hash,
    container_drift,
    proven_hashes,
)
from pytest_deployproof.orchestrators.containers import HostContainers
from tests.support.compose import ComposeStack
from tests.support.deploying import deploy, deploy_inventory
from tests.support.repo import SUITES

MakeStack = Callable[..., ComposeStack]


def drift_run(pytester: pytest.Pytester) -> dict[str, tuple[str, str]]:
    """Outcome and message of each drift test, read from the JUnit XML."""
    import xml.etree.ElementTree as ET

    result = pytester.runpytest_subprocess(
        "--env", "test", "-m", "drift", "-p", "no:cacheprovider", "--junitxml", "drift.xml",
        "--alluredir", "allure",
    )  # fmt: skip
    assert result.ret in (0, 1), result.stdout.str()
    outcomes = {}
    for case in ET.parse(pytester.path / "drift.xml").iter("testcase"):
        status, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                status, message = kind, (found.get("message") or "") + (found.text or "")
        outcomes[str(case.get("name")).split("[")[0]] = (status, message)
    return outcomes


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_each_change_by_hand_fails_the_right_drift_test_with_a_diff(
    pytester: pytest.Pytester, compose_stack: MakeStack, tmp_path: Path
) -> None:
    app = compose_stack("app", web={"EXTRA": "${EXTRA:-0}"}, worker={})
    app.up()
    state = tmp_path / "state"
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(
        deploy_inventory(app, state, "").replace(
            "services: {web: {critical: true}}", "services: {web: {critical: true}, worker: {}}"
        )
    )
    pytester.makepyfile(test_smoke=SUITES["test_smoke"], test_drift=SUITES["test_drift"])
    deploy(pytester, "v2.0.0").assert_outcomes(passed=3)
    web, worker = app.container("web"), app.container("worker")
    config, containers = "test_config_as_deployed", "test_containers_as_declared"

    untouched = drift_run(pytester)
    assert untouched[config] == ("passed", "")
    assert untouched[containers] == ("passed", "")

    # 1. The env file edited on the host and applied by hand.
    env = app.run_dir / ".env"
    env.write_text(env.read_text() + "EXTRA=1\n")
    app.compose("up", "-d", "--wait")
    seen = drift_run(pytester)
    assert seen[containers] == ("passed", "")
    status, message = seen[config]
    assert status == "failure"
    assert "- files: compose + env on the host hash " in message
    assert f"- {web}: config-hash " in message
    assert "recreated by hand" in message
    assert worker not in message  # its config did not change
    env.write_text(env.read_text().replace("EXTRA=1\n", ""))
    app.compose("up", "-d", "--wait")
    assert drift_run(pytester)[config] == ("passed", "")

    # 2. A service removed by hand.
    docker("rm", "-f", worker)
    status, message = drift_run(pytester)[containers]
    assert status == "failure"
    assert "- service worker: declared, no container (removed by hand?)" in message
    app.compose("up", "-d", "--wait")

    # 3. A container added with the project's label.
    image = f"{json.loads(docker('inspect', web))[0]['Config']['Image']}"
    docker("run", "-d", "--name", f"{app.project}-rogue", "--label",
           f"com.docker.compose.project={app.project}", image, "sleep", "600")  # fmt: skip
    status, message = drift_run(pytester)[containers]
    assert status == "failure"
    assert (
        f"- {app.project}-rogue: runs with the project label, service (none) is not declared"
        in message
    )
    docker("rm", "-f", f"{app.project}-rogue")

    # 4. The service replaced by `docker run` of another image.
    docker("rm", "-f", web)
    old = image.replace(":v2.0.0", ":v1.0.0")
    docker("run", "-d", "--name", web, "--label", f"com.docker.compose.project={app.project}",
           "--label", "com.docker.compose.service=web", "-p", f"127.0.0.1:{app.port}:8080",
           old)  # fmt: skip
    seen = drift_run(pytester)
    status, message = seen[containers]
    assert status == "failure"
    assert f"- {web}: image {old}, declared {image}" in message
    assert f"- {web}: environment VERSION differs from the declared value" in message
    assert f"- {web}: config-hash none, deployed " in seen[config][1]
    attachments = [p.read_text() for p in (pytester.path / "allure").glob("*-attachment.txt")]
    assert any(f"- {web}: image {old}" in text for text in attachments)  # the diff, attached


def test_with_the_render_cache_warm_a_changed_input_is_still_drift(
    pytester: pytest.Pytester,
    compose_stack: MakeStack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 22: the rendering is kept under a digest of its inputs; a one-byte change of the
    env file, a change of the compose file and a changed process variable each still fail
    the container drift check, with the cache warm."""
    app = compose_stack("app", env_file="APP_IMAGE_TAG=v1.0.0\nGREETING=hi\n",
                        web={"GREETING": "${GREETING}"})  # fmt: skip
    app.up()
    state = tmp_path / "state"
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(deploy_inventory(app, state, ""))
    pytester.makepyfile(test_drift=SUITES["test_drift"])
    monkeypatch.delenv("GREETING", raising=False)
    containers = "test_containers_as_declared"

    assert drift_run(pytester)[containers][0] == "passed"  # cold: renders and keeps it
    entry = state / "rendered" / "app.json"
    kept = json.loads(entry.read_text())
    assert set(kept) == {"key", "services", "hashes"}
    assert "environment" not in kept["services"]["web"]  # values may be secrets: not kept
    written = entry.stat().st_mtime_ns
    assert drift_run(pytester)[containers][0] == "passed"  # warm: nothing rendered or written
    assert entry.stat().st_mtime_ns == written

    env_file = app.run_dir / ".env"
    env_file.write_text("APP_IMAGE_TAG=v1.0.0\nGREETING=ho\n")  # one byte
    status, message = drift_run(pytester)[containers]
    assert status == "failure", message
    assert "environment GREETING differs from the declared value" in message
    env_file.write_text("APP_IMAGE_TAG=v1.0.0\nGREETING=hi\n")
    assert drift_run(pytester)[containers][0] == "passed"

    compose_file = app.run_dir / "compose.yaml"
    original = compose_file.read_text()
    compose_file.write_text(original.replace("GREETING: ${GREETING}", "GREETING: hello"))
    status, message = drift_run(pytester)[containers]
    assert status == "failure", message
    assert "environment GREETING differs from the declared value" in message
    compose_file.write_text(original)
    assert drift_run(pytester)[containers][0] == "passed"

    monkeypatch.setenv("GREETING", "from-the-shell")  # the process wins over the env file
    status, message = drift_run(pytester)[containers]
    assert status == "failure", message
    assert "environment GREETING differs from the declared value" in message


def test_hashes_computed_from_the_rendering_are_composes_and_believed_only_where_proven(
    compose_stack: MakeStack,
) -> None:
    """Issue 22: a cold drift scan computes each service's Compose hash from the rendering
    it already has, instead of a second Compose process per stack, and believes it only
    where a container's own label equals it. Shown with what Go's JSON writes unlike
    Python's (<, >, &, U+2028, a float, a null), a literal $ (the rendering writes $$), what
    Compose leaves out of its hash (depends_on, deploy.replicas, pull_policy), a one-off
    container, and env_file: (`config --hash` counts it, `up` and the rendering read it in:
    there the computed hash is the label and `config --hash` is not)."""
    app = compose_stack(
        "app",
        env_file="APP_IMAGE_TAG=v1.0.0\nGREETING=hi\n",
        web={"NOTE": "a<b && c>d\u2028", "GREETING": "${GREETING}", "EMPTY": None,
             "PRICE": "5$$ a $$$$b"},
        worker={},
        side={},
        compose={
            "web": {"depends_on": ["worker"], "labels": {"team": "ops$$1"}},
            "worker": {"pull_policy": "never", "deploy": {
                "replicas": 1, "resources": {"limits": {"cpus": "0.5", "memory": "16M"}}}},
            "side": {"env_file": ["side.env"]},
        },
    )  # fmt: skip
    (app.run_dir / "side.env").write_text("SIDE=1\n")
    app.up()
    app.compose("run", "-d", "--no-deps", "worker", "sleep", "60")  # a one-off container
    rendered = json.loads(app.compose("config", "--format", "json").stdout)["services"]

    def composes_hashes() -> dict[str, str]:
        lines = app.compose("config", "--hash", "*").stdout.splitlines()
        return dict(line.split() for line in lines)

    composes = composes_hashes()
    computed = {name: computed_service_hash(service) for name, service in rendered.items()}
    assert computed["web"] == composes["web"]
    assert computed["worker"] == composes["worker"]
    assert computed["side"] != composes["side"]  # config --hash counts env_file: itself
    containers = HostContainers(Host(name="here", spec="local://")).projects()[app.project]
    assert [c.labels.get(ONEOFF_LABEL) for c in containers].count("True") == 1
    labels = {c.service: c.labels[HASH_LABEL] for c in containers if ONEOFF_LABEL not in c.labels
              or c.labels[ONEOFF_LABEL] != "True"}  # fmt: skip
    assert labels == {**composes, "side": computed["side"]}  # what `up` wrote
    assert proven_hashes(rendered, containers) == labels
    without_side = [c for c in containers if c.service != "side"]
    assert proven_hashes(rendered, without_side) == {  # a service with no container: none
        "web": composes["web"], "worker": composes["worker"]}  # fmt: skip

    # The env file changed and nothing was recreated: web's label no longer proves what is
    # computed, so nothing computed is believed; Compose's hashes tell the drift, and the
    # environment compared names GREETING only: PRICE's $ is the same on both sides.
    (app.run_dir / ".env").write_text("APP_IMAGE_TAG=v1.0.0\nGREETING=ho\n")
    changed = json.loads(app.compose("config", "--format", "json").stdout)["services"]
    assert computed_service_hash(changed["web"]) != composes["web"]
    assert proven_hashes(changed, without_side) is None
    inspect = HostEngine(Host(name="here", spec="local://")).inspect
    lines = container_drift(changed, containers, composes_hashes(), inspect)
    assert lines == [f"{app.project}-web-1: environment GREETING differs from the declared value"]


def test_a_service_with_an_env_file_is_in_sync_after_a_deploy_and_its_change_is_drift(
    pytester: pytest.Pytester, compose_stack: MakeStack, tmp_path: Path
) -> None:
    """Compose's `config --hash` counts a service's env_file: itself, while `up` writes the
    hash of the service with those variables read in: recorded from `config --hash`, every
    such service read as "recreated by hand" right after a deploy. Recorded from the labels
    `up` wrote, it is in sync; a change of that file applied by hand is still drift."""
    app = compose_stack("app", compose={"web": {"env_file": ["web.env"]}})
    (app.run_dir / "web.env").write_text("COLOUR=blue\n")
    app.up()
    state = tmp_path / "state"
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(deploy_inventory(app, state, ""))
    pytester.makepyfile(test_smoke=SUITES["test_smoke"], test_drift=SUITES["test_drift"])
    deploy(pytester, "v2.0.0").assert_outcomes(passed=2)
    config, containers = "test_config_as_deployed", "test_containers_as_declared"
    seen = drift_run(pytester)
    assert seen[config] == ("passed", ""), seen[config]
    assert seen[containers] == ("passed", ""), seen[containers]

    (app.run_dir / "web.env").write_text("COLOUR=red\n")
    app.compose("up", "-d", "--wait")
    status, message = drift_run(pytester)[config]
    assert status == "failure", message
    assert f"- {app.container('web')}: config-hash " in message
    assert "recreated by hand" in message
