"""Release versions from git tags (DEP-6), with the ``semver`` library.

* staging: the latest ``vX.Y.Z`` tag, patch + 1 (v1.2.3 -> v1.2.4);
* production (promote): the staging tag, minor + 1 and patch 0 (v1.2.4 -> v1.3.0);
* hotfix: the production tag, patch + 1 (v1.3.0 -> v1.3.1).

Pre-release and build tags (v1.3.0-rc.1) are versions too, but never the base
of a next version. A computed tag that already exists is a conflict, named
with the commit it points at; nothing is guessed around it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import semver

from ..inventory.changes import ChangeError, git

__all__ = ["VersionError", "is_tag", "latest", "next_version", "parse_tag", "release_tags"]


class VersionError(Exception):
    pass


def parse_tag(tag: str) -> semver.Version | None:
    """``v1.2.3`` -> Version(1, 2, 3); ``None`` when the tag is not a ``v``-semver tag."""
    if not tag.startswith("v"):
        return None
    try:
        return semver.Version.parse(tag[1:])
    except ValueError:
        return None


def _git(repo: Path, *args: str) -> str:
    try:
        return git(repo, *args)
    except ChangeError as exc:
        raise VersionError(str(exc)) from None


def release_tags(repo: Path) -> dict[str, semver.Version]:
    """The repository's release tags (no pre-releases), by name."""
    found = {}
    for tag in _git(repo, "tag", "--list", "v*").split():
        version = parse_tag(tag)
        if version is not None and not version.prerelease and not version.build:
            found[tag] = version
    return found


def latest(repo: Path) -> str | None:
    tags = release_tags(repo)
    return max(tags, key=tags.__getitem__) if tags else None


def is_tag(repo: Path, name: str) -> bool:
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "-q", "--verify", f"refs/tags/{name}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def next_version(repo: Path, kind: str, base: str | None = None) -> str:
    """The next tag for ``kind`` (staging, production, hotfix) from ``base`` (default: the
    latest release tag); :class:`VersionError` on a conflict or without a base."""
    base = base or latest(repo)
    if base is None:
        raise VersionError("the repository has no vX.Y.Z tag to start from (tag v0.1.0 first)")
    version = parse_tag(base)
    if version is None:
        raise VersionError(f"{base!r} is not a vX.Y.Z tag")
    if kind in {"staging", "hotfix"}:
        result = version.bump_patch()
    elif kind == "production":
        result = version.bump_minor()
    else:
        raise VersionError(f"unknown kind {kind!r}: staging, production or hotfix")
    tag = f"v{result}"
    if is_tag(repo, tag):
        commit = _git(repo, "rev-list", "-n", "1", tag).strip()[:7]
        raise VersionError(f"tag {tag} already exists (at {commit}): {kind} of {base} conflicts")
    return tag
