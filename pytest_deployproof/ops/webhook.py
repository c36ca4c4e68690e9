"""``deployproof webhook serve``: the comment hook behind an HTTP endpoint (CMT-3, BYD-6).

GitHub signs each delivery: ``X-Hub-Signature-256: sha256=<HMAC-SHA256 hex of the raw
body>``. The server refuses to start without a secret (Atlantis and Digger fail
open), compares signatures in constant time, answers 401 to a missing or wrong
one, 413 to a body over 1 MiB, 400 to one that is not JSON, and handles each
``X-GitHub-Delivery`` once. The work runs after the answer, in order, one event at
a time: GitHub waits 10 s at most, and two deploys must not race.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..signed_http import Deliveries, Rejected, read_signed, send

__all__ = ["MAX_BODY", "WebhookServer"]

MAX_BODY = 1 << 20
Handler = Callable[[dict[str, Any]], object]


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
