"""``deployproof webhook serve``: the comment hook behind an HTTP endpoint (CMT-3, BYD-6).

GitHub signs each delivery: ``X-Hub-Signature-256: sha256=<HMAC-SHA256 hex of the raw
body>``. The server refuses to start without a secret (Atlantis and Digger fail
open), compares signatures in constant time, answers 401 to a missing or wrong
one, 413 to a body over 1 MiB, 400 to one that is not JSON, and handles each
``X-GitHub-Delivery`` once. The work runs after the answer, in order, one event at
a time: GitHub waits 10 s at most, and two deploys must not race.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "MAX_BODY",
    "Deliveries",
    "Rejected",
    "WebhookServer",
    "read_signed",
    "send",
    "signature",
    "verify",
]

MAX_BODY = 1 << 20
DRAIN_LIMIT = 16 << 20  # an oversized body up to this size is read before the 413
Handler = Callable[[dict[str, Any]], object]


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


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], secret: str, handler: Handler) -> None:
        if not secret:
            raise ValueError(
                "refusing to start without a webhook secret (DEPLOYPROOF_WEBHOOK_SECRET)"
            )
        self.secret = secret.encode()
        self.handler = handler
        self.deliveries = Deliveries()
        self.work: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="deployproof-webhook", daemon=True)
        self.worker.start()
        super().__init__(address, _Request)

    def _work(self) -> None:
        while (event := self.work.get()) is not None:
            try:
                self.handler(event)
            except Exception as exc:  # one bad event must not stop the server
                print(f"deployproof webhook: handling failed: {type(exc).__name__}: {exc}")
            finally:
                self.work.task_done()

    def server_close(self) -> None:
        self.work.put(None)
        super().server_close()


class _Request(BaseHTTPRequestHandler):
    server: WebhookServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # requests are not logged: a body may hold what a user pasted

    def _answer(self, status: int, text: str) -> None:
        send(self, status, (text + "\n").encode(), "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        status, text, event = self._judge()
        if event is not None:
            self.server.work.put(event)
        self._answer(status, text)

    def _judge(self) -> tuple[int, str, dict[str, Any] | None]:
        """The answer to this delivery, and the event to handle (only when accepted)."""
        try:
            body = read_signed(self, self.server.secret, MAX_BODY)
        except Rejected as reject:
            return reject.status, reject.message, None
        delivery = self.headers.get("X-GitHub-Delivery", "")
        try:
            event = json.loads(body) if delivery else None
        except ValueError:
            event = None
        if not isinstance(event, dict):
            return 400, "not a JSON object with an X-GitHub-Delivery", None
        if not self.server.deliveries.first(delivery):
            return 200, "duplicate delivery ignored", None
        if self.headers.get("X-GitHub-Event") != "issue_comment":
            return 202, "not an issue_comment event: ignored", None
        return 202, "accepted", event
