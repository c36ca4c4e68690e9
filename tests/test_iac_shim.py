"""Layer drift through terraform, tofu and terragrunt (DRF-3), run by a RECORDING SHIM.

terraform, OpenTofu and terragrunt cannot be installed here, so this test puts a
recording shim first on PATH under those three names: a small script that records the
argv it was given, its working directory and when it started and ended, then behaves
like ``plan -detailed-exitcode`` as the test tells it through a file in the layer's
directory (exit 0 in sync; 2 drift, with a plan on stdout; 1 an error). What is proven
is deployproof's side of the contract: the exact command each engine is given, where it
runs, how each exit code is judged, and that layers are planned in parallel. That the
real tools keep this contract is their documentation's word, not this test's.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from tests.support.repo import SUITES

SHIM = """#!{python}
# A recording shim for terraform/tofu/terragrunt (tests/test_iac_shim.py).
import json, os, sys, time
started = time.time()
with open("shim-plan.json") as file:  # in the layer's directory, written by the test
    plan = json.load(file)
time.sleep(plan.get("sleep", 0))
sys.stdout.write(plan.get("stdout", ""))
sys.stderr.write(plan.get("stderr", ""))
record = {{"engine": os.path.basename(sys.argv[0]), "argv": sys.argv[1:], "cwd": os.getcwd(),
          "start": started, "end": time.time()}}
with open({record!r}, "a") as log:
    log.write(json.dumps(record) + "\\n")
sys.exit(plan["exit"])
"""

LAYERS = {  # layer -> (engine, its directory, extra plan arguments)
    "bootstrap": ("terraform", "infra/bootstrap", []),
    "network": ("tofu", "infra/network", ["-lock=false"]),
    "platform": ("terragrunt", "infra/platform", ["--terragrunt-non-interactive"]),
}
DRIFT_PLAN = (
    "  # aws_security_group.web will be updated in-place\n"
    '  ~ ingress = "10.0.0.0/8" -> "0.0.0.0/0"\n'
    "Plan: 0 to add, 1 to change, 0 to destroy.\n"
)


@pytest.fixture
def shim(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The recording shim first on PATH as terraform, tofu and terragrunt; returns the
    file it records each run in. Also writes the inventory of the three layers."""
    bin_dir = tmp_path / "shim-bin"
    bin_dir.mkdir()
    record = tmp_path / "shim-record.jsonl"
    for name in ("terraform", "tofu", "terragrunt"):
        script = bin_dir / name
        script.write_text(SHIM.format(python=sys.executable, record=str(record)))
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    layers = "".join(
        f"  {name}: {{order: {order}, engine: {engine}, path: {path}, args: {json.dumps(args)}}}\n"
        for order, (name, (engine, path, args)) in enumerate(LAYERS.items(), start=1)
    )
    pytester.mkdir("inventories")
    (pytester.path / "inventories" / "test.yml").write_text(
        f"hosts: {{here: {{spec: 'local://'}}}}\nrepo: ..\nlayers:\n{layers}stacks: {{}}\n"
    )
    for _, path, _ in LAYERS.values():
        (pytester.path / path).mkdir(parents=True)
    (pytester.path / "test_drift.py").write_text(SUITES["test_drift"])
    return record


def plan(pytester: pytest.Pytester, layer: str, **behaviour: object) -> None:
    path = pytester.path / LAYERS[layer][1] / "shim-plan.json"
    path.write_text(json.dumps(behaviour))


def run_drift(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--env", "test", "-m", "drift", "-k", "layer", "-p", "no:cacheprovider", "-rA"
    )  # fmt: skip


def records(record: Path) -> dict[str, dict[str, object]]:
    return {r["engine"]: r for r in map(json.loads, record.read_text().splitlines())}


def test_each_engine_gets_its_plan_command_in_its_layer_and_layers_plan_in_parallel(
    pytester: pytest.Pytester, shim: Path
) -> None:
    for layer in LAYERS:
        plan(pytester, layer, exit=0, sleep=1.5)

    run_drift(pytester).assert_outcomes(passed=3)

    seen = records(shim)
    assert set(seen) == {"terraform", "tofu", "terragrunt"}  # each ran once
    for engine, path, args in LAYERS.values():
        assert seen[engine]["argv"] == [
            "plan", "-detailed-exitcode", "-input=false", "-no-color", *args
        ]  # fmt: skip
        assert seen[engine]["cwd"] == str(pytester.path / path)
    starts = [float(r["start"]) for r in seen.values()]  # type: ignore[arg-type]
    ends = [float(r["end"]) for r in seen.values()]  # type: ignore[arg-type]
    assert max(starts) < min(ends), "the three plans did not all run at the same time"
    assert max(ends) - min(starts) < 3.0  # together, not 3 x 1.5 s one after another


def test_in_sync_drift_and_error_are_pass_fail_with_the_plan_and_inconclusive(
    pytester: pytest.Pytester, shim: Path
) -> None:
    plan(pytester, "bootstrap", exit=2, stdout=DRIFT_PLAN)  # terraform: drift
    plan(pytester, "network", exit=1, stderr="Error: Backend initialization required\n")
    plan(pytester, "platform", exit=0, stdout="No changes. Your infrastructure matches.\n")

    result = run_drift(pytester)

    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "layer bootstrap: terraform plan:",
            "- exit code 2",
            "- # aws_security_group.web will be updated in-place",  # (output is stripped)
            '-   ~ ingress = "10.0.0.0/8" -> "0.0.0.0/0"',
            "- Plan: 0 to add, 1 to change, 0 to destroy.",
        ]
    )
    result.stdout.fnmatch_lines(
        ["INCONCLUSIVE: layer network: tofu plan failed: exit code 1",
         "Error: Backend initialization required"]
    )  # fmt: skip
    result.stdout.fnmatch_lines(["PASSED test_drift.py::test_layer_in_sync*platform*"])
    assert set(records(shim)) == {"terraform", "tofu", "terragrunt"}
