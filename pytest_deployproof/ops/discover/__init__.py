"""``deployproof discover``: an inventory written from the Compose projects a host runs.

Writing the first inventory by hand means reading every project's labels, files and
ports and knowing how deployproof names things (project names from directories,
compose files, tag variables, password keys). The host already knows all of it: this
command reads it (:mod:`.projects`), maps each project to a stack conservatively
(:mod:`.stacks`, :mod:`.endpoints`) and writes a file the loader accepts and that
holds no secret (:mod:`.writing`). Running the checks stays ``pytest --env NAME``.

Exit codes: 0 written; 1 Docker or Compose could not be reached (one line naming
where), or the result would not validate; 2 a usage error (a bad option or host
spec, an existing output file without ``--force``).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from ...errors import Inconclusive
from ...inventory.model import NAME_PATTERN, Host
from ...secrets import Masker
from .projects import Project, list_projects, read_project
from .stacks import Discovered, build_stack
from .writing import inventory_text, leaks, validate, write_atomically

__all__ = ["add_parser", "run"]

SCHEMES = ("local", "ssh")
EPILOG = """\
examples:
  deployproof discover                                # the local engine -> inventories/prod.yml
  deployproof discover --host ssh://deploy@vps1 --env staging --project 'web-*'
  deployproof discover --output - > /tmp/prod.yml     # the YAML on stdout
  deployproof discover --json --force                 # a JSON summary on stdout, for scripts
  pytest --env prod -m smoke                          # then prove what was found

--json prints one object (the YAML itself is not in it):
  {"env": "prod", "host": {"name": "local", "spec": "local://"},
   "output": "inventories/prod.yml", "projects": [{"name": "web", "status": "running(2)",
   "working_dir": "/srv/web", "config_files": [...], "env_files": [...],
   "services": ["web", "db"], "stack": "web"}, ...],
   "stacks": [{"name": "web", ...the stack as written}, ...], "warnings": ["stack web: ..."]}
  a project left out (Compose refused its files) has "stack": null and a warning.
"""


def _host(spec: str) -> Host:
    """``--host``: a local:// or ssh:// spec, as the inventory's hosts take them."""
    scheme = spec.partition("://")[0]
    if scheme not in SCHEMES:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: discover reads local:// or ssh://user@host[:port] hosts"
        )
    name = "local"
    if scheme == "ssh":
        try:
            hostname = urlsplit(spec).hostname or ""
        except ValueError:
            hostname = ""
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", hostname).strip("-._") or "remote"
    try:
        return Host(name=name, spec=spec)
    except ValidationError as exc:
        reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise argparse.ArgumentTypeError(reason) from None


def _env_name(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: an environment name is letters, digits, '.', '_' and '-'"
        )
    return value


def add_parser(commands: Any) -> None:
    """Register ``discover`` on the CLI's subcommands."""
    discover = commands.add_parser(
        "discover",
        help="write an inventory from the Compose projects a host runs",
        description="Write an inventory from the Compose projects a host runs: one host, one "
        "layer, a stack per project. Check it, then prove it with pytest --env NAME.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    discover.add_argument(
        "--host", default=_host("local://"), type=_host, metavar="SPEC",
        help="local:// (default) or ssh://user@host[:port]",
    )  # fmt: skip
    discover.add_argument(
        "--env", type=_env_name, help="environment name (default: prod, or the --output file's)"
    )
    discover.add_argument(
        "--output", metavar="FILE", help="default: inventories/<env>.yml; '-' prints the YAML"
    )
    discover.add_argument("--force", action="store_true", help="overwrite an existing file")
    discover.add_argument(
        "--json", action="store_true", help="print a summary as JSON on stdout instead of text"
    )
    discover.add_argument(
        "--project", action="append", metavar="GLOB", default=[],
        help="only Compose projects whose name matches (repeatable)",
    )  # fmt: skip
    discover.set_defaults(run=run)


def _target(args: argparse.Namespace) -> tuple[str, Path | None] | str:
    """``(env, output path or None for stdout)``, or the usage error."""
    output: str | None = args.output
    if output == "-":
        if args.json:
            return "--output - prints the YAML on stdout, --json the summary: choose one"
        return args.env or "prod", None
    if output is None:
        env = args.env or "prod"
        path = Path("inventories") / f"{env}.yml"
    else:
        path = Path(output)
        if path.suffix not in (".yml", ".yaml"):
            return f"--output {output}: an inventory file ends in .yml or .yaml"
        env = args.env or path.stem
        if env != path.stem:
            return (
                f"--env {env} but --output {output} would be environment {path.stem!r} "
                "(an environment is named by its file)"
            )
    if path.exists() and not args.force:
        return f"{path} exists; pass --force to overwrite it, or --output another file"
    return env, path


