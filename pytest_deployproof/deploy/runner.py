"""The remote deploy backend (DEP-8): an IaC runner behind a signed POST.

Client side (:class:`RunnerClient`): a stack with ``runner: {url, secret_env}`` is
deployed by ``POST <url>/deploy`` with ``{"env", "tag", "triggered_by"}`` signed
``X-Hub-Signature-256: sha256=<HMAC-SHA256 hex of the exact body>``, a delivery id
and a timestamp; then ``GET <url>/health`` is polled until the runner reports the
tag applied (or failed). The same suites verify it afterwards.

Server side (:class:`RunnerServer`, ``deployproof runner serve``): the reference
runner, small enough to read in one sitting. It refuses to start without a
secret, compares signatures in constant time, rejects deliveries older than five
minutes or seen before, bodies over 64 KiB, non-JSON and tags that are not plain
words, and applies one deploy at a time: the tag into the env file, then
``docker compose up --wait``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from ..signed_http import Deliveries, Rejected, read_signed, send, signature

__all__ = ["RunnerClient", "RunnerError", "RunnerServer"]

MAX_BODY = 64 * 1024
MAX_AGE_S = 300
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class RunnerError(Exception):
    pass


class RunnerClient:
    """Deploys through a runner and waits until it has applied the tag."""

    def __init__(self, url: str, secret: str, timeout_s: float = 300) -> None:
        self.url = url.rstrip("/")
        self.secret = secret.encode()
        self.timeout_s = timeout_s

    def deploy(self, env: str, tag: str, triggered_by: str) -> str:
        body = json.dumps({"env": env, "tag": tag, "triggered_by": triggered_by}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature(self.secret, body),
            "X-Deployproof-Delivery": uuid.uuid4().hex,
            "X-Deployproof-Timestamp": str(int(time.time())),
        }
        try:
            response = httpx.post(f"{self.url}/deploy", content=body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            raise RunnerError(f"runner {self.url} unreachable: {type(exc).__name__}") from None
        if response.status_code != 202:
            raise RunnerError(
                f"runner refused the deploy: HTTP {response.status_code} {response.text.strip()}"
            )
        return self.wait(tag)

    def wait(self, tag: str) -> str:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                state = httpx.get(f"{self.url}/health", timeout=10).json()
            except (httpx.HTTPError, ValueError):
                state = {"status": "unreachable"}
            if state.get("tag") == tag and state.get("status") == "ok":
                return f"runner applied {tag}"
            if state.get("tag") == tag and state.get("status") == "failed":
                raise RunnerError(f"runner failed to apply {tag}: {state.get('error', '?')}")
            if time.monotonic() > deadline:
                raise RunnerError(
                    f"runner did not apply {tag} within {self.timeout_s:g} s: {state}"
                )
            time.sleep(0.5)


class RunnerServer(ThreadingHTTPServer):
    """The reference runner for one stack (``apply(tag)`` does the work)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], secret: str, env: str, apply: Any) -> None:
        if not secret:
            raise ValueError(
                "refusing to start without a runner secret (DEPLOYPROOF_RUNNER_SECRET)"
            )
        self.secret, self.env, self.apply = secret.encode(), env, apply
        self.deliveries = Deliveries()
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {"status": "ok", "tag": None}
        self.applied: list[dict[str, Any]] = []
        super().__init__(address, _RunnerRequest)

    def accept(self, delivery: str, tag: str) -> bool:
        """Take this delivery as THE deploy, or refuse it: deciding and marking the runner
        busy is one step under the lock, so two requests at the same instant never both
        pass (docs/requirements.md#tru-2)."""
        with self.lock:
            if self.state["status"] == "deploying" or not self.deliveries.first(delivery):
                return False
            self.state = {"status": "deploying", "tag": tag}
            return True

    def run_deploy(self, request: dict[str, Any]) -> None:
        try:
            self.apply(request["tag"])
        except Exception as exc:  # the runner reports, it does not die
            with self.lock:
                self.state = {"status": "failed", "tag": request["tag"], "error": str(exc)[:500]}
            return
        with self.lock:
            self.applied.append(request)
            self.state = {"status": "ok", "tag": request["tag"]}


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
        self._answer(200, dict(self.server.state))

    def do_POST(self) -> None:
        status, answer, request = self._judge()
        if request is not None:
            threading.Thread(target=self.server.run_deploy, args=(request,), daemon=True).start()
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
            sent = int(self.headers.get("X-Deployproof-Timestamp", ""))
        except ValueError:
            sent = 0
        if abs(time.time() - sent) > MAX_AGE_S:
            raise Rejected(401, "stale delivery")
        try:
            request = json.loads(body)
        except ValueError:
            raise Rejected(400, "not JSON") from None
        if not isinstance(request, dict) or not TAG.fullmatch(str(request.get("tag", ""))):
            raise Rejected(400, "needs a JSON object with a plain tag")
        if request.get("env") != self.server.env:
            raise Rejected(400, f"this runner deploys {self.server.env}")
        delivery = self.headers.get("X-Deployproof-Delivery", "")
        if not self.server.accept(delivery, str(request["tag"])):
            raise Rejected(409, "duplicate delivery, or a deploy in progress")
        return request
