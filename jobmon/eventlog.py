"""The session's event log, ``events.jsonl`` beside the registry, and each reader's cursor.

The poller appends every event here, numbered by ``seq``, before anyone prints it; followers
print from it. The log is the single truth of what happened: a watch that is killed and armed
again starts after the last event its reader was given, so it loses nothing and repeats
nothing, and polling never depends on who is listening.

``seq`` grows through the session's whole life: a new poller goes on from the last number in
the log, and rotation (past ``limit`` bytes the file becomes ``events.jsonl.1``) keeps it.
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

from jobmon.events import Event
from jobmon.files import FileError, append, atomic_write, open_file, private_dir, read_bytes

LIMIT = 4 << 20  # bytes before the log rotates: ~14,000 events; the file before it is kept
TAIL = 64 << 10  # bytes read from the end of the log to find its last seq
READER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Position(NamedTuple):
    """Where a reader stands in the current file: its inode and byte offset."""

    inode: int
    offset: int


class EventLog:
    def __init__(self, path: Path, limit: int = LIMIT) -> None:
        self.path = path
        self.old = path.with_name(path.name + ".1")
        self.lock_path = path.with_name(path.name + ".lock")
        self.limit = limit
        # Set at each append: a follower in the poller's own process (a foreground watch)
        # wakes at once instead of at its next look.
        self.appended = threading.Event()

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
            append(self.path, data.encode("utf-8"))  # all of one cycle's events or none
        self.appended.set()
        return numbered

    def last_seq(self) -> int:
        """The highest seq written so far (0 for a new session)."""
        for path in (self.path, self.old):
            size = _size(path)
            if not size:
                continue
            fd = open_file(path, os.O_RDONLY)
            try:
                lines = os.pread(fd, TAIL, max(size - TAIL, 0)).splitlines()
            finally:
                os.close(fd)
            for line in reversed(lines):
                seq = _seq(line)
                if seq:
                    return seq
        return 0

    # ------------------------------------------------------------ reading

    def since(self, seq: int) -> list[Event]:
        """Every event after ``seq``, from both files, in order."""
        events, _ = self.read_from(seq, None)
        return events

    def read_from(self, seq: int, where: Position | None) -> tuple[list[Event], Position | None]:
        """Events after ``seq``, and where the current file was read up to.

        With ``where`` (the position an earlier call returned) only the new bytes of the same file
        are read; a rotated file (another inode) is read again from the start of both files.
        """
        try:
            st = os.lstat(self.path)  # a link is refused below, when it is opened
        except FileNotFoundError:
            return [], None
        if where is not None and where.inode == st.st_ino:
            if st.st_size == where.offset:
                return [], where  # the idle case: one stat, nothing read
            chunks = [(self.path, where.offset)]
        else:
            chunks = [(self.old, 0), (self.path, 0)]
        events: list[Event] = []
        end = where.offset if where is not None and where.inode == st.st_ino else 0
        for path, start in chunks:
            try:
                with open(open_file(path, os.O_RDONLY), "rb") as f:
                    if os.fstat(f.fileno()).st_ino != st.st_ino and path == self.path:
                        return self.read_from(seq, None)  # rotated under us: read both again
                    f.seek(start)
                    data = f.read()
            except FileError as exc:
                if exc.errno == errno.ENOENT:  # no older file yet
                    continue
                raise
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
            if path == self.path:
                end = start + len(complete)
            for line in complete.splitlines():
                event = _event(line, path)
                if event is not None and event.seq > seq:
                    events.append(event)
        return events, Position(st.st_ino, end)


def _event(line: bytes, path: Path) -> Event | None:
    if not line.strip():
        return None
    try:
        return Event.from_json(json.loads(line))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: "[" * 100000
        logger.warning("{}: a line that is not an event, skipped: {}", path, exc)
        return None


def _seq(line: bytes) -> int:
    try:
        value = json.loads(line).get("seq", 0)
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


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
