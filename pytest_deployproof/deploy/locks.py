"""One deploy per stack at a time, with a lock that a crash cannot leave stuck (DEP-9, BYD-7).

The lock is a *lease*: a small JSON file naming its owner (user@host, pid,
run id), when it was taken and when it expires. It is held through every
post-deploy step (a heartbeat renews it) and released at the end of teardown.
A lease is reclaimed, and the reclaiming run says so, when its owner is dead
(same host, pid gone) or when it has expired (an owner on another host
stopped renewing). Reading and replacing a lease happens under a short local
file lock, so two runs can never both believe they hold it.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

__all__ = ["Lease", "LockHeldError", "LockLostError", "StackLock", "stale_reason"]

DEFAULT_TTL_S = 900.0


@dataclass(frozen=True)
class Lease:
    stack: str
    owner: str
    hostname: str
    pid: int
    run_id: str
    acquired_at: float
    expires_at: float

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.acquired_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        until = datetime.fromtimestamp(self.expires_at, UTC).strftime("%H:%M:%S UTC")
        return (
            f"{self.owner} (pid {self.pid}, run {self.run_id}) since {since}, lease until {until}"
        )


class LockHeldError(Exception):
    """Another live run holds the stack's lease."""

    def __init__(self, stack: str, holder: Lease, waited_s: float) -> None:
        super().__init__(
            f"stack {stack} is being deployed by {holder.describe()}; waited {waited_s:.0f} s "
            f"(`deployproof lock {stack} --break` if you know it is gone)"
        )
        self.holder = holder


class LockLostError(Exception):
    """Our lease was taken over (it expired, or an operator broke it) while we held it."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_reason(lease: Lease, now: float | None = None) -> str | None:
    """Why ``lease`` no longer protects anything, or ``None`` while it does."""
    now = time.time() if now is None else now
    if lease.hostname == socket.gethostname() and not _pid_alive(lease.pid):
        return f"its process {lease.pid} is gone"
    if lease.expires_at < now:
        return "it expired without being renewed"
    return None


class StackLock:
    """The lease of one stack in ``directory``; use as ``with lock.held(timeout_s=...)``."""

    def __init__(
        self,
        directory: Path,
        stack: str,
        *,
        run_id: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        self.stack = stack
        self.path = directory / f"{stack}.lease"
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.ttl_s = ttl_s
        self._guard = FileLock(str(directory / f".{stack}.lease.guard"))
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()

    # -- reading and writing the lease (always under the guard) -------------

    def holder(self) -> Lease | None:
        try:
            return Lease(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:  # a torn or hand-edited file: treat as stale
            return Lease(self.stack, f"unreadable lease ({exc})", "", 0, "?", 0.0, 0.0)

    def _write(self, acquired_at: float) -> Lease:
        lease = Lease(
            stack=self.stack,
            owner=f"{getpass.getuser()}@{socket.gethostname()}",
            hostname=socket.gethostname(),
            pid=os.getpid(),
            run_id=self.run_id,
            acquired_at=acquired_at,
            expires_at=time.time() + self.ttl_s,
        )
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(asdict(lease)))
        os.replace(temporary, self.path)  # atomic: readers see the old or the new lease
        return lease

    # -- the protocol ---------------------------------------------------------

    def acquire(self, timeout_s: float = 0.0, poll_s: float = 0.25) -> str | None:
        """Take the lease, waiting up to ``timeout_s`` for a live holder.

        Returns a note when a stale lease was reclaimed (to be reported), else ``None``.
        Raises :class:`LockHeldError` naming the holder when the wait runs out.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        while True:
            with self._guard:
                current = self.holder()
                reason = stale_reason(current) if current else None
                if current is None or reason or current.run_id == self.run_id:
                    acquired = current.acquired_at if current and not reason else time.time()
                    self._write(acquired)
                    if current and reason and current.run_id != self.run_id:
                        return f"reclaimed the lease of {current.describe()}: {reason}"
                    return None
            waited = time.monotonic() - started
            if waited >= timeout_s:
                raise LockHeldError(self.stack, current, waited)
            time.sleep(min(poll_s, max(0.0, timeout_s - waited)))

    def renew(self) -> None:
        """Extend our lease; raise :class:`LockLostError` if it is no longer ours."""
        with self._guard:
            current = self.holder()
            if current is None or current.run_id != self.run_id:
                taken = current.describe() if current else "nobody (it was broken)"
                raise LockLostError(f"the lease of stack {self.stack} is now held by {taken}")
            self._write(current.acquired_at)

    def release(self) -> None:
        """Give the lease up if it is still ours (never remove someone else's)."""
        self._stop_heartbeat()
        with self._guard:
            current = self.holder()
            if current is not None and current.run_id == self.run_id:
                self.path.unlink()

    def start_heartbeat(self, interval_s: float | None = None) -> None:
        """Renew the lease in the background until released, so a long deploy keeps it."""
        interval = interval_s if interval_s is not None else self.ttl_s / 3
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    self.renew()
                except LockLostError:
                    return

        self._heartbeat = threading.Thread(target=beat, name=f"lease-{self.stack}", daemon=True)
        self._heartbeat.start()

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None

    @staticmethod
    def break_lease(directory: Path, stack: str) -> Lease | None:
        """Remove a stack's lease whoever holds it (the operator's ``--break``)."""
        lock = StackLock(directory, stack)
        with lock._guard:
            current = lock.holder()
            if current is not None:
                lock.path.unlink()
            return current
