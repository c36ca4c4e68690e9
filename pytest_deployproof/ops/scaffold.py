"""``deployproof init``: what a repository needs to start, written from packaged templates.

A new user's first hour goes into boilerplate: an inventory whose fields they must look
up, an E2E suite layout, four CI workflows whose permissions and pins are easy to get
wrong. ``init`` writes each of them once, filled in for one environment: the inventory
(from ``deployproof discover`` when asked, else a commented example), the JSON schema
beside it for editors, an example E2E suite, and GitHub workflows (the comment hook,
deploy on a tag, nightly drift, preflight on pull requests) with actions pinned by
commit SHA, this package pinned to the running version, and ``permissions`` read-only
unless a job must write.

It never overwrites: when any file it would write exists, it writes none and says which
(``--force`` replaces them), so a second run cannot half-change a repository. It never
writes outside the repository: a symbolic link on the way to a file it writes (a cloned
repository's ``.github/workflows`` pointing elsewhere), or the file itself being one, is
refused before anything is written; each file is replaced whole (a temporary file renamed).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import tempfile
from importlib import resources
from pathlib import Path
from string import Template

import yaml

from .. import __version__
from ..inventory.model import NAME_PATTERN
from ..inventory.schema import schema_text

__all__ = ["add_parser", "planned_files", "run"]

WORKFLOWS = ("comment", "deploy", "drift", "preflight")


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text()


def planned_files(env: str, state_dir: str) -> dict[Path, str]:
    """Each file ``init`` writes (relative to the repository) and its text."""
    values = {
        "deployproof_env": env,
        "deployproof_version": __version__,
        "deployproof_state_dir": _yaml_string(state_dir),
    }

    def fill(name: str) -> str:
        return Template(_template(name)).safe_substitute(values)

    files = {
        Path("inventories") / f"{env}.yml": fill("inventory.yml"),
        Path("inventory.schema.json"): schema_text(),
        Path("suites/e2e/example/test_example.py"): fill("e2e_example.py.txt"),
    }
    for workflow in WORKFLOWS:
        name = f"deployproof-{workflow}.yml"
        files[Path(".github/workflows") / name] = fill(f"workflows/{name}")
    return files


def _yaml_string(text: str) -> str:
    """``text`` as one double-quoted YAML scalar: a path holding `: `, ` #`, quotes or a
    newline stays the one string it is, and the template's comment after it stays a comment."""
    dumped = yaml.safe_dump(text, default_style='"', width=float("inf"), allow_unicode=True)
    return dumped.rstrip("\n")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser(
        "init",
        help="scaffold an inventory, the schema, an E2E suite and CI workflows",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  deployproof init --env prod                     # a commented inventory to fill in\n"
        "  deployproof init --env prod --discover          # the stacks running here\n"
        "  deployproof init --env prod --discover --host ssh://deploy@app1\n",
    )
    init.add_argument("--env", default="prod", help="the environment's name (default: prod)")
    init.add_argument("--dir", default=".", help="the repository (default: here)")
    init.add_argument(
        "--state-dir",
        help="where deploy history and leases live on the runner "
        "(default: /var/lib/deployproof/ENV)",
    )
    init.add_argument(
        "--discover", action="store_true", help="write the inventory from running stacks"
    )
    init.add_argument("--host", default="local://", help="with --discover: the host to read")
    init.add_argument("--force", action="store_true", help="replace files that exist")
    init.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    problem = _bad_arguments(args.env, root)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    files = planned_files(args.env, args.state_dir or f"/var/lib/deployproof/{args.env}")
    problem = _refused(root, files, force=args.force)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    inventory = Path("inventories") / f"{args.env}.yml"
    if args.discover:
        (root / inventory).parent.mkdir(parents=True, exist_ok=True)
        found = _discover(args.host, args.env, root / inventory)
        if found != 0:
            return found  # discover said why; nothing else was written
        del files[inventory]
    problem = _write_all(root, files)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    for path in files:
        print(f"wrote {path}")
    print(
        f"next: edit {inventory}, then `deployproof check` and "
        f'`pytest --env {args.env} -m "preflight or smoke"`'
    )
    return 0


def _bad_arguments(env: str, root: Path) -> str | None:
    """What is wrong with ``--env`` or ``--dir``, or ``None``."""
    if not re.fullmatch(NAME_PATTERN, env):
        return f"--env {env!r} is not a name (a-z, 0-9, _ and -)"
    if not root.is_dir():
        return f"--dir {root} is not a directory"
    return None


def _refused(root: Path, files: dict[Path, str], *, force: bool) -> str | None:
    """Why nothing may be written: a path leading out of ``root``, or files that exist
    (without ``force``); checked for every file before any is written."""
    for path in files:
        problem = _outside(root, path)
        if problem is not None:
            return f"{problem}; nothing was written"
    folders = sorted(str(path) for path in files if (root / path).is_dir())
    if folders:
        return f"{', '.join(folders)}: a directory where init writes a file; nothing was written"
    present = sorted(str(path) for path in files if (root / path).exists())
    if present and not force:
        return (
            f"{', '.join(present)} already exist{'s' if len(present) == 1 else ''}; "
            "nothing was written (--force replaces them)"
        )
    return None


def _outside(root: Path, relative: Path) -> str | None:
    """Why writing ``relative`` under ``root`` could land elsewhere, or ``None``. No symbolic
    link is followed, neither a directory on the way nor the file itself: a repository could
    point one anywhere the user may write. What is left must then resolve under ``root``."""
    path = root
    for part in relative.parts:
        path /= part
        if path.is_symlink():
            return (
                f"{path} is a symbolic link and init writes through none: remove it "
                "(or init another --dir)"
            )
        if path != root / relative and path.exists() and not path.is_dir():
            return f"{path} is not a directory: init writes {relative} below it"
    base = root.resolve()
    if not (root / relative).resolve().is_relative_to(base):
        return f"{root / relative} resolves outside {base}: init writes only inside --dir"
    return None


def _write_all(root: Path, files: dict[Path, str]) -> str | None:
    """Write every file or none: each is staged as a temporary file beside its target
    first, and only when all are staged are they renamed over their targets (a rename
    replaces a link itself, never what it points to). Returns why nothing was written."""
    staged: list[tuple[Path, Path]] = []
    try:
        for relative, text in files.items():
            target = root / relative
            staged.append((_stage(target, text), target))
    except OSError as exc:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        return f"cannot write {root / relative}: {exc.strerror or exc}; no file was written"
    for temporary, target in staged:
        os.replace(temporary, target)
    return None


def _stage(target: Path, text: str) -> Path:
    """``text`` in a temporary file beside ``target``, with the mode ``target`` has (a file
    the user made executable or private stays so), else 0644."""
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else 0o644
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, mode)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _discover(host: str, env: str, output: Path) -> int:
    """``deployproof discover`` for ``host``, writing the inventory to ``output``."""
    from . import discover  # noqa: PLC0415 - testinfra and docker are heavy

    parser = argparse.ArgumentParser(prog="deployproof")
    discover.add_parser(parser.add_subparsers())
    argv = ["discover", "--host", host, "--env", env, "--output", str(output), "--force"]
    return int(discover.run(parser.parse_args(argv)))
