"""Hostile inventories (an inventory arrives in a pull request): generated and mutated by
hypothesis, each must load or be refused as an inventory error naming the file, never
another exception, a hang or a memory blow-up.

Mutations: a field set to a hostile value (NUL, look-alike and zero-width characters,
shell metacharacters, `~nosuchuser` paths, regex and glob bombs, infinities, huge or
negative numbers, deep nesting, YAML alias bombs) or to a value of another type, a key
dropped, or the text cut short. At least 1,000 inventories a run (``FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_deployproof.inventory.load import InventoryError, load_file

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))

BASE: dict[str, Any] = {
    "hosts": {"here": {"spec": "local://"}, "box": {"spec": "ssh://deploy@box.internal"}},
    "layers": {"platform": {"order": 2, "engine": "compose", "path": "platform"}},
    "probes": {"tries": 2, "interval_s": 0.2, "deadline_s": 5},
    "image_tag_pattern": r"^v\d+\.\d+\.\d+$",
    "skip_paths": {"docs/**": "documentation"},
    "stacks": {
        "web": {
            "layer": "platform",
            "host": "here",
            "run_dir": "/srv/web",
            "image_tag_var": "TAG",
            "paths": ["web/**"],
            "services": {"web": {"critical": True}},
            "endpoints": [{"name": "home", "url": "http://127.0.0.1:8080/", "json": {"ok": True}}],
            "databases": {
                "main": {
                    "host": "127.0.0.1",
                    "dbname": "app",
                    "user": "app",
                    "password_key": "DB_PASSWORD",
                }
            },
            "runner": {"url": "https://runner.internal", "timeout_s": 60},
        }
    },
}


# Every path to a leaf of BASE: where a mutation lands.
def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        found = [path] if path else []
        for key, value in node.items():
            found += _leaves(value, (*path, key))
        return found
    if isinstance(node, list):
        found = [path]
        for index, value in enumerate(node):
            found += _leaves(value, (*path, index))
        return found
    return [path]


LEAVES = _leaves(BASE)

HOSTILE = [
    "",
    "\x00",
    "web\x00",
    "\uff57\uff45\uff42",  # full-width look-alikes
    "w\u0435b",  # a Cyrillic e
    "web\u200b",
    "-oProxyCommand=id",
    "a b",
    "$(id)",
    "`id`",
    "a;b",
    "~nosuchuser/x",
    "~",
    "../../etc",
    "a{99999999999}",
    "(?=(?=(?=(?=(?=a)))))" * 50,
    "(a+)+$",
    "a[!]",
    "[",
    "**/[",
    "x" * 10_000,
    "http://",
    "ftp://x",
    "http://h:0/",
    "http://h:99999/",
    "ssh://-x@host",
    "ssh://host;id",
    "https://user:pw@h",
    float("inf"),
    float("-inf"),
    float("nan"),
    -1,
    0,
    10**30,
    True,
    None,
    [],
    {},
    [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]],
    {"a": {"b": {"c": {"d": {"e": {"f": {"g": {}}}}}}}},
]


def _set(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = document
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


def _drop(document: dict[str, Any], path: tuple[Any, ...]) -> None:
    node: Any = document
    for step in path[:-1]:
        node = node[step]
    if isinstance(node, dict):
        node.pop(path[-1], None)


ALIAS_BOMB = """
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _refusal(path: Path) -> str | None:
    """The inventory error's text, or ``None`` when the file loads; anything else raises."""
    try:
        load_file(path)
    except InventoryError as exc:
        return str(exc)
    return None


@st.composite
def inventories(draw: st.DrawFn) -> str:
    """An inventory text: BASE with 1-3 mutations, sometimes cut short or alias-bombed."""
    document = yaml.safe_load(yaml.safe_dump(BASE))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(LEAVES))
        action = draw(st.sampled_from(["hostile", "hostile", "type", "drop"]))
        try:
            if action == "hostile":
                _set(document, path, draw(st.sampled_from(HOSTILE)))
            elif action == "type":
                _set(document, path, draw(st.one_of(st.integers(), st.text(max_size=20),
                                                     st.booleans(), st.none())))  # fmt: skip
            else:
                _drop(document, path)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the parent
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    shape = draw(st.sampled_from(["whole", "whole", "whole", "cut", "bomb"]))
    if shape == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif shape == "bomb":
        text = ALIAS_BOMB + text.replace('"ok": true', '"ok": *i').replace("ok: true", "ok: *i")
    return text


