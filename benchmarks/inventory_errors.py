"""How long an inventory with a mistake in every stack takes to be reported, against the
same inventory without mistakes (issue #19: 2,000 stacks with one typo each took 226 s,
because each error's line composed the YAML again).

Prints both times (median of 3) and their ratio; every error must be reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pytest_deployproof.inventory.load import InventoryError, load_file


def inventory(stacks: int, typo: bool) -> str:
    services = "servces" if typo else "services"
    lines = ["hosts: {here: {spec: 'local://'}}", "stacks:"]
    for i in range(stacks):
        lines += [f"  s{i}:", "    layer: platform", "    host: here",
                  f"    run_dir: /srv/s{i}", f"    {services}: {{web: {{}}}}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def timed(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    try:
        load_file(path)
        errors = 0
    except InventoryError as exc:
        errors = str(exc).count("unknown field 'servces'")
    return time.perf_counter() - started, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        good, bad = Path(tmp) / "good.yml", Path(tmp) / "bad.yml"
        good.write_text(inventory(args.stacks, typo=False))
        bad.write_text(inventory(args.stacks, typo=True))
        valid = statistics.median(timed(good)[0] for _ in range(3))
        runs = [timed(bad) for _ in range(3)]
        broken = statistics.median(seconds for seconds, _ in runs)
        reported = runs[0][1]
    print(f"{args.stacks} stacks, valid: loaded in {valid:.2f} s")
    print(f"{args.stacks} stacks, one typo each: {reported} errors reported in {broken:.2f} s")
    print(f"ratio (errors / valid): {broken / valid:.1f}x")
    assert reported == args.stacks, "every mistake must be reported"


if __name__ == "__main__":
    main()
