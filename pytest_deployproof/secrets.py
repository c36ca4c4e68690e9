"""What counts as a secret, and masking it out of text (REP-3).

An environment key is secret when its name says so (PASSWORD, SECRET, TOKEN,
KEY, DSN, CREDENTIAL...). Values are masked wherever they would appear; keys
stay readable, because "DB_PASSWORD is missing" is what an operator needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

__all__ = ["MASK", "Masker", "is_secret_key", "mask_files"]

MASK = "********"
_SECRET_KEY = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|(^|_)KEY($|_)|APIKEY|DSN|CREDENTIAL|PRIVATE"
    r"|(^|_)PASS($|_)|PGPASS|(^|_)PWD($|_)|(^|_)AUTH($|_)|COOKIE|SESSION_?ID)",
    re.IGNORECASE,
)
# scheme://[user]:password@host: the user may be empty (redis://:pw@), and the password may
# hold '@' (the last '@' before the host ends it).
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^\s/?#]+)@(?=[^@\s/?#]*)", re.I
)
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


class Masker:
    """Replaces known secret values, and passwords inside URLs, with a mask."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = sorted(
            {v for v in values if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self._values)

    def escaped(self) -> Masker:
        """This masker, also matching its values as JSON strings and XML text write them."""
        variants = [json.dumps(v)[1:-1] for v in self._values]
        variants += [xml_escape(v, {'"': "&quot;", "'": "&apos;"}) for v in self._values]
        return self.plus(*variants)

    def with_env(self, env: dict[str, str | None]) -> Masker:
        """This masker, also masking the env's values whose keys look secret."""
        return self.plus(*(v for k, v in env.items() if v and is_secret_key(k)))

    def plus(self, *values: str) -> Masker:
        return Masker([*self._values, *values])

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, MASK)
        return _URL_PASSWORD.sub(lambda m: m["scheme"] + MASK + "@", text)


def mask_files(paths: Iterable[Path], masker: Masker) -> int:
    """Mask secrets inside files already written (report results, JUnit XML); returns how many
    changed. Files that are not UTF-8 text (screenshots) are left as they are."""
    masker = masker.escaped()
    changed = 0
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        masked = masker(text)
        if masked != text:
            temporary = path.with_name(path.name + ".masking")
            temporary.write_text(masked, encoding="utf-8")
            temporary.replace(path)
            changed += 1
    return changed
