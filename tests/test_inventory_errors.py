"""A bad inventory fails fast: exit code 4, `file:line: field: message`, no traceback (INV-6)."""

from __future__ import annotations

import textwrap

import pytest

GOOD = """\
hosts:
  here: {spec: "local://"}
layers:
  platform: {order: 2, engine: compose}
stacks:
  web:
    layer: platform
    host: here
    run_dir: /srv/stacks/web
    services: {web: {critical: true}}
    endpoints:
      - {url: "http://127.0.0.1:8080/health", status: 200}
"""

# (id, a replacement applied to GOOD, line expected, field expected, words expected)
MISTAKES = [
    (
        "missing-field",
        ("    layer: platform\n", ""),
        6,
        "stacks.web.layer",
        "missing required field",
    ),
    ("wrong-type", ("status: 200", "status: abc"), 12, "stacks.web.endpoints[0].status", "integer"),
    (
        "unknown-layer",
        ("layer: platform", "layer: platfrom"),
        7,
        "stacks.web.layer",
        "unknown layer 'platfrom'; known are platform (did you mean 'platform'?)",
    ),
    ("unknown-host", ("host: here", "host: there"), 8, "stacks.web.host", "unknown host 'there'"),
    (
        "duplicate-stack",
        ("stacks:\n", "stacks:\n  web:\n    layer: platform\n"),
        8,
        "(document)",
        "key 'web' is given twice in one mapping (first on line 6)",
    ),
    (
        "bad-host-spec",
        ('spec: "local://"', 'spec: "ftp://here"'),
        2,
        "hosts.here.spec",
        "unknown host scheme 'ftp'",
    ),
    (
        "ssh-without-host",
        ('spec: "local://"', 'spec: "ssh://"'),
        2,
        "hosts.here.spec",
        "names no host",
    ),
    (
        "bad-glob",
        ("    endpoints:", "    paths: ['web/[abc']\n    endpoints:"),
        11,
        "stacks.web.paths",
        "unclosed '['",
    ),
    (
        "yaml-syntax",
        ("services: {web: {critical: true}}", "services: {web: {critical: true}"),
        11,
        "(document)",
        "invalid YAML",
    ),
    (
        "unknown-field",
        ("run_dir:", "rundir:"),
        9,
        "stacks.web.rundir",
        "unknown field 'rundir' (did you mean 'run_dir'?)",
    ),
    (
        "bad-url",
        ("http://127.0.0.1:8080/health", "ftp://127.0.0.1/health"),
        12,
        "stacks.web.endpoints[0].url",
        "is not an http(s):// or tcp:// URL",
    ),
    (
        "unresolvable-host-name",
        ("http://127.0.0.1:8080/health", "http://" + "a" * 64 + ".example/health"),
        12,
        "stacks.web.endpoints[0].url",
        "is not a host name (label empty or too long)",
    ),
    (
        "duplicate-layer-order",
        (
            "  platform: {order: 2, engine: compose}",
            "  platform: {order: 2, engine: compose}\n  apps: {order: 2, engine: compose}",
        ),
        5,
        "layers.apps.order",
        "order 2 is already used by layer 'platform'",
    ),
    (
        "unknown-engine",
        ("engine: compose", "engine: helm"),
        4,
        "layers.platform.engine",
        "Input should be",
    ),
    (
        "no-services",
        ("services: {web: {critical: true}}", "services: {}"),
        10,
        "stacks.web.services",
        "at least 1 item",
    ),
    (
        "bad-stack-name",
        ("  web:\n    layer", "  web/x:\n    layer"),
        6,
        "stacks.web/x.name",
        "should match pattern",
    ),
    (
        "environment-mismatch",
        ("hosts:", "environment: production\nhosts:"),
        1,
        "environment",
        "differs from the file name 'staging'",
    ),
    ("not-a-mapping", (GOOD, "- just\n- a list\n"), 1, "(document)", "got a list"),
    (
        "unknown-endpoint-service",
        ("status: 200}", "status: 200, service: api}"),
        12,
        "stacks.web.endpoints[0].service",
        "unknown service 'api'",
    ),
]


@pytest.mark.parametrize(
    ("replace", "line", "field", "words"),
    [pytest.param(m[1], m[2], m[3], m[4], id=m[0]) for m in MISTAKES],
)
def test_bad_inventory_is_a_usage_error_naming_file_line_and_field(
    pytester: pytest.Pytester, replace: tuple[str, str], line: int, field: str, words: str
) -> None:
    old, new = replace
    assert old in GOOD, "the mistake must change the inventory"
    inventory = pytester.mkdir("inventories")
    (inventory / "staging.yml").write_text(GOOD.replace(old, new, 1))
    pytester.makepyfile("def test_stack(stack): pass")

    result = pytester.runpytest("--env", "staging")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = "\n".join(result.errlines)
    assert f"inventories/staging.yml:{line}: {field}: " in errors
    assert words in errors
    assert "Traceback" not in errors + "\n".join(result.outlines)


def test_every_problem_of_a_file_is_reported_at_once(pytester: pytest.Pytester) -> None:
    bad = GOOD.replace("status: 200", "status: abc").replace("run_dir:", "rundir:")
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "staging.yml").write_text(bad)
    result = pytester.runpytest("--env", "staging")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*staging.yml:6: stacks.web.run_dir: missing required field 'run_dir'*",
            "*staging.yml:9: stacks.web.rundir: unknown field 'rundir' (did you mean 'run_dir'?)",
            "*staging.yml:12: stacks.web.endpoints[[]0[]].status: *integer*",
        ]
    )


def test_unknown_env_lists_the_known_ones(pytester: pytest.Pytester) -> None:
    pytester.mkdir("inventories")
    for env in ("staging", "production"):
        (pytester.path / "inventories" / f"{env}.yml").write_text(GOOD)
    pytester.makepyfile("def test_stack(stack): pass")
    result = pytester.runpytest("--env", "stagin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--env 'stagin' is not in *inventories: known are production, staging"
            " (did you mean 'staging'?)*"
        ]
    )


def test_other_environments_files_are_never_read(pytester: pytest.Pytester) -> None:
    """Isolation (INV-1): a broken production file cannot affect a staging run."""
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "staging.yml").write_text(GOOD)
    (pytester.path / "inventories" / "production.yml").write_text("{{{ not yaml")
    pytester.makepyfile("def test_stack(stack): assert stack.name == 'web'")
    pytester.runpytest("--env", "staging").assert_outcomes(passed=1)


def test_missing_inventory_directory_says_how_to_fix(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_stack(stack): pass")
    result = pytester.runpytest("--env", "staging", "--inventory", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*inventory *nowhere does not exist*--inventory*"])


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(textwrap.dedent("hosts: {}\n"), id="no-hosts"),
    ],
)
def test_degenerate_files(pytester: pytest.Pytester, text: str) -> None:
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "staging.yml").write_text(text)
    result = pytester.runpytest("--env", "staging")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "staging.yml:" in "\n".join(result.errlines)
