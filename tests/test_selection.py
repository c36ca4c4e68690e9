"""Selection and parametrisation over the inventory (SEL-1..3), seen through pytest itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_deployproof.inventory.load import load_file
from pytest_deployproof.inventory.selection import select
from pytest_deployproof.xdist_groups import TargetGroups
from tests.support import junit

INVENTORY = """\
hosts:
  # Not ssh:// hosts: a test given the testinfra `host` of an ssh host needs it reachable.
  vps1: {spec: "docker://vps1"}
  vps2: {spec: "docker://vps2"}
layers:
  bootstrap: {order: 1, engine: terraform, path: bootstrap}
  platform: {order: 2, engine: compose, paths: ["libs/**"]}
  data-staging: {order: 3, engine: compose}
stacks:
  postgres:
    layer: platform
    host: vps1
    run_dir: /srv/stacks/postgres
    services: {db: {critical: true}}
    databases: {app: {dbname: app, user: app}, audit: {dbname: audit}}
    paths: ["platform/01.postgres/*"]
  web-seisei:
    layer: platform
    host: vps2
    run_dir: /srv/stacks/web-seisei
    services: {web: {critical: true}, worker: {}}
    endpoints:
      - {url: "http://127.0.0.1:1/health"}
      - {name: home, url: "http://127.0.0.1:1/"}
    paths: ["web/**"]
  etl:
    layer: data-staging
    host: vps1
    run_dir: /srv/stacks/etl
    services: {etl: {}}
    paths: ["data/etl/**"]
skip_paths:
  "bootstrap/**": applied manually
  "finance/**": has its own CI
"""

TESTS = """\
import pytest

def test_stack(stack): pass
def test_service(stack, service): pass
def test_endpoint(endpoint): pass
def test_database(database): pass
def test_layer(layer): pass
def test_host(host): pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "staging.yml").write_text(INVENTORY)
    pytester.makepyfile(test_checks=TESTS)
    return pytester


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:randomly", *args)
    assert result.ret == pytest.ExitCode.OK, "\n".join(result.outlines + result.errlines)
    return [line for line in result.outlines if "::" in line]


def test_each_argument_is_parametrised_with_readable_stable_ids(project: pytest.Pytester) -> None:
    ids = collected(project, "--env", "staging")
    assert ids == [
        # Session-scoped parameters: pytest groups every test of a stack together,
        # stacks in layer order, then the layer and host tests.
        "test_checks.py::test_stack[staging/platform/postgres]",
        "test_checks.py::test_service[staging/platform/postgres/db]",
        "test_checks.py::test_database[staging/platform/postgres/app]",
        "test_checks.py::test_database[staging/platform/postgres/audit]",
        "test_checks.py::test_stack[staging/platform/web-seisei]",
        "test_checks.py::test_service[staging/platform/web-seisei/web]",
        "test_checks.py::test_service[staging/platform/web-seisei/worker]",
        "test_checks.py::test_endpoint[staging/platform/web-seisei/health]",
        "test_checks.py::test_endpoint[staging/platform/web-seisei/home]",
        "test_checks.py::test_stack[staging/data-staging/etl]",
        "test_checks.py::test_service[staging/data-staging/etl/etl]",
        "test_checks.py::test_layer[staging/bootstrap]",
        "test_checks.py::test_layer[staging/platform]",
        "test_checks.py::test_layer[staging/data-staging]",
        "test_checks.py::test_host[staging/vps1]",
        "test_checks.py::test_host[staging/vps2]",
    ]


