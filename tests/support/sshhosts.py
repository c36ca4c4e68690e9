"""Real hosts for the ssh tests: network namespaces, each with its own sshd.

Each host is a network namespace joined to this one by a veth pair, with its own
address, its own sshd (Debian's openssh-server) and its own filesystem view: the
same directory, ``remote``, shows each host's own files (a bind mount made in the
sshd's private mount namespace), so a check that reads a host's files can only
pass by really reading them through ssh. Docker's socket is the machine's, so the
hosts share one engine; stacks are told apart by their Compose project names.

Keys (host keys and the client's) are generated here. Traffic goes only between
this namespace and the ones made here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

SSHD = "/usr/sbin/sshd"
SUBNET = "10.78"
SILENT = """
import socket, time
server = socket.create_server(("{address}", 22), backlog=64)
held = []
while True:
    held.append(server.accept()[0])
"""  # /30 blocks of 10.78.0.0/16, allocated under a lock shared by xdist workers


def missing_parts() -> str | None:
    """Why hosts cannot be made here, or ``None``."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path(SSHD).exists():
        return f"{SSHD} is not installed (Debian openssh-server)"
    return None


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass
class SshHost:
    """One host: a namespace, an address, an sshd and its own ``remote`` directory."""

    name: str
    namespace: str
    address: str
    files: Path  # this host's view of `remote`, as seen from the test's namespace
    sshd_log: Path
    command: list[str]  # how its sshd starts
    link: str = ""  # this side's end of the veth pair: `ip link set <link> down` cuts the host off
    gateway: str = ""  # this side's address, as the host reaches it
    process: subprocess.Popen[bytes] | None = None

    @property
    def spec(self) -> str:
        return f"ssh://root@{self.address}"

    def start_sshd(self) -> None:
        with self.sshd_log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        _wait_listening(self.address, 22, self.sshd_log)

    def stop_sshd(self) -> None:
        """Stop the host's sshd: new connections are refused from now on."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)

    def cut(self, *, off: bool) -> None:
        """Take the host's link down (a dropped network: packets vanish, nothing is refused),
        or bring it back."""
        _run("ip", "link", "set", self.link, "down" if off else "up")

    def connections(self) -> int:
        """How many ssh connections the host accepted (multiplexed sessions are not new ones)."""
        return self.sshd_log.read_text().count("Accepted publickey")


@dataclass
class SshHosts:
    """Hosts made for one test, a client key and an ssh_config that reaches them all."""

    base: Path
    lock: Path
    remote: Path  # the path every host mounts its own files at
    hosts: dict[str, SshHost] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = self.base / "keys"
        self.keys.mkdir(parents=True)
        self.remote.mkdir(parents=True)
        self.identity = self.keys / "id_ed25519"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.identity))
        self.known_hosts = self.keys / "known_hosts"
        self.known_hosts.touch()
        self.ssh_config = self.keys / "ssh_config"
        self.ssh_config.write_text(
            "Host *\n"
            f"  IdentityFile {self.identity}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n"
            "  StrictHostKeyChecking yes\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory

    def add(self, name: str, *, silent: bool = False) -> SshHost:
        tag = uuid.uuid4().hex[:8]
        namespace = f"dp-{tag}"
        with FileLock(str(self.lock)):
            here, address = self._free_block()
            outer, inner = f"dpo{tag}", f"dpi{tag}"
            _run("ip", "netns", "add", namespace)
            _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            _run("ip", "link", "set", inner, "netns", namespace)
            _run("ip", "addr", "add", f"{here}/30", "dev", outer)
            _run("ip", "link", "set", outer, "up")
        inside = ("ip", "netns", "exec", namespace)
        _run(*inside, "ip", "addr", "add", f"{address}/30", "dev", inner)
        _run(*inside, "ip", "link", "set", inner, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")

        home = self.base / name
        files = home / "files"
        files.mkdir(parents=True)
        host_key = home / "host_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
        with self.known_hosts.open("a") as known:
            known.write(f"{address} {Path(f'{host_key}.pub').read_text()}")
        authorized = home / "authorized_keys"
        shutil.copy(f"{self.identity}.pub", authorized)
        config = home / "sshd_config"
        config.write_text(
            f"ListenAddress {address}\nPort 22\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            f"StrictModes no\nPidFile {home / 'sshd.pid'}\nLogLevel VERBOSE\n"
            "AllowStreamLocalForwarding yes\nMaxSessions 50\nMaxStartups 50\n"
        )
        mount = f"mount --bind {files} {self.remote} && exec {SSHD} -D -e -f {config}"
        command = [*inside, "unshare", "--mount", "--propagation", "private", "sh", "-c", mount]
        if silent:  # accepts connections and never says a word: a hung host
            command = [*inside, sys.executable, "-c", SILENT.format(address=address)]
        host = SshHost(
            name, namespace, address, files, home / "sshd.log", command, link=outer, gateway=here
        )
        self.hosts[name] = host
        host.start_sshd()
        return host

    def _free_block(self) -> tuple[str, str]:
        """This side's and the host's address in a /30 no interface uses yet."""
        used = _run("ip", "-o", "-4", "addr", "show")
        for third in range(256):
            for fourth in range(0, 256, 4):
                outer = f"{SUBNET}.{third}.{fourth + 1}"
                if f" {outer}/" not in used:
                    return outer, f"{SUBNET}.{third}.{fourth + 2}"
        raise RuntimeError(f"no free /30 left in {SUBNET}.0.0/16")

    def remove(self) -> None:
        for host in self.hosts.values():
            host.stop_sshd()
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, check=False)


def _wait_listening(address: str, port: int, log: Path, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((address, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd on {address} did not listen; its log:\n{log.read_text()}")
