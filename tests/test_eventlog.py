"""The event log and the readers' cursors: seq through restarts and rotation, reads from a
cursor, one follower per reader."""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest

from jobmon import logscan
from jobmon.eventlog import LIMIT, Cursor, EventLog, Position, ReaderError
from jobmon.events import Event, JobRef

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
    assert EventLog(path).last_seq() == 2  # the mark remembers seq 2, though its line is gone
    path.with_name("events.seq").unlink()  # a session from before the mark: the older file says it
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


# ---------------------------------------------------------------- a log that never loses its place


def end(n: int) -> Event:
    return Event(kind="state", type="slurm", id=str(n), host="c", before="RUNNING", after="FAILED",
                 terminal=True, outcome="failure", time=T)


class Reader:
    """A reader as a follower is one: read from its cursor, print, move the cursor to the last
    event given. ``where`` kept: it reads on incrementally; dropped: it starts fresh each time."""

    def __init__(self, log: EventLog, seq: int, *, keeps_place: bool = True) -> None:
        self.log, self.seq, self.keeps_place = log, seq, keeps_place
        self.where: Position | None = None
        self.given: list[Event] = []

    def take(self) -> list[Event]:
        events, where = self.log.read_from(self.seq, self.where)
        self.where = where if self.keeps_place else None
        if events:
            self.seq = events[-1].seq
        self.given += events
        return events


def readers(log: EventLog) -> list[Reader]:
    """One reading on from where it stands, one that starts fresh, both up to date."""
    both = [Reader(log, 0), Reader(log, 0, keeps_place=False)]
    for reader in both:
        reader.take()
    return both


def ends_once(log: EventLog, both: list[Reader], n: int = 99) -> Event:
    """An end appended now reaches every reader exactly once, and the numbering goes on past it."""
    (ended,) = log.append([end(n)])
    for reader in both:
        assert [e.id for e in reader.take()] == [str(n)]
        assert reader.take() == []
    (after,) = log.append([ev(n + 1)])
    assert after.seq == ended.seq + 1
    for reader in both:
        assert [e.seq for e in reader.take()] == [after.seq]
        assert [e.id for e in reader.given].count(str(n)) == 1
    return ended


def big(n: int, jobs: int = 2500) -> Event:
    refs = tuple(JobRef("slurm", str(100000 + i), "cluster-a", "RUNNING", "COMPLETED") for i in range(jobs))
    return Event("changes", detail=f"{jobs} jobs moved", jobs=refs, time=T)


@pytest.mark.parametrize("mark", ["kept", "lost"])
def test_a_200_kb_last_line_does_not_restart_the_numbering(tmp_path: Path, mark: str) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append([ev(1), ev(2)])
    both = readers(log)
    log.append([big(3)])
    assert len(log.path.read_bytes().splitlines()[-1]) > 200_000
    for reader in both:
        assert [e.seq for e in reader.take()] == [3]
    if mark == "lost":  # the log alone: read back past the long line
        log.mark_path.unlink()
    assert log.last_seq() == 3
    assert ends_once(log, both).seq == 4


@pytest.mark.parametrize("mark", ["kept", "lost"])
def test_a_junk_last_line_is_skipped_and_the_numbering_goes_on(tmp_path: Path, mark: str) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append([ev(1), ev(2), ev(3)])
    both = readers(log)
    with open(log.path, "ab") as f:
        f.write(b'garbage "seq": 1}\n' + b"\xff" * 70_000 + b"\n")  # longer than 64 KiB, and not UTF-8
    if mark == "lost":
        log.mark_path.unlink()
    assert log.last_seq() == 3
    assert ends_once(log, both).seq == 4


