"""The cost of scale: deployproof's collection and run of N stacks x 5 checks vs bare pytest.

For each size, an inventory of N stacks (two services and one endpoint each) and a suite of
five checks per stack that judge the inventory models only (no I/O: this measures the
plugin, its parametrisation and pytest, not the infrastructure), next to a bare pytest file
with the same number of trivial parametrised tests. Each run is its own process; peak RSS is
the child's maximum resident set size.

Usage: python benchmarks/scale.py [--sizes 100,1000,5000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CHILD_ENV, PYTEST

CHECKS = """\
def test_stack_named(stack):
    assert stack.name


def test_stack_has_services(stack):
    assert stack.services


def test_service_declared(stack, service):
    assert service.name in stack.services


def test_endpoint_declared(endpoint):
    assert endpoint.url.startswith("http")


def test_layer_known(stack, layer):
    assert layer.name == stack.layer
"""

BARE = """\
import pytest


@pytest.mark.parametrize("i", range({n}))
def test_nothing(i):
    pass
"""


def write_inventory(directory: Path, stacks: int) -> None:
    lines = [
        "hosts: {here: {spec: 'local://'}}",
        "layers: {platform: {order: 2, engine: compose}}",
        "stacks:",
    ]
    for i in range(stacks):
        lines += [
            f"  s{i:05d}:",
            "    layer: platform",
            "    host: here",
            f"    run_dir: /srv/stacks/s{i:05d}",
            "    services: {web: {critical: true}}",
            f"    endpoints: [{{name: health, url: 'http://127.0.0.1:8080/s{i}'}}]",
        ]
    (directory / "inventories").mkdir()
    (directory / "inventories" / "scale.yml").write_text("\n".join(lines) + "\n")


# A fresh wrapper per measurement: RUSAGE_CHILDREN's maximum covers every child a process
# ever waited for, so measuring in this process would mix the runs up.
WRAPPER = """
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
elapsed = time.perf_counter() - started
if done.returncode:
    sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
print(elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def measure(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=CHILD_ENV,
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr}")
    elapsed, peak_kib = done.stdout.split()
    return float(elapsed), int(peak_kib) / 1024


TARGET = 1.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,4000")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 when a ratio exceeds {TARGET}x"
    )
    args = parser.parse_args()
    missed = False
    pytest = PYTEST
    print(
        f"{'stacks':>7} {'tests':>6} | {'collect':>8} {'total':>7} {'RSS MiB':>8} | "
        f"{'bare collect':>12} {'bare total':>10} {'bare RSS':>8} | time x  RSS x"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="deployproof-scale-") as tmp:
            work = Path(tmp)
            write_inventory(work, size)
            (work / "test_checks.py").write_text(CHECKS)
            (work / "bare").mkdir()
            (work / "bare" / "test_bare.py").write_text(BARE.format(n=5 * size))
            ours = [*pytest, "--env", "scale", "test_checks.py"]
            bare = [*pytest, "bare/test_bare.py"]
            bare_collect, _ = measure([*bare, "--collect-only"], work)
            bare_total, bare_rss = measure(bare, work)
            collect, _ = measure([*ours, "--collect-only"], work)
            total, rss = measure(ours, work)
        print(
            f"{size:>7} {5 * size:>6} | {collect:7.2f}s {total:6.2f}s {rss:8.0f} | "
            f"{bare_collect:11.2f}s {bare_total:9.2f}s {bare_rss:8.0f} | "
            f"{total / bare_total:6.2f} {rss / bare_rss:5.2f}"
        )
        missed = missed or total / bare_total > TARGET or rss / bare_rss > TARGET
    print(f"target: time and RSS ratios <= {TARGET} (issue 22, at 4,000 stacks)")
    if args.check and missed:
        sys.exit("a target was missed")


if __name__ == "__main__":
    main()
