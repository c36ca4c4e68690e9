"""The remote deploy backend (DEP-8): an IaC runner behind a signed POST.

Client side (:class:`RunnerClient`): a stack with ``runner: {url, secret_env}`` is
deployed by ``POST <url>/deploy`` with the JSON ``{"env", "tag", "triggered_by",
"delivery", "sent_at"}`` signed ``X-Hub-Signature-256: sha256=<HMAC-SHA256 hex of the
exact body>``: the delivery id and the time are inside what is signed, so a captured
request cannot be replayed with a fresh id or time. Then ``GET <url>/health`` is polled
until the runner reports this delivery applied (or failed); its answers are signed the
same way, and an unsigned one is not believed. The same suites verify it afterwards.

Server side (:class:`RunnerServer`, ``deployproof runner serve``): the reference
runner, small enough to read in one sitting. It refuses to start without a secret,
compares signatures in constant time, rejects deliveries sent more than five minutes
ago or seen before (remembered on disk, so a restart forgets none still fresh), bodies
over 64 KiB, non-JSON, and tags that are not strings of plain words, and applies one
deploy at a time: the tag into the env file, then ``docker compose up --wait``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx

from ..signed_http import (
    BoundedServer,
    Rejected,
    SeenIds,
    read_signed,
    require_secret,
    send,
    signature,
    verify,
)

__all__ = ["RunnerClient", "RunnerError", "RunnerServer"]

MAX_BODY = 64 * 1024
MAX_AGE_S = 300
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
DELIVERY = re.compile(r"[A-Za-z0-9-]{8,64}")


class RunnerError(Exception):
    pass


class RunnerClient:
    """Deploys through a runner and waits until it has applied the tag."""

    def __init__(self, url: str, secret: str, timeout_s: float = 300) -> None:
        self.url = url.rstrip("/")
        self.secret = secret.encode()
        self.timeout_s = timeout_s

    def deploy(self, env: str, tag: str, triggered_by: str) -> str:
        delivery = uuid.uuid4().hex
        request = {"env": env, "tag": tag, "triggered_by": triggered_by,
                   "delivery": delivery, "sent_at": time.time()}  # fmt: skip
        body = json.dumps(request).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature(self.secret, body),
        }
        try:
            response = httpx.post(f"{self.url}/deploy", content=body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            raise RunnerError(f"runner {self.url} unreachable: {type(exc).__name__}") from None
        if response.status_code != 202:
            raise RunnerError(
                f"runner refused the deploy: HTTP {response.status_code} {response.text.strip()}"
            )
        return self.wait(tag, delivery)

    def health(self) -> dict[str, Any]:
        """The runner's state, believed only when signed with the shared secret."""
        try:
            response = httpx.get(f"{self.url}/health", timeout=10)
        except httpx.HTTPError:
            return {"status": "unreachable"}
        if not verify(self.secret, response.content, response.headers.get("X-Hub-Signature-256")):
            return {"status": "unsigned answer (not from a runner holding the secret)"}
        try:
            state = json.loads(response.content)
        except ValueError:
            return {"status": "not JSON"}
        return state if isinstance(state, dict) else {"status": "not a JSON object"}

    def wait(self, tag: str, delivery: str) -> str:
        deadline = time.monotonic() + self.timeout_s
        while True:
            state = self.health()
            ours = state.get("delivery") == delivery and state.get("tag") == tag
            if ours and state.get("status") == "ok":
                return f"runner applied {tag}"
            if ours and state.get("status") == "failed":
                raise RunnerError(f"runner failed to apply {tag}: {state.get('error', '?')}")
            if time.monotonic() > deadline:
                raise RunnerError(
                    f"runner did not apply {tag} within {self.timeout_s:g} s: {state}"
                )
            time.sleep(0.5)


