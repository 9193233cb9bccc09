"""Finding a place in the event log without reading it whole: pure functions over an open file.

Every line the log holds was written by ``json.dumps(event.to_json())``, whose last key is
``seq``: ``{"time": ..., "seq": 123}``. That number is read from the line's end without parsing
it; anything else falls back to ``json.loads``, and a line with no usable seq (junk, torn, a
seq of ``Infinity``) is stepped over. ``seq`` increases along each file, so the first line past
a reader's cursor is found by halving the byte range, and the last seq by reading back from
the end in growing chunks. Only whole lines count: bytes after the last newline are a line
still being written (or torn by a kill) and wait.

Every read goes through ``pread`` below, so a test can count the bytes.
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterator

pread = os.pread
BLOCK = 4 << 10  # a probe's read: some lines of ~300 bytes
BIG = 1 << 20  # a read of the lines to give a reader: big reads, few calls
BACK_LIMIT = 16 << 20  # bytes read back from a file's end at most for its last seq: never a 100 MB file whole
_TAIL = re.compile(rb', "seq": ([1-9][0-9]{0,17})\}$')  # how to_json ends; 18 digits at most: no huge ints
_HEAD = b'{"time": '


def line_seq(line: bytes) -> int | None:
    """The line's seq: a whole number above 0, as ``Event.from_json`` takes it (no bool, float,
    ``Infinity`` nor negative); None for a line that has none."""
    if line.startswith(_HEAD):
        match = _TAIL.search(line, max(len(line) - 40, 0))
        if match:
            return int(match.group(1))
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; RecursionError: "[" * 100000
        return None
    value = data.get("seq") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def lines_from(fd: int, start: int, end: int, *, aligned: bool = True, block: int | None = None
               ) -> Iterator[tuple[int, bytes]]:
    """The whole lines between ``start`` and ``end``: (offset, line without its newline), read
    ``block`` bytes at a time. With ``aligned`` false, ``start`` may fall inside a line, which
    is skipped (a probe's midpoint)."""
    block = block or BLOCK
    pos = start - 1 if not aligned and start > 0 else start
    skipping = not aligned and start > 0  # until the first newline: the end of a line begun earlier
    line_at = pos
    pending: list[bytes] = []
    while pos < end:
        chunk = pread(fd, min(block, end - pos), pos)
        if not chunk:
            return
        parts = chunk.split(b"\n")
        if len(parts) > 1:
            head = b"".join([*pending, parts[0]])
            if not skipping:
                yield line_at, head
            skipping = False
            line_at += len(head) + 1
            for part in parts[1:-1]:
                yield line_at, part
                line_at += len(part) + 1
            pending = []
        if not skipping:  # what is left after the chunk's last newline continues in the next chunk
            pending.append(parts[-1])
        else:
            line_at += len(chunk)
        pos += len(chunk)


def at_line_start(fd: int, offset: int) -> bool:
    """Whether a line may begin at ``offset``: a saved place in a file since replaced may not."""
    return offset == 0 or pread(fd, 1, offset - 1) == b"\n"


def lines_back(fd: int, size: int, limit: int | None = None) -> Iterator[bytes]:
    """The whole lines of the file, last first, read back from ``size`` in chunks that double
    (a 200 KB line costs a few reads, a short last line one), ``limit`` bytes at most."""
    limit = BACK_LIMIT if limit is None else limit
    pos, step = size, BLOCK
    pieces: list[bytes] = []  # the line being gathered, right to left
    ended = False  # a newline closes it on the right: it is whole once its start is found
    while pos > 0 and size - pos < limit:
        step = min(step, pos)
        pos -= step
        parts = pread(fd, step, pos).split(b"\n")
        pieces.append(parts[-1])
        for part in reversed(parts[:-1]):
            if ended:
                yield b"".join(reversed(pieces))
            ended, pieces = True, [part]
        step = min(step * 2, BIG)
    if pos == 0 and ended:
        yield b"".join(reversed(pieces))


def last_seq(fd: int, size: int) -> int:
    """The seq of the file's last whole line that has one (0: none); junk and torn lines are
    stepped over."""
    for line in lines_back(fd, size):
        seq = line_seq(line)
        if seq:
            return seq
    return 0


def first_line(fd: int, start: int, end: int, *, aligned: bool = True) -> tuple[int, int, int] | None:
    """The first whole line at or after ``start`` and before ``end`` that has a seq: (its offset,
    its length with the newline, its seq); None if there is none."""
    for offset, line in lines_from(fd, start, end, aligned=aligned):
        seq = line_seq(line)
        if seq:
            return offset, len(line) + 1, seq
    return None


def find_after(fd: int, size: int, seq: int) -> int:
    """Where the first line with a seq above ``seq`` starts (``size``: none), by halving the
    byte range: a few reads of ``BLOCK`` bytes, whatever the file's size.

    Below ``low`` every line with a seq has one up to ``seq``; ``found`` is the start of the
    first line known to be past it (or the end), and each probe looks only before it, so a run
    of junk lines is read at most once over the whole search."""
    low, high, found = 0, size, size
    while low < high:
        mid = (low + high) // 2
        line = first_line(fd, mid, found, aligned=mid == 0)
        if line is None or line[2] > seq:  # the place is at or before this line
            high = mid
            if line is not None:
                found = line[0]
        else:  # this line and all before it were given already
            low = line[0] + line[1]
    return found
