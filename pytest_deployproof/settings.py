"""Command-line options, ini keys and environment variables, resolved once.

Precedence is CLI > environment variable > ini > default, and every value
remembers where it came from so the report header can say why a run selected
what it selected (pytest-django shows its settings source the same way).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

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
        dest="deployproof_env",
        metavar="NAME",
        help="Environment to check (a file inventories/NAME.yml). Env: DEPLOYPROOF_ENV.",
    )
    group.addoption(
        "--inventory",
        dest="deployproof_inventory",
        metavar="PATH",
        help=f"Inventory file or directory (default: {DEFAULT_INVENTORY}/ under the rootdir).",
    )
    group.addoption(
        "--stack",
        dest="deployproof_stacks",
        action="append",
        metavar="GLOB",
        help="Only stacks whose name matches (repeatable, comma-separated, globs).",
    )
    group.addoption(
        "--layer",
        dest="deployproof_layers",
        action="append",
        metavar="NAME",
        help="Only stacks of these layers (repeatable, comma-separated).",
    )
    group.addoption(
        "--host",
        dest="deployproof_hosts",
        action="append",
        metavar="NAME",
        help="Only stacks on these inventory hosts or host groups (repeatable, comma-separated).",
    )
    group.addoption(
        "--deploy",
        dest="deployproof_deploy",
        metavar="VERSION",
        help="Deploy VERSION to every selected stack before its tests; roll back when any fails.",
    )
    group.addoption(
        "--force",
        dest="deployproof_force",
        metavar="REASON",
        help="Deploy a version its promotion source did not verify; REASON goes into the history.",
    )
    group.addoption(
        "--lock-wait",
        dest="deployproof_lock_wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="How long a deploy waits for another run's lock on a stack (default 0: refuse).",
    )
    group.addoption(
        "--changed-since",
        dest="deployproof_changed_since",
        metavar="REV",
        help="Only stacks whose paths changed since git revision REV (merge base to work tree).",
    )
    group.addoption(
        "--suite",
        dest="deployproof_suites",
        action="append",
        metavar="NAME",
        help="Run the E2E suite suites/e2e/NAME (repeatable, comma-separated; 'all': every "
        "one) instead of the other checks. E2E suites run only when named.",
    )
    group.addoption(
        "--ordered",
        dest="deployproof_ordered",
        action="store_true",
        help="Drift: layers apply in order, so a layer after one that drifted is blocked by it.",
    )
    group.addoption(
        "--parity",
        dest="deployproof_parity",
        metavar="ENV[,ENV]",
        help="Drift: compare the selected stacks and their versions with this environment "
        "(with two names, the one that is not --env).",
    )
    group.addoption(
        "--dashboard",
        dest="deployproof_dashboard",
        metavar="PATH",
        help="Write the run's markdown dashboard to PATH.",
    )
    group.addoption(
        "--group-by",
        dest="deployproof_group_by",
        choices=("auto", "host", "stack"),
        default="auto",
        help="Under xdist (--dist loadgroup), keep each host's or each stack's tests on one "
        "worker; auto (default): by host for ssh hosts (one connection per host), by stack "
        "otherwise. An Ansible inventory is read with testinfra's --ansible-inventory.",
    )
    parser.addini("deployproof_env", "Default environment (like --env).", type="string")
    parser.addini(
        "deployproof_inventory",
        "Inventory file or directory, relative to the ini file.",
        type="string",
    )
    parser.addini("deployproof_stacks", "Stack name globs (like --stack).", type="linelist")
    parser.addini("deployproof_layers", "Layer names (like --layer).", type="linelist")
    parser.addini("deployproof_hosts", "Inventory host names (like --host).", type="linelist")
    parser.addini(
        "deployproof_changed_since", "Git revision (like --changed-since).", type="string"
    )


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
    cli = _split(config.getoption(f"deployproof_{name}"))
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
