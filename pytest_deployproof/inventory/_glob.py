"""Strict path globs for change mapping (INV-5).

`fnmatch` treats a malformed pattern such as ``web/[abc`` as a literal, so a
typo in an inventory would silently map no change to its stack. The
inventory needs the opposite: a pattern that cannot mean what its author
wrote is rejected when the inventory is loaded, with the reason.

Semantics (those of ``.gitignore`` and GitHub's ``paths:`` filters):
``*`` matches within one path segment, ``**`` matches any number of whole
segments, ``?`` one character, ``[...]`` a character class. Patterns are
relative to the repository root and use ``/``.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["GlobError", "compile_glob", "validate_glob"]


class GlobError(ValueError):
    """A path glob that cannot be compiled, with the reason."""


def validate_glob(pattern: str) -> str:
    """Return ``pattern`` unchanged, or raise :class:`GlobError` saying what is wrong."""
    compile_glob(pattern)
    return pattern


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile a repository path glob to an anchored regular expression."""
    if not pattern or not pattern.strip():
        raise GlobError("an empty pattern matches nothing")
    if pattern.startswith("/"):
        raise GlobError(f"{pattern!r} is absolute; paths are relative to the repository root")
    if "\\" in pattern:
        raise GlobError(f"{pattern!r} contains '\\'; use '/' between path segments")
    segments = pattern.split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            # `a/**` matches everything below a; `**/b` matches b at any depth.
            parts.append(".*" if last else "(?:[^/]+/)*")
            continue
        if "**" in segment:
            raise GlobError(f"{pattern!r}: '**' must be a whole path segment, as in 'libs/**'")
        if segment == "" and not last:
            raise GlobError(f"{pattern!r} has an empty path segment ('//')")
        parts.append(_translate_segment(pattern, segment) + ("" if last else "/"))
    try:
        return re.compile("".join(parts) + r"\Z")
    except (re.error, OverflowError, RecursionError) as exc:  # e.g. 'a[!]': an empty class
        raise GlobError(f"{pattern!r} is not a glob deployproof can read: {exc}") from None


def _translate_segment(pattern: str, segment: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end == -1:
                raise GlobError(f"{pattern!r} has an unclosed '[' character class")
            body = segment[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif char == "]":
            raise GlobError(f"{pattern!r} has a ']' without a matching '['")
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)
