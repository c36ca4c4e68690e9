"""Verified promotion (DEP-5) and idempotent deploys (DEP-7) with real git tags and Docker.

Staging and production are two inventories of the same stack (two Compose projects on
this engine); the images are a test-only name, so retagging them touches no other test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deployproof.deploy.history import History
from tests.support.compose import ComposeStack
from tests.support.deploying import deploy_inventory
from tests.support.repo import SUITES
from tests.test_versions import git, repo_with

MakeStack = Callable[..., ComposeStack]


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


def image_id(image: str) -> str:
    return json.loads(docker("inspect", image))[0]["Id"]


def container_id(app: ComposeStack) -> str:
    return docker("inspect", "--format", "{{.Id}}", app.container("web")).strip()


def test_production_takes_only_what_staging_verified(
    pytester: pytest.Pytester, compose_stack: MakeStack, tmp_path: Path, demo_image: str
) -> None:
    name = f"deployproof-promo-{uuid.uuid4().hex[:6]}"
    for tag in ("v1.0.0", "v2.0.0"):
        docker("tag", f"{demo_image}:{tag}", f"{name}:{tag}")
    own_image = {"web": {"image": f"{name}:${{APP_IMAGE_TAG}}"}}
    staging, production = (
        compose_stack("staging", compose=own_image),
        compose_stack("production", compose=own_image),
    )
    staging.up()
    production.up()
    repo = repo_with(tmp_path / "repo", "v2.0.0")
    pytester.mkdir("inventories")
    for env, app in (("staging", staging), ("production", production)):
        text = deploy_inventory(app, tmp_path / f"state-{env}").replace("  app:\n", "  web:\n")
        text = f"repo: {repo}\n" + text
        if env == "production":
            text = "promotion: {source: staging}\n" + text
        (pytester.path / "inventories" / f"{env}.yml").write_text(text)
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])

    def deploy(env: str, version: str, *extra: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            "--env", env, "--deploy", version, "-m", "smoke", "-p", "no:cacheprovider", *extra
        )

    def history(env: str) -> list[tuple[str, str, str, str]]:
        log = History(tmp_path / f"state-{env}" / "deploy-history.log")
        return [(e.action, e.version, e.status, e.notes) for e in log.entries()]

    before = container_id(production)
    # Not verified in staging yet: refused, production untouched.
    result = deploy("production", "v2.0.0")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*refused, nothing changed: v2.0.0 was never verified in staging (verified there: none)*"]
    )
    assert container_id(production) == before

    # Staging deploys and verifies it; deploying the same again is skipped, nothing recreated.
    deploy("staging", "v2.0.0").assert_outcomes(passed=2)
    staged = container_id(staging)
    result = deploy("staging", "v2.0.0")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["web: v2.0.0 is already deployed (same config hash): skipped, verified"]
    )
    assert container_id(staging) == staged
    assert history("staging")[-1][:3] == ("deploy", "v2.0.0", "success")
    assert history("staging")[-1][3].startswith("skipped: config ")
    # Taken down since (the same files, nothing running): deployed again, not skipped.
    staging.compose("down", "-t", "1")
    result = deploy("staging", "v2.0.0")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["web: v2.0.0 deployed and verified"])

    # DEP-12: the operator sees what staging verified, with each image's identity.
    def verified(env: str) -> list[str]:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "deployproof"), "verified", "--env", env, "web"],
            cwd=pytester.path, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return done.stdout.splitlines()

    # (each proven deploy of it is a record: the first, the skipped one, the one after `down`)
    lines = verified("staging")
    assert len(lines) == 3, lines
    [line] = set(lines)
    assert line.startswith(f"v2.0.0  {name}:v2.0.0 sha256:"), line
    assert verified("production") == []

    # Production of the verified version passes.
    deploy("production", "v2.0.0").assert_outcomes(passed=2)
    assert history("production")[-1][:3] == ("deploy", "v2.0.0", "success")

    # The tag now names other content: refused, unless forced, and the force is recorded.
    context = tmp_path / "other"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {demo_image}:v2.0.0\nLABEL variant=rebuilt\n")
    build = ["docker", "build", "-q", "-t", f"{name}:v2.0.0", str(context)]
    subprocess.run(
        build, check=True, capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"}
    )
    assert image_id(f"{name}:v2.0.0") != image_id(f"{demo_image}:v2.0.0")  # v2.0.0 retagged
    running = container_id(production)
    result = deploy("production", "v2.0.0")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*refused, nothing changed: v2.0.0 is not what staging verified: *:v2.0.0 is sha256:*"]
    )
    assert container_id(production) == running
    result = deploy("production", "v2.0.0", "--force", "hotfix approved by ops")
    result.assert_outcomes(passed=2)
    action, version, status, notes = history("production")[-1]
    assert (action, version, status) == ("deploy", "v2.0.0", "success")
    assert "; forced: hotfix approved by ops (v2.0.0 is not what staging verified: " in notes

    # A version that is not a git tag never reaches production.
    git(repo, "tag", "--delete", "v2.0.0")
    result = deploy("production", "v1.0.0", "--force", "anything")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [f"*refused, nothing changed: v1.0.0 is not a git tag of {repo}: untagged *"]
    )
    # Only the test's own tags (-f: production still runs one of them; the image stays).
    docker("rmi", "-f", f"{name}:v1.0.0", f"{name}:v2.0.0")
