"""The inventory's JSON Schema, generated from the models so it cannot drift.

Editors validate inventories with it (a ``# yaml-language-server: $schema=``
line at the top of a file); ``inventory.schema.json`` at the repository root
is this output, and a test keeps it current.
"""

from __future__ import annotations

import json
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
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    return json.dumps(inventory_schema(), indent=2, sort_keys=True) + "\n"
