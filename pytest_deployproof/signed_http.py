"""Signed HTTP requests, shared by the servers that take them (webhook and IaC runner).

GitHub's convention, which the runner follows too: ``X-Hub-Signature-256:
sha256=<HMAC-SHA256 hex of the raw body>``, compared in constant time; the body's
size is checked before it is read; a delivery id is taken once. Below both
servers, so the deploy side's runner does not import the operator side's webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler

__all__ = ["Deliveries", "Rejected", "read_signed", "send", "signature", "verify"]

DRAIN_LIMIT = 16 << 20  # an oversized body up to this size is read before the 413


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(signature(secret, body), header)


class Rejected(Exception):
    """A request answered with ``status`` and nothing done."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def read_signed(request: BaseHTTPRequestHandler, secret: bytes, max_body: int) -> bytes:
    """The request's body, once its size and ``X-Hub-Signature-256`` are right; else
    :class:`Rejected` (413, 401). Shared by the webhook and the runner."""
    try:
        length = int(request.headers.get("Content-Length", "0"))
    except ValueError:
        length = -1
    if length < 0 or length > max_body:
        # Read (and drop) a moderately large body before answering: a client still sending
        # it when the connection closes sees a broken pipe instead of our 413. A huge one
        # is not worth reading; its sender gets the closed connection.
        if 0 < length <= DRAIN_LIMIT:
            while length > 0:
                chunk = request.rfile.read(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)
        raise Rejected(413, "body too large")
    body = request.rfile.read(length)
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


class Deliveries:
    """Delivery ids already taken (the newest ``keep``): each delivery is handled once."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, delivery: str) -> bool:
        with self._lock:
            if not delivery or delivery in self._seen:
                return False
            self._seen[delivery] = None
            while len(self._seen) > self.keep:
                self._seen.popitem(last=False)
            return True
