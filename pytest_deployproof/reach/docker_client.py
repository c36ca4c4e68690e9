"""Docker engine clients, one per inventory host and thread.

docker-py does not document its client as thread-safe, and the probes run
in threads, so clients are cached per (host, thread).
"""

from __future__ import annotations

import threading
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
        try:
            if url is None:
                cache[key] = docker.from_env(timeout=API_TIMEOUT_S)
            else:
                cache[key] = docker.DockerClient(
                    base_url=url, timeout=API_TIMEOUT_S, use_ssh_client=url.startswith("ssh://")
                )
        except docker.errors.DockerException as exc:
            raise Inconclusive(f"cannot reach Docker on host {host.name!r}: {exc}") from None
        with _opened_lock:
            _opened.append(cache[key])
    return cache[key]


def close_all() -> None:
    """Close this process's clients (at the end of the session): their connection pools
    would otherwise stay open until garbage collection, and warn as unclosed sockets."""
    with _opened_lock:
        clients, _opened[:] = list(_opened), []
    for client in clients:
        client.close()
    _local.__dict__.pop("clients", None)
