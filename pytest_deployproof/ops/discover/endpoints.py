"""Endpoints a discovered stack can be held to: only ones that pass today.

An endpoint in the inventory is a promise the smoke check keeps asking. Discovery
cannot know what a service should answer, so it proposes only what the service
itself already promises: a healthcheck that fetches an HTTP path (``wget`` or
``curl -f`` of ``http://localhost:PORT/path``) on a port published on the host at a
fixed number, and other fixed published TCP ports as connect checks. Each is then
asked once, as the smoke check will ask it (no redirects followed, status 200; a TCP
connect), and kept only when it answers so: a guessed endpoint that fails would make
the first smoke run red for a reason nobody wrote down.
"""

from __future__ import annotations

import shlex
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Candidate", "candidates", "http_healthcheck", "published_port", "verify"]

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "0.0.0.0", "::1", "::"}  # noqa: S104 - names, not binds
_SHELL_STOPS = {"||", "&&", ";", "|"}
_ANY_ADDRESS = ("", "0.0.0.0", "::")  # noqa: S104 - compared, never bound


@dataclass(frozen=True)
class Candidate:
    """An endpoint proposed for a service, before it has been asked."""

    service: str
    url: str
    name: str


def _words(test: Any) -> list[str]:
    """A healthcheck's ``test`` as the words of its first command."""
    if isinstance(test, str):
        text = test
    elif isinstance(test, list) and test and test[0] == "CMD":
        return [str(word) for word in test[1:]]
    elif isinstance(test, list) and test and test[0] == "CMD-SHELL":
        text = " ".join(str(word) for word in test[1:])
    else:
        return []
    try:
        words = shlex.split(text)
    except ValueError:
        return []
    for index, word in enumerate(words):
        if word in _SHELL_STOPS:
            return words[:index]
    return words


def _curl_fails_on_errors(words: list[str]) -> bool:
    """``curl`` exits 0 on a 500 unless told ``-f``: only then is its check a status check."""
    for word in words:
        if word in ("--fail", "--fail-with-body"):
            return True
        if word.startswith("-") and not word.startswith("--") and "f" in word[1:]:
            return True
    return False


def _fetched_url(words: list[str]) -> str | None:
    """The one http:// URL a ``wget`` or ``curl -f`` command fetches, else ``None``."""
    program = words[0].rsplit("/", 1)[-1] if words else ""
    fails = program == "wget" or (program == "curl" and _curl_fails_on_errors(words[1:]))
    urls = [word for word in words[1:] if word.startswith("http://")]
    return urls[0] if fails and len(urls) == 1 else None


def http_healthcheck(test: Any) -> tuple[int, str] | None:
    """``(container port, path)`` when the healthcheck is an HTTP fetch of a local path
    that fails on an error status (``wget``; ``curl -f``), else ``None``."""
    url = _fetched_url(_words(test))
    if url is None:
        return None
    parts = urlsplit(url)
    try:
        port = parts.port or 80
    except ValueError:  # a port that is a variable ($$PORT) or not a number
        return None
    if parts.hostname not in _LOOPBACK_NAMES:
        return None
    return port, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def published_port(ports: Iterable[Any], target: int) -> tuple[str, int] | None:
    """``(host ip, host port)`` where ``target`` (tcp) is published at a fixed port, else
    ``None``: an ephemeral port changes with every container, so no inventory can name it."""
    for port in ports:
        if not isinstance(port, dict) or port.get("protocol", "tcp") != "tcp":
            continue
        published = str(port.get("published") or "")
        if str(port.get("target")) == str(target) and published.isdigit():
            return str(port.get("host_ip") or ""), int(published)
    return None


def fixed_ports(ports: Iterable[Any]) -> list[tuple[int, str, int]]:
    """``(container port, host ip, host port)`` of every tcp port published at a fixed
    number, once per container port."""
    found: dict[int, tuple[int, str, int]] = {}
    for port in ports:
        if not isinstance(port, dict) or port.get("protocol", "tcp") != "tcp":
            continue
        published, target = str(port.get("published") or ""), str(port.get("target") or "")
        if published.isdigit() and target.isdigit():
            found.setdefault(
                int(target), (int(target), str(port.get("host_ip") or ""), int(published))
            )
    return sorted(found.values())


def candidates(
    service: str,
    declared: dict[str, Any],
    where: Callable[[str], str | None],
    skip_ports: Iterable[int] = (),
) -> tuple[list[Candidate], list[str]]:
    """The endpoints to propose for one service of the rendered config, and why others were
    not. ``where`` turns a published host ip into the address checks will use (``None``:
    not reachable from where pytest runs); ``skip_ports`` are container ports declared
    otherwise (a database's)."""
    found: list[Candidate] = []
    notes: list[str] = []
    check = declared.get("healthcheck") or {}
    http = None if check.get("disable") else http_healthcheck(check.get("test"))
    ports = fixed_ports(declared.get("ports") or [])
    skip = set(skip_ports)
    if http is not None and not any(target == http[0] for target, _, _ in ports):
        notes.append(
            f"service {service}: its healthcheck fetches port {http[0]}, which is not published "
            "on the host at a fixed port: no endpoint"
        )
    for target, host_ip, port in ports:
        if target in skip:
            continue
        address = where(host_ip)
        if address is None:
            notes.append(
                f"service {service}: port {port} is published on {host_ip}, which checks "
                "running elsewhere cannot reach: no endpoint"
            )
            continue
        if http is not None and target == http[0]:
            found.append(Candidate(service, f"http://{address}:{port}{http[1]}", service))
        else:
            found.append(Candidate(service, f"tcp://{address}:{port}", f"{service}-{port}"))
    return found, notes


def verify(url: str, tries: int = 3, interval_s: float = 1.0, timeout_s: float = 5.0) -> str | None:
    """Ask ``url`` as the smoke check will (GET without redirects wanting 200, or a TCP
    connect); ``None`` when it answered so, else what it did."""
    seen = "not asked"
    for attempt in range(tries):
        if attempt:
            time.sleep(interval_s)
        seen = _ask(url, timeout_s)
        if not seen:
            return None
    return seen


def _ask(url: str, timeout_s: float) -> str:
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        try:
            with socket.create_connection((parts.hostname or "", parts.port or 0), timeout_s):
                return ""
        except OSError as exc:
            return f"no connection: {exc.strerror or exc}"
    import httpx  # noqa: PLC0415 - only when there is something to ask

    try:
        response = httpx.get(url, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as exc:
        return f"no answer: {type(exc).__name__}"
    return "" if response.status_code == 200 else f"HTTP {response.status_code}, not 200"
