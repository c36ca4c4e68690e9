"""Finding and loading inventory files (INV-1, INV-6).

Layout: ``--inventory`` names a file or a directory. In a directory, each
``*.yml``/``*.yaml`` file is one environment, named by the file's stem
(``inventories/staging.yml`` is ``staging``). Only the selected environment's
file is ever read, so a broken or secret-bearing file of another environment
cannot affect a run (environment isolation, docs/requirements.md#inv-1).

Relative paths inside a file (``run_dir``, ``source_dir``, ``repo``) are
relative to that file's directory, as in Compose.

Every problem is reported as ``file:line: field: message`` and all problems of
a file are reported at once, so a user fixes an inventory in one pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import model
from ._yaml import Lines, YamlError, load_yaml
from .ansible import AnsibleError, merge_hosts, read_inventory
from .model import PROJECT_PATTERN, Inventory

__all__ = [
    "InventoryError",
    "Problem",
    "UnknownEnvironmentError",
    "discover",
    "load_environment",
    "load_file",
]

SUFFIXES = (".yml", ".yaml")
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an inventory file, located for a human."""

    path: Path
    line: int | None
    location: Location
    message: str

    @property
    def field(self) -> str:
        out = ""
        for step in self.location:
            out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
        return out or "(document)"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.field}: {self.message}"


class InventoryError(Exception):
    """An inventory that cannot be used; ``str()`` lists every problem, one per line."""

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        self.problems: tuple[Problem, ...] = () if isinstance(problems, str) else tuple(problems)
        text = problems if isinstance(problems, str) else "\n".join(map(str, problems))
        super().__init__(text)


class UnknownEnvironmentError(InventoryError):
    """``--env`` names an environment that has no inventory file."""

    def __init__(self, env: str, source: Path, known: Iterable[str]) -> None:
        names = sorted(known)
        hint = difflib.get_close_matches(env, names, n=1)
        message = f"--env {env!r} is not in {source}: known are {', '.join(names) or '(none)'}"
        if hint:
            message += f" (did you mean {hint[0]!r}?)"
        super().__init__(message)
        self.known = names


def discover(source: Path) -> dict[str, Path]:
    """Map environment names to their inventory files under ``source``."""
    if source.is_file():
        return {source.stem: source}
    if not source.is_dir():
        raise InventoryError(
            f"inventory {source} does not exist: pass --inventory FILE|DIR "
            "or create inventories/<env>.yml"
        )
    return {
        path.stem: path
        for path in sorted(source.iterdir())
        if path.suffix in SUFFIXES and path.is_file() and not path.name.startswith(".")
    }


def load_environment(source: Path, env: str, ansible_inventory: Path | None = None) -> Inventory:
    """Load the inventory of ``env`` from ``source`` (a file or a directory)."""
    files = discover(source)
    if env not in files:
        raise UnknownEnvironmentError(env, source, files)
    return load_file(files[env], ansible_inventory)


def load_file(path: Path, ansible_inventory: Path | None = None) -> Inventory:
    """Parse and validate one inventory file; raise :class:`InventoryError` on any problem.

    ``ansible_inventory`` (else the file's own ``ansible_inventory``) completes its hosts.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InventoryError(f"{path}: the inventory is not UTF-8 text") from None
    try:
        data = load_yaml(text)
    except YamlError as exc:
        raise InventoryError([Problem(path, exc.line, (), str(exc))]) from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        message = f"an inventory is a mapping with hosts, layers and stacks; got {got}"
        raise InventoryError([Problem(path, 1, (), message)])
    data = {"environment": path.stem, **data}
    data = _with_ansible_hosts(path, data, ansible_inventory)
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        lines = Lines(text)
        problems = [_from_pydantic(path, lines, error) for error in exc.errors()]
        raise InventoryError(sorted(problems, key=lambda p: p.line or 0)) from None
    lines = Lines(text)
    problems = [
        Problem(path, lines(location), location, message)
        for location, message in _cross_reference_problems(inventory, path.stem)
    ]
    if problems:
        raise InventoryError(problems)
    try:
        return _resolve_paths(inventory, path.parent.resolve())
    except _PathProblem as exc:
        raise InventoryError([Problem(path, lines(exc.where), exc.where, exc.message)]) from None


def _with_ansible_hosts(
    path: Path, data: dict[str, Any], ansible_inventory: Path | None
) -> dict[str, Any]:
    """``data`` with its hosts completed from the Ansible inventory, if one is named."""
    named = data.get("ansible_inventory")
    if ansible_inventory is None and not (named and isinstance(named, str)):
        return data
    source = ansible_inventory or (path.parent / str(named)).resolve()
    where = "--ansible-inventory" if ansible_inventory else "ansible_inventory"
    try:
        hosts = merge_hosts(data, read_inventory(source))
    except AnsibleError as exc:
        raise InventoryError([Problem(path, None, (where,), str(exc))]) from None
    return {**data, "ansible_inventory": str(source), "hosts": hosts}


class _PathProblem(ValueError):
    def __init__(self, where: Location, message: str) -> None:
        super().__init__(message)
        self.where, self.message = where, message


def _resolve_paths(inventory: Inventory, base: Path) -> Inventory:
    """Make every relative path absolute against the inventory file's directory."""

    def absolute(value: Path, *where: str | int) -> Path:
        if "\x00" in str(value):
            raise _PathProblem(where, "a path cannot hold a NUL byte")
        try:
            value = value.expanduser()
        except RuntimeError:  # ~someone who has no home directory here
            raise _PathProblem(where, f"{str(value)!r}: no such user's home directory") from None
        return value if value.is_absolute() else (base / value).resolve()

    stacks = {
        name: stack.model_copy(
            update={
                "run_dir": absolute(stack.run_dir, "stacks", name, "run_dir"),
                "source_dir": absolute(stack.source_dir, "stacks", name, "source_dir")
                if stack.source_dir
                else None,
                "backup": stack.backup.model_copy(
                    update={
                        "path": str(
                            absolute(Path(stack.backup.path), "stacks", name, "backup", "path")
                        )
                    }
                )
                if stack.backup.path
                else stack.backup,
            }
        )
        for name, stack in inventory.stacks.items()
    }
    hosts = {
        name: host.model_copy(
            update={
                "identity_file": absolute(host.identity_file, "hosts", name, "identity_file")
                if host.identity_file
                else None,
                "ssh_config": absolute(host.ssh_config, "hosts", name, "ssh_config")
                if host.ssh_config
                else None,
            }
        )
        for name, host in inventory.hosts.items()
    }
    repo = absolute(inventory.repo, "repo") if inventory.repo else None
    state = absolute(
        inventory.state_dir or Path(".deployproof") / inventory.environment, "state_dir"
    )
    resolved = inventory.model_copy(
        update={"hosts": hosts, "stacks": stacks, "repo": repo, "state_dir": state}
    )
    resolved._state_dir_given = inventory.state_dir is not None
    return resolved


