"""Loopback ports for the servers the tests start: a free one, and waiting until one listens."""

from __future__ import annotations

import socket
import time

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, what: str, timeout_s: float = 10) -> None:
    """Wait until a server we started listens on 127.0.0.1:port, or fail saying which."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:g} s", pytrace=False)
