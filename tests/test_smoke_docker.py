"""The smoke suite against real Compose stacks on a real Docker engine, one fault at a time."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest

from tests.support.compose import ComposeStack, inventory_yaml
from tests.support.repo import SMOKE_SUITE

MakeStack = Callable[..., ComposeStack]
VERBOSE_LINE = re.compile(r"\S+::test_\w+\[\w+/\w+/(?P<stack>[\w-]+)/\S+\] (?P<outcome>[A-Z]+)")


def run_suite(pytester: pytest.Pytester, stacks: list[ComposeStack]) -> pytest.RunResult:
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(inventory_yaml(stacks))
    pytester.makepyfile(test_smoke=SMOKE_SUITE)
    return pytester.runpytest_subprocess(
        "--env", "test", "-m", "smoke", "-v", "-rs", "-p", "no:cacheprovider"
    )


def outcomes_by_stack(result: pytest.RunResult) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for line in result.outlines:
        found = VERBOSE_LINE.match(line)
        if found:
            seen.setdefault(found["stack"], set()).add(found["outcome"])
    return seen


def test_a_healthy_stack_passes(pytester: pytest.Pytester, compose_stack: MakeStack) -> None:
    app = compose_stack("app", web={}, worker={})
    app.up()
    result = run_suite(pytester, [app])
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_service_running[[]test/platform/app/web[]] PASSED*",
            "*test_service_running[[]test/platform/app/worker[]] PASSED*",
            "*test_endpoint_answers[[]test/platform/app/health[]] PASSED*",
        ]
    )


def test_a_stopped_container_fails_exactly_its_stack(
    pytester: pytest.Pytester, compose_stack: MakeStack
) -> None:
    good = compose_stack("good")
    broken = compose_stack("broken", web={}, worker={})
    good.up()
    broken.up()
    subprocess.run(
        ["docker", "stop", "-t", "1", broken.container("worker")], check=True, capture_output=True
    )

    result = run_suite(pytester, [good, broken])

    assert outcomes_by_stack(result) == {"good": {"PASSED"}, "broken": {"PASSED", "FAILED"}}
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"stack broken (project {broken.project}), service worker: "
            f"{broken.container('worker')}: exited (Exited (*) *): not running*",
        ]
    )


def test_an_unhealthy_service_fails_and_blocks_its_endpoint(
    pytester: pytest.Pytester, compose_stack: MakeStack
) -> None:
    healthcheck = {
        "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/cgi-bin/health"],
        "interval": "1s",
        "retries": 2,
    }
    sick = compose_stack(
        "sick", compose={"web": {"healthcheck": healthcheck}}, web={"HEALTH_STATUS": "503"}
    )
    sick.compose("up", "-d")  # `--wait` would refuse: the point is that it is unhealthy

    result = run_suite(pytester, [sick])

    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            f"stack sick (project {sick.project}), service web: {sick.container('web')}: "
            "running, health unhealthy (*): not healthy*",
            "SKIPPED [[]1[]] test_smoke.py:*: blocked by "
            "test_smoke.py::test_service_running[[]test/platform/sick/web[]]: *not healthy",
        ]
    )


def test_a_503_endpoint_of_a_healthy_service_fails_with_what_was_seen(
    pytester: pytest.Pytester, compose_stack: MakeStack
) -> None:
    app = compose_stack("app", web={"HEALTH_STATUS": "503", "HEALTH_BODY": "database unreachable"})
    app.up()
    result = run_suite(pytester, [app])
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"stack app: GET {app.url}/cgi-bin/health: status 503, expected 200",
            "seen: HTTP 503 in * ms, expected HTTP 200; 2 attempts in * s",
            "body: 'database unreachable\\n'",
        ]
    )


def test_a_missing_stack_says_no_container_exists(
    pytester: pytest.Pytester, compose_stack: MakeStack
) -> None:
    never_started = compose_stack("absent")
    result = run_suite(pytester, [never_started])
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            f"stack absent (project {never_started.project}), service web: service web has no "
            "container (is the stack up?)*",
        ]
    )
    # Nothing of it exists, so nothing is starting: judged on the first look, not after
    # polling until the probe deadline; the endpoint check it blocks reuses that look.
    assert "(after 1 observation in 0." in result.stdout.str()


def test_an_unreachable_engine_is_an_error_not_a_failure(
    pytester: pytest.Pytester, compose_stack: MakeStack
) -> None:
    app = compose_stack("app")
    text = inventory_yaml([app]).replace(
        "here: {spec: 'local://'}", "here: {spec: 'local://', docker_url: 'tcp://127.0.0.1:9'}"
    )
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(text)
    pytester.makepyfile(
        test_smoke=SMOKE_SUITE.replace("def test_endpoint_answers", "def _not_collected")
    )
    result = pytester.runpytest_subprocess("--env", "test")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "INCONCLUSIVE: cannot reach Docker on host 'here' at tcp://127.0.0.1:9: Connection "
            "refused; start the engine or set hosts.here.docker_url in the inventory to where it "
            "listens"
        ]
    )
    assert "Traceback" not in result.stdout.str()
