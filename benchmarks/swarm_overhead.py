"""Swarm deploy overhead: deployproof's deploy + verify + whole-stack rollback vs raw
`docker stack deploy --detach=false` for the same versions, on a single-node swarm.

A 2-service busybox stack (web with a healthcheck and `failure_action: rollback`, worker)
runs v2.0.0. Then, ROUNDS times each:
  raw:         `docker stack deploy --detach=false` of v4.0.0 (web's health fails: Swarm rolls
               web back by itself, and the command still exits 0), then of v2.0.0 (what a user
               does to put the worker back too);
  deployproof: `pytest --env bench --deploy v4.0.0 -m smoke`: lock, image check, backup, tag,
               stack deploy watched until Swarm says it failed, whole-stack rollback to v2.0.0,
               watched until converged, verified, history.
The swarm is initialised when the engine is not one, and left again at the end.
Needs the demo images (demo/image/build.sh v1.0.0 v2.0.0 && demo/image/build.sh --broken v4.0.0).

Usage: python benchmarks/swarm_overhead.py [--rounds 3] [--check]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PYTEST, compose_binary, run

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pytest_deployproof.orchestrators.swarm import render_for_swarm  # noqa: E402

BUNDLED_SMOKE = REPO / "pytest_deployproof" / "suites" / "test_smoke.py"
TARGET = 1.5  # deployproof may take at most this many times the raw commands

COMPOSE = """\
services:
  web:
    image: deployproof-demo/busybox:${{APP_IMAGE_TAG}}
    ports: [{{target: 8080, published: {port}, mode: host, protocol: tcp}}]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/cgi-bin/health"]
      interval: 1s
      timeout: 2s
      retries: 2
    deploy:
      update_config: {{failure_action: rollback, monitor: 2s, order: stop-first}}
      rollback_config: {{monitor: 2s, order: stop-first}}
  worker:
    image: deployproof-demo/busybox:${{APP_IMAGE_TAG}}
    environment: {{PORT: "8081"}}
    stop_grace_period: 1s
"""

INVENTORY = """\
hosts: {{here: {{spec: 'local://'}}}}
layers: {{platform: {{order: 2, engine: compose}}}}
probes: {{tries: 2, interval_s: 0.2, deadline_s: 20}}
state_dir: {state}
up_timeout_s: 120
stacks:
  app:
    layer: platform
    host: here
    target: swarm
    run_dir: {run_dir}
    project: {project}
    image_tag_var: APP_IMAGE_TAG
    services: {{web: {{critical: true, healthcheck: true}}, worker: {{}}}}
    endpoints: [{{name: health, url: 'http://127.0.0.1:{port}/cgi-bin/health'}}]
"""


def stack_deploy(stack: Path, project: str, version: str) -> float:
    """What a user runs: render with the env file, then `docker stack deploy --detach=false`."""
    (stack / ".env").write_text(f"APP_IMAGE_TAG={version}\n")
    started = time.perf_counter()
    config = subprocess.run(
        [compose_binary(), "config", "--format", "json"],
        cwd=stack, capture_output=True, text=True, check=True,
    )  # fmt: skip
    document, _ = render_for_swarm(json.loads(config.stdout))
    (stack / "rendered.json").write_text(json.dumps(document))
    run(["docker", "stack", "deploy", "--detach=false", "-c", "rendered.json", project], stack)
    return time.perf_counter() - started


def images(project: str) -> set[str]:
    listed = subprocess.run(
        ["docker", "service", "ls", "--filter", f"label=com.docker.stack.namespace={project}",
         "--format", "{{.Image}}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(listed.stdout.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET}x")
    args = parser.parse_args()
    state = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    made = state != "active"
    if made:
        run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], REPO)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="deployproof-swarm-overhead-"))
    stack = work / "app"
    stack.mkdir()
    project = f"swoverhead{port}"
    (stack / "compose.yaml").write_text(COMPOSE.format(port=port))
    (work / "inventories").mkdir()
    (work / "inventories" / "bench.yml").write_text(
        INVENTORY.format(state=work / "state", run_dir=stack, project=project, port=port)
    )
    (work / "test_smoke.py").write_text(BUNDLED_SMOKE.read_text())
    raw: list[float] = []
    ours: list[float] = []
    try:
        stack_deploy(stack, project, "v2.0.0")
        for _ in range(args.rounds):
            bad = stack_deploy(stack, project, "v4.0.0")
            raw.append(bad + stack_deploy(stack, project, "v2.0.0"))
            argv = [*PYTEST, "--env", "bench", "--deploy", "v4.0.0", "-m", "smoke", "test_smoke.py"]
            ours.append(run(argv, work, expect=1))  # v4 fails, by design
            if images(project) != {"deployproof-demo/busybox:v2.0.0"}:
                sys.exit(f"deployproof did not return every service to v2.0.0: {images(project)}")
    finally:
        subprocess.run(["docker", "stack", "rm", project], capture_output=True, check=False)
        if made:
            time.sleep(2)
            leave = ["docker", "swarm", "leave", "--force"]
            subprocess.run(leave, capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)

    raw_median, ours_median = statistics.median(raw), statistics.median(ours)
    ratio = ours_median / raw_median
    print(f"2-service swarm stack, v2.0.0 -> v4.0.0 (fails) -> v2.0.0, median of {args.rounds}")
    print(f"raw docker stack deploy --detach=false, twice  {raw_median:6.2f} s  "
          f"{[round(x, 2) for x in raw]}")  # fmt: skip
    print(f"deployproof deploy + verify + rollback         {ours_median:6.2f} s  "
          f"{[round(x, 2) for x in ours]}")  # fmt: skip
    print(f"ratio: {ratio:.2f}x  (target <= {TARGET}x)")
    if args.check and ratio > TARGET:
        sys.exit(1)


if __name__ == "__main__":
    main()