def _where(host: Host) -> Any:
    """Turn a published host ip into the address the checks will use (from here)."""
    remote = urlsplit(host.spec).hostname if host.spec.startswith("ssh://") else None

    def where(ip: str) -> str | None:
        if ip in ("", "0.0.0.0", "::"):  # noqa: S104 - compared, never bound
            address = remote or "127.0.0.1"
        elif remote and (ip.startswith("127.") or ip == "::1"):
            return None  # the remote host's loopback: nothing here reaches it
        else:
            address = ip
        return f"[{address}]" if ":" in address else address

    return where


def _discover(
    args: argparse.Namespace, say: Any
) -> tuple[list[Project], list[Discovered], list[str], Masker]:
    from ...reach.hosts import HostAccess  # noqa: PLC0415 - testinfra is heavy
    from .endpoints import verify  # noqa: PLC0415

    host: Host = args.host
    access = HostAccess(host)
    projects = list_projects(access)  # Inconclusive: the engine or Compose did not answer
    if args.project:
        projects = [
            p for p in projects if any(fnmatch.fnmatchcase(p.name, g) for g in args.project)
        ]
    warnings: list[str] = []
    if not projects:
        warnings.append(f"no Compose project on host {host.name} ({host.spec}) to write")
    masker, stacks, where = Masker(), [], _where(host)
    for project in projects:
        problem = read_project(access, project, masker)
        masker = masker.with_env(project.env).with_env(_rendered_env(project))
        if problem is not None:
            warnings.append(f"project {project.name} left out: {masker(problem)}")
            continue
        services = _count(len(project.services), "service")
        say(masker(f"discover: project {project.name} ({services}) in {project.working_dir}"))
        stack = build_stack(project, host.name, where, verify)
        stacks.append(stack)
        warnings += [f"stack {stack.name}: {line}" for line in stack.warnings]
    return projects, stacks, [masker(line) for line in warnings], masker


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _rendered_env(project: Project) -> dict[str, str | None]:
    """Every service's resolved environment: Compose may hold secrets the env file does not."""
    found: dict[str, str | None] = {}
    for declared in project.services.values():
        environment = declared.get("environment") or {}
        if isinstance(environment, dict):
            found.update({str(k): None if v is None else str(v) for k, v in environment.items()})
    return found


def run(args: argparse.Namespace) -> int:
    """The command: discover, validate, write, summarise."""
    target = _target(args)
    if isinstance(target, str):
        print(f"error: {target}", file=sys.stderr)
        return 2
    env, path = target

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        projects, stacks, warnings, masker = _discover(args, say)
    except Inconclusive as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    finally:
        _close_connections()
    host: Host = args.host
    text = inventory_text(host.name, host.spec, stacks, warnings)
    if leaks(text, masker):
        warnings.append("a secret value also appears as a name, user or path; masked: fix it")
        text = masker(inventory_text(host.name, host.spec, stacks, warnings))
    problem = validate(text, env)
    if problem is not None:
        print(f"error: the discovered inventory does not validate: {problem}", file=sys.stderr)
        return 1
    for line in warnings:
        say(f"warning: {line}")
    if path is None:
        sys.stdout.write(text)
    else:
        try:
            write_atomically(path, text)
        except OSError as exc:
            print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    summary = _summary(
        env, host=host, path=path, projects=projects, stacks=stacks, warnings=warnings
    )
    if args.json:
        sys.stdout.write(masker.escaped()(json.dumps(summary, indent=2)) + "\n")
    else:
        names = ", ".join(stack.name for stack in stacks) or "none"
        where = "stdout" if path is None else str(path)
        lines = [f"wrote {where}: {_count(len(stacks), 'stack')} ({names}) from host "
                 f"{host.name} ({host.spec}); {_count(len(warnings), 'warning')}"]  # fmt: skip
        if path is not None:
            inventory = "" if path.parent == Path("inventories") else f" --inventory {path}"
            lines.append(f"next: pytest{inventory} --env {env} -m smoke")
        print(masker("\n".join(lines)), file=sys.stderr if path is None else sys.stdout)
    return 0


def _summary(
    env: str,
    *,
    host: Host,
    path: Path | None,
    projects: list[Project],
    stacks: list[Discovered],
    warnings: list[str],
) -> dict[str, Any]:
    written = {stack.name for stack in stacks}
    return {
        "env": env,
        "host": {"name": host.name, "spec": host.spec},
        "output": "-" if path is None else str(path),
        "projects": [
            {
                "name": project.name,
                "status": project.status,
                "working_dir": project.working_dir,
                "config_files": list(project.config_files),
                "env_files": list(project.env_files),
                "services": sorted(project.services),
                "stack": project.name if project.name in written else None,
            }
            for project in projects
        ],
        "stacks": [{"name": stack.name, **stack.entry} for stack in stacks],
        "warnings": warnings,
    }


def _close_connections() -> None:
    """Close the engine clients and ssh connections this command opened."""
    from ...reach import docker_client, ssh  # noqa: PLC0415

    docker_client.close_all()
    ssh.close_all()
