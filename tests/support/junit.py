"""Reading a pytest run's JUnit XML: each test's outcome, message, properties and time."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    status: str  # passed, failed, error, skipped
    message: str
    properties: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    worker: str | None = None  # the xdist worker, when the caller knows it


def outcomes(report: Path, workers: dict[str, str] | None = None) -> dict[str, Outcome]:
    """Each test case of ``report`` by name; ``workers`` maps names to xdist workers."""
    found: dict[str, Outcome] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        status, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                status = {"failure": "failed"}.get(kind, kind)
                message = (element.get("message") or "") + "\n" + (element.text or "")
        name = case.get("name", "")
        properties = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        worker = (workers or {}).get(name)
        found[name] = Outcome(status, message, properties, float(case.get("time", 0)), worker)
    return found


def workers(output: str) -> dict[str, str]:
    """The xdist worker that ran each test, by test name, from a ``-v`` run's output."""
    found = re.findall(r"\[(gw\d+)\][^\n]*? (?:PASSED|FAILED|ERROR) \S+::(\S+)", output)
    return {test: worker for worker, test in found}
