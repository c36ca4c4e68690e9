"""Allure results an operator wants to read (REP-1), through allure-pytest's own API.

* Labels are set at collection time, as markers allure-pytest reads: parent
  suite = environment, suite = layer, sub suite = stack, feature = check kind,
  tag = host, severity from the inventory's ``critical``.
* A failed check gets what was seen as attachments: the HTTP exchange of a
  failed probe, the state and last log lines of a failed service's containers,
  and the verdict. Deploy phases are steps of the deploy fixture (see
  :mod:`.deploy`), and its backup manifest an attachment there.
* ``environment.properties``, ``executor.json`` and ``categories.json`` are
  written once, by the controller at session end: under xdist each worker may
  have cleaned the directory (``--clean-alluredir``), so nothing earlier
  would survive.

Everything written is masked: attachments when made, and the whole results
directory once more at session end (see :func:`.secrets.mask_files`).
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..targets import Target, target_of
from ..verdicts import Verdict, kind_of

if TYPE_CHECKING:
    from ..run import Run

__all__ = [
    "CATEGORIES",
    "add_labels",
    "alluredir",
    "attach_failure",
    "commit_of",
    "mask_parameter",
    "write_metadata",
]


def _raised_as(verdict: Verdict, exception: str) -> str:
    """Allure matches categories by message only. allure-pytest's message of an error is
    the exception (``…errors.Inconclusive: …``); the terminal's is the verdict's label: both
    are named from the verdict, not written out again here."""
    return rf"(?s).*\b({re.escape(exception)}|{re.escape(verdict.label)})\b.*"


# First match wins (Allure's rule): infrastructure before deploy before product.
CATEGORIES: list[dict[str, Any]] = [
    {
        "name": "Infrastructure unreachable (inconclusive)",
        "matchedStatuses": ["broken", "failed"],
        "messageRegex": _raised_as(Verdict.INCONCLUSIVE, "Inconclusive"),
    },
    {
        "name": "Deployment failed",
        "matchedStatuses": ["broken", "failed"],
        "messageRegex": _raised_as(Verdict.DEPLOY_FAILED, "DeployError"),
    },
    {
        "name": "Drift",
        "matchedStatuses": ["failed"],
        "messageRegex": r"(?s).*\bdrift\b.*",
    },
    {"name": "Product check failed", "matchedStatuses": ["failed"]},
    {"name": "Test broken", "matchedStatuses": ["broken"]},
]


def alluredir(config: pytest.Config) -> Path | None:
    """The results directory when ``--alluredir`` is on, else ``None``."""
    value = getattr(config.option, "allure_report_dir", None)
    return Path(value) if value else None


def _severity(run: Run, target: Target) -> str:
    if not target.stack:
        return "normal"
    stack = run.stack(target.stack)
    if target.kind == "service" and target.name:
        critical = stack.services[target.name].critical
    else:
        critical = any(service.critical for service in stack.services.values())
    return "critical" if critical else "normal"


def _labels(run: Run, target: Target, kind: str | None) -> Iterable[tuple[str, str]]:
    yield "parentSuite", target.environment
    if target.layer:
        yield "suite", target.layer
    if target.stack:
        yield "subSuite", target.stack
    if kind:
        yield "feature", kind
    if target.host:
        yield "tag", target.host
    yield "severity", _severity(run, target)


def add_labels(items: Iterable[pytest.Item], run: Run) -> None:
    for item in items:
        target = target_of(item)
        if target is None:
            continue
        for label_type, value in _labels(run, target, kind_of(item)):
            item.add_marker(pytest.mark.allure_label(value, label_type=label_type))


def attach_failure(item: pytest.Item, run: Run, verdict: str) -> None:
    """Attach what was seen to a failed check: it is what an operator opens first."""
    import allure  # noqa: PLC0415

    masker = run.secrets()
    text = allure.attachment_type.TEXT
    allure.attach(masker(verdict), name="verdict", attachment_type=text)
    target = target_of(item)
    if target is None or not target.stack:
        return
    try:
        if target.kind == "endpoint":
            from ..observe.probes import exchange  # noqa: PLC0415

            allure.attach(
                exchange(run.observations.probe(target), masker),
                name="HTTP exchange",
                attachment_type=text,
            )
        elif target.kind == "service":
            state = run.observations.service_state(target)
            containers = run.observations.containers(run.stack(target.stack).host)
            parts = [c.describe() for c in state.containers] or ["no container"]
            for container in state.containers:
                parts += ["", f"--- last log lines of {container.name} ---"]
                parts.append(containers.logs(container))
            allure.attach(masker("\n".join(parts)), name="containers", attachment_type=text)
    except Exception as exc:  # an attachment must never turn a verdict into a plugin error
        allure.attach(f"(could not gather details: {exc})", name="details", attachment_type=text)


def mask_parameter(name: str, text: str) -> None:
    import allure  # noqa: PLC0415

    allure.dynamic.parameter(name, text, mode=allure.parameter_mode.MASKED)


def write_metadata(directory: Path, run: Run, version: str | None) -> None:
    """The run's environment, executor and categories, once, by the controller."""
    directory.mkdir(parents=True, exist_ok=True)
    inventory = run.inventory
    properties = {
        "environment": inventory.environment,
        "inventory": str(run.settings.inventory.value),
        "stacks": ",".join(stack.name for stack in run.selection.stacks),
        "deploy.version": version or "(not deploying)",
        "git.sha": commit_of(run) or "unknown",
        "python": platform.python_version(),
    }
    lines = [f"{key}={_escape(value)}" for key, value in properties.items()]
    (directory / "environment.properties").write_text("\n".join(lines) + "\n")
    executor: dict[str, Any] = {"name": "deployproof", "type": "pytest"}
    if os.environ.get("GITHUB_ACTIONS") == "true":
        env = os.environ.get
        repository = f"{env('GITHUB_SERVER_URL', 'https://github.com')}/{env('GITHUB_REPOSITORY')}"
        executor.update(
            name="GitHub Actions",
            type="github",
            buildName=f"{env('GITHUB_WORKFLOW', '')} #{env('GITHUB_RUN_NUMBER', '')}",
            buildUrl=f"{repository}/actions/runs/{env('GITHUB_RUN_ID', '')}",
        )
    (directory / "executor.json").write_text(json.dumps(executor, indent=2) + "\n")
    (directory / "categories.json").write_text(json.dumps(CATEGORIES, indent=2) + "\n")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", " ")


def commit_of(run: Run) -> str | None:
    """The commit under test: ``$GITHUB_SHA`` in Actions, else the inventory's repository."""
    from ..inventory.changes import head_sha  # noqa: PLC0415

    start = run.inventory.repo or Path(str(run.settings.inventory.value)).resolve()
    return os.environ.get("GITHUB_SHA") or head_sha(start if start.is_dir() else start.parent)