class RunnerServer(BoundedServer):
    """The reference runner for one stack (``apply(tag)`` does the work)."""

    def __init__(
        self,
        address: tuple[str, int],
        secret: str,
        env: str,
        apply: Any,
        deliveries: Path | None = None,
        *,
        tag_pattern: str | None = None,
    ) -> None:
        self.secret = require_secret(secret, "DEPLOYPROOF_RUNNER_SECRET", "runner")
        self.env, self.apply = env, apply
        # The inventory's image_tag_pattern: a signed request still deploys only a tag the
        # environment allows (validated for backtracking when the inventory was loaded).
        self.tag_pattern = re.compile(tag_pattern) if tag_pattern else None
        self.deliveries = SeenIds(deliveries, MAX_AGE_S)
        self.deploying: threading.Thread | None = None
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {"status": "ok", "tag": None}
        self.applied: list[dict[str, Any]] = []
        super().__init__(address, _RunnerRequest)

    def accept(self, delivery: str, sent_at: float, tag: str) -> bool:
        """Take this delivery as THE deploy, or refuse it: deciding and marking the runner
        busy is one step under the lock, so two requests at the same instant never both
        pass (docs/requirements.md#tru-2)."""
        with self.lock:
            busy = self.state["status"] == "deploying"
            if busy or not self.deliveries.take(delivery, sent_at):
                return False
            self.state = {"status": "deploying", "tag": tag, "delivery": delivery}
            return True

    def start_deploy(self, request: dict[str, Any]) -> None:
        self.deploying = threading.Thread(
            target=self.run_deploy, args=(request,), name="deployproof-runner-apply"
        )
        self.deploying.start()

    def server_close(self) -> None:
        """Stop taking requests, then wait for a running apply to end: a runner stopped
        (SIGTERM) mid-``compose up`` would leave the stack half-changed."""
        super().server_close()
        if self.deploying is not None:
            self.deploying.join()

    def run_deploy(self, request: dict[str, Any]) -> None:
        """Apply the tag; say in /health and on stderr what was applied, for whom (DEP-8's
        ``triggered_by``, printable and bounded) and which delivery asked."""
        tag, delivery = request["tag"], request["delivery"]
        who = "".join(c for c in str(request.get("triggered_by", "")) if c.isprintable())[:200]
        try:
            self.apply(tag)
        except Exception as exc:  # the runner reports, it does not die
            with self.lock:
                error = str(exc)[:500]
                self.state = {"status": "failed", "tag": tag, "delivery": delivery,
                              "triggered_by": who, "error": error}  # fmt: skip
            print(f"deployproof runner: {tag} FAILED (triggered by {who}, delivery {delivery}): "
                  f"{error}", file=sys.stderr, flush=True)  # fmt: skip
            return
        with self.lock:
            self.applied.append(request)
            self.state = {"status": "ok", "tag": tag, "delivery": delivery, "triggered_by": who}
        print(f"deployproof runner: applied {tag} (triggered by {who}, delivery {delivery})",
              file=sys.stderr, flush=True)  # fmt: skip


class _RunnerRequest(BaseHTTPRequestHandler):
    server: RunnerServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, status: int, data: dict[str, Any]) -> None:
        send(self, status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:
        if self.path != "/health":
            self._answer(404, {"error": "not found"})
            return
        with self.server.lock:
            state = dict(self.server.state)
        body = json.dumps(state).encode()  # signed: a client believes only the runner
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Hub-Signature-256", signature(self.server.secret, body))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        status, answer, request = self._judge()
        if request is not None:
            self.server.start_deploy(request)
        self._answer(status, answer)

    def _judge(self) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
        try:
            request = self._request()
        except Rejected as reject:
            return reject.status, {"error": reject.message}, None
        return 202, {"accepted": request["tag"]}, request

    def _request(self) -> dict[str, Any]:
        """The deploy request, or :class:`Rejected` with the answer to give."""
        if self.path != "/deploy":
            raise Rejected(404, "not found")
        body = read_signed(self, self.server.secret, MAX_BODY)
        try:
            request = json.loads(body)
        except (ValueError, RecursionError):
            raise Rejected(400, "not JSON") from None
        if not isinstance(request, dict):
            raise Rejected(400, "needs a JSON object")
        sent_at, delivery, tag = request.get("sent_at"), request.get("delivery"), request.get("tag")
        if not isinstance(sent_at, int | float) or isinstance(sent_at, bool):
            raise Rejected(400, "needs sent_at: the time it was sent, inside the signed body")
        if abs(time.time() - sent_at) > MAX_AGE_S:
            raise Rejected(401, "stale delivery")
        if not isinstance(delivery, str) or not DELIVERY.fullmatch(delivery):
            raise Rejected(400, "needs delivery: an id of 8-64 letters, digits or dashes")
        if not isinstance(tag, str) or not TAG.fullmatch(tag):
            raise Rejected(400, "needs a tag: a string of letters, digits, '.', '_' or '-'")
        if self.server.tag_pattern is not None and not self.server.tag_pattern.match(tag):
            raise Rejected(400, f"tag {tag} does not match the inventory's image_tag_pattern")
        if request.get("env") != self.server.env:
            raise Rejected(400, f"this runner deploys {self.server.env}")
        if not self.server.accept(delivery, float(sent_at), tag):
            raise Rejected(409, "duplicate delivery, or a deploy in progress")
        return request
