"""A real HTTP server on loopback whose paths misbehave on request, for the probe tests.

The ``server`` fixture (this module is a pytest plugin) serves it for a test module;
the tests import ``Handler`` to count requests.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest


class Handler(BaseHTTPRequestHandler):
    """`/fail-N` fails N times then answers; `/slow-MS` sleeps; `/json` and `/text` answer.
    A query string is ignored, but counted apart: `/fail-2?a` and `/fail-2?b` fail twice each."""

    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        count = Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        route = self.path.split("?")[0]
        status, body, kind = 200, b"ok", "text/plain"
        if route.startswith("/fail-") and count <= int(route.split("-")[1]):
            status, body = 503, b"warming up"
        elif route.startswith("/slow-"):
            time.sleep(int(route.split("-")[1]) / 1000)
        elif route == "/json":
            body, kind = (
                b'{"status": "ok", "db": {"ok": true}, "version": "v2"}',
                "application/json",
            )
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 refuses concurrent probes


@contextlib.contextmanager
def serving() -> Iterator[str]:
    """Serve ``Handler`` on a free loopback port; yields the base URL."""
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A loopback HTTP server's base URL (``Handler`` above); ``Handler.hits`` counts requests."""
    with serving() as url:
        yield url
