"""Hosts and groups from an Ansible inventory (INV-4).

A team that runs Ansible already keeps its hosts, users, ports, keys and groups in an
Ansible inventory; writing them again in deployproof's would make two lists that drift
apart. So an inventory may name an Ansible inventory (``ansible_inventory:`` in the
file, or testinfra's ``--ansible-inventory`` option), and each host the environment
uses is looked up there *by name*. What the deployproof inventory says about a host
wins; Ansible fills in what it does not say (usually everything but ``data_path``).

The Ansible inventory is read with ``ansible-inventory --list``: Ansible's own parser,
so INI, YAML, inventory plugins, scripts, ``group_vars`` and ``host_vars`` all work as
they do for Ansible. Variables named ``deployproof_<field>`` set that field of the
host (``deployproof_data_path: /srv``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AnsibleError", "AnsibleHost", "merge_hosts", "read_inventory"]

# ansible_connection -> testinfra scheme
CONNECTIONS = {
    "ssh": "ssh",
    "smart": "ssh",
    "paramiko": "paramiko",
    "paramiko_ssh": "paramiko",
    "local": "local",
    "docker": "docker",
    "community.docker.docker": "docker",
}
# Host fields an Ansible variable deployproof_<field> may set.
FIELDS = (
    "data_path",
    "min_free_percent",
    "compose",
    "docker_url",
    "docker_socket",
    "connect_timeout_s",
    "ssh_config",
)
PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
IGNORED_GROUPS = frozenset({"all", "ungrouped"})


class AnsibleError(Exception):
    """The Ansible inventory cannot be read, or a host in it cannot be used as it is."""


@dataclass(frozen=True)
class AnsibleHost:
    name: str
    variables: dict[str, Any]
    groups: tuple[str, ...]

    def entry(self) -> dict[str, Any]:
        """The host as a deployproof inventory entry (a mapping for the Host model)."""
        variables = self.variables
        for name in PASSWORD_VARS:
            if variables.get(name):
                raise AnsibleError(
                    f"host {self.name!r} authenticates with a password ({name}); deployproof "
                    "connects non-interactively with keys: set ansible_ssh_private_key_file"
                )
        for key, value in variables.items():
            if (key.startswith(("ansible_", "deployproof_"))) and "{{" in str(value):
                raise AnsibleError(
                    f"host {self.name!r}: {key} is a template ({value!r}); ansible-inventory "
                    "does not render templates, so set it to a plain value"
                )
        connection = str(variables.get("ansible_connection", "ssh"))
        scheme = CONNECTIONS.get(connection)
        if scheme is None:
            raise AnsibleError(
                f"host {self.name!r}: ansible_connection {connection!r} is not supported; "
                f"supported are {', '.join(sorted(CONNECTIONS))}"
            )
        entry: dict[str, Any] = {"spec": self._spec(scheme), "groups": list(self.groups)}
        key_file = variables.get("ansible_ssh_private_key_file") or variables.get(
            "ansible_private_key_file"
        )
        if key_file:
            entry["identity_file"] = str(key_file)
        args = " ".join(
            str(variables.get(name) or "")
            for name in ("ansible_ssh_common_args", "ansible_ssh_extra_args")
        )
        if args.strip():
            entry["ssh_args"] = shlex.split(args)
        for name in FIELDS:
            if f"deployproof_{name}" in variables:
                entry[name] = variables[f"deployproof_{name}"]
        return entry

    def _spec(self, scheme: str) -> str:
        if scheme == "local":
            return "local://"
        address = str(self.variables.get("ansible_host") or self.name)
        try:
            if ipaddress.ip_address(address).version == 6:
                address = f"[{address}]"
        except ValueError:
            pass  # a name, not an address
        if scheme == "docker":
            return f"docker://{address}"
        user = self.variables.get("ansible_user")
        port = self.variables.get("ansible_port")
        return f"{scheme}://{f'{user}@' if user else ''}{address}{f':{port}' if port else ''}"


def _command() -> str:
    beside = Path(sys.executable).parent / "ansible-inventory"
    found = str(beside) if beside.exists() else shutil.which("ansible-inventory")
    if not found:
        raise AnsibleError(
            "reading an Ansible inventory needs Ansible's ansible-inventory command: "
            "pip install 'pytest-deployproof[ansible]' (or ansible-core)"
        )
    return found


def read_inventory(path: Path) -> dict[str, AnsibleHost]:
    """Every host of the Ansible inventory at ``path``, with its variables and groups."""
    if not path.exists():
        raise AnsibleError(f"Ansible inventory {path} does not exist")
    environment = {**os.environ, "ANSIBLE_VERBOSITY": "0", "ANSIBLE_NOCOLOR": "1"}
    try:
        done = subprocess.run(
            [_command(), "-i", str(path), "--list"],
            capture_output=True,
            text=True,
            env=environment,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AnsibleError(f"ansible-inventory -i {path} took longer than 120 s") from None
    # ansible-inventory warns (exit 0) about sources it could not parse: that is an error here.
    lines = [line.removeprefix("[WARNING]: ").strip() for line in done.stderr.splitlines()]
    if done.returncode != 0 or any("Unable to parse" in line for line in lines):
        causes = [line for line in lines if line.startswith("Failed to parse inventory:")]
        reason = (causes or [line for line in lines if line] or ["it failed"])[-1]
        raise AnsibleError(f"ansible-inventory could not read {path}: {reason}")
    try:
        listing = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AnsibleError(f"ansible-inventory -i {path} printed no JSON") from None
    hostvars: dict[str, dict[str, Any]] = listing.get("_meta", {}).get("hostvars", {})
    groups: dict[str, set[str]] = {}
    for group in listing:
        if group == "_meta" or group in IGNORED_GROUPS:
            continue
        for host in _members(listing, group, set()):
            groups.setdefault(host, set()).add(group)
    names = set(hostvars) | set(groups) | set(_members(listing, "all", set()))
    return {
        name: AnsibleHost(name, dict(hostvars.get(name, {})), tuple(sorted(groups.get(name, ()))))
        for name in sorted(names)
    }


def _members(listing: dict[str, Any], group: str, seen: set[str]) -> list[str]:
    """The hosts of ``group`` and of its children, recursively."""
    if group in seen:
        return []
    seen.add(group)
    entry = listing.get(group) or {}
    hosts = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts += _members(listing, child, seen)
    return hosts


def merge_hosts(data: dict[str, Any], ansible: dict[str, AnsibleHost]) -> dict[str, Any]:
    """The ``hosts`` mapping of an inventory document, completed from Ansible.

    A host is taken from Ansible when the document names it (in ``hosts`` or as a
    stack's ``host``); the document's own values win over Ansible's, and groups are
    the union of both. Ansible's other hosts are not imported: a fleet inventory may
    list hundreds that this environment never touches.
    """
    declared = data.get("hosts") or {}
    if not isinstance(declared, dict):
        return declared  # type: ignore[no-any-return] # the schema reports the shape
    wanted = list(declared)
    stacks = data.get("stacks") or {}
    if isinstance(stacks, dict):
        for stack in stacks.values():
            if isinstance(stack, dict) and isinstance(stack.get("host"), str):
                wanted.append(stack["host"])
    merged: dict[str, Any] = {}
    for name in dict.fromkeys(wanted):
        own = declared.get(name)
        if name not in ansible:
            if own is not None:
                merged[name] = own
            continue  # a stack's unknown host: the cross-reference check names it
        entry = ansible[name].entry()
        if isinstance(own, dict):
            extra = own.get("groups") or []
            groups = sorted({*entry["groups"], *extra}) if isinstance(extra, list) else extra
            entry = {**entry, **own, "groups": groups}
        merged[name] = entry
    return merged
