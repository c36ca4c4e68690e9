"""Deploy overhead: deployproof's deploy + verify + rollback vs raw `docker compose up --wait`.

A 2-service busybox stack runs v2.0.0. Then, ROUNDS times each:
  raw:         `docker compose up -d --wait` to v4.0.0, then back to v2.0.0 (just the two
               rollouts, with no checks, no lock and no record);
  deployproof: `pytest --env bench --deploy v4.0.0 -m smoke`: lock, image check, tag, up --wait,
               the smoke checks (v4's health endpoint answers 503, so they fail), rollback to
               v2.0.0, verification of v2, history.
Needs the demo images (demo/image/build.sh v1.0.0 v2.0.0 && demo/image/build.sh --broken v4.0.0).

Usage: python benchmarks/deploy_overhead.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
from pathlib import Path

from common import PYTEST, TWO_SERVICES, compose_binary, run

REPO = Path(__file__).resolve().parent.parent
BUNDLED_SMOKE = REPO / "pytest_deployproof" / "suites" / "test_smoke.py"


INVENTORY = """\
hosts: {{here: {{spec: 'local://'}}}}
layers: {{platform: {{order: 2, engine: compose}}}}
probes: {{tries: 2, interval_s: 0.2, deadline_s: 5}}
state_dir: {state}
stacks:
  app:
    layer: platform
    host: here
    run_dir: {run_dir}
    project: {project}
    image_tag_var: APP_IMAGE_TAG
    services: {{web: {{critical: true}}, worker: {{}}}}
    endpoints: [{{name: health, url: 'http://127.0.0.1:{port}/cgi-bin/health'}}]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--check", action="store_true", help="exit 1 when over 1.1x raw")
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="deployproof-overhead-"))
    stack = work / "app"
    stack.mkdir()
    project = f"overhead{port}"
    (stack / "compose.yaml").write_text(TWO_SERVICES.format(port=port))
    env = stack / ".env"
    (work / "inventories").mkdir()
    (work / "inventories" / "bench.yml").write_text(
        INVENTORY.format(state=work / "state", run_dir=stack, project=project, port=port)
    )
    (work / "test_smoke.py").write_text(BUNDLED_SMOKE.read_text())
    compose = [compose_binary(), "-p", project]
    up = [*compose, "up", "-d", "--wait", "--wait-timeout", "60"]
    try:
        env.write_text("APP_IMAGE_TAG=v2.0.0\n")
        run(up, stack)
        raw, ours = [], []
        for _ in range(args.rounds):
            env.write_text("APP_IMAGE_TAG=v4.0.0\n")
            elapsed = run(up, stack)
            env.write_text("APP_IMAGE_TAG=v2.0.0\n")
            raw.append(elapsed + run(up, stack))
            ours.append(
                run(
                    [
                        *PYTEST,
                        "--env",
                        "bench",
                        "--deploy",
                        "v4.0.0",
                        "-m",
                        "smoke",
                        "test_smoke.py",
                    ],
                    work,
                    expect=1,  # v4 fails its checks, by design
                )
            )
            if env.read_text() != "APP_IMAGE_TAG=v2.0.0\n":
                sys.exit("deployproof did not roll back to v2.0.0")
    finally:
        run([*compose, "down", "-t", "1"], stack, expect=None)
        shutil.rmtree(work, ignore_errors=True)

    raw_median, ours_median = statistics.median(raw), statistics.median(ours)
    print(f"2-service stack, v2.0.0 -> v4.0.0 (fails) -> v2.0.0, median of {args.rounds} rounds")
    print(f"raw docker compose up --wait, twice         {raw_median:6.2f} s  {raw}")
    print(f"deployproof deploy + verify + rollback      {ours_median:6.2f} s  {ours}")
    ratio = ours_median / raw_median
    print(f"ratio: {ratio:.2f}x raw, overhead {100 * (ratio - 1):+.0f}%  (target <= 1.1x)")
    if args.check and ratio > 1.1:
        sys.exit("the target was missed")


if __name__ == "__main__":
    main()
