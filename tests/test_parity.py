"""Parity between two environments (DRF-4): a version difference is reported, a declared
allowed difference passes, a stack missing in the other environment is named."""

from __future__ import annotations

import pytest

from tests.support.repo import SUITES


def environment(
    pytester: pytest.Pytester, name: str, versions: dict[str, str], allow: str = ""
) -> None:
    lines = [
        "hosts: {here: {spec: 'local://'}}",
        "layers: {apps: {order: 2, engine: compose}}",
        "stacks:",
    ]
    for stack, version in versions.items():
        run_dir = pytester.path / name / stack
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ".env").write_text(f"TAG={version}\n")
        extra = f", parity_allow: [{allow}]" if allow and stack == "api" else ""
        lines.append(
            f"  {stack}: {{layer: apps, host: here, run_dir: ../{name}/{stack}, "
            f"image_tag_var: TAG, services: {{{stack}: {{}}}}{extra}}}"
        )
    (pytester.path / "inventories").mkdir(exist_ok=True)
    (pytester.path / "inventories" / f"{name}.yml").write_text("\n".join(lines) + "\n")


def parity(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    (pytester.path / "test_drift.py").write_text(SUITES["test_drift"])
    return pytester.runpytest_subprocess(
        "--env", "staging", "-m", "drift", "-k", "parity", "-p", "no:cacheprovider", *args
    )


def test_one_version_difference_is_reported_until_it_is_allowed(pytester: pytest.Pytester) -> None:
    environment(pytester, "staging", {"api": "v1.3.0", "web": "v2.0.0", "jobs": "v1.0.0"})
    environment(pytester, "production", {"api": "v1.2.0", "web": "v2.0.0"})

    parity(pytester).assert_outcomes(skipped=3)  # without --parity there is nothing to compare
    result = parity(pytester, "--parity", "staging,production")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "stack api: parity:",
            "- version v1.3.0 in staging, v1.2.0 in production",
            "stack jobs: parity:",
            "- in staging, not in production",
        ]
    )

    environment(pytester, "staging", {"api": "v1.3.0", "web": "v2.0.0"}, allow="version")
    parity(pytester, "--parity", "production").assert_outcomes(passed=2)
