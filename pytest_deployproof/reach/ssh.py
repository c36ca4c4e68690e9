"""One OpenSSH connection per ssh:// host and process, shared by commands and the Docker API.

Measured on a host in a network namespace (benchmarks/ssh_docker.py has the figures):
a new ssh connection per command costs a key exchange (~0.35 s), which is what
testinfra's ssh backend does when no ControlPath is configured; docker-py's
``ssh://`` starts an ``ssh host docker system dial-stdio`` per pooled HTTP connection
and honours only ``~/.ssh/config``, not the host's identity file or timeout. So
deployproof opens one OpenSSH *master* connection per host (``ControlMaster``) and:

- runs testinfra's commands through it (testinfra's ssh backend, same ``ControlPath``):
  a command is one multiplexed session, no handshake;
- forwards the host's Docker socket over it to a private local unix socket, where
  docker-py speaks the Engine API at local speed (a container listing in milliseconds)
  and reads the same JSON as for a local engine, so every container check is the same
  code on every host.

A host that cannot be reached is remembered as such for the rest of the process:
its checks error at once with the same message instead of each waiting for the
connect timeout again (the run never stalls on a dead host).
"""

from __future__ import annotations

import atexit
import hashlib
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from ..errors import Inconclusive

if TYPE_CHECKING:  # plugin.py imports this module in every pytest run: keep it light
    from ..inventory.model import Host

__all__ = ["SshConnection", "close_all", "connection"]

KEEPALIVE_S = 5  # a host that stops answering mid-run is noticed after 2 of these
PERSIST_S = 300  # a master outliving a killed process goes away when idle this long


class _Connections:
    """This process's connections, in a private directory made on first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened: dict[str, SshConnection] = {}
        self.directory: Path | None = None

    def get(self, host: Host) -> SshConnection:
        key = _key(host)
        with self.lock:
            if key not in self.opened:
                if self.directory is None:
                    # Short: a unix socket path has ~100 bytes, and ssh appends to it.
                    self.directory = Path(tempfile.mkdtemp(prefix="dp-ssh-", dir="/tmp"))
                    atexit.register(self.close)
                self.opened[key] = SshConnection(host, self.directory / key[:16])
            return self.opened[key]

    def close(self) -> None:
        with self.lock:
            directory, connections = self.directory, list(self.opened.values())
            self.opened.clear()
            self.directory = None
        for each in connections:
            each.close()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


_CONNECTIONS = _Connections()


def connection(host: Host) -> SshConnection:
    """The process's connection to ``host`` (created, not yet opened, on first use)."""
    return _CONNECTIONS.get(host)


def close_all() -> None:
    """Close every master connection of this process and remove their sockets."""
    _CONNECTIONS.close()


def _key(host: Host) -> str:
    identity = repr(
        (
            host.name,
            host.spec,
            host.identity_file,
            host.ssh_config,
            host.ssh_args,
            host.connect_timeout_s,
        )
    )
    return hashlib.sha256(identity.encode()).hexdigest()


