"""What counts as a secret, and masking it out of text (REP-3).

An environment key is secret when its name says so (PASSWORD, SECRET, TOKEN,
KEY, DSN, CREDENTIAL...). Values are masked wherever they would appear; keys
stay readable, because "DB_PASSWORD is missing" is what an operator needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MASK", "Masker", "is_secret_key"]

MASK = "********"
_SECRET_KEY = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|(^|_)KEY($|_)|APIKEY|DSN|CREDENTIAL|PRIVATE)",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<password>[^@\s]+)@", re.I
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

    def with_env(self, env: dict[str, str | None]) -> Masker:
        """This masker, also masking the env's values whose keys look secret."""
        return self.plus(*(v for k, v in env.items() if v and is_secret_key(k)))

    def plus(self, *values: str) -> Masker:
        return Masker([*self._values, *values])

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, MASK)
        return _URL_PASSWORD.sub(lambda m: m["scheme"] + MASK + "@", text)
