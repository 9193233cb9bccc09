"""The per-session job registry: a JSON array shared by agents and the watcher.

Every read-modify-write holds an exclusive lock on a sidecar file and replaces the file
atomically (temp file, fsync, rename), so a reader never sees half a file. A registry that does
not parse is never overwritten. Finished jobs move to ``history.jsonl`` beside it. The session
folder is private (0700, its files 0600) and none of its files is opened through a link
(files.py): other users of a login node read nothing and can point jobmon at nothing.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

from jobmon.files import FileError, append, atomic_write, open_file, private_dir, read_bytes
from jobmon.rules import Book
from jobmon.schema import describe

CORE = ("type", "id", "host", "user", "submitted", "description", "last_status", "owner")


class RegistryError(FileError):
    """One line naming the file and what is wrong with it (exit 3, as for any of the session's
    files that cannot be used: a link, someone else's folder, a full disk)."""


@dataclass(frozen=True)
class Owner:
    agent: str  # claude-code | codex | manual
    session_id: str


@dataclass(frozen=True)
class Job:
    type: str
    id: str
    host: str = ""
    user: str = ""
    submitted: str = ""
    description: str = ""
    last_status: str = ""
    owner: Owner = Owner("manual", "")
    fields: Mapping[str, Any] = field(default_factory=dict)  # type-specific and unknown keys, kept
    book: Book = Book()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.type, self.id, self.host)

    @property
    def label(self) -> str:
        return f"{self.id}@{self.host}" if self.host else self.id

    def values(self) -> dict[str, Any]:
        """What templates see: the standard fields and every type-specific one."""
        out: dict[str, Any] = {k: v for k, v in self.fields.items() if isinstance(v, (str, int, float))}
        out.update(type=self.type, id=self.id, host=self.host, user=self.user,
                   submitted=self.submitted, description=self.description)
        out.setdefault("file", "")
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type, "id": self.id, "host": self.host, "user": self.user,
            "submitted": self.submitted, "description": self.description,
            "last_status": self.last_status,
            "owner": {"agent": self.owner.agent, "session_id": self.owner.session_id},
        }
        out.update(self.fields)
        book = self.book.to_dict()
        if book:
            out["jobmon"] = book
        return out

    @classmethod
    def from_dict(cls, data: Any) -> "Job":
        """Raises ValueError with the reason when the entry cannot be a job."""
        if not isinstance(data, dict):
            raise ValueError(f"is {describe(data, json=True)}, not an object")
        for key in ("type", "id"):
            value = data.get(key)
            if value is None or value == "":
                raise ValueError(f"has no '{key}'")
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise ValueError(f"'{key}' is {describe(value, json=True)}, not a string")
        owner = data.get("owner") if isinstance(data.get("owner"), dict) else {}
        book = data.get("jobmon") if isinstance(data.get("jobmon"), dict) else {}
        extra = {k: v for k, v in data.items() if k not in CORE and k != "jobmon"}
        text = {k: "" if data.get(k) is None else str(data.get(k)) for k in CORE if k != "owner"}
        return cls(
            owner=Owner(str(owner.get("agent", "manual")), str(owner.get("session_id", ""))),
            fields=extra, book=Book.from_dict(book), **text,
        )


@dataclass(frozen=True)
class Invalid:
    """An entry jobmon cannot use: kept in place, byte for byte, and reported."""

    index: int
    data: Any
    reason: str


