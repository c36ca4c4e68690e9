"""YAML loading that can say *where* a value came from.

Inventories are parsed with PyYAML's C loader (an inventory of thousands of
stacks must load quickly), with one addition the safe loader lacks: a key
given twice in one mapping is an error, because for an inventory it almost
always means a copy-pasted stack silently replacing another.

Line numbers are only needed when something is wrong, so the fast path keeps
none; :class:`Lines` composes the node tree once, when the first error needs a line,
and walks it along each error's location.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["Lines", "YamlError", "load_yaml"]

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


class Lines:
    """Lines of nodes in one YAML text, composed once (a file with 2,000 mistakes used to
    be composed again for each, ~0.1 s apiece); each mapping is indexed on first use."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._root: yaml.Node | None = None
        self._composed = False
        self._keys: dict[int, dict[str, tuple[yaml.Node, int]]] = {}

    def __call__(self, location: Sequence[str | int]) -> int | None:
        """The 1-based line of the node at ``location`` (keys and indices), or of its
        nearest existing ancestor; ``None`` if the text has no document."""
        if not self._composed:
            self._composed = True
            try:
                self._root = yaml.compose(self.text, Loader=_BaseLoader)
            except yaml.YAMLError:
                self._root = None
        node = self._root
        if node is None:
            return None
        line: int = node.start_mark.line + 1
        for step in location:
            child, key_line = self._child(node, step)
            if child is None:
                break
            node = child
            line = key_line if key_line is not None else node.start_mark.line + 1
        return line

    def _child(self, node: yaml.Node, step: str | int) -> tuple[yaml.Node | None, int | None]:
        if isinstance(node, yaml.MappingNode):
            keys = self._keys.get(id(node))
            if keys is None:
                keys = {}
                for key_node, value_node in node.value:
                    # Point at the key: that is where the reader looks for a field.
                    keys.setdefault(str(key_node.value), (value_node, key_node.start_mark.line + 1))
                self._keys[id(node)] = keys
            found = keys.get(str(step))
            return found if found is not None else (None, None)
        if (
            isinstance(node, yaml.SequenceNode)
            and isinstance(step, int)
            and 0 <= step < len(node.value)
        ):
            item = node.value[step]
            return item, item.start_mark.line + 1
        return None, None
