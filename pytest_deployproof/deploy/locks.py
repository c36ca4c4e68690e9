"""One deploy per stack at a time, with a lock that a crash cannot leave stuck (DEP-9, BYD-7).

The lock is a *lease*: a small JSON file naming its owner (user@host, pid,
run id), when it was taken and when it expires. It is held through every
post-deploy step (a heartbeat renews it) and released at the end of teardown.
A lease is reclaimed, and the reclaiming run says so, when its owner is dead
(same host, pid gone) or when it has expired (an owner on another host
stopped renewing). Reading and replacing a lease happens under a short local
file lock, so two runs can never both believe they hold it.

"Same host" means the same machine and boot and the same PID namespace (two
containers may share a hostname and a pid), and "dead" means that pid no longer
runs the process that took the lease (its start time tells a reused pid apart).
A live holder on this host keeps its lease even past its expiry: only an operator
breaks it. A heartbeat that cannot renew (a full disk, a broken lease) is not
silent: the holder learns it at its next phase boundary (:meth:`StackLock.check`).
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
    # Who the process is, beyond its pid (empty/0 in leases written before these existed).
    boot_id: str = ""
    pid_namespace: str = ""
    started: int = 0  # the process's start time, in clock ticks since boot
    # What the holder is changing, written before it changes anything (see mark_changing):
    # a run that finds this in a dead holder's lease knows the stack is half-changed.
    action: str = ""
    version: str = ""
    previous: str = ""
    changed: bool = False

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


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read().strip()
    except OSError:
        return ""


def _boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _start_time(pid: int) -> int:
    """The process's start time (field 22 of /proc/PID/stat); 0 when it does not exist."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _here(lease: Lease) -> bool:
    """Whether the lease's process would be visible to us: same machine, boot, PID namespace."""
    if lease.hostname != socket.gethostname():
        return False
    if lease.boot_id and lease.boot_id != _boot_id():
        return False
    return not (lease.pid_namespace and lease.pid_namespace != _pid_namespace())


def stale_reason(lease: Lease, now: float | None = None) -> str | None:
    """Why ``lease`` no longer protects anything, or ``None`` while it does."""
    now = time.time() if now is None else now
    if _here(lease):
        if not _pid_alive(lease.pid):
            return f"its process {lease.pid} is gone"
        if lease.started and _start_time(lease.pid) != lease.started:
            return f"its process {lease.pid} is gone (the pid now belongs to another process)"
        return None  # a live holder keeps its lease, expired or not: only --break takes it
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
        self.lost: str | None = None  # why the heartbeat could not renew, once it could not
        self.reclaimed: Lease | None = None  # the dead holder's lease, when acquire took it over
        self._intent: dict[str, object] = {}

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
            boot_id=_boot_id(),
            pid_namespace=_pid_namespace(),
            started=_start_time(os.getpid()),
            **self._intent,  # type: ignore[arg-type]
        )
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(asdict(lease)))
            os.replace(temporary, self.path)  # atomic: readers see the old or the new lease
        except OSError:
            temporary.unlink(missing_ok=True)  # a full disk: the old lease stays, whole
            raise
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
                        self.reclaimed = current
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

    def mark_changing(self, action: str, version: str, previous: str | None) -> None:
        """Say in the lease, before the stack is changed, what is being done to it: if this
        process dies, the run that reclaims the lease knows to record it and roll back."""
        self._intent = {
            "action": action,
            "version": version,
            "previous": previous or "",
            "changed": True,
        }
        self.renew()

    def check(self) -> None:
        """At a phase boundary: raise :class:`LockLostError` unless the lease is still ours
        (the heartbeat failed, or someone broke or took it), renewing it if it is."""
        if self.lost is not None:
            raise LockLostError(self.lost)
        try:
            self.renew()
        except OSError as exc:
            raise LockLostError(f"renewing the lease of stack {self.stack} failed: {exc}") from None

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
                except (LockLostError, OSError) as exc:  # e.g. a full disk
                    self.lost = f"renewing the lease of stack {self.stack} failed: {exc}"
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