Entry = Job | Invalid


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.history_path = path.with_name("history.jsonl")
        self.watch_lock_path = path.with_name("watch.lock")
        self.events_path = path.with_name("events.jsonl")  # the session's event log (eventlog.py)

    # ------------------------------------------------------------ reading

    def read(self) -> list[Entry]:
        """Parse the registry; a missing file is an empty one. Needs no lock (renames are atomic)."""
        try:
            raw = read_bytes(self.path)
            text = "" if raw is None else raw.decode("utf-8")
        except FileError as exc:
            raise RegistryError(str(exc), exc.errno) from None
        except UnicodeDecodeError as exc:
            raise RegistryError(f"{self.path}: cannot read: {exc}") from None
        if not text.strip():
            return []
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RegistryError(
                f"{self.path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                "left as it is"
            ) from None
        except RecursionError:  # "[" * 100000: the parser's stack, not a traceback
            raise RegistryError(f"{self.path}: not valid JSON (nested too deeply); left as it is") from None
        if not isinstance(data, list):
            raise RegistryError(f"{self.path}: expected a JSON array of jobs, found {describe(data, json=True)}; left as it is")
        entries: list[Entry] = []
        for i, item in enumerate(data):
            try:
                entries.append(Job.from_dict(item))
            except ValueError as exc:
                entries.append(Invalid(i, item, f"entry {i} {exc}"))
        return entries

    def jobs(self) -> list[Job]:
        return [e for e in self.read() if isinstance(e, Job)]

    # ------------------------------------------------------------ writing

    def folder(self) -> None:
        """Make the session folder, private (0700); refuse one that is not ours."""
        private_dir(self.path.parent)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.folder()
        fd = open_file(self.lock_path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # lets go of the lock

    def write(self, entries: list[Entry]) -> None:
        """Replace the file atomically. Call with the lock held."""
        data = [e.data if isinstance(e, Invalid) else e.to_dict() for e in entries]
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        atomic_write(self.path, text.encode("utf-8"), mode=0o600)  # private, whatever the umask

    @contextlib.contextmanager
    def transaction(self) -> Iterator[list[Entry]]:
        """Lock, read, let the caller edit the list in place, write it back if it changed."""
        with self.locked():
            entries = self.read()
            before = list(entries)
            yield entries
            if entries != before:
                self.write(entries)

    def append_history(self, records: list[Mapping[str, Any]]) -> None:
        """Every record or, on any failure (a full disk), none: never half a record."""
        if not records:
            return
        self.folder()
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        append(self.history_path, lines.encode("utf-8"))

    def history(self) -> list[dict[str, Any]]:
        raw = read_bytes(self.history_path)
        out = []
        for line in (raw or b"").splitlines():
            with contextlib.suppress(ValueError, RecursionError):  # a damaged or hostile line
                out.append(json.loads(line))
        return out


def with_status(job: Job, status: str, book: Book) -> Job:
    return replace(job, last_status=status, book=book)


# ---------------------------------------------------------------- the watcher's lock


class WatchLock:
    """Held by the one poller of a registry for its whole life; the kernel frees it on death.

    The lock is an ``flock`` on ``watch.lock``, which also holds the poller's pid. A process
    that starts a detached poller takes the lock first and hands it over (the child inherits
    the open file, ``adopt``), so no other process can slip in between.
    """

    def __init__(self, registry: Registry) -> None:
        self.path = registry.watch_lock_path
        self._file: Any = None

    def acquire(self) -> int | None:
        """Take the lock and return None, or return the pid of the poller that holds it."""
        private_dir(self.path.parent)
        handle = open(open_file(self.path, os.O_RDWR | os.O_CREAT), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            text = handle.read().strip()
            handle.close()
            return int(text) if text.isdigit() else -1
        self._file = handle
        self.write_pid(os.getpid())
        return None

    def adopt(self, fd: int) -> None:
        """Hold the lock through a descriptor inherited from the process that took it."""
        handle = open(fd, "a+", closefd=True)
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the same open file: never blocks
        os.set_inheritable(fd, False)  # checks and their lingering ssh masters must not hold it
        self._file = handle
        self.write_pid(os.getpid())

    def fileno(self) -> int:
        assert self._file is not None, "the lock is not held"
        return int(self._file.fileno())

    def write_pid(self, pid: int) -> None:
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{pid}\n")
        self._file.flush()

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# ---------------------------------------------------------------- where the registry lives


def session(cli_value: str | None, env: Mapping[str, str]) -> Owner:
    """The session id and the kind of agent behind it."""
    agent = "claude-code" if env.get("CLAUDE_CODE_SESSION_ID") else "codex" if env.get("CODEX_THREAD_ID") else "manual"
    sid = cli_value or env.get("CLAUDE_CODE_SESSION_ID") or env.get("CODEX_THREAD_ID") or terminal_session_id()
    return Owner(agent, sid)


def terminal_session_id() -> str:
    """Stable for one terminal session: the session leader's pid and start time, and the boot.

    Every command typed in one shell shares it; a new terminal (or a reboot) gets a new one.
    """
    sid = os.getsid(0)
    parts = [str(sid)]
    for source in (f"/proc/{sid}/stat", "/proc/sys/kernel/random/boot_id"):
        with contextlib.suppress(OSError):
            text = Path(source).read_text()
            parts.append(text.rsplit(")", 1)[-1].split()[19] if source.endswith("stat") else text.strip())
    return "term-" + hashlib.sha1(":".join(parts).encode()).hexdigest()[:12]


SESSION_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."


def registry_path(root: str | None, session_id: str, env: Mapping[str, str]) -> Path:
    if not session_id or session_id in (".", "..") or any(c not in SESSION_SAFE for c in session_id):
        raise RegistryError(f"session id {session_id!r}: use letters, digits, '-', '_' and '.' only")
    if len(session_id) > 255:  # a folder name: longer fails in mkdir with a traceback
        raise RegistryError(f"session id '{session_id[:32]}...' is {len(session_id)} characters long; at most 255")
    base = Path(root or env.get("JOBMON_ROOT") or os.getcwd())
    return base / ".claude" / "agents" / session_id / "active_jobs.json"
