"""Reading a growing log: only the bytes appended since the last check, never more than a bound.

A multi-GB launcher log costs one ``stat`` and one bounded ``read`` per poll. A file that shrank
was truncated or rotated: it is read again from the start.
"""
from __future__ import annotations

import os
from typing import NamedTuple


class Chunk(NamedTuple):
    text: str  # complete lines only, unless the read was cut at the bound
    offset: int  # where the next read starts
    grew: bool
    skipped: int  # bytes jumped over because more than the bound arrived at once
    restarted: bool  # the file shrank (truncated or rotated): read again from the start


class Missing(Exception):
    """The file is not there (yet)."""


class Unreadable(Exception):
    """The file is there and cannot be read: a failed check, with the reason."""


OVERLAP = 4096  # bytes read again before the offset: a line wrapped across two reads still matches


def read_new(path: str, offset: int, limit: int) -> Chunk:
    """The text appended since ``offset``, starting with the last few lines before it.

    Rules that read a log must therefore be idempotent (key events are said once, a part's
    state is replaced): the overlap lets a message that rich wrapped over two lines, half in
    the last read and half in this one, still match.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise Missing(f"{path}: no such file") from None
    except OSError as exc:
        raise Unreadable(f"{path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not _is_regular(st.st_mode):
            raise Unreadable(f"{path}: not a regular file")
        size = st.st_size
        restarted = size < offset
        start = 0 if restarted else offset
        skipped = max(0, size - start - limit)
        start += skipped
        data = os.pread(fd, min(size - start, limit), start) if size > start else b""
        back = min(start, OVERLAP) if data and not skipped else 0
        before = os.pread(fd, back, start - back) if back else b""
    except OSError as exc:
        raise Unreadable(f"{path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    # Keep a half-written last line for the next read, unless the bound cut the read anyway.
    cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
    if len(data) < limit and cut >= 0:
        data = data[: cut + 1]
    elif len(data) < limit:
        data = b""
    if data and before:
        first = before.find(b"\n")  # start the overlap at a line boundary
        before = before[first + 1:] if first >= 0 and start - back > 0 else before
    else:
        before = b""
    text = (before + data).decode("utf-8", errors="replace")
    return Chunk(text, start + len(data), bool(data), skipped, restarted)


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)