def test_values_are_the_inventory_models(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_values="""
        def test_values(stack, service, layer, host):
            assert service.name in stack.services
            assert layer.name == stack.layer
            # `host` is the stack's own testinfra host, not testinfra's default.
            assert host.backend.get_pytest_id() == {
                "vps1": "docker://vps1",
                "vps2": "docker://vps2",
            }[stack.host]
        """
    )
    result = project.runpytest("--env", "staging", "test_values.py", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_values[[]staging/platform/web-seisei/worker[]] PASSED*"])


@pytest.mark.parametrize(
    ("args", "stacks"),
    [
        pytest.param(("--stack", "web-*"), {"web-seisei"}, id="stack-glob"),
        pytest.param(("--stack", "etl", "--stack", "postgres"), {"etl", "postgres"}, id="repeat"),
        pytest.param(("--stack", "etl,postgres"), {"etl", "postgres"}, id="comma"),
        pytest.param(("--layer", "data-staging"), {"etl"}, id="layer"),
        pytest.param(("--host", "vps1"), {"postgres", "etl"}, id="host"),
        pytest.param(("--host", "vps1", "--layer", "platform"), {"postgres"}, id="host+layer"),
    ],
)
def test_filters_narrow_the_stacks(
    project: pytest.Pytester, args: tuple[str, ...], stacks: set[str]
) -> None:
    ids = collected(project, "--env", "staging", *args)
    seen = {line.split("/")[-1].rstrip("]") for line in ids if "test_stack[" in line}
    assert seen == stacks


def test_layer_filter_selects_layers_and_narrowed_hosts(project: pytest.Pytester) -> None:
    ids = collected(project, "--env", "staging", "--layer", "platform")
    assert [i for i in ids if "test_layer" in i] == ["test_checks.py::test_layer[staging/platform]"]
    assert [i for i in ids if "test_host" in i] == [
        "test_checks.py::test_host[staging/vps1]",
        "test_checks.py::test_host[staging/vps2]",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--stack", "wbe*"),
            "--stack 'wbe*' is not in this environment: known are etl, postgres, web-seisei",
        ),
        (
            ("--layer", "platfrom"),
            "--layer 'platfrom' is not in this environment: known are "
            "bootstrap, data-staging, platform (did you mean 'platform'?)",
        ),
        (("--host", "vps3"), "--host 'vps3' is not in this environment: known are vps1, vps2"),
    ],
)
def test_a_filter_that_matches_nothing_is_a_usage_error(
    project: pytest.Pytester, args: tuple[str, ...], message: str
) -> None:
    result = project.runpytest("--env", "staging", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in "\n".join(result.errlines)


def test_environment_variable_and_ini_supply_options_with_precedence(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeini("[pytest]\ndeployproof_env = staging\ndeployproof_stacks = etl\n")
    ids = collected(project, "test_checks.py::test_stack")
    assert ids == ["test_checks.py::test_stack[staging/data-staging/etl]"]

    monkeypatch.setenv("DEPLOYPROOF_STACKS", "postgres")
    ids = collected(project, "test_checks.py::test_stack")
    assert ids == ["test_checks.py::test_stack[staging/platform/postgres]"]

    ids = collected(project, "test_checks.py::test_stack", "--stack", "web-seisei")
    assert ids == ["test_checks.py::test_stack[staging/platform/web-seisei]"]

    header = project.runpytest("test_checks.py::test_stack", "--stack", "web-seisei")
    header.stdout.fnmatch_lines(
        [
            "deployproof: env staging (from ini deployproof_env), inventory *inventories "
            "(from default)",
            "deployproof: 1 of 3 stacks, 1 layers, 1 hosts selected",
            "deployproof: stacks web-seisei (from --stack)",
        ]
    )


def test_markers_are_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.preflight
        @pytest.mark.smoke
        @pytest.mark.health
        @pytest.mark.e2e
        @pytest.mark.drift
        @pytest.mark.deploy
        def test_marked(): pass
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.smoke: *", "@pytest.mark.drift: *"])


def test_collection_is_identical_on_every_xdist_worker(project: pytest.Pytester) -> None:
    serial = project.runpytest("--env", "staging", "-p", "no:cacheprovider")
    serial.assert_outcomes(passed=16)
    result = project.runpytest_subprocess(
        "--env", "staging", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider"
    )
    # xdist aborts with "Different tests were collected" if workers disagree.
    result.assert_outcomes(passed=16)
    assert "Different tests were collected" not in result.stdout.str()


def workers_by_target(result: pytest.RunResult) -> dict[str, set[str]]:
    """Which xdist workers ran the tests of each stack (or host, for host tests)."""
    seen: dict[str, set[str]] = {}
    for test, worker in junit.workers(result.stdout.str()).items():
        parts = test.split("[staging/", 1)[1].rstrip("]").split("/")
        key = parts[1] if len(parts) > 1 and parts[0] in ("platform", "data-staging") else parts[0]
        seen.setdefault(key, set()).add(worker)
    return seen


@pytest.mark.parametrize(
    ("group_by", "together"),
    [
        ("stack", [{"postgres"}, {"etl"}, {"web-seisei"}]),
        # (auto groups ssh:// hosts by host: tests/test_ssh_hosts.py, on reachable hosts)
        ("host", [{"postgres", "etl", "vps1"}, {"web-seisei", "vps2"}]),
    ],
)
def test_xdist_loadgroup_keeps_a_stacks_or_hosts_tests_on_one_worker(
    project: pytest.Pytester, group_by: str, together: list[set[str]]
) -> None:
    """pytest 9.2 broke xdist's own loadgroup (pytest-dev/pytest-xdist#1386): tests with
    xdist_group marks are dealt one by one. deployproof's scheduler groups them."""
    result = project.runpytest_subprocess(
        "--env", "staging", "-n", "2", "--dist", "loadgroup", "--group-by", group_by,
        "-v", "-p", "no:cacheprovider",
    )  # fmt: skip
    result.assert_outcomes(passed=16)
    workers = workers_by_target(result)
    for names in together:
        assert len(set().union(*(workers[name] for name in names))) == 1, (names, workers)


def test_target_groups_read_the_target_from_any_node_id(tmp_path: Path) -> None:
    (tmp_path / "staging.yml").write_text(INVENTORY.replace("docker://", "ssh://"))
    selection = select(load_file(tmp_path / "staging.yml"))
    groups = TargetGroups(selection, "stack")
    assert (
        groups.group("t.py::test_stack[staging/platform/web-seisei]") == "stack:staging/web-seisei"
    )
    # a child, another parametrisation joined with "-", the suffix older pytest + xdist add
    assert (
        groups.group("t.py::test_x[staging/platform/web-seisei/home]") == "stack:staging/web-seisei"
    )
    assert groups.group("t.py::test_x[staging/platform/web-seisei-3]") == "stack:staging/web-seisei"
    assert groups.group("t.py::test_x[staging/data-staging/etl]@g") == "stack:staging/etl"
    assert groups.group("t.py::test_host[staging/vps1]") == "host:staging/vps1"
    assert groups.group("t.py::test_layer[staging/bootstrap]") == "layer:staging/bootstrap"
    assert groups.group("t.py::test_layer[staging/platform/vps2]") == "host:staging/vps2"
    assert groups.group("t.py::test_plain") is None
    assert groups.group("t.py::test_other[1-2]") is None
    assert TargetGroups(selection, "auto").group("t.py::test_x[staging/data-staging/etl]") == (
        "host:staging/vps1"
    )


def test_without_an_environment_nothing_changes_but_checks_say_what_they_need(
    pytester: pytest.Pytester,
) -> None:
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "staging.yml").write_text(INVENTORY)
    pytester.makepyfile(
        """
        def test_plain(): pass
        def test_stack(stack): pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_stack checks a deployment, so it needs an environment: pass --env NAME "
            "(known in *inventories: staging)"
        ]
    )


def test_without_an_environment_the_plugin_imports_nothing_heavy(
    pytester: pytest.Pytester,
) -> None:
    """A project's ordinary pytest run pays ~0.05 s for the installed plugin, not ~0.4 s."""
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_was_imported():
            heavy = {"pydantic", "docker", "psycopg", "semver", "filelock"}
            heavy |= {
                f"pytest_deployproof.{name}"
                for name in ("observe.observations", "inventory.model", "deploy.deployer")
            }
            assert sorted(heavy & set(sys.modules)) == []
            assert "pytest_deployproof.plugin" in sys.modules
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_testinfra_keeps_its_own_host_without_an_environment(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_host(host): assert host.backend.get_pytest_id() == 'local'")
    pytester.runpytest().assert_outcomes(passed=1)


def test_a_test_may_not_take_two_child_kinds(project: pytest.Pytester) -> None:
    project.makepyfile(test_both="def test_both(service, endpoint): pass")
    result = project.runpytest("--env", "staging", "test_both.py")
    result.stdout.fnmatch_lines(["*a test may take only one of service, endpoint, database*"])
    assert result.ret != pytest.ExitCode.OK