def _cross_reference_problems(inventory: Inventory, stem: str) -> list[tuple[Location, str]]:
    """What a schema cannot say: names that must refer to things that exist."""
    problems: list[tuple[Location, str]] = []
    if inventory.environment != stem:
        problems.append(
            (
                ("environment",),
                f"{inventory.environment!r} differs from the file name {stem!r}; an environment "
                "is named by its file (rename the file or fix the field)",
            )
        )
    orders: dict[int, str] = {}
    for layer in inventory.layers.values():
        if layer.order in orders:
            problems.append(
                (
                    ("layers", layer.name, "order"),
                    f"order {layer.order} is already used by layer {orders[layer.order]!r}; "
                    "layers apply in a strict order",
                )
            )
        orders.setdefault(layer.order, layer.name)
    projects: dict[tuple[str, str], str] = {}
    for stack in inventory.stacks.values():
        here: Location = ("stacks", stack.name)
        problems += _unknown((*here, "layer"), "layer", stack.layer, inventory.layers)
        problems += _unknown_host(inventory, stack)
        if not PROJECT_PATTERN.match(stack.project_name):
            problems.append(
                (
                    (*here, "project"),
                    f"Compose project name {stack.project_name!r} must be lowercase letters, "
                    "digits, '-' and '_' (set 'project' to such a name)",
                )
            )
        owner = projects.setdefault((stack.host, stack.project_name), stack.name)
        if owner != stack.name:
            problems.append(
                (
                    (*here, "project"),
                    f"Compose project {stack.project_name!r} on host {stack.host!r} is already "
                    f"stack {owner!r}; two stacks would manage the same containers",
                )
            )
        seen: set[str] = set()
        for index, endpoint in enumerate(stack.endpoints):
            at = (*here, "endpoints", index)
            if endpoint.name in seen:
                problems.append(
                    (
                        at,
                        f"endpoint name {endpoint.name!r} is used twice in this stack; "
                        "give each endpoint a distinct 'name'",
                    )
                )
            seen.add(endpoint.name)
            if endpoint.service:
                problems += _unknown((*at, "service"), "service", endpoint.service, stack.services)
        for database in stack.databases.values():
            if database.service:
                at = (*here, "databases", database.name, "service")
                problems += _unknown(at, "service", database.service, stack.services)
        if stack.migration:
            at = (*here, "migration", "service")
            problems += _unknown(at, "service", stack.migration.service, stack.services)
    return problems


def _unknown_host(inventory: Inventory, stack: model.Stack) -> list[tuple[Location, str]]:
    found = _unknown(("stacks", stack.name, "host"), "host", stack.host, inventory.hosts)
    if found and inventory.ansible_inventory:
        return [(found[0][0], f"{found[0][1]}; nor is it in {inventory.ansible_inventory}")]
    return found


def _unknown(
    location: Location, kind: str, name: str, known: dict[str, Any]
) -> list[tuple[Location, str]]:
    if name in known:
        return []
    message = f"unknown {kind} {name!r}; known are {', '.join(sorted(known)) or '(none)'}"
    hint = difflib.get_close_matches(name, list(known), n=1)
    if hint:
        message += f" (did you mean {hint[0]!r}?)"
    return [(location, message)]


def _all_field_names() -> set[str]:
    names: set[str] = set()
    for value in vars(model).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            for field_name, info in value.model_fields.items():
                names.add(info.alias or field_name)
    return names


_SECRET_HINTS = ("password", "secret", "token", "key", "dsn")


def _from_pydantic(path: Path, lines: Lines, error: Any) -> Problem:
    location: Location = tuple(error["loc"])
    kind = error["type"]
    last = str(location[-1]) if location else ""
    if kind == "missing":
        message = f"missing required field {last!r}"
        if location[:1] == ("hosts",) and last == "spec":
            message += " (or take the host from an Ansible inventory: ansible_inventory)"
        line = lines(location[:-1])
    elif kind == "extra_forbidden":
        message = f"unknown field {last!r}"
        hint = difflib.get_close_matches(last, sorted(_all_field_names()), n=1)
        if hint:
            message += f" (did you mean {hint[0]!r}?)"
        line = lines(location)
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        secret_looking = any(hint in last.lower() for hint in _SECRET_HINTS)
        if isinstance(value, str | int | float | bool) and not secret_looking:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            if shown not in message:
                message += f" (got {shown})"
        line = lines(location)
    return Problem(path, line, location, message)
