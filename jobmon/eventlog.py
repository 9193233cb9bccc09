"""The session's event log, ``events.jsonl`` beside the registry, and each reader's cursor.

The poller appends every event here, numbered by ``seq``, before anyone prints it; followers
print from it. The log is the single truth of what happened: a watch that is killed and armed
again starts after the last event its reader was given, so it loses nothing and repeats
nothing, and polling never depends on who is listening.

``seq`` only grows through the session's whole life: rotation (past ``limit`` bytes the file
becomes ``events.jsonl.1``) keeps it, and the mark ``events.seq`` (the highest seq given, written
before the events) keeps it when the log's last line is junk or huge, or the log is cut or
removed. A log removed with its mark starts again at 1; a reader whose cursor is further on
sees that its numbers went down and is given the new log whole.

A reader finds its place by halving the file's bytes (``logscan``), never by reading the log
whole, and then reads only what was added. No line stops a reader: one that is not an event is
skipped, and said once.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import threading
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

from loguru import logger

from jobmon import logscan
from jobmon.events import Event
from jobmon.files import FileError, append, atomic_write, open_file, private_dir, read_bytes

LIMIT = 4 << 20  # bytes before the log rotates: ~14,000 events; the file before it is kept
READER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SAID = 1000  # bad lines remembered per log: each is said once, not at every look
REPLACED = "replaced"


class Position(NamedTuple):
    """Where a reader stands in the current file: its inode, the byte offset read up to, and the
    highest seq before that offset (new lines below it: another file under the same inode)."""

    inode: int
    offset: int
    last: int = 0


class _File(NamedTuple):
    """One of the log's two files, open: still the same file whatever is renamed meanwhile."""

    path: Path
    fd: int
    inode: int
    size: int


Part = tuple[_File, int]  # a file and the offset (a line's start) to read it from