class SshConnection:
    """An OpenSSH master connection to one host, opened on first use."""

    def __init__(self, host: Host, base: Path) -> None:
        self.host = host
        self.control_path = f"{base}.m"
        self._docker_socket = f"{base}.d"
        parts = urlsplit(host.spec)
        self.target = parts.hostname or ""
        self.user = parts.username
        self.port = parts.port
        self._lock = threading.Lock()
        self._open = False
        self._forwarded = False
        self._unreachable: str | None = None

    # -- what ssh is told --------------------------------------------------

    def options(self) -> list[str]:
        """ssh options shared by the master and every client of it."""
        argv: list[str] = []
        if self.host.ssh_config:
            argv += ["-F", str(self.host.ssh_config)]
        if self.host.identity_file:
            argv += ["-i", str(self.host.identity_file)]
        if self.user:
            argv += ["-o", f"User={self.user}"]
        if self.port:
            argv += ["-o", f"Port={self.port}"]
        return [*argv, *self.host.ssh_args, *self._common()]

    def _common(self) -> list[str]:
        return [
            "-o",
            "BatchMode=yes",  # never wait for a password prompt nobody will answer
            "-o",
            f"ConnectTimeout={self.timeout_s}",
            "-o",
            f"ServerAliveInterval={KEEPALIVE_S}",
            "-o",
            "ServerAliveCountMax=2",
        ]

    @property
    def timeout_s(self) -> int:
        return max(1, round(self.host.connect_timeout_s))

    def testinfra_host(self) -> Any:
        """A testinfra host whose commands go through this connection's master."""
        import testinfra  # noqa: PLC0415 - optional until a check needs the host

        kwargs: dict[str, Any] = {
            "controlpath": self.control_path,
            "controlpersist": PERSIST_S,
            "timeout": self.timeout_s,
            "ssh_extra_args": shlex.join([*self.host.ssh_args, *self._common()]),
        }
        if self.host.ssh_config:
            kwargs["ssh_config"] = str(self.host.ssh_config)
        if self.host.identity_file:
            kwargs["ssh_identity_file"] = str(self.host.identity_file)
        return testinfra.get_host(self.host.spec, **kwargs)

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> None:
        """Start the master connection, or raise :class:`Inconclusive` saying why not."""
        with self._lock:
            if self._unreachable is not None:
                raise Inconclusive(self._unreachable)
            if self._open and Path(self.control_path).exists():
                return
            self._forwarded = False
            argv = [
                "ssh",
                *self.options(),
                "-o",
                "ControlMaster=yes",
                "-o",
                f"ControlPath={self.control_path}",
                "-o",
                f"ControlPersist={PERSIST_S}",
                "-o",
                "StreamLocalBindUnlink=yes",
                "-f",
                "-N",
                self.target,
            ]
            done = self._ssh(argv)
            if done.returncode != 0:
                self.unreachable(_last_line(done.stderr) or f"ssh exited {done.returncode}")
            self._open = True

    def unreachable(self, why: str) -> NoReturn:
        """Remember that the host cannot be reached, and raise that (never returns)."""
        if self._unreachable is None:
            self._unreachable = (
                f"host {self.host.name!r} is unreachable over ssh ({self.host.spec}): {why}"
            )
        raise Inconclusive(self._unreachable)

    def docker_socket(self) -> str:
        """A local unix socket that reaches the host's Docker engine through the master."""
        self.open()
        with self._lock:
            if self._forwarded and Path(self._docker_socket).exists():
                return self._docker_socket
            done = self._control(
                "forward", "-L", f"{self._docker_socket}:{self.host.docker_socket}"
            )
            if done.returncode != 0:
                raise Inconclusive(
                    f"cannot reach Docker on host {self.host.name!r}: forwarding "
                    f"{self.host.docker_socket} over ssh failed: {_last_line(done.stderr)}"
                )
            self._forwarded = True
            return self._docker_socket

    def run_with_input(self, argv: list[str], data: bytes) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on the host through the master, ``data`` on its stdin: how a file's
        content reaches the host without ever being on a command line."""
        self.open()
        command = ["ssh", *self.options(), "-o", f"ControlPath={self.control_path}"]
        command += [self.target, "--", shlex.join(argv)]
        try:
            done = subprocess.run(
                command, input=data, capture_output=True, timeout=self.timeout_s + 60, check=False
            )
        except subprocess.TimeoutExpired:
            self.unreachable(f"no answer in {self.timeout_s + 60} s")
        stderr = done.stderr.decode(errors="replace")
        if done.returncode == 255:
            self.unreachable(_last_line(stderr) or "ssh exited 255")
        return subprocess.CompletedProcess(argv, done.returncode, "", stderr)

    def close(self) -> None:
        with self._lock:
            if self._open:
                self._control("exit")
            self._open = self._forwarded = False

    def _control(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A control command (``ssh -O``) to the running master."""
        control = ["-o", f"ControlPath={self.control_path}", "-O", command, *args]
        return self._ssh(["ssh", *control, self.target])

    def _ssh(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run ssh; a hang past the connect timeout is exit 255, as ssh's own failures are."""
        try:
            return subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout_s + 5,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 255, "", f"no answer in {self.timeout_s} s")
        except OSError as exc:  # no ssh client on this machine
            raise Inconclusive(f"cannot run ssh for host {self.host.name!r}: {exc}") from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
