"""Command-line options, ini keys and environment variables, resolved once.

Precedence is CLI > environment variable > ini > default, and every value
remembers where it came from so the report header can say why a run selected
what it selected (pytest-django shows its settings source the same way).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

__all__ = ["Setting", "Settings", "add_options", "resolve"]

T = TypeVar("T")

GROUP = "deployproof"
DEFAULT_INVENTORY = "inventories"


@dataclass(frozen=True)
class Setting(Generic[T]):
    """A resolved value and the place it came from (``--env``, ``DEPLOYPROOF_ENV``, ini, ...)."""

    value: T
    source: str

    def __str__(self) -> str:
        return f"{self.value} (from {self.source})"


@dataclass(frozen=True)
class Settings:
    env: Setting[str | None]
    inventory: Setting[Path]
    stacks: Setting[tuple[str, ...]]
    layers: Setting[tuple[str, ...]]
    hosts: Setting[tuple[str, ...]]
    changed_since: Setting[str | None]
    deploy: Setting[str | None] = Setting(None, "default")
    ansible_inventory: Setting[Path | None] = Setting(None, "default")
    group_by: str = "auto"  # xdist groups: host, stack, or auto (host for ssh hosts)
    lock_wait_s: float = 0.0
    ordered: bool = False
    force: str | None = None  # the reason to deploy what promotion would refuse

    @property
    def active(self) -> bool:
        """The plugin acts only when an environment is chosen."""
        return self.env.value is not None


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "deployproof: prove a deployment is sound")
    group.addoption(
        "--env",
        "--dp-env",
        dest="deployproof_env",
        metavar="NAME",
        help="Environment to check (a file inventories/NAME.yml). Env: DEPLOYPROOF_ENV.",
    )
    group.addoption(
        "--inventory",
        "--dp-inventory",
        dest="deployproof_inventory",
        metavar="PATH",
        help=f"Inventory file or directory (default: {DEFAULT_INVENTORY}/ under the rootdir).",
    )
    group.addoption(
        "--stack",
        "--dp-stack",
        dest="deployproof_stacks",
        action="append",
        metavar="GLOB",
        help="Only stacks whose name matches (repeatable, comma-separated, globs).",
    )
    group.addoption(
        "--layer",
        "--dp-layer",
        dest="deployproof_layers",
        action="append",
        metavar="NAME",
        help="Only stacks of these layers (repeatable, comma-separated).",
    )
    group.addoption(
        "--host",
        "--dp-host",
        dest="deployproof_hosts",
        action="append",
        metavar="NAME",
        help="Only stacks on these inventory hosts or host groups (repeatable, comma-separated).",
    )
    group.addoption(
        "--deploy",
        "--dp-deploy",
        dest="deployproof_deploy",
        metavar="VERSION",
        help="Deploy VERSION to every selected stack before its tests; roll back when any fails.",
    )
    group.addoption(
        "--force",
        "--dp-force",
        dest="deployproof_force",
        metavar="REASON",
        help="Deploy a version its promotion source did not verify; REASON goes into the history.",
    )
    group.addoption(
        "--lock-wait",
        "--dp-lock-wait",
        dest="deployproof_lock_wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="How long a deploy waits for another run's lock on a stack (default 0: refuse).",
    )
    group.addoption(
        "--changed-since",
        "--dp-changed-since",
        dest="deployproof_changed_since",
        metavar="REV",
        help="Only stacks whose paths changed since git revision REV (merge base to work tree).",
    )
    group.addoption(
        "--suite",
        "--dp-suite",
        dest="deployproof_suites",
        action="append",
        metavar="NAME",
        help="Run the E2E suite NAME, the folder NAME in the E2E folder (ini "
        "deployproof_e2e_dir, default suites/e2e) (repeatable, comma-separated; 'all': every "
        "one) instead of the other checks. E2E suites run only when named.",
    )
    group.addoption(
        "--ordered",
        "--dp-ordered",
        dest="deployproof_ordered",
        action="store_true",
        help="Drift: layers apply in order, so a layer after one that drifted is blocked by it.",
    )
    group.addoption(
        "--parity",
        "--dp-parity",
        dest="deployproof_parity",
        metavar="ENV[,ENV]",
        help="Drift: compare the selected stacks and their versions with this environment "
        "(with two names, the one that is not --env).",
    )
    group.addoption(
        "--dashboard",
        "--dp-dashboard",
        dest="deployproof_dashboard",
        metavar="PATH",
        help="Write the run's markdown dashboard to PATH.",
    )
    group.addoption(
        "--group-by",
        "--dp-group-by",
        dest="deployproof_group_by",
        choices=("auto", "host", "stack"),
        default="auto",
        help="Under xdist (--dist loadgroup), keep each host's or each stack's tests on one "
        "worker; auto (default): by host for ssh hosts (one connection per host), by stack "
        "otherwise. An Ansible inventory is read with testinfra's --ansible-inventory.",
    )
    group.addoption(
        "--deployproof-no-builtin",
        dest="deployproof_no_builtin",
        action="store_true",
        help="Do not collect the checks bundled with deployproof (preflight, smoke, health, "
        "drift): only the project's own tests. Env: DEPLOYPROOF_BUILTIN=0; ini: "
        "deployproof_builtin = false.",
    )
    parser.addini("deployproof_env", "Default environment (like --env).", type="string")
    parser.addini(
        "deployproof_builtin",
        "Collect the bundled checks beside the project's tests (default true).",
        type="bool",
        default=True,
    )
    parser.addini(
        "deployproof_inventory",
        "Inventory file or directory, relative to the ini file.",
        type="string",
    )
    parser.addini(
        "deployproof_e2e_dir",
        "Folder of the E2E suites (--suite NAME runs its folder NAME), relative to the "
        "rootdir and inside it (default suites/e2e).",
        type="string",
        default="suites/e2e",
    )
    parser.addini(
        "deployproof_flaky",
        "N/M: a check is flaky when, in N of its last M remembered runs, it passed only after "
        "retries or flipped between pass and fail (as `deployproof serve --flaky`).",
        type="string",
        default="3/10",
    )
    parser.addini("deployproof_stacks", "Stack name globs (like --stack).", type="linelist")
    parser.addini("deployproof_layers", "Layer names (like --layer).", type="linelist")
    parser.addini("deployproof_hosts", "Inventory host names (like --host).", type="linelist")
    parser.addini(
        "deployproof_changed_since", "Git revision (like --changed-since).", type="string"
    )


@dataclass
class SteppedAside:
    """Our option spellings that gave way to the project's own (``--env`` -> ``--dp-env``);
    registered as a plugin object so that pytest_configure finds it again."""

    names: list[str] = field(default_factory=list)


def make_room(parser: pytest.Parser, stepped: SteppedAside) -> None:
    """When the project's conftest adds an option we also spell that way (a hand-written
    ``--env`` is common), ours gives way instead of argparse refusing the whole run; ours
    stay reachable as ``--dp-NAME``.

    pytest adds each option to argparse as it is registered, and a conflict raises there;
    pytest has no public way to rename an option, so the group conftests add to
    (``parser.addoption``) gets an argparse conflict handler that removes the clashing
    spelling from our action, and only from ours: any other clash is still an error."""
    group: Any = getattr(parser._anonymous, "_arggroup", None)
    if group is None:  # an older pytest builds argparse later: no clash handling there
        return

    def give_way(action: argparse.Action, conflicts: list[tuple[str, argparse.Action]]) -> None:
        if any(not str(existing.dest).startswith("deployproof_") for _, existing in conflicts):
            group._handle_conflict_error(action, conflicts)
        for name, existing in conflicts:
            existing.option_strings = [n for n in existing.option_strings if n != name]
            group._option_string_actions.pop(name, None)
            stepped.names.append(name)

    group._handle_conflict_deployproof = give_way
    group.conflict_handler = "deployproof"


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(
        part.strip() for value in values or () for part in value.split(",") if part.strip()
    )


def _pick_text(config: pytest.Config, name: str, flag: str) -> Setting[str | None]:
    cli = config.getoption(f"deployproof_{name}")
    if cli:
        return Setting(cli, flag)
    variable = f"DEPLOYPROOF_{name.upper()}"
    if os.environ.get(variable):
        return Setting(os.environ[variable], variable)
    ini = config.getini(f"deployproof_{name}")
    if ini:
        return Setting(str(ini), f"ini deployproof_{name}")
    return Setting(None, "default")


def _pick_list(config: pytest.Config, name: str, flag: str) -> Setting[tuple[str, ...]]:
    given = config.getoption(f"deployproof_{name}")
    cli = _split(given)
    if given and not cli:  # `--stack "$STACK"` with STACK unset must not select every stack
        raise pytest.UsageError(
            f"{flag} was given an empty value: name at least one (is a CI variable unset?), "
            f"or leave {flag} out to select every one"
        )
    if cli:
        return Setting(cli, flag)
    variable = f"DEPLOYPROOF_{name.upper()}"
    if os.environ.get(variable):
        return Setting(_split([os.environ[variable]]), variable)
    ini = _split(list(config.getini(f"deployproof_{name}")))
    if ini:
        return Setting(ini, f"ini deployproof_{name}")
    return Setting((), "default")


def _inventory(config: pytest.Config) -> Setting[Path]:
    picked = _pick_text(config, "inventory", "--inventory")
    invoked = config.invocation_params.dir
    if picked.value is None:
        return Setting(config.rootpath / DEFAULT_INVENTORY, "default")
    path = Path(picked.value).expanduser()
    if picked.source.startswith("ini") and config.inipath is not None:
        base = config.inipath.parent
    else:
        base = invoked
    return Setting(path if path.is_absolute() else base / path, picked.source)


def _ansible_inventory(config: pytest.Config) -> Setting[Path | None]:
    """testinfra's own --ansible-inventory option (pytest-testinfra defines it), else
    DEPLOYPROOF_ANSIBLE_INVENTORY; the inventory file's ansible_inventory comes after."""
    value = config.getoption("ansible_inventory", None)
    source = "--ansible-inventory"
    if not value and os.environ.get("DEPLOYPROOF_ANSIBLE_INVENTORY"):
        value, source = os.environ["DEPLOYPROOF_ANSIBLE_INVENTORY"], "DEPLOYPROOF_ANSIBLE_INVENTORY"
    if not value:
        return Setting(None, "default")
    path = Path(value).expanduser()
    return Setting(path if path.is_absolute() else config.invocation_params.dir / path, source)


def resolve(config: pytest.Config) -> Settings:
    return Settings(
        env=_pick_text(config, "env", "--env"),
        inventory=_inventory(config),
        stacks=_pick_list(config, "stacks", "--stack"),
        layers=_pick_list(config, "layers", "--layer"),
        hosts=_pick_list(config, "hosts", "--host"),
        changed_since=_pick_text(config, "changed_since", "--changed-since"),
        deploy=Setting(config.getoption("deployproof_deploy"), "--deploy"),
        ansible_inventory=_ansible_inventory(config),
        group_by=config.getoption("deployproof_group_by", "auto") or "auto",
        lock_wait_s=float(config.getoption("deployproof_lock_wait") or 0.0),
        ordered=bool(config.getoption("deployproof_ordered", False)),
        force=config.getoption("deployproof_force", None),
    )
