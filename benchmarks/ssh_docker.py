"""Reaching a host's commands and Docker engine over ssh: which way is fast (issue #9).

One host in a network namespace with its own sshd (tests/support/sshhosts.py; needs root,
openssh-server and a Docker engine). Each way is timed for its first call (which
connects) and the median of the next ``--calls`` calls:

- a command, one new ssh connection each (testinfra's ssh backend without ControlPath);
- a command over deployproof's master connection (multiplexed session);
- list Compose containers: docker-py ``ssh://`` (one ``ssh ... docker system dial-stdio``
  per pooled connection), docker-py over the socket deployproof forwards through its
  master, and the ``docker ps`` command through the master (parsed JSON lines).

Usage: python benchmarks/ssh_docker.py [--calls 20]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_deployproof.inventory.model import Host
from pytest_deployproof.reach import ssh
from tests.support.sshhosts import SshHosts, missing_parts

LABEL = "com.docker.compose.project"


def timed(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """Seconds for the first call and the median of the next ``calls``."""
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return first, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    why = missing_parts()
    if why:
        sys.exit(f"cannot make a host here: {why}")
    import docker  # noqa: PLC0415 - after the check that says why it cannot run

    with tempfile.TemporaryDirectory(prefix="dp-bench-ssh-") as tmp:
        base = Path(tmp)
        hosts = SshHosts(base / "ssh", base / "lock", base / "remote")
        try:
            made = hosts.add("bench")
            host = Host(name="bench", spec=made.spec, ssh_config=hosts.ssh_config)
            config = ["ssh", "-F", str(hosts.ssh_config), f"root@{made.address}"]
            link = ssh.connection(host)
            link.open()
            multiplexed = [*config[:-1], "-o", f"ControlPath={link.control_path}", config[-1]]
            rows = [
                (
                    "command, new ssh connection each",
                    timed(lambda: subprocess.run([*config, "true"], check=True), args.calls),
                ),
                (
                    "command over the master connection",
                    timed(lambda: subprocess.run([*multiplexed, "true"], check=True), args.calls),
                ),
            ]
            # docker-py's ssh:// runs plain `ssh` (which reads the passwd entry's ~/.ssh):
            # a wrapper first on PATH gives it the host's ssh_config.
            wrapper = base / "bin" / "ssh"
            wrapper.parent.mkdir()
            wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {hosts.ssh_config} "$@"\n')
            wrapper.chmod(0o755)
            os.environ["PATH"] = f"{wrapper.parent}:{os.environ['PATH']}"
            for label, make in (
                (
                    "containers: docker-py ssh://",
                    lambda: docker.DockerClient(
                        base_url=f"ssh://root@{made.address}", use_ssh_client=True
                    ),
                ),
                (
                    "containers: docker-py, forwarded socket",
                    lambda: docker.DockerClient(base_url=f"unix://{link.docker_socket()}"),
                ),
            ):
                client: list[object] = []

                def listing(
                    make: Callable[[], object] = make, client: list[object] = client
                ) -> None:
                    if not client:
                        client.append(make())
                    client[0].api.containers(all=True, filters={"label": LABEL})  # type: ignore[attr-defined]

                try:
                    rows.append((label, timed(listing, args.calls)))
                except docker.errors.DockerException as exc:  # ssh:// needs paramiko
                    print(f"{label}: not measured: {exc}")
            remote = ["docker", "ps", "-a", "--no-trunc", "--filter", f"label={LABEL}",
                      "--format", "{{json .}}"]  # fmt: skip
            ps = [*multiplexed, shlex.join(remote)]  # ssh hands one string to the host's shell
            rows.append(
                (
                    "containers: `docker ps` over the master",
                    timed(lambda: subprocess.run(ps, check=True, capture_output=True), args.calls),
                )
            )
        finally:
            ssh.close_all()
            hosts.remove()
    print(f"{'way':<42} {'first call':>10} {'median next':>12}")
    for label, (first, median) in rows:
        print(f"{label:<42} {first * 1000:8.1f} ms {median * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
