"""Docker engine clients, one per inventory host and thread.

docker-py does not document its client as thread-safe, and the probes run
in threads, so clients are cached per (host, thread).
"""

from __future__ import annotations

import gc
import os
import re
import threading
import warnings
from typing import Any
from urllib.parse import urlsplit

from ..errors import Inconclusive
from ..inventory.model import Host
from . import ssh

__all__ = ["client_for", "close_all", "docker_url"]

_local = threading.local()
_opened: list[Any] = []  # every client of this process, whichever thread made it
_opened_lock = threading.Lock()
API_TIMEOUT_S = 30
DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def docker_url(host: Host) -> str | None:
    """The engine URL of ``host``; ``None`` means the local environment's engine."""
    if host.docker_url:
        return host.docker_url
    scheme = host.spec.partition("://")[0]
    if scheme == "local":
        return None
    if scheme == "ssh":
        # The host's engine socket, forwarded over the process's one ssh connection.
        return "unix://" + ssh.connection(host).docker_socket()
    if scheme == "paramiko":
        parts = urlsplit(host.spec)
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        return f"ssh://{user}{parts.hostname}{port}"
    raise Inconclusive(
        f"host {host.name!r} ({host.spec}) has no Docker engine URL: "
        f"set hosts.{host.name}.docker_url"
    )


def client_for(host: Host) -> Any:
    """A Docker client for ``host``, created on first use in this thread."""
    import docker  # noqa: PLC0415 - optional until a check needs Docker

    cache: dict[str, Any] = _local.__dict__.setdefault("clients", {})
    url = docker_url(host)
    key = url or "env"
    if key not in cache:
        problem = None
        try:
            if url is None:
                cache[key] = docker.from_env(timeout=API_TIMEOUT_S)
            else:
                cache[key] = docker.DockerClient(
                    base_url=url, timeout=API_TIMEOUT_S, use_ssh_client=url.startswith("ssh://")
                )
        except docker.errors.DockerException as exc:
            problem = _unreachable(host, url, exc)
        if problem is not None:  # outside the except block: its traceback holds the client
            _drop_half_made_client()
            raise Inconclusive(problem)
        with _opened_lock:
            _opened.append(cache[key])
    return cache[key]


def _unreachable(host: Host, url: str | None, exc: Exception) -> str:
    """One line: the engine's address, where it came from, why it did not answer, and what
    to set (docker-py's own message names neither the socket nor the variable)."""
    if url is not None:
        where, knob = url, f"hosts.{host.name}.docker_url in the inventory"
    elif os.environ.get("DOCKER_HOST"):
        where, knob = f"{os.environ['DOCKER_HOST']} (from DOCKER_HOST)", "DOCKER_HOST"
    else:
        where, knob = f"{DEFAULT_SOCKET} (the default)", "DOCKER_HOST"
    errors = [e for e in _nested_args(exc) if isinstance(e, OSError) and e.strerror]
    found = re.search(r"\[Errno \d+\] ([^'\")]+)", str(exc))
    why = errors[0].strerror if errors else found.group(1) if found else str(exc)
    return (
        f"cannot reach Docker on host {host.name!r} at {where}: {why}; start the engine "
        f"or set {knob} to where it listens"
    )


def _nested_args(exc: BaseException) -> list[object]:
    """urllib3 and requests wrap the socket's error in their exceptions' args."""
    found: list[object] = []
    todo: list[object] = [exc]
    while todo and len(found) < 50:
        item = todo.pop()
        found.append(item)
        if isinstance(item, BaseException):
            todo += [*item.args, item.__cause__, item.__context__]
        elif isinstance(item, tuple):
            todo += list(item)
    return [item for item in found if item is not None]


def _drop_half_made_client() -> None:
    """docker-py asks the engine for its API version while constructing the client; when
    that fails, the half-made client's socket is left for the garbage collector, which
    would warn about it at some later, unrelated moment. Collect it now, quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def close_all() -> None:
    """Close this process's clients (at the end of the session): their connection pools
    would otherwise stay open until garbage collection, and warn as unclosed sockets."""
    with _opened_lock:
        clients, _opened[:] = list(_opened), []
    for client in clients:
        client.close()
    _local.__dict__.pop("clients", None)
