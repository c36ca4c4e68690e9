"""The inventory's field reference in Markdown, written from the JSON Schema.

Users look a field up in one page rather than in the models; generated from the same
schema editors use, so the reference, the schema and the loader cannot disagree (a test
keeps ``docs/inventory.md`` equal to this output).
"""

from __future__ import annotations

import json
from typing import Any

from .schema import inventory_schema

__all__ = ["reference_markdown"]

ORDER = ("Host", "Layer", "Stack", "Service", "Endpoint", "Database", "Backup", "Migration",
         "Rollout", "Runner", "Waiver", "ProbeSettings", "Promotion")  # fmt: skip


def _type(spec: dict[str, Any]) -> str:  # noqa: PLR0911 - a return per schema shape
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "enum" in spec:
        return " \\| ".join(f"`{value}`" for value in spec["enum"])
    if "const" in spec:
        return f"`{spec['const']}`"
    if "anyOf" in spec:
        kinds = [_type(option) for option in spec["anyOf"] if option.get("type") != "null"]
        return " \\| ".join(kinds)
    kind = spec.get("type", "any")
    if kind == "array":
        return f"list of {_type(spec.get('items', {}))}"
    if kind == "object" and isinstance(spec.get("additionalProperties"), dict):
        return f"map of name → {_type(spec['additionalProperties'])}"
    return {"string": "text", "integer": "integer", "number": "number", "boolean": "boolean"}.get(
        kind, str(kind)
    ) + (f" ({spec['format']})" if "format" in spec else "")


def _default(name: str, spec: dict[str, Any], required: set[str]) -> str:
    if name in required:
        return "**required**"
    if "default" not in spec:
        return ""
    value = spec["default"]
    if value in (None, [], {}):
        return "—" if value is None else f"`{json.dumps(value)}`"
    shown = json.dumps(value) if not isinstance(value, str) else value
    return f"`{shown}`".replace("|", "\\|")


def _table(definition: dict[str, Any]) -> list[str]:
    required = set(definition.get("required", []))
    lines = ["| field | type | default | what it is |", "|---|---|---|---|"]
    for name, spec in definition.get("properties", {}).items():
        text = " ".join(str(spec.get("description", "")).split()).replace("|", "\\|")
        lines.append(f"| `{name}` | {_type(spec)} | {_default(name, spec, required)} | {text} |")
    return lines


def reference_markdown() -> str:
    schema = inventory_schema()
    definitions = schema["$defs"]
    lines = [
        "# Inventory reference",
        "",
        "Generated from the inventory's JSON Schema (`deployproof schema --format markdown`);",
        "`inventory.schema.json` is the same for editors. One file per environment,",
        "`inventories/<env>.yml`; `deployproof check` validates it.",
        "",
        "## Inventory",
        "",
        " ".join(str(schema.get("description", "")).split()),
        "",
        *_table(schema),
    ]
    for name in (*ORDER, *sorted(set(definitions) - set(ORDER))):
        definition = definitions[name]
        lines += ["", f"## {name}", "", " ".join(str(definition.get("description", "")).split())]
        lines += ["", *_table(definition)]
    return "\n".join(lines) + "\n"
