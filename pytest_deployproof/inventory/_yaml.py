"""YAML loading that can say *where* a value came from.

Inventories are parsed with PyYAML's C loader (an inventory of thousands of
stacks must load quickly), with one addition the safe loader lacks: a key
given twice in one mapping is an error, because for an inventory it almost
always means a copy-pasted stack silently replacing another.

Line numbers are only needed when something is wrong, so the fast path keeps
none; :func:`line_of` composes the node tree again and walks it along the
error's location.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["YamlError", "line_of", "load_yaml"]

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlError(ValueError):
    """A document that is not valid YAML, or repeats a key; carries the 1-based line."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


class _StrictLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that refuses duplicate mapping keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # unhashable key: the constructor below reports it
            continue
        if first != key_node.start_mark.line + 1:
            raise YamlError(
                f"key {key!r} is given twice in one mapping (first on line {first})",
                key_node.start_mark.line + 1,
            )
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_yaml(text: str) -> Any:
    """Parse one YAML document; raise :class:`YamlError` with a line on any problem."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise YamlError(f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}", None) from None


def line_of(text: str, location: Sequence[str | int]) -> int | None:
    """Return the 1-based line of the node at ``location`` (keys and indices), or
    of its nearest existing ancestor; ``None`` if the text has no document."""
    try:
        node = yaml.compose(text, Loader=_BaseLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line: int = node.start_mark.line + 1
    for step in location:
        child, key_line = _child(node, step)
        if child is None:
            break
        node = child
        line = key_line if key_line is not None else node.start_mark.line + 1
    return line


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node | None, int | None]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == str(step):
                # Point at the key: that is where the reader looks for a field.
                return value_node, key_node.start_mark.line + 1
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(step, int)
        and 0 <= step < len(node.value)
    ):
        item = node.value[step]
        return item, item.start_mark.line + 1
    return None, None
