"""Loading an inventory: defaults, names, relative paths, the published schema, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from pytest_deployproof.inventory.load import InventoryError, load_environment, load_file
from pytest_deployproof.inventory.reference import reference_markdown
from pytest_deployproof.inventory.schema import inventory_schema, schema_text
from pytest_deployproof.ops.cli import main
from tests.test_inventory_errors import GOOD

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "staging.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_names_defaults_and_relative_paths(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("/srv/stacks/web", "../stacks/web"))
    inventory = load_file(path)
    stack = inventory.stacks["web"]
    assert inventory.environment == "staging"
    assert stack.name == "web"
    assert stack.services["web"].name == "web"
    assert stack.services["web"].critical is True
    assert stack.endpoints[0].name == "health"  # from the URL's last segment
    assert stack.run_dir == (tmp_path.parent / "stacks" / "web").resolve()
    assert stack.compose_candidates[0] == stack.run_dir / "compose.yaml"  # then Compose's others
    assert stack.env_path == stack.run_dir / ".env"
    assert stack.project_name == "web"
    assert inventory.probes.tries == 3


def test_default_layers_are_compose_layers_in_the_seed_order(tmp_path: Path) -> None:
    """No IaC layer the inventory did not declare: its engine would run in the repository."""
    text = GOOD.replace("layers:\n  platform: {order: 2, engine: compose}\n", "")
    inventory = load_file(write(tmp_path, text))
    assert {layer.engine for layer in inventory.layers.values()} == {"compose"}
    assert [(layer.name, layer.order) for layer in inventory.layers_in_order()] == [
        ("platform", 2),
        ("data-staging", 3),
        ("data-prod", 4),
    ]


def test_models_are_frozen_and_hash_by_name(tmp_path: Path) -> None:
    inventory = load_file(write(tmp_path, GOOD))
    stack = inventory.stacks["web"]
    with pytest.raises(ValueError, match="frozen"):
        stack.layer = "other"
    assert hash(stack) == hash(stack.model_copy())
    assert {stack, stack.model_copy()} == {stack}


def test_the_bundled_local_inventory_loads() -> None:
    inventory = load_environment(REPO / "inventories", "local")
    assert sorted(inventory.stacks) == ["api", "web"]


def test_published_schema_is_current_and_validates_the_bundled_inventory() -> None:
    published = (REPO / "inventory.schema.json").read_text()
    assert published == schema_text(), "run: deployproof schema > inventory.schema.json"
    document = yaml.safe_load((REPO / "inventories" / "local.yml").read_text())
    jsonschema.validate(document, json.loads(published))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "stacks": {"x": {"layer": 1}}}, json.loads(published))


def test_cli_check_reports_each_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, GOOD)
    write(tmp_path, GOOD.replace("layer: platform", "layer: nope"), "production.yml")
    assert main(["check", "--inventory", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"ok: staging: 1 stacks, 1 hosts ({tmp_path / 'staging.yml'})" in out
    assert f"{tmp_path / 'production.yml'}:7: stacks.web.layer: unknown layer 'nope'" in err
    assert main(["check", "--inventory", str(tmp_path), "--env", "staging"]) == 0
    assert main(["check", "--inventory", str(tmp_path), "--env", "qa"]) == 2
    assert main(["check", "--inventory", str(tmp_path / "missing")]) == 2


def test_cli_schema_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Inventory"


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    path = tmp_path / "staging.yml"
    path.write_bytes(b"hosts: \xff\xfe\n")
    with pytest.raises(InventoryError, match="not UTF-8"):
        load_file(path)
    with pytest.raises(InventoryError, match="cannot read"):
        load_file(tmp_path / "absent.yml")


@pytest.mark.parametrize(
    ("runner", "accepted", "words"),
    [
        ("{url: 'https://runner.internal:8443'}", True, ""),
        ("{url: 'http://127.0.0.1:8081'}", False, "is http://: use https://, or set"),
        ("{url: 'http://127.0.0.1:8081', allow_insecure_http: true}", True, ""),
        ("{url: 'ftp://runner'}", False, "not an https:// URL with a host"),
        ("{url: 'ftp://ci:hunter22@runner'}", False, "not an https:// URL with a host"),
        ("{url: 'https://runner:notaport'}", False, "the port is not a number"),
        ("{url: 'https://user:pw@runner'}", False, "no credentials, query or fragment"),
        ("{url: 'https://runner', timeout_s: .inf}", False, "timeout_s"),
    ],
)
def test_a_runner_url_is_https_unless_the_inventory_names_the_risk(
    tmp_path: Path, runner: str, accepted: bool, words: str
) -> None:
    text = GOOD.replace("    services:", f"    runner: {runner}\n    services:", 1)
    if accepted:
        assert load_file(write(tmp_path, text)).stacks["web"].runner is not None
        return
    with pytest.raises(InventoryError, match=r"stacks\.web\.runner") as error:
        load_file(write(tmp_path, text))
    assert words in str(error.value)
    assert "user:pw" not in str(error.value)
    assert "hunter22" not in str(error.value)


def test_every_field_is_described_and_the_reference_is_current() -> None:
    """Every field a user can write has a description (editors show it), and
    docs/inventory.md is the reference generated from them."""
    schema = inventory_schema()
    undescribed = [
        f"{model}.{field}"
        for model, definition in [("Inventory", schema), *schema["$defs"].items()]
        for field, spec in definition.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undescribed == []
    published = (REPO / "docs" / "inventory.md").read_text()
    assert published == reference_markdown(), (
        "run: deployproof schema --format markdown > docs/inventory.md"
    )
    assert not re.search(r"\b[A-Z][A-Z0-9]{1,3}-\d+\b", published)  # no requirement IDs
