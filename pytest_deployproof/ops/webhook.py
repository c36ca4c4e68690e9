"""``deployproof webhook serve``: the comment hook behind an HTTP endpoint (CMT-3, BYD-6).

GitHub signs each delivery: ``X-Hub-Signature-256: sha256=<HMAC-SHA256 hex of the raw
body>``. The server refuses to start without a secret (Atlantis and Digger fail
open) or without the one repository it serves, compares signatures in constant time,
answers 401 to a missing or wrong one, 413 to a body over 1 MiB (never read), 400 to
one that is not a JSON object. Replays are judged on what GitHub signed, not on its
unsigned ``X-GitHub-Delivery`` header: the event must come from the pinned repository,
its comment must be fresh (written within ``max_age_s``), and each comment id is
handled once, remembered on disk across restarts. The work runs after the answer, in
order, one event at a time (GitHub waits 10 s at most, and two deploys must not race);
stopping the server waits for the event being handled.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from ..signed_http import BoundedServer, Rejected, SeenIds, read_signed, require_secret, send

__all__ = ["MAX_AGE_S", "MAX_BODY", "WebhookServer"]

MAX_BODY = 1 << 20
MAX_AGE_S = 600  # a comment older than this is not run (a replay, or a redelivery long after)
Handler = Callable[[dict[str, Any]], object]


class WebhookServer(BoundedServer):
    def __init__(
        self,
        address: tuple[str, int],
        secret: str,
        handler: Handler,
        *,
        repository: str,
        seen: Path | None = None,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        self.secret = require_secret(secret, "DEPLOYPROOF_WEBHOOK_SECRET", "webhook")
        if not repository or repository.count("/") != 1:
            raise ValueError(
                "refusing to start without the repository it serves, owner/name "
                "(--repository or GITHUB_REPOSITORY)"
            )
        self.repository = repository.lower()
        self.handler, self.max_age_s = handler, max_age_s
        self.comments = SeenIds(seen, max_age_s)
        self.work: queue.Queue[dict[str, Any] | None] = queue.Queue()
        # Not a daemon: stopping the server (SIGTERM) waits for the event being handled.
        self.worker = threading.Thread(target=self._work, name="deployproof-webhook")
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
        super().server_close()
        self.work.put(None)
        self.worker.join()

    def judge(self, event: dict[str, Any]) -> tuple[int, str] | None:
        """Why this signed event is not run (status, text); ``None`` to run it."""
        repository = str((event.get("repository") or {}).get("full_name") or "")
        if repository.lower() != self.repository:
            return 403, f"not {self.repository}: ignored"
        comment = event.get("comment") or {}
        written = _epoch(comment.get("created_at"))
        if written is None:
            return 400, "no comment.created_at"
        age = time.time() - written
        if age > self.max_age_s or age < -60:
            return 200, f"comment written {age:.0f} s ago: too old to run, ignored"
        if not self.comments.take(f"{comment.get('id')}", written):
            return 200, "comment already handled: ignored"
        return None


def _epoch(value: object) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            event = None
        if not isinstance(event, dict):
            return 400, "not a JSON object", None
        if self.headers.get("X-GitHub-Event") != "issue_comment":
            return 202, "not an issue_comment event: ignored", None
        if event.get("action") != "created":
            return 202, "only new comments run: ignored", None
        refused = self.server.judge(event)
        if refused is not None:
            return *refused, None
        return 202, "accepted", event
