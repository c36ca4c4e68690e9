"""Drift scan of many running stacks: wall time and Docker API calls (issue #6).

STACKS Compose projects of 3 busybox services each run on this engine, recorded as
deployed (what a deploy records). Then `pytest -m drift` judges every stack
(config as deployed, containers as declared), in process, and reports:
wall time, Docker API calls made by deployproof (container listings and
inspects, counted on the Docker SDK's API client), and Compose invocations.

Needs the demo image (demo/image/build.sh v1.0.0).
The scan runs three times: cold (nothing rendered is kept yet: every stack is rendered,
four at a time), then warm twice (the renderings are kept in the state directory under a
digest of their inputs, which have not changed).

Usage: python benchmarks/drift_scan.py [--stacks 50] [--check]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from common import compose_binary
from docker.api.client import APIClient

from pytest_deployproof.inventory.load import load_environment
from pytest_deployproof.observe.drift import record_deployed
from pytest_deployproof.reach.hosts import HostAccess

REPO = Path(__file__).resolve().parent.parent
BUNDLED_DRIFT = REPO / "pytest_deployproof" / "suites" / "test_drift.py"

# One shared network: the engine's default address pools hold ~30 networks, and Compose
# 2.40 exits 0 when it cannot create one (the containers are then simply missing).
NETWORK = "deployproof-drift-bench"
COMPOSE = f"""\
services:
  web: {{image: "deployproof-demo/busybox:${{TAG}}", command: ["sleep", "3600"]}}
  worker: {{image: "deployproof-demo/busybox:${{TAG}}", command: ["sleep", "3600"]}}
  jobs: {{image: "deployproof-demo/busybox:${{TAG}}", command: ["sleep", "3600"]}}
networks:
  default: {{name: {NETWORK}, external: true}}
"""


class Counter:
    """Counts the Docker Engine API requests of this process (docker-py's APIClient)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def install(self) -> None:
        original = APIClient._get
        counter = self

        def counted(client: APIClient, url: str, **kwargs: object) -> object:
            path = url.split("/v1.", 1)[-1].split("/", 1)[-1].split("?", maxsplit=1)[0]
            key = "containers/json" if path == "containers/json" else path.split("/")[0] + "/..."
            counter.calls[key] = counter.calls.get(key, 0) + 1
            return original(client, url, **kwargs)

        APIClient._get = counted  # type: ignore[method-assign]


def count_compose() -> list[tuple[str, ...]]:
    """Every Compose command deployproof runs from now on (the rendering is what costs)."""
    calls: list[tuple[str, ...]] = []
    original = HostAccess.compose

    def counted(self: HostAccess, stack: object, *args: str, **kwargs: object) -> object:
        calls.append(args)
        return original(self, stack, *args, **kwargs)  # type: ignore[arg-type]

    HostAccess.compose = counted  # type: ignore[method-assign,assignment]
    return calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stacks", type=int, default=50)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    compose = compose_binary()
    root = Path(tempfile.mkdtemp(prefix="deployproof-drift-"))
    names = [f"dr{n:03d}" for n in range(args.stacks)]
    lines = ["hosts: {here: {spec: 'local://'}}", "layers: {apps: {order: 2, engine: compose}}",
             f"state_dir: {root / 'state'}", "stacks:"]  # fmt: skip
    for name in names:
        (root / name).mkdir()
        (root / name / "compose.yaml").write_text(COMPOSE)
        (root / name / ".env").write_text("TAG=v1.0.0\n")
        lines.append(
            f"  {name}: {{layer: apps, host: here, run_dir: {root / name}, image_tag_var: TAG, "
            "services: {web: {}, worker: {}, jobs: {}}}"
        )
    (root / "inventories").mkdir()
    (root / "inventories" / "bench.yml").write_text("\n".join(lines) + "\n")
    (root / "test_drift.py").write_text(BUNDLED_DRIFT.read_text())

    def up(name: str) -> None:
        subprocess.run([compose, "-p", name, "up", "-d", "--quiet-pull"], cwd=root / name,
                       check=True, capture_output=True)  # fmt: skip

    subprocess.run(["docker", "network", "create", NETWORK], capture_output=True, check=False)
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(up, names))
    took = time.monotonic() - started
    print(f"{args.stacks} stacks, {3 * args.stacks} containers up in {took:.0f} s")
    try:
        inventory = load_environment(root / "inventories", "bench")
        access = HostAccess(inventory.hosts["here"])
        for stack in inventory.stacks.values():
            record_deployed(inventory.state, stack, access, "v1.0.0", "TAG=v1.0.0\n")

        counter = Counter()
        counter.install()
        renders = count_compose()
        figures = {}
        for label in ("cold", "warm", "warm again"):
            counter.calls.clear()
            renders.clear()
            started = time.monotonic()
            # hypothesis is our dev tool, not a user's plugin (benchmarks/common.py)
            code = pytest.main(
                [str(root / "test_drift.py"), "--rootdir", str(root), "--env", "bench",
                 "--inventory", str(root / "inventories"), "-m", "drift", "-q",
                 "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-k", "not parity"]
            )  # fmt: skip
            elapsed = time.monotonic() - started
            figures[label] = elapsed
            if int(code) != 0:
                sys.exit(f"the {label} drift scan exited {int(code)}")
            api = sum(counter.calls.values())
            print(f"{label}: drift scan of {args.stacks} stacks ({3 * args.stacks} containers): "
                  f"{elapsed:.2f} s; Compose invocations: {len(renders)}; Docker API calls: "
                  f"{api} {dict(sorted(counter.calls.items()))}")  # fmt: skip
        warm = min(figures["warm"], figures["warm again"])
        print(f"cold {figures['cold']:.2f} s (target <= 3 s), warm {warm:.2f} s (target <= 1 s)")
        if args.check and (figures["cold"] > 3 or warm > 1):
            sys.exit(1)
    finally:
        for name in names:
            subprocess.run([compose, "-p", name, "down", "-t", "0"], cwd=root / name,
                           capture_output=True, check=False)  # fmt: skip
        subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
