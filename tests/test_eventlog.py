"""The event log and the readers' cursors: seq through restarts and rotation, reads from a
cursor, one follower per reader."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from jobmon.eventlog import Cursor, EventLog, ReaderError
from jobmon.events import Event

T = datetime(2026, 12, 1, 12, 0, 0)


def ev(n: int) -> Event:
    return Event("state", "slurm", str(n), "c", after="RUNNING", time=T)


def test_seq_grows_through_restarts_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first = EventLog(path, limit=300)
    assert [e.seq for e in first.append([ev(1), ev(2)])] == [1, 2]
    later = EventLog(path, limit=300)  # a new poller: goes on from the log's last number
    for n in range(3, 10):
        later.append([ev(n)])
    assert path.with_name("events.jsonl.1").exists()  # rotated at least once
    assert later.last_seq() == 9
    assert [(e.seq, e.id) for e in EventLog(path).since(6)] == [(7, "7"), (8, "8"), (9, "9")]


def test_an_empty_file_after_rotation_still_knows_the_last_seq(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, limit=10)
    log.append([ev(1)])
    log.append([ev(2)])  # rotates: events.jsonl.1 holds seq 1
    path.write_text("")  # as if rotated again with nothing written since
    assert EventLog(path).last_seq() == 1
    assert EventLog(path).append([ev(3)])[0].seq == 2


def test_a_torn_last_line_does_not_swallow_the_next_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append([ev(1)])
    with open(path, "a") as f:
        f.write('{"seq": 2, "kind": "sta')  # a writer killed mid-line
    (event,) = log.append([ev(3)])
    assert event.seq == 1 + 1  # the torn line has no seq that counts
    assert [e.id for e in log.since(0)] == ["1", "3"]
    assert all(json.loads(ln) for ln in path.read_text().splitlines()[2:])


def test_incremental_reads_see_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, limit=600)
    log.append([ev(1), ev(2)])
    got, where = log.read_from(0, None)
    assert [e.seq for e in got] == [1, 2]
    assert log.read_from(2, where) == ([], where)  # nothing new: one stat, nothing read
    with open(path, "a") as f:
        f.write('{"half": ')  # a line still being written waits for its newline
    got, where = log.read_from(2, where)
    assert got == []
    path.write_text(path.read_text()[: -len('{"half": ')])
    log.append([ev(3), ev(4), ev(5)])  # rotates past 600 bytes
    got, where = log.read_from(2, where)
    assert [e.seq for e in got] == [3, 4, 5]


def test_a_cursor_remembers_and_a_reader_name_is_checked(tmp_path: Path) -> None:
    cursor = Cursor(tmp_path, "agent")
    assert cursor.get() == 0
    assert cursor.claim()
    cursor.set(41)
    assert Cursor(tmp_path, "agent").get() == 41 and Cursor(tmp_path, "other").get() == 0
    cursor.release()
    for bad in ("../x", "", "a b", "x" * 65, "-rf"):
        with pytest.raises(ReaderError, match="use up to 64 letters"):
            Cursor(tmp_path, bad)


def test_a_newer_follower_of_a_reader_takes_it_over(tmp_path: Path) -> None:
    old, new = Cursor(tmp_path, "agent"), Cursor(tmp_path, "agent")
    assert old.claim()
    assert not new.claim(wait=0.0, ask=False)  # a one-shot command never takes it
    assert not old.superseded()
    assert not new.claim(wait=0.1)  # asks, and the old one has not let go yet
    assert old.superseded()
    old.release()
    assert new.claim(wait=1.0)
    assert not new.superseded()  # the request was for the old one


# ---------------------------------------------------------------- links and hostile lines (issue 12)


def test_an_event_log_linked_to_a_victim_is_refused_and_the_victim_untouched(tmp_path: Path) -> None:
    from jobmon.files import FileError

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    log = EventLog(tmp_path / "s" / "events.jsonl")
    log.append([ev(1)])
    log.path.unlink()
    log.path.symlink_to(victim)
    link = f"{log.path}: is a symbolic link; refused (jobmon never follows links to its own files)"
    with pytest.raises(FileError) as info:
        log.append([ev(2)])
    assert str(info.value) == link
    with pytest.raises(FileError) as info:
        log.since(0)
    assert str(info.value) == link
    assert victim.read_text() == "precious\n"


def test_the_event_logs_lock_and_a_readers_files_are_never_followed(tmp_path: Path) -> None:
    from jobmon.files import FileError

    folder = tmp_path / "s"
    folder.mkdir()
    planted = tmp_path / "planted"
    (folder / "events.jsonl.lock").symlink_to(planted)
    with pytest.raises(FileError, match="events.jsonl.lock: is a symbolic link"):
        EventLog(folder / "events.jsonl").append([ev(1)])
    (folder / "readers").mkdir()
    (folder / "readers" / "agent.seq").symlink_to(planted)
    (folder / "readers" / "agent.lock").symlink_to(planted)
    cursor = Cursor(folder, "agent")
    with pytest.raises(FileError, match="agent.seq: is a symbolic link"):
        cursor.get()
    with pytest.raises(FileError, match="agent.lock: is a symbolic link"):
        cursor.claim(wait=0)
    assert not planted.exists()


def test_an_event_line_nested_too_deep_is_skipped(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append([ev(1)])
    with open(log.path, "a") as out:  # within the tail last_seq reads, so it is parsed there too
        out.write("[" * 20000 + "]" * 20000 + "\n")
    log.append([ev(2)])
    assert [e.seq for e in log.since(0)] == [1, 2]
