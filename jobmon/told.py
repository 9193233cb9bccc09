"""The events a reader was given past its cursor (``readers/<name>.told``).

A reader's cursor is the last seq before which every event was given. A follower writes lines in
the order that reads best, not in seq order (the successes of one host as one line, where their
first one stood, and the failures between them after it), so when a watch ends in the middle of
a backlog, some events past the cursor were already given. This file names them, as ranges
(``1240-1300,1302``), so that the next watch of the reader skips them: nothing is told twice.
It is written before the cursor moves, so a watch killed between the two writes repeats nothing
and loses nothing.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterable

from jobmon import idlist
from jobmon.files import atomic_write, private_dir, read_bytes


def path_for(cursor_path: Path) -> Path:
    return cursor_path.with_suffix(".told")


def load(path: Path) -> set[int]:
    """The seqs the file names; nothing for a missing or unreadable line (a repeat, never a loss)."""
    text = (read_bytes(path) or b"").decode("ascii", "replace").strip()
    out: set[int] = set()
    for item in filter(None, text.split(",")):
        for seq in idlist.expand(item):
            if seq.isdigit() and len(seq) < 20:
                out.add(int(seq))
    return out


def save(path: Path, seqs: Iterable[int]) -> None:
    """Name ``seqs`` (none: the file goes)."""
    items = idlist.spans(str(s) for s in sorted(set(seqs)))
    if not items:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    private_dir(path.parent)
    atomic_write(path, (",".join(items) + "\n").encode(), mode=0o600, sync=False)
