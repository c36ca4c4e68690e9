"""Deploy as a fixture on the real Docker engine: the seed 002 scenarios (DEP-1, -2, -4, -9)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deployproof.deploy.history import History
from pytest_deployproof.observe.stackfiles import env_value, set_env_value
from tests.support.compose import ComposeStack
from tests.support.deploying import (
    SLOW_CHECK,
    container,
    deploy,
    history_lines,
    start_deploy,
    wait_for,
)
from tests.support.repo import SUITES

MakeStack = Callable[..., ComposeStack]


def test_the_seed_002_scenarios(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path], bad_image: str
) -> None:
    app, state = deploy_project
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    env_file = app.run_dir / ".env"

    # 1. A normal deploy: v1 -> v2, verified and recorded.
    result = deploy(pytester, "v2.0.0")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*deployproof deploy*", "app: v2.0.0 deployed and verified"])
    assert env_file.read_text() == "APP_IMAGE_TAG=v2.0.0\n"
    running = container(app)
    assert running["image"].endswith(":v2.0.0")
    assert running["health"] == "healthy"
    [(action, version, status, notes)] = history_lines(state)
    assert (action, version, status) == ("deploy", "v2.0.0", "success")
    assert re.fullmatch(r"backup \d{8}T\d{6}Z", notes), notes

    # 2. v3 whose image does not exist: refused before anything changed.
    result = deploy(pytester, "v3.0.0")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "DEPLOY FAILED: deploy of app v3.0.0 refused, nothing changed: "
            "deployproof-demo/busybox:v3.0.0 is not on host here*"
        ]
    )
    assert env_file.read_text() == "APP_IMAGE_TAG=v2.0.0\n"
    assert container(app) == running  # the same container, untouched, still healthy
    assert history_lines(state)[-1][:3] == ("deploy", "v3.0.0", "fail")

    # 3. v4 starts but fails its health check: rolled back to v2, verified, recorded.
    result = deploy(pytester, bad_image)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "app: v4.0.0 failed (1 checks failed: test/platform/app/health); "
            "rolled back to v2.0.0, verified"
        ]
    )
    assert env_file.read_text() == "APP_IMAGE_TAG=v2.0.0\n"
    after = container(app)
    assert after["image"].endswith(":v2.0.0")
    assert after["health"] == "healthy"
    assert history_lines(state)[-2:] == [
        ("deploy", "v4.0.0", "fail", "1 checks failed: test/platform/app/health"),
        (
            "rollback",
            "v2.0.0",
            "success",
            "after v4.0.0: 1 checks failed: test/platform/app/health",
        ),
    ]
    answer = subprocess.run(
        ["wget", "-q", "-O", "-", f"{app.url}/cgi-bin/health"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert answer.stdout.strip() == "ok"


def test_a_live_lock_refuses_the_deploy_and_a_dead_ones_is_reclaimed(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path]
) -> None:
    app, state = deploy_project
    (state / "locks").mkdir(parents=True)
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])

    def lease(pid: int) -> None:
        (state / "locks" / "app.lease").write_text(
            json.dumps(
                {
                    "stack": "app",
                    "owner": "ops@here",
                    "hostname": os.uname().nodename,
                    "pid": pid,
                    "run_id": "other-run",
                    "acquired_at": time.time(),
                    "expires_at": time.time() + 600,
                }
            )
        )

    lease(os.getpid())  # alive: this test process
    result = deploy(pytester, "v2.0.0")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "DEPLOY FAILED: deploy of app v2.0.0 refused, nothing changed: stack app is being "
            f"deployed by ops@here (pid {os.getpid()}, run other-run)*"
        ]
    )
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"

    dead = subprocess.Popen(["true"])
    dead.wait()
    lease(dead.pid)
    result = deploy(pytester, "v2.0.0")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            f"app: reclaimed the lease of ops@here (pid {dead.pid}, run other-run)*: "
            f"its process {dead.pid} is gone"
        ]
    )
    assert not (state / "locks" / "app.lease").exists()  # released after the run


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TAG=v1\nOTHER=x\n", "TAG=v2\nOTHER=x\n"),
        ("# comment\nexport TAG=v1\n", "# comment\nexport TAG=v2\n"),
        ("OTHER=x", "OTHER=x\nTAG=v2\n"),
        ("", "TAG=v2\n"),
        ("TAGS=keep\nTAG = v1\n", "TAGS=keep\nTAG=v2\n"),
        ("TAG=v0\nX=1\nTAG=v1\n", "TAG=v2\nX=1\nTAG=v2\n"),  # Compose reads the last
        ("TAG=a\n  TAG=b\n", "TAG=v2\n  TAG=v2\n"),  # indented, dotenv still reads it
    ],
)
def test_set_env_value_touches_only_the_tag_line(text: str, expected: str) -> None:
    assert set_env_value(text, "TAG", "v2") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TAG=v1.2.0  # pinned\n", "v1.2.0"),
        ("TAG='v1.2.0' # quoted\n", "v1.2.0"),
        ('export TAG="v1.2.0"\n', "v1.2.0"),
        ("TAG=v0\nTAG=v1\n", "v1"),
        ("TAGS=v9\n", None),
    ],
)
def test_env_value_reads_the_tag_as_compose_does(text: str, expected: str | None) -> None:
    assert env_value(text, "TAG") == expected


def test_deploy_needs_an_environment_and_grouped_workers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--deploy", "v1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--deploy needs --env*"])


def test_two_concurrent_deploys_of_one_stack_never_both_proceed(
    pytester: pytest.Pytester, deploy_project: tuple[ComposeStack, Path]
) -> None:
    app, _ = deploy_project
    # The first run's test holds the stack until the second run has finished (or 120 s).
    hold = (
        "deadline = time.monotonic() + 120\n"
        "    while not pathlib.Path('release').exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.1)"
    )
    pytester.makepyfile(test_slow=SLOW_CHECK.replace("time.sleep(60)", hold))

    first = start_deploy(pytester, "v2.0.0")
    wait_for(pytester.path / "started")
    second = start_deploy(pytester, "v1.0.0")  # while the first holds the stack
    second_output, _ = second.communicate(timeout=120)
    (pytester.path / "release").write_text("done")
    first_output, _ = first.communicate(timeout=120)

    assert first.returncode == 0, first_output
    assert "app: v2.0.0 deployed and verified" in first_output
    assert second.returncode != 0
    assert (
        "DEPLOY FAILED: deploy of app v1.0.0 refused, nothing changed: stack app is being "
        "deployed by" in second_output
    )
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v2.0.0\n"


def test_manual_rollback_by_list_last_good_and_version(
    pytester: pytest.Pytester,
    deploy_project: tuple[ComposeStack, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pytest_deployproof.ops.cli import main

    app, state = deploy_project
    pytester.makepyfile(test_smoke=SUITES["test_smoke"])
    History(state / "deploy-history.log").record("app", "test", "deploy", "v1.0.0", "success")
    deploy(pytester, "v2.0.0").assert_outcomes(passed=2)
    capsys.readouterr()
    args = ["--env", "test", "--inventory", str(pytester.path / "inventories"), "app"]

    assert main(["rollback", *args, "--list"]) == 0
    assert capsys.readouterr().out == "v2.0.0  (running)\nv1.0.0\n"

    assert main(["rollback", *args, "--last-good"]) == 0
    assert capsys.readouterr().out == "app: rolled back to v1.0.0, verified\n"
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"
    assert container(app)["image"].endswith(":v1.0.0")

    assert main(["rollback", *args, "v9.9.9"]) == 1  # no such image: refused, nothing changed
    assert "rollback of app v9.9.9 refused, nothing changed" in capsys.readouterr().err
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v1.0.0\n"

    assert main(["rollback", *args, "v2.0.0"]) == 0
    assert (app.run_dir / ".env").read_text() == "APP_IMAGE_TAG=v2.0.0\n"
    assert history_lines(state)[-3:] == [
        ("rollback", "v1.0.0", "success", "by hand"),
        (
            "rollback",
            "v9.9.9",
            "fail",
            "deployproof-demo/busybox:v9.9.9 is not on host here (a name without a registry host "
            "is not looked up in Docker Hub; write docker.io/... or set the host's "
            "short_image_names: docker.io to allow it)",
        ),
        ("rollback", "v2.0.0", "success", "by hand"),
    ]
    with pytest.raises(SystemExit):
        main(["rollback", *args])  # none of VERSION, --list, --last-good