class EventLog:
    def __init__(self, path: Path, limit: int = LIMIT) -> None:
        self.path = path
        self.old = path.with_name(path.name + ".1")
        self.lock_path = path.with_name(path.name + ".lock")
        self.mark_path = path.with_suffix(".seq")  # the highest seq ever given: events.seq
        self.limit = limit
        # Set at each append: a follower in the poller's own process (a foreground watch)
        # wakes at once instead of at its next look.
        self.appended = threading.Event()
        self._said: dict[tuple[int, int], None] = {}  # (inode, offset) of the bad lines said
        self._said_lock = threading.Lock()

    # ------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        private_dir(self.path.parent)
        fd = open_file(self.lock_path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append(self, events: Sequence[Event]) -> list[Event]:
        """Number the events and write them in one go; return them with their ``seq``. One
        cycle's events land together, so a follower prints them together."""
        if not events:
            return []
        from dataclasses import replace

        with self._locked():
            last = self.last_seq()
            if _size(self.path) > self.limit:
                os.replace(self.path, self.old)
            numbered = [replace(e, seq=last + i + 1) for i, e in enumerate(events)]
            data = "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in numbered)
            # The mark first: a crash between the two skips these numbers, never gives them
            # twice (the data first, then a log cut before the mark is written, would).
            marked = self._mark(numbered[-1].seq)
            try:
                append(self.path, data.encode("utf-8"))  # all of one cycle's events or none
            except FileError:
                if marked:  # nothing was added: the numbers were given to no one
                    self._mark(last, quiet=True)
                raise
        self.appended.set()
        return numbered

    def _mark(self, seq: int, *, quiet: bool = False) -> bool:
        try:
            atomic_write(self.mark_path, f"{seq}\n".encode(), mode=0o600)
            return True
        except FileError as exc:  # the events still carry their seq: the log alone says it
            if not quiet:
                logger.warning("{}; seq goes on from the log alone", exc)
            return False

    def _marked(self) -> int:
        text = (read_bytes(self.mark_path) or b"").strip()
        return int(text) if text.isdigit() and len(text) <= 18 else 0

    def last_seq(self) -> int:
        """The highest seq given so far (0 for a new session): the mark's, or the log's last
        numbered line's when higher (a mark lost, or not written: a full disk)."""
        with self._opened() as (cur, old):
            in_log = _last(cur) or _last(old)
            return max(self._marked(), in_log)

    # ------------------------------------------------------------ reading

    def since(self, seq: int) -> list[Event]:
        """Every event after ``seq``, from both files, in order."""
        events, _ = self.read_from(seq, None)
        return events

    def read_from(self, seq: int, where: Position | None) -> tuple[list[Event], Position | None]:
        """Events after ``seq``, and where the current file was read up to.

        With ``where`` (what an earlier call returned) only the lines added since are read: the
        rest of that file, and the file after it if it was rotated; they are new by
        construction. Without it, or when that file is gone or was replaced, the place is found
        again by seq; a log numbered anew below ``seq`` is new to this reader and given whole.
        """
        if where is not None and _unchanged(self.path, where):
            return [], where  # the idle case: one stat, nothing read
        with self._opened() as (cur, old):
            got = self._continued(seq, where, cur, old) if where is not None else None
            if isinstance(got, tuple):
                return got
            return self._fresh(seq, cur, old, anew=got is REPLACED)

    def _continued(self, seq: int, where: Position, cur: _File | None, old: _File | None
                   ) -> tuple[list[Event], Position | None] | str | None:
        """The lines added since ``where``; None when its file is gone or cut, ``REPLACED`` when
        another file took its inode number (a file system reuses a freed one)."""
        if cur is not None and cur.inode == where.inode and cur.size >= where.offset:
            parts: list[Part] = [(cur, where.offset)]
        elif old is not None and old.inode == where.inode and old.size >= where.offset:
            parts = [(old, where.offset)] + ([(cur, 0)] if cur is not None else [])  # rotated since
        else:
            return None
        if not logscan.at_line_start(parts[0][0].fd, where.offset):
            return REPLACED  # the saved place is mid-line now
        events, end, top = self._events(parts)
        if events and events[0].seq <= where.last:
            return REPLACED  # numbers going down at the saved place
        floor = where.last
        if seq > floor and seq <= self.last_seq():
            floor = seq  # the reader was given these elsewhere (its cursor moved on without us)
        if cur is None:
            return _above(events, floor), None
        last = max(top, where.last) if len(parts) == 1 else top
        return _above(events, floor), Position(cur.inode, end, last)

    def _fresh(self, seq: int, cur: _File | None, old: _File | None, *, anew: bool = False
               ) -> tuple[list[Event], Position | None]:
        """The events after ``seq``, the place found by halving each file (``logscan``); all of
        them when the log began anew (``anew``: the reader's file was seen replaced)."""
        cur_last = _last(cur)
        first = logscan.first_line(cur.fd, 0, cur.size) if cur is not None else None
        old_last = _last(old)
        if first is not None and old_last >= first[2]:
            old, old_last = None, 0  # numbered anew since: the older file is another log's
        if anew or seq > max(self._marked(), cur_last or old_last):
            seq = 0  # removed with its mark, the log began anew below the reader: all of it is new
            if first is None:  # but a new log rotates only after its first lines: the older file is the old log's
                old = None
        parts: list[Part] = []
        if old is not None and seq < old_last:  # the older file only when the reader is not past it
            parts.append((old, logscan.find_after(old.fd, old.size, seq)))
        if cur is not None:
            start = 0 if first is None or first[2] > seq else logscan.find_after(cur.fd, cur.size, seq)
            parts.append((cur, start))
        events, end, top = self._events(parts)
        where = Position(cur.inode, end, max(top, cur_last)) if cur is not None else None
        return _above(events, seq), where

    def _events(self, parts: list[Part]) -> tuple[list[Event], int, int]:
        """Every event of the parts, in order; where the last part's whole lines end, and the
        highest seq among them."""
        events: list[Event] = []
        end = top = 0
        for f, start in parts:
            end, top = start, 0
            for offset, line in logscan.lines_from(f.fd, start, f.size, block=logscan.BIG):
                end = offset + len(line) + 1
                event = self._event(line, f, offset)
                if event is not None:
                    events.append(event)
                    top = max(top, event.seq)
        return events, end, top

    def _event(self, line: bytes, f: _File, offset: int) -> Event | None:
        if not line.strip():
            return None
        try:
            event = Event.from_json(json.loads(line))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError; "[" * 100000
            self._say(f, offset, str(exc))
            return None
        if not event.seq:
            self._say(f, offset, "it has no seq")
            return None
        return event

    def _say(self, f: _File, offset: int, why: str) -> None:
        """Warn of a bad line once: a follower looks again every 0.2 s, a fresh read again."""
        key = (f.inode, offset)
        with self._said_lock:
            if key in self._said:
                return
            if len(self._said) >= SAID:
                del self._said[next(iter(self._said))]
            self._said[key] = None
        logger.warning("{}: the line at byte {} is not an event, skipped: {}", f.path, offset, why[:200])

    @contextlib.contextmanager
    def _opened(self) -> Iterator[tuple[_File | None, _File | None]]:
        """Both files, open. The current one first: a rotation between the two opens shows as
        one inode twice, and both are opened again."""
        with contextlib.ExitStack() as stack:
            for _ in range(5):
                cur, old = _open(self.path, stack), _open(self.old, stack)
                if cur is None or old is None or cur.inode != old.inode:
                    break
            yield cur, (old if cur is None or old is None or cur.inode != old.inode else None)


def _open(path: Path, stack: contextlib.ExitStack) -> _File | None:
    try:
        fd = open_file(path, os.O_RDONLY)  # never through a link
    except FileError as exc:
        if exc.errno == errno.ENOENT:  # no older file yet, or a log removed
            return None
        raise
    stack.callback(os.close, fd)
    st = os.fstat(fd)
    return _File(path, fd, st.st_ino, st.st_size)


def _last(f: _File | None) -> int:
    return logscan.last_seq(f.fd, f.size) if f is not None else 0


def _above(events: list[Event], floor: int) -> list[Event]:
    """The events past ``floor``, each past the one before (a line out of order was had)."""
    out = []
    for event in events:
        if event.seq > floor:
            out.append(event)
            floor = event.seq
    return out


def _unchanged(path: Path, where: Position) -> bool:
    try:
        st = os.lstat(path)  # a link is refused when it is opened
    except FileNotFoundError:
        return False
    return st.st_ino == where.inode and st.st_size == where.offset


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------- readers


class ReaderError(Exception):
    """A reader name jobmon refuses (one line)."""


class Cursor:
    """How far one reader (``--reader``, default ``agent``) has been given the log: the last
    seq printed to it, in ``readers/<name>.seq``. The follower that serves a reader holds
    ``readers/<name>.lock``; a newer follower of the same reader asks it to go
    (``readers/<name>.stop``) and takes over, so two watches never print the same events."""

    def __init__(self, folder: Path, name: str) -> None:
        if not READER.fullmatch(name):
            raise ReaderError(f"--reader {name[:80]!r}: use up to 64 letters, digits, '-', '_' and '.'")
        self.name = name
        base = folder / "readers"
        self.path = base / f"{name}.seq"
        self.lock_path = base / f"{name}.lock"
        self.stop_path = base / f"{name}.stop"
        self._lock_fd: int | None = None

    def get(self) -> int:
        text = (read_bytes(self.path) or b"").decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else 0

    def set(self, seq: int) -> None:
        """A watch killed at any moment leaves the old or the new value, never half of one. Not
        synced to disk: this runs once per printed line."""
        private_dir(self.path.parent)
        atomic_write(self.path, f"{seq}\n".encode(), mode=0o600, sync=False)

    # ------------------------------------------------------------ one follower per reader

    def claim(self, wait: float = 10.0, *, ask: bool = True) -> bool:
        """Become this reader's only follower: ask the current one to stop (unless not to
        ``ask``) and wait for it (``wait`` seconds at most). False if it did not let go."""
        import time

        private_dir(self.path.parent.parent)  # the session folder, made by this reader's first watch
        private_dir(self.path.parent)
        fd = open_file(self.lock_path, os.O_RDWR | os.O_CREAT)
        deadline = time.monotonic() + wait
        asked = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if ask and not asked:
                    os.close(open_file(self.stop_path, os.O_WRONLY | os.O_CREAT))
                    asked = True
                if time.monotonic() > deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            self.stop_path.unlink()
        self._lock_fd = fd
        return True

    def held(self) -> bool:
        return self._lock_fd is not None

    def superseded(self) -> bool:
        """A newer follower of this reader asked this one to go."""
        return self._lock_fd is not None and self.stop_path.exists()

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