def test_a_deleted_log_goes_on_from_its_mark(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", limit=600)
    log.append([ev(n) for n in range(1, 4)])
    log.append([ev(n) for n in range(4, 6)])  # rotated: events.jsonl.1 holds 1-3
    both = readers(log)
    log.path.unlink()
    assert log.last_seq() == 5
    for reader in both:
        assert reader.take() == []
    assert ends_once(log, both).seq == 6
    assert oct(log.mark_path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("looks_between", [False, True])
@pytest.mark.parametrize("limit", [LIMIT, 600])
def test_a_log_removed_with_its_mark_is_read_anew_by_a_reader_further_on(tmp_path: Path, looks_between: bool,
                                                                         limit: int) -> None:
    log = EventLog(tmp_path / "events.jsonl", limit=limit)
    for n in range(1, 7):
        log.append([ev(n)])
    both = readers(log)
    late = Reader(log, 6, keeps_place=False)  # a new follower of a reader served before (its cursor file)
    for path in (log.path, log.old, log.mark_path):
        path.unlink(missing_ok=True)
    if looks_between:  # the readers look while there is no log
        for reader in [*both, late]:
            assert reader.take() == []
    if limit == 600:  # the new log rotates before the readers look: its older file is new to them too
        for n in range(1, 5):
            log.append([ev(n)])
        assert [e.seq for e in EventLog(log.old).since(0)] == [1, 2, 3]
        for reader in [*both, late]:
            assert [e.seq for e in reader.take()] == [1, 2, 3, 4]
    ended = ends_once(log, [*both, late])
    assert ended.seq == (5 if limit == 600 else 1)  # the session began anew: below every reader's cursor


def padded(n: int, size: int) -> Event:
    """An event whose logged line (seq 1-9) is ``size`` bytes long, newline included."""
    bare = len(json.dumps(Event("state", "slurm", str(n), "c", after="RUNNING", time=T, seq=1).to_json())) + 1
    return Event("state", "slurm", str(n), "c", after="RUNNING", detail="x" * (size - bare), time=T)


@pytest.mark.parametrize("lands", ["mid-line", "on a line"])
def test_a_log_replaced_under_the_same_inode_is_read_anew(tmp_path: Path, lands: str) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    for n in range(1, 4):
        log.append([padded(n, 400)])
    both = readers(log)  # both at byte 1200, past seq 3
    if lands == "on a line":  # a fresh reader cannot tell a new log from the old once it has caught up
        both = both[:1]       # with the reader's cursor (seq 3 either way); the offset it kept can
    with open(log.path, "wb"):  # cut in place: the inode stays, as a file system reusing it would
        pass
    log.mark_path.unlink()
    # Written past the readers' offset before they look: in the middle of a line, or lines of
    # 600 bytes, so that seq 3 starts right at byte 1200.
    new = [big(1, 100)] if lands == "mid-line" else [padded(n, 600) for n in range(1, 4)]
    log.append(new)
    for reader in both:
        assert [e.seq for e in reader.take()] == list(range(1, len(new) + 1))
    assert ends_once(log, both).seq == len(new) + 1


def test_a_seq_of_infinity_is_skipped_and_stops_no_reader(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append([ev(1), ev(2)])
    both = readers(log)
    line = json.dumps(ev(3).to_json())[:-1] + ', "seq": Infinity}\n'
    with open(log.path, "a") as f:
        f.write(line)
    for reader in both:
        assert reader.take() == []
    log.mark_path.unlink()
    assert log.last_seq() == 2
    assert ends_once(log, both).seq == 3
    assert [e.seq for e in log.since(0)] == [1, 2, 3, 4]


def test_a_rotation_in_the_middle_of_a_readers_catch_up_loses_and_repeats_nothing(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", limit=1000)
    log.append([ev(1), ev(2)])
    both = readers(log)
    behind = Reader(log, 1, keeps_place=False)  # a fresh reader whose cursor is in what becomes .1
    log.append([ev(3), ev(4), ev(5)])  # the file passes the limit: the next append rotates it
    (rotated,) = log.append([ev(6)])
    assert [e.seq for e in EventLog(log.old).since(0)] == [1, 2, 3, 4, 5]
    assert rotated.seq == 6
    for reader in both:  # the one reading on finishes the rotated file from its offset, then the new one
        assert [e.seq for e in reader.take()] == [3, 4, 5, 6]
    assert [e.seq for e in behind.take()] == [2, 3, 4, 5, 6]  # found by seq in the rotated file
    ends_once(log, [*both, behind])
    for reader in [*both, behind]:
        assert [e.seq for e in reader.given] == list(range(reader.given[0].seq, 9))


def test_a_reader_past_the_older_file_never_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EventLog(tmp_path / "events.jsonl", limit=1000)
    for n in range(1, 12):
        log.append([ev(n)])
    assert log.old.exists()
    opened: list[str] = []
    real = logscan.lines_from
    monkeypatch.setattr(logscan, "lines_from", lambda fd, *a, **k: opened.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real(fd, *a, **k))
    assert [e.seq for e in log.since(10)] == [11]
    assert not any(p.endswith(".1") for p in opened)


# ---------------------------------------------------------------- bad lines: skipped, said once


BAD = [b"garbage", b'{"seq": 3, "kind": "sta', b'{"time": "2026-12-01T12:00:00", "kind": "state", "seq": Infinity}',
       b"[1, 2]", b'"text"', b"[" * 20000 + b"]" * 20000, b'{"kind": "state", "time": "x\xff\xfe"}',
       b'{"kind": "state", "time": "2026-12-01T12:00:00", "seq": true}', b'{"kind": "state", "time": "2026-12-01T12:00:00"}']


def test_every_bad_line_is_skipped_and_said_once_however_often_it_is_read(tmp_path: Path) -> None:
    from loguru import logger

    said: list[str] = []
    sink = logger.add(lambda m: said.append(m.record["message"]), level="WARNING")
    try:
        log = EventLog(tmp_path / "events.jsonl")
        log.append([ev(1)])
        with open(log.path, "ab") as f:
            f.write(b"\n".join(BAD) + b"\n")
        log.append([ev(2)])
        incremental = Reader(log, 0)
        for _ in range(5):  # a follower's looks, a fresh reader's, `jobmon events --all`
            incremental.take()
            log.since(0)
            log.read_from(0, None)
        assert [e.seq for e in incremental.given] == [1, 2] == [e.seq for e in log.since(0)]
    finally:
        logger.remove(sink)
    assert len(said) == len(BAD), said
    assert all("is not an event, skipped" in m and "events.jsonl" in m for m in said)


# ---------------------------------------------------------------- finding the place


def big_log(path: Path, n: int) -> None:
    """``n`` events as EventLog.append writes them, in one go (~300 bytes each)."""
    head = json.dumps(Event("state", "slurm", "X", "cluster-a", description="train " + "p" * 60, before="PENDING",
                            after="RUNNING", detail="node gpu07 " + "q" * 60, time=T).to_json())[:-1]
    path.write_text("".join(head.replace('"X"', f'"{i}"') + f', "seq": {i}}}\n' for i in range(1, n + 1)))
    path.with_name("events.seq").write_text(f"{n}\n")


def test_a_reader_near_the_end_of_a_100000_event_log_reads_a_few_kilobytes(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    big_log(log.path, 100_000)
    size = log.path.stat().st_size
    assert size > 25_000_000
    read: list[int] = []
    real = logscan.pread
    monkeypatch.setattr(logscan, "pread", lambda fd, n, at: read.append(len(real(fd, n, at))) or real(fd, n, at))
    got, where = log.read_from(99_990, None)
    assert [e.seq for e in got] == list(range(99_991, 100_001))
    assert where is not None and where.offset == size
    assert sum(read) < 200_000, sum(read)
    read.clear()
    assert log.last_seq() == 100_000 and sum(read) < 10_000
    for cursor in (0, 1, 99_999, 100_000):  # the edges
        got, _ = log.read_from(cursor, None)
        want = list(range(cursor + 1, 100_001))
        assert [e.seq for e in got] == want, cursor
