"""The inventory's JSON Schema, generated from the models so it cannot drift.

Editors validate inventories with it (a ``# yaml-language-server: $schema=``
line at the top of a file); ``inventory.schema.json`` at the repository root
is this output, and a test keeps it current.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .model import Inventory

__all__ = ["inventory_schema", "schema_text"]

SCHEMA_ID = "https://pytest-deployproof.invalid/inventory.schema.json"


def inventory_schema() -> dict[str, Any]:
    schema = Inventory.model_json_schema(by_alias=True)
    # `environment` defaults to the file name and every `name` to its mapping
    # key, so an editor must not demand them.
    schema["required"] = [name for name in schema.get("required", []) if name != "environment"]
    for definition in schema.get("$defs", {}).values():
        if "required" in definition:
            definition["required"] = [n for n in definition["required"] if n != "name"]
    _without_requirement_ids(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


_REQUIREMENT_IDS = re.compile(r"\s*\((?:[A-Z][A-Z0-9]{1,3}-\d+(?:,\s*)?)+\)")


def _without_requirement_ids(node: Any) -> None:
    """Descriptions come from docstrings that cite the project's requirement IDs (SMK-3);
    users read them in their editor, where those mean nothing."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                node[key] = _REQUIREMENT_IDS.sub("", value)
            else:
                _without_requirement_ids(value)
    elif isinstance(node, list):
        for item in node:
            _without_requirement_ids(item)


def schema_text() -> str:
    return json.dumps(inventory_schema(), indent=2, sort_keys=True) + "\n"
