"""Signed HTTP requests, shared by the servers that take them (webhook and IaC runner).

GitHub's convention, which the runner follows too: ``X-Hub-Signature-256:
sha256=<HMAC-SHA256 hex of the raw body>``, compared in constant time; the body's
size is checked before a byte of it is read; a delivery id is taken once.
:class:`BoundedServer` is what both servers stand on: a socket timeout per connection,
a cap on connections at once (the rest get a 503 and are closed), and a malformed
request answered 400/401, never a dropped connection or a traceback. Below both
servers, so the deploy side's runner does not import the operator side's webhook.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .state_dir import append_line, read_lines

__all__ = [
    "BoundedServer",
    "Rejected",
    "SeenIds",
    "read_signed",
    "require_secret",
    "send",
    "signature",
    "verify",
]

SOCKET_TIMEOUT_S = 10  # an idle or slow client is dropped after this long without a byte
REQUEST_DEADLINE_S = 30  # a whole connection, however slowly its bytes come
MAX_CONNECTIONS = 64  # connections handled at once; more get a 503
# Slots kept for new connections: once fewer are free, a keep-alive server closes each
# connection after its answer (see BoundedServer.crowded), so clients that keep theirs open
# (64 scrapers) cannot leave a load balancer's health check with nothing but 503s.
KEEPALIVE_RESERVE = 8


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def require_secret(secret: str, variable: str, what: str) -> bytes:
    """The shared secret as bytes; a server without one refuses to start (fail closed)."""
    if not secret:
        raise ValueError(f"refusing to start without a {what} secret ({variable})")
    return secret.encode()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """Constant-time; a header holding non-ASCII text is simply wrong (hmac refuses to
    compare such strings, which used to drop the connection with a traceback)."""
    if header is None:
        return False
    given = header.encode("utf-8", errors="replace")
    return hmac.compare_digest(signature(secret, body).encode(), given)


class Rejected(Exception):
    """A request answered with ``status`` and nothing done."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def read_signed(request: BaseHTTPRequestHandler, secret: bytes, max_body: int) -> bytes:
    """The request's body, once its size and ``X-Hub-Signature-256`` are right; else
    :class:`Rejected` (411, 413, 401). The size is judged from ``Content-Length`` before
    anything is read; an oversized body is never read (the connection is closed after
    the answer). Shared by the webhook and the runner."""
    text = request.headers.get("Content-Length")
    if text is None:
        request.close_connection = True
        raise Rejected(411, "needs a Content-Length")
    if not re.fullmatch(r"[0-9]{1,10}", text.strip()):  # not '²', not 5,000 digits
        request.close_connection = True
        raise Rejected(400, "Content-Length is not a number")
    length = int(text)
    if length > max_body:
        request.close_connection = True
        raise Rejected(413, "body too large")
    body = request.rfile.read(length)
    if len(body) != length:
        raise Rejected(400, "body shorter than its Content-Length")
    if not verify(secret, body, request.headers.get("X-Hub-Signature-256")):
        raise Rejected(401, "bad or missing signature")
    return body


def send(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    """Answer ``request`` with ``body``. Shared by the webhook and the runner."""
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


class SeenIds:
    """Ids already taken (delivery ids, comment ids), kept on disk: a request is handled
    once, also across a restart. Only ids still within ``window_s`` matter (older requests
    are refused for their age), so the file holds ``<time> <id>`` lines and is read back
    for that window."""

    def __init__(self, path: Path | None, window_s: float) -> None:
        self.path, self.window_s = path, window_s
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        if path is not None:
            horizon = time.time() - 2 * window_s
            for _, line in read_lines(path):
                at, _, seen = line.partition(" ")
                try:
                    if float(at) >= horizon:
                        self._seen[seen] = float(at)
                except ValueError:
                    continue  # a torn line; a fresh request it named is refused by its age

    def take(self, seen: str, at: float) -> bool:
        """``True`` the first time (written down before it counts), else ``False``."""
        with self._lock:
            if not seen or seen in self._seen:
                return False
            if self.path is not None:
                append_line(self.path, f"{at:.3f} {seen}")
            self._seen[seen] = at
            if len(self._seen) > 10_000:
                horizon = time.time() - 2 * self.window_s
                self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
            return True


class BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server whose threads and waits are bounded: each connection's
    socket times out, at most ``max_connections`` are served at once (the next ones get a
    503 and are closed at once), so idle or slow clients cannot hold every thread."""

    daemon_threads = True
    # Closing does not wait for connection threads (an idle client would hold a SIGTERM
    # for its socket timeout, or longer): the work that must finish (the runner's apply,
    # the webhook's event) is waited for by the servers themselves.
    block_on_close = False
    request_queue_size = 128  # the listen backlog (socketserver's 5 stalls a burst's connects)
    max_connections = MAX_CONNECTIONS
    socket_timeout_s: float = SOCKET_TIMEOUT_S
    request_deadline_s: float = REQUEST_DEADLINE_S

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._active = 0  # connections holding a slot (the semaphore does not say)
        self._holding: set[Any] = set()  # which: their sockets
        self._active_lock = threading.Lock()
        self._deadlines: dict[socket.socket, float] = {}
        self._deadlines_lock = threading.Lock()
        self._watching = threading.Event()
        super().__init__(address, handler)
        # One watchdog for all connections (a timer each would double the threads).
        threading.Thread(target=self._watch, name="deployproof-deadlines", daemon=True).start()

    def _watch(self) -> None:
        """Shut down the sockets of connections past their deadline: a client sending a
        byte every few seconds never trips the per-read timeout."""
        while not self._watching.wait(0.25):
            now = time.monotonic()
            with self._deadlines_lock:
                late = [sock for sock, deadline in self._deadlines.items() if deadline < now]
            for sock in late:
                _cut(sock)

    def crowded(self) -> bool:
        """Fewer than KEEPALIVE_RESERVE slots are free: keep-alive connections should end
        after their answer, so the slots they hold go to whoever connects next."""
        return self._active > self.max_connections - KEEPALIVE_RESERVE

    def _take_slot(self, request: Any) -> bool:
        if not self._slots.acquire(blocking=False):
            return False
        with self._active_lock:
            self._active += 1
            self._holding.add(request)
        return True

    def _free_slot(self, request: Any) -> None:
        """Give the connection's slot back, once: the connection's thread frees it when it
        ends, and ``process_request`` when starting that thread was interrupted (SIGTERM
        arrives as KeyboardInterrupt), which can happen after the thread began and freed it.
        A second release raised ValueError, which replaced the interrupt, and the server
        went on serving: a runner that outlived its SIGTERM."""
        with self._active_lock:
            if request not in self._holding:
                return
            self._holding.discard(request)
            self._active -= 1
        self._slots.release()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._take_slot(request):
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        request.settimeout(self.socket_timeout_s)  # each read; the whole request below
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._free_slot(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._deadlines_lock:
            self._deadlines[request] = time.monotonic() + self.request_deadline_s
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._deadlines_lock:
                self._deadlines.pop(request, None)
            self._free_slot(request)

    def server_close(self) -> None:
        self._watching.set()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished or timed out is not news; anything else is one line."""
        error = sys.exc_info()[1]
        if isinstance(error, (socket.timeout, ConnectionError)):
            return
        print(f"deployproof: request failed: {type(error).__name__}: {error}", file=sys.stderr)


def _cut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
