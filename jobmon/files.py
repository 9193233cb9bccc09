"""jobmon's own files: opened only as regular files of ours, private, written whole or not at all.

The registry, the readers' cursors and the installed skill are replaced atomically: a temp file
beside the target, then a rename, which is atomic on one file system. Logs (history, the event
log) are appended in one write that is undone if it fails. Every open refuses a symbolic link
(``O_NOFOLLOW``): in a folder someone else could write to, a link would make jobmon truncate,
append to or create a file of the attacker's choosing. Every failure is a ``FileError``: one
line naming the file.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

# O_NONBLOCK: a FIFO planted in place of a file must not hang the open (no effect on files).
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
WRITES = os.O_WRONLY | os.O_RDWR


class FileError(Exception):
    """One line naming the file and what is wrong (a link, someone else's, the disk full)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code  # the OSError's, when one was behind it (ENOENT: there is no such file)


def reason(exc: OSError) -> str:
    """``No space left on device``: the system's words, without ``[Errno 28]``."""
    return exc.strerror or str(exc)


def owner(uid: int) -> str:
    """``nobody (uid 65534)``: who a uid is, for a message."""
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def folder_of_yours(path: Path, st: os.stat_result) -> None:
    """Refuse (FileError) a folder that is a link, no folder, or someone else's."""
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise FileError(f"{path}: is {'a symbolic link' if stat.S_ISLNK(st.st_mode) else 'not a folder'}, "
                        "not a folder of yours; refused")
    if st.st_uid != os.geteuid():
        raise FileError(f"{path}: the folder belongs to {owner(st.st_uid)}, not to you; refused")


def private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) and keep it ours and 0700: a folder that is someone
    else's, or a link, is refused; one of ours that is too open is tightened."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise FileError(f"{path}: cannot make the folder: {reason(exc)}") from None
    folder_of_yours(path, st)
    if st.st_mode & 0o077:
        try:
            # mkdir's mode passes through the umask, an old folder may be 0755; a read-only one stays so
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
        except OSError as exc:
            raise FileError(f"{path}: cannot make the folder private: {reason(exc)}") from None


def open_file(path: Path, flags: int) -> int:
    """Open one of jobmon's files: never through a link, only a regular file. One opened to be
    written must be ours, and is kept 0600 (made so whatever the umask, tightened if older)."""
    try:
        fd = os.open(path, flags | NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileError(f"{path}: is a symbolic link; refused (jobmon never follows links to its own files)") from None
        raise FileError(f"{path}: cannot open: {reason(exc)}", exc.errno) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):  # O_RDONLY opens a folder too
            raise FileError(f"{path}: cannot open: {os.strerror(errno.EISDIR)}", errno.EISDIR)
        if not stat.S_ISREG(st.st_mode):
            raise FileError(f"{path}: is not a regular file; refused")
        if flags & WRITES:
            if st.st_uid != os.geteuid():
                raise FileError(f"{path}: belongs to {owner(st.st_uid)}, not to you; refused")
            if st.st_mode & 0o077:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
    except OSError as exc:
        os.close(fd)
        raise FileError(f"{path}: cannot make the file private: {reason(exc)}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: Path) -> bytes | None:
    """The bytes of one of jobmon's files, None when there is none (never through a link)."""
    try:
        fd = open_file(path, os.O_RDONLY)
    except FileError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise FileError(str(exc).replace(": cannot open: ", ": cannot read: ", 1), exc.errno) from None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise FileError(f"{path}: cannot read: {reason(exc)}") from None
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte: ``os.write`` may write fewer (a disk filling up) and says how many."""
    view = memoryview(data)
    while view:
        done = os.write(fd, view)
        if done <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[done:]


def append(path: Path, data: bytes) -> None:
    """Append whole lines to a log (history, the event log) and sync: all of them or, on any
    failure (a full disk), none; the file is cut back to where it was."""
    fd = open_file(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # a torn last line must not swallow the next record
        try:
            write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise FileError(f"{path}: cannot write: {reason(exc)}; nothing was added") from None
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``). With ``sync`` the data and the rename
    reach the disk before this returns (the registry); without, a crash of the machine (not of
    the process) may keep the old file (a cursor, written at every printed line). On failure
    the old file stays as it was and no temp file is left behind."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FileError(f"{path}: cannot write: {reason(exc)}") from None
    try:
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
            os.fchmod(fd, mode)  # mkstemp makes 0600
        finally:
            os.close(fd)
        os.replace(tmp, path)  # replaces a link itself, never what it points to
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise FileError(f"{path}: cannot write: {reason(exc)}; left as it was") from None
        raise
    if sync:
        with contextlib.suppress(OSError):  # the rename is done; a folder that cannot sync keeps it
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
