"""A small real filesystem that a test can fill up: the "disk full" fault.

``small_disk`` mounts a tmpfs of 256 KiB (root only, as CI runs) and unmounts it
afterwards; ``fill(leave=N)`` writes a ballast file until only N bytes are free, so
the next write the product makes fails with ENOSPC exactly as on a full server.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.need import need


@dataclass
class SmallDisk:
    path: Path

    def free(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Write ballast until at most ``leave`` bytes are free (tmpfs counts in pages)."""
        with (self.path / ".ballast").open("ab") as ballast:
            while self.free() > leave:
                try:
                    ballast.write(b"\0" * min(4096, max(1, self.free() - leave)))
                    ballast.flush()
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break

    def make_room(self) -> None:
        (self.path / ".ballast").unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 256 KiB tmpfs mounted for this test (the disk-full fault)."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        need("a mountable tmpfs (root)", done.stderr.strip() or "mount failed")
    try:
        yield SmallDisk(mountpoint)
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