@settings(
    max_examples=EXAMPLES,
    deadline=None,  # timed below, per example, with the limit the issue asks for
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(text=inventories())
def test_a_hostile_inventory_loads_or_is_an_inventory_error(
    text: str, tmp_path_factory: Any
) -> None:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "staging.yml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    error = _refusal(path)
    if error is not None:
        assert str(path) in error  # the file is named
    elapsed = time.monotonic() - started
    assert elapsed < 2, f"{elapsed:.1f} s for:\n{text[:500]}"
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, f"memory grew {grown_mib:.0f} MiB for:\n{text[:500]}"


def test_the_unmutated_inventory_loads(tmp_path: Path) -> None:
    """Else every mutation would be refused for the same reason, and nothing tested."""
    path = tmp_path / "staging.yml"
    path.write_text(yaml.safe_dump(BASE))
    assert _refusal(path) is None


@pytest.mark.parametrize("value", [v for v in HOSTILE if isinstance(v, str)])
def test_each_hostile_string_in_each_string_field_is_handled(value: str, tmp_path: Path) -> None:
    """Deterministic companion: every hostile string in every string leaf."""
    for path in LEAVES:
        document = yaml.safe_load(yaml.safe_dump(BASE))
        try:
            _set(document, path, value)
        except (KeyError, IndexError, TypeError):
            continue
        file = tmp_path / "staging.yml"
        file.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        error = _refusal(file)
        if error is not None:
            assert str(file) in error


def test_an_alias_bomb_in_a_probe_s_json_is_refused_with_its_line(tmp_path: Path) -> None:
    text = ALIAS_BOMB + yaml.safe_dump(BASE, sort_keys=False).replace("ok: true", "ok: *i")
    path = tmp_path / "staging.yml"
    path.write_text(text)
    started = time.monotonic()
    error = _refusal(path)
    assert error is not None
    assert "json: over 1000 values or 20 levels deep" in error
    assert "stacks.web.endpoints[0].json" in error
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "spec",
    [
        "ssh://-oProxyCommand=id@host",
        "ssh://host;id",
        "ssh://ho st",
        "ssh://$(id)",
        "ssh://h`id`",
        "ssh://h:0",
        "ssh://h:99999",
        "paramiko://-x",
        "docker://-c",
        "ansible://a|b",
        "ssh://w\u0435b",  # a Cyrillic e
        "ssh://web\u200b",
        "ssh://h?x=-oProxyCommand=id",
        "ssh://h?x=a;id",
    ],
)
def test_a_host_target_that_could_become_an_option_or_a_command_is_refused(
    spec: str, tmp_path: Path
) -> None:
    path = tmp_path / "staging.yml"
    path.write_text(f"hosts: {{here: {{spec: {json.dumps(spec)}}}}}\nstacks: {{}}\n")
    error = _refusal(path)
    assert error is not None
    assert "hosts.here.spec" in error


@pytest.mark.parametrize(
    "spec",
    [
        "kubectl://web-0?container=nginx&namespace=prod",
        "ansible://all?ansible_inventory=hosts.ini",
        "paramiko://u@h?ssh_identity_file=/k",
        "ssh://deploy@vps1:2222",
        "ssh://[::1]:22",
    ],
)
def test_testinfra_host_specs_with_options_still_load(spec: str, tmp_path: Path) -> None:
    path = tmp_path / "staging.yml"
    path.write_text(f"hosts: {{here: {{spec: {json.dumps(spec)}}}}}\nstacks: {{}}\n")
    assert _refusal(path) is None


@pytest.mark.parametrize(
    ("pattern", "accepted"),
    [
        (r"^(a|a)+$", False),
        (r"^((a+))+$", False),
        (r"^(\d+)+$", False),
        (r"^(v\d+)(\.\d+)*$", True),
        (r"^(?:v\d+\.\d+\.\d+|sha-[0-9a-f]{7,40})$", True),
    ],
)
def test_a_tag_pattern_that_backtracks_is_refused_and_a_sound_one_kept(
    pattern: str, accepted: bool, tmp_path: Path
) -> None:
    path = tmp_path / "staging.yml"
    path.write_text(
        f"image_tag_pattern: {json.dumps(pattern)}\nhosts: {{here: {{spec: 'local://'}}}}\n"
        "stacks: {}\n"
    )
    error = _refusal(path)
    assert (error is None) is accepted, error
    if not accepted:
        assert "matching takes more than 1 s on a 40-character tag" in str(error)
