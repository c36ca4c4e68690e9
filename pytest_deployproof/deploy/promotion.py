"""Verified promotion (DEP-5).

Every deploy that passes its verification records, in its environment's state
directory, the version AND the identity of each image it ran (the engine's image
id, and the registry digests it knows). An environment with ``promotion: {source:
staging}`` deploys only what its source verified: another version, or the same
tag now naming other image content, is refused before anything is touched,
unless ``--force REASON`` (the reason goes into the history). Its versions must
also be git tags of the repository: an untagged commit never gets there.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from ..state_dir import StateDir, append_line, read_lines, skip_torn

__all__ = ["Verified", "load_verified", "promotion_problem", "record_verified"]


@dataclass(frozen=True)
class Verified:
    stack: str
    version: str
    images: dict[str, list[str]]  # image -> [image id, repo digests...]
    at: float


def record_verified(
    state: StateDir, stack: str, version: str, images: dict[str, list[str]]
) -> None:
    line = json.dumps(asdict(Verified(stack, version, images, time.time())), sort_keys=True)
    append_line(state.verified(stack), line)


def load_verified(state: StateDir, stack: str) -> list[Verified]:
    path, verified = state.verified(stack), []
    for number, line in read_lines(path):
        try:
            verified.append(Verified(**json.loads(line)))
        except (ValueError, TypeError) as exc:
            skip_torn(path, number, exc)
    return verified


def promotion_problem(
    verified: list[Verified], version: str, images: dict[str, list[str]], source: str
) -> str | None:
    """Why ``version`` with these ``images`` may not be promoted; ``None`` when it may."""
    same = [v for v in verified if v.version == version]
    if not same:
        known = ", ".join(dict.fromkeys(v.version for v in reversed(verified))) or "none"
        return f"{version} was never verified in {source} (verified there: {known})"
    latest = same[-1]
    changed = []
    for image, identity in sorted(images.items()):
        recorded = latest.images.get(image)
        if recorded is None or not set(identity) & set(recorded):
            changed.append(
                f"{image} is {identity[0][:19] if identity else 'unknown'} here, "
                f"{(recorded or ['nothing'])[0][:19]} when {source} verified it"
            )
    if changed:
        return f"{version} is not what {source} verified: " + "; ".join(changed)
    return None
