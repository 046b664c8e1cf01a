"""The one owner of a task's log on the hub: paths, reads by offset, whole-line appends, events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dobby.store import tasklog
from dobby.store.tasklog import TaskLogs

CLAUDE_INIT = json.dumps(
    {"type": "system", "subtype": "init", "session_id": "s1", "model": "m", "cwd": "/w"}
)


def test_append_keeps_whole_lines_and_size_is_the_offset(tmp_path: Path) -> None:
    logs = TaskLogs(root=tmp_path)
    assert logs.size("t1") == 0 and logs.mtime("t1") is None
    assert logs.read("t1", 5) == (b"", 5)
    with logs.writer("t1") as sink:
        assert sink.size == 0
        assert sink.append(b"one\ntw") == b"one\n"  # the partial line waits for the rest
        assert sink.size == 4
        assert sink.append(b"no newline yet") == b""
        assert sink.append(b"two\nthree", final=True) == b"two\nthree"  # the agent ended
    assert logs.path("t1") == tmp_path / "t1" / "out.jsonl"
    assert logs.path("t1").read_bytes() == b"one\ntwo\nthree"
    assert logs.size("t1") == 13 and logs.mtime("t1") is not None
    assert logs.read("t1", 4, 4) == (b"two\n", 8)
    assert list(logs.lines("t1")) == ["one\n", "two\n", "three"]
    with logs.writer("t1") as again:  # a restarted follower resumes where the copy ends
        assert again.size == 13
    assert logs.read("t1", 2**53 - 2) == (b"", 2**53 - 2)  # past the end: nothing, no OSError


def test_a_copy_is_made_with_its_first_line(tmp_path: Path) -> None:
    logs = TaskLogs(root=tmp_path)
    with logs.writer("quiet") as sink:
        assert sink.append(b"no newline yet") == b""  # nothing whole: still nothing made
        assert not sink.dirty
    assert not (tmp_path / "quiet").exists()  # a task that printed nothing: no dir, no file
    assert logs.size("quiet") == 0 and list(logs.lines("quiet")) == []
    with logs.writer("quiet") as sink:
        assert sink.append(b"one\n") == b"one\n"
    assert logs.path("quiet").read_bytes() == b"one\n"
    assert (logs.path("quiet").stat().st_mode & 0o777) == 0o600


def test_a_copy_that_cannot_be_made_raises_and_keeps_the_offset(tmp_path: Path) -> None:
    logs = TaskLogs(root=tmp_path)
    (tmp_path / "t1").symlink_to(tmp_path / "gone" / "t1")  # a dir that cannot be made
    sink = logs.writer("t1")
    try:
        with pytest.raises(OSError):
            sink.append(b"one\n")
        assert sink.size == 0 and not sink.dirty
    finally:
        sink.close()
    with pytest.raises(ValueError, match="closed"):
        sink.append(b"two\n")


def test_tail_returns_whole_lines_only(tmp_path: Path) -> None:
    logs = TaskLogs(root=tmp_path)
    with logs.writer("t1") as sink:
        sink.append(b"aaaa\nbbbb\ncccc\n")
    assert logs.tail("t1", 100) == b"aaaa\nbbbb\ncccc\n"
    assert logs.tail("t1", 7) == b"cccc\n"  # "bb\ncccc\n" starts mid-line
    assert logs.tail("t1", 3) == b""
    assert logs.tail("none", 10) == b""


def test_reset_moves_the_previous_attempt_aside(tmp_path: Path) -> None:
    logs = TaskLogs(root=tmp_path)
    logs.reset("t1")  # nothing yet: nothing to do
    with logs.writer("t1") as sink:
        sink.append(b"first attempt\n")
    logs.reset("t1")
    assert logs.size("t1") == 0
    kept = [p.name for p in (tmp_path / "t1").iterdir()]
    assert len(kept) == 1 and kept[0].startswith("out.") and kept[0] != "out.jsonl"


def test_entries_carry_the_byte_offset_of_their_line() -> None:
    data = f"{CLAUDE_INIT}\nnot json é\n".encode()
    entries = tasklog.entries("claude", data, offset=100)
    assert [off for off, _ in entries] == [100, 100 + len(CLAUDE_INIT) + 1]
    assert entries[0][1]["kind"] == "system" and entries[0][1]["data"]["session_id"] == "s1"
    assert entries[1][1] == {
        "kind": "line",
        "text": "not json é",
        "tool": None,
        "target": None,
        "is_error": False,
        "data": {},
    }
    assert tasklog.events("claude", data) == [e for _, e in entries]


def test_events_go_through_each_backend() -> None:
    assert [e["text"] for e in tasklog.events("shell", b"  indented\n\nlast\r\n")] == [
        "  indented",
        "last",
    ]
    codex = json.dumps({"type": "thread.started", "thread_id": "th"}).encode()
    (event,) = tasklog.events("codex", codex + b"\n")
    assert event["kind"] == "system" and event["data"] == {"session_id": "th"}
