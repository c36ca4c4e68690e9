"""Which stacks a repository change touches (INV-5).

A change maps to stacks through three kinds of rules in the inventory:
``stacks.<name>.paths`` (this stack), ``layers.<name>.paths`` (every stack of
that layer, e.g. ``libs/**`` -> all platform stacks) and ``skip_paths``
(changes that deliberately map to nothing, with the reason: ``bootstrap/**``
is applied by hand, ``finance/**`` has its own CI). A skip rule wins: a file
it matches is reported as skipped and maps to no stack.

"Changed since REV" means what a pull request shows: the files that differ
between the merge base of REV and HEAD and the working tree, plus untracked
files, so uncommitted edits count too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ._glob import compile_glob
from .model import Inventory

__all__ = [
    "ChangeError",
    "Impact",
    "changed_files",
    "git",
    "head_sha",
    "impact_of",
    "repository_root",
    "work_tree_of",
]


class ChangeError(Exception):
    """The change set cannot be computed (not a repository, unknown revision)."""


@dataclass(frozen=True)
class Impact:
    """What a set of changed files means for the inventory."""

    files: tuple[str, ...]
    stacks: frozenset[str]
    skipped: dict[str, str] = field(default_factory=dict)  # file -> reason
    unmapped: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{len(self.files)} changed files -> {len(self.stacks)} stacks"]
        if self.skipped:
            reasons = sorted(set(self.skipped.values()))
            parts.append(f"{len(self.skipped)} skipped ({'; '.join(reasons)})")
        if self.unmapped:
            parts.append(f"{len(self.unmapped)} map to no stack")
        return ", ".join(parts)


def git(repo: Path, *args: str) -> str:
    """``git -C repo args...``'s output; :class:`ChangeError` with git's own words if not."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise ChangeError(
            "git is not installed (--changed-since, release tags and the state_dir check need it)"
        ) from None
    if done.returncode != 0:
        raise ChangeError(done.stderr.strip() or f"git {' '.join(args)} failed")
    return done.stdout


def repository_root(start: Path) -> Path:
    """The top of the git work tree that holds ``start``."""
    try:
        return Path(git(start, "rev-parse", "--show-toplevel").strip())
    except ChangeError as exc:
        raise ChangeError(f"{start} is not inside a git repository ({exc})") from None


def work_tree_of(path: Path) -> Path | None:
    """The git work tree ``path`` would be inside (it need not exist yet), or ``None``."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        return Path(git(existing, "rev-parse", "--show-toplevel").strip())
    except ChangeError:
        return None


def head_sha(start: Path) -> str | None:
    """The commit checked out where ``start`` is; ``None`` outside a repository."""
    try:
        return git(start, "rev-parse", "HEAD").strip() or None
    except ChangeError:
        return None


def changed_files(repo: Path, since: str) -> tuple[str, ...]:
    """Files changed between the merge base of ``since`` and HEAD, and the work tree."""
    try:
        base = git(repo, "merge-base", since, "HEAD").strip()
    except ChangeError as exc:
        raise ChangeError(f"{since!r} is not a revision of the repository {repo}: {exc}") from None
    tracked = git(repo, "diff", "--name-only", "--no-renames", base, "--").splitlines()
    untracked = git(repo, "ls-files", "--others", "--exclude-standard").splitlines()
    return tuple(sorted({*tracked, *untracked}))


def impact_of(inventory: Inventory, files: Iterable[str]) -> Impact:
    """Map changed repository paths to the stacks they affect."""
    skip_rules = [
        (compile_glob(pattern), reason) for pattern, reason in inventory.skip_paths.items()
    ]
    stack_rules = [
        (compile_glob(pattern), frozenset({stack.name}))
        for stack in inventory.stacks.values()
        for pattern in stack.paths
    ]
    for layer in inventory.layers.values():
        members = frozenset(s.name for s in inventory.stacks.values() if s.layer == layer.name)
        stack_rules += [(compile_glob(pattern), members) for pattern in layer.paths]

    files = tuple(files)
    stacks: set[str] = set()
    skipped: dict[str, str] = {}
    unmapped: list[str] = []
    for path in files:
        reason = next((why for rule, why in skip_rules if rule.match(path)), None)
        if reason is not None:
            skipped[path] = reason
            continue
        hits = [names for rule, names in stack_rules if rule.match(path)]
        if hits:
            stacks.update(*hits)
        else:
            unmapped.append(path)
    return Impact(files, frozenset(stacks), skipped, tuple(unmapped))
