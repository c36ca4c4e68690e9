"""State files survive a full disk and torn lines (TRU-2): appends are whole or absent,
and one unreadable line never blocks a rollback, a promotion check or the history.

The full disk is real: the writer runs in a child process whose file-size limit
(RLIMIT_FSIZE, with SIGXFSZ ignored, as a full filesystem answers) stops the write
part-way, which is exactly the short write that used to leave a torn line behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_deployproof.deploy.history import History
from pytest_deployproof.deploy.promotion import load_verified, record_verified
from pytest_deployproof.state_dir import StateDir, StateWriteError
from tests.support.filesystems import SmallDisk

LIMITED_WRITER = """
import resource, signal, sys
from pathlib import Path
from pytest_deployproof.deploy.history import History
from pytest_deployproof.state_dir import StateWriteError
path = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
room = path.stat().st_size + int(sys.argv[2])
unlimited = resource.RLIM_INFINITY
resource.setrlimit(resource.RLIMIT_FSIZE, (room, unlimited))
try:
    History(path).record("web", "staging", "deploy", "v3", "success", notes="x" * 400)
except StateWriteError as exc:
    print("refused:", exc)
    sys.exit(3)
finally:
    # Room again before exit: coverage's data file, written at exit, is not the subject.
    resource.setrlimit(resource.RLIMIT_FSIZE, (unlimited, unlimited))
"""


def test_a_full_disk_leaves_no_torn_line_and_the_next_append_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "deploy-history.log"
    history = History(path)
    history.record("web", "staging", "deploy", "v1", "success")
    history.record("web", "staging", "deploy", "v2", "success")
    before = path.read_bytes()

    # Room for 60 more bytes: the 400-byte line is written in part, then the disk is full.
    done = subprocess.run(
        [sys.executable, "-c", LIMITED_WRITER, str(path), "60"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "refused: [Errno 27] cannot append to" in done.stdout  # EFBIG, named with the file
    assert path.read_bytes() == before  # the partial 60 bytes were taken back

    history.record("web", "staging", "rollback", "v1", "success")
    assert [(e.action, e.version) for e in history.entries()] == [
        ("deploy", "v1"),
        ("deploy", "v2"),
        ("rollback", "v1"),
    ]
    last = history.last_good("web", "staging")
    assert last is not None
    assert last.version == "v1"


def test_a_full_filesystem_refuses_the_append_and_keeps_the_history_whole(
    small_disk: SmallDisk,
) -> None:
    path = small_disk.path / "deploy-history.log"
    history = History(path)
    history.record("web", "staging", "deploy", "v1", "success")
    before = path.read_bytes()
    small_disk.fill()
    with pytest.raises(StateWriteError, match="No space left on device"):
        history.record("web", "staging", "deploy", "v2", "success", notes="x" * 5000)
    assert path.read_bytes() == before
    small_disk.make_room()
    history.record("web", "staging", "deploy", "v2", "success")
    assert [e.version for e in history.entries()] == ["v1", "v2"]


def test_a_torn_history_line_does_not_block_the_rollback_target(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "deploy-history.log"
    history = History(path)
    history.record("web", "staging", "deploy", "v1", "success")
    with path.open("a") as handle:  # what a crash mid-write left before appends were whole
        handle.write("2026-12-04 10:00:00 | web | staging | dep")
    history.record("web", "staging", "deploy", "v2", "fail")
    history.record("web", "staging", "rollback", "v1", "success")
    # The torn line is the only one lost: the lines after it are whole and read.
    assert [(e.action, e.version, e.status) for e in history.entries()] == [
        ("deploy", "v1", "success"),
        ("deploy", "v2", "fail"),
        ("rollback", "v1", "success"),
    ]
    last = history.last_good("web", "staging")
    assert last is not None
    assert (last.action, last.version) == ("rollback", "v1")
    assert "deploy-history.log:2: not a valid line, skipped" in caplog.text


def test_a_torn_verified_line_is_skipped_and_the_rest_still_promotes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = StateDir(tmp_path)
    record_verified(state, "web", "v1.0.0", {"app:v1.0.0": ["sha256:aaa"]})
    with state.verified("web").open("a") as handle:
        handle.write('{"stack": "web", "version": "v1.1.0", "ima')
    record_verified(state, "web", "v1.2.0", {"app:v1.2.0": ["sha256:bbb"]})
    assert [v.version for v in load_verified(state, "web")] == ["v1.0.0", "v1.2.0"]
    assert "web.jsonl:2: not a valid line, skipped" in caplog.text
    assert len(state.verified("web").read_text().splitlines()) == 3
