"""Writing a file so that a reader sees the old one or the new one, never half of one.

The registry, the readers' cursors and the installed skill are all written this way: a temp
file beside the target, then a rename, which is atomic on one file system.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, mode: int, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``). With ``sync`` the data and the rename
    reach the disk before this returns (the registry); without, a crash of the machine (not of
    the process) may keep the old file (a cursor, written at every printed line)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
