"""Fail when the repository holds a secret that the reviewed baseline does not list.

``detect-secrets scan`` finds candidates (keywords, high-entropy strings, credentials in
URLs); ``.secrets.baseline`` lists the ones reviewed as fake (test fixtures). A finding
is new when its (file, hashed secret) pair is not in the baseline: line numbers are not
compared, so moving a fake test secret does not fail the build, adding a real one does.
Refresh the baseline after review: ``python scripts/secret_scan.py --refresh``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXCLUDE = (
    r"(^|/)(\.venv|build|node_modules|\.tools|allure-report|allure-results)/"
    r"|^\.secrets\.baseline$"  # its own hashes look like secrets
)


def findings(data: dict[str, object]) -> set[tuple[str, str]]:
    results = data.get("results") or {}
    assert isinstance(results, dict)
    return {(file, item["hashed_secret"]) for file, items in results.items() for item in items}


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "detect_secrets", "scan", "--exclude-files", EXCLUDE],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    if sys.argv[1:] == ["--refresh"]:  # after reviewing that every finding is a fake
        (root / ".secrets.baseline").write_text(done.stdout)
        return 0
    baseline = json.loads((root / ".secrets.baseline").read_text())
    scan = json.loads(done.stdout)
    new = findings(scan) - findings(baseline)
    for file, hashed in sorted(new):
        [item] = [i for i in scan["results"][file] if i["hashed_secret"] == hashed][:1]
        where = f"{file}:{item['line_number']}"
        print(f"{where}: possible secret ({item['type']}), not in the baseline")
    if new:
        print(f"{len(new)} possible secret(s): remove, or review and refresh .secrets.baseline")
        return 1
    print(f"secret scan: {len(findings(scan))} findings, all reviewed in .secrets.baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
