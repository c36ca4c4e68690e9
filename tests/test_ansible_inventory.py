"""Hosts and groups from an Ansible inventory (INV-4), read by Ansible's own ansible-inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_deployproof.inventory.load import InventoryError, load_file
from pytest_deployproof.inventory.selection import SelectionError, select
from pytest_deployproof.ops.cli import main

ENVIRONMENT = """\
ansible_inventory: {source}
layers: {{platform: {{order: 2, engine: compose}}}}
hosts:
  w1: {{data_path: /srv, groups: [edge]}}
stacks:
  web: {{layer: platform, host: w1, run_dir: /srv/web, services: {{web: {{}}}}}}
  db: {{layer: platform, host: d1, run_dir: /srv/db, services: {{db: {{}}}}}}
"""

INI = """\
[web]
w1 ansible_host=10.0.0.1 ansible_port=2222 ansible_ssh_private_key_file=keys/deploy
[db]
d1 ansible_host=fe80::1 deployproof_connect_timeout_s=3
[prod:children]
web
db
[unused]
other ansible_host=10.0.0.9
[all:vars]
ansible_user=deploy
ansible_ssh_common_args='-o ProxyJump=bastion -o Compression=yes'
"""

YAML = """\
all:
  vars: {ansible_user: deploy, ansible_ssh_common_args: "-o ProxyJump=bastion -o Compression=yes"}
  children:
    prod:
      children:
        web:
          hosts:
            w1: {ansible_host: 10.0.0.1, ansible_port: 2222,
                 ansible_ssh_private_key_file: keys/deploy}
        db:
          hosts:
            d1: {ansible_host: "fe80::1", deployproof_connect_timeout_s: 3}
    unused:
      hosts: {other: {ansible_host: 10.0.0.9}}
"""


def environment(tmp_path: Path, ansible: str, name: str = "hosts.ini", **fields: str) -> Path:
    (tmp_path / name).write_text(ansible)
    file = tmp_path / "staging.yml"
    file.write_text(ENVIRONMENT.format(source=name, **fields))
    return file


@pytest.mark.parametrize(("name", "text"), [("hosts.ini", INI), ("hosts.yml", YAML)])
def test_hosts_come_from_ansible_by_name_and_the_inventory_wins(
    tmp_path: Path, name: str, text: str
) -> None:
    inventory = load_file(environment(tmp_path, text, name))

    assert sorted(inventory.hosts) == ["d1", "w1"]  # only the hosts this environment uses
    web, db = inventory.hosts["w1"], inventory.hosts["d1"]
    assert web.spec == "ssh://deploy@10.0.0.1:2222"
    assert web.identity_file == tmp_path / "keys" / "deploy"  # relative to the inventory file
    assert web.ssh_args == ("-o", "ProxyJump=bastion", "-o", "Compression=yes")
    assert web.data_path == "/srv"  # said by the deployproof inventory
    assert web.groups == ("edge", "prod", "web")  # Ansible's (with parents) and ours
    assert db.spec == "ssh://deploy@[fe80::1]"
    assert db.connect_timeout_s == 3  # a deployproof_ variable
    assert db.groups == ("db", "prod")


def test_the_command_line_names_the_ansible_inventory(tmp_path: Path) -> None:
    file = environment(tmp_path, INI)
    (tmp_path / "other.ini").write_text("[web]\nw1 ansible_connection=local\nd1\n")
    inventory = load_file(file, tmp_path / "other.ini")
    assert inventory.hosts["w1"].spec == "local://"
    assert inventory.hosts["d1"].spec == "ssh://d1"


def test_a_host_group_selects_its_hosts(tmp_path: Path) -> None:
    inventory = load_file(environment(tmp_path, INI))
    assert [s.name for s in select(inventory, hosts=("db",)).stacks] == ["db"]
    assert [s.name for s in select(inventory, hosts=("prod",)).stacks] == ["db", "web"]
    assert [h.name for h in select(inventory, hosts=("edge",)).hosts] == ["w1"]
    with pytest.raises(SelectionError, match=r"--host 'dbs' .* known are d1, db, edge, prod, w1"):
        select(inventory, hosts=("dbs",))


@pytest.mark.parametrize(
    ("ansible", "message"),
    [
        (
            "[web]\nw1 ansible_ssh_pass=hunter2-secret\nd1\n",
            "host 'w1' authenticates with a password (ansible_ssh_pass)",
        ),
        (
            '[web]\nw1 ansible_host=\'{{ lookup("env", "IP") }}\'\nd1\n',
            "host 'w1': ansible_host is a template",
        ),
        (
            "[web]\nw1 ansible_connection=winrm\nd1\n",
            "host 'w1': ansible_connection 'winrm' is not supported",
        ),
        ("[web\nw1\n", "ansible-inventory could not read"),
    ],
)
def test_an_unusable_ansible_inventory_is_a_clear_error(
    tmp_path: Path, ansible: str, message: str
) -> None:
    with pytest.raises(InventoryError) as caught:
        load_file(environment(tmp_path, ansible))
    assert message in str(caught.value)
    assert str(tmp_path / "staging.yml") in str(caught.value)  # the file that named it
    assert "hunter2" not in str(caught.value)


def test_a_host_in_neither_inventory_names_both(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        load_file(environment(tmp_path, "[web]\nw1\n"))
    text = str(caught.value)
    assert "stacks.db.host: unknown host 'd1'" in text
    assert f"nor is it in {tmp_path / 'hosts.ini'}" in text


def test_a_missing_ansible_inventory_is_named(tmp_path: Path) -> None:
    file = tmp_path / "staging.yml"
    file.write_text(ENVIRONMENT.format(source="nowhere.ini"))
    with pytest.raises(InventoryError, match=r"Ansible inventory .*nowhere\.ini does not exist"):
        load_file(file)


def test_deployproof_check_takes_the_ansible_inventory_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "staging.yml"
    file.write_text(
        ENVIRONMENT.format(source="nowhere.ini").replace("ansible_inventory: nowhere.ini\n", "")
    )
    (tmp_path / "hosts.ini").write_text(INI)
    assert main(["check", "--inventory", str(file)]) == 1  # w1 has no spec, d1 is unknown
    error = capsys.readouterr().err
    assert "hosts.w1.spec: missing required field 'spec' (or take the host from an Ansible" in error
    assert (
        main(
            ["check", "--inventory", str(file), "--ansible-inventory", str(tmp_path / "hosts.ini")]
        )
        == 0
    )
    assert "ok: staging: 2 stacks, 2 hosts" in capsys.readouterr().out
