"""The one place that runs processes.

A command goes in as shell text, a ``Result`` comes out: no ``sh`` exception leaves this module.
Each command runs in a process group of its own, so a timeout kills bash *and* what it started
(ssh, sacct…); ``sh``'s own ``_timeout`` would kill bash alone and leave ssh running.

Nothing a command starts outlives jobmon: coreutils' ``timeout`` leads each group and kills it
``GRACE`` seconds after the command's own timeout even if jobmon is frozen or gone, and it is
told when jobmon dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of jobmon ends its checks at
once. A stop (SIGINT, SIGTERM, SIGHUP) kills every running group (``kill_all``).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import threading
import time
from typing import Callable, NamedTuple

OUTPUT_LIMIT = 1 << 20  # keep the last MiB of each stream

OK = "ok"
NONZERO = "nonzero"
TIMEOUT = "timeout"
NOT_FOUND = "not-found"
TRANSIENT = "transient"  # ssh's 255: the connection, not the command, failed
SIGNALLED = "signalled"
INTERRUPTED = "interrupted"  # killed by kill_all: jobmon is stopping, the command said nothing

GRACE = 2.0  # seconds past its timeout after which a command's group dies without jobmon's help
_live: set[int] = set()  # the process groups of the commands running now
_stopping = threading.Event()  # kill_all was called: this process is ending, no command starts


class Result(NamedTuple):
    command: str
    kind: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.kind == OK

    def why(self) -> str:
        """One line on what went wrong, for logs and UNREACHABLE events."""
        last = next((ln for ln in reversed(self.stderr.splitlines()) if ln.strip()), "")
        head = {
            TIMEOUT: f"timed out after {self.duration:.0f}s",
            NOT_FOUND: "command not found",
            TRANSIENT: "connection failed (exit 255)",
            SIGNALLED: "killed by a signal",
            INTERRUPTED: "interrupted: jobmon is stopping",
        }.get(self.kind, f"exit {self.exit_code}")
        return f"{head}: {last.strip()[:200]}" if last else head


class _Tail:
    """A file-like sink that keeps only the last ``limit`` bytes written to it."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.dropped = 0

    def write(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) > 2 * self.limit:
            cut = len(self.buf) - self.limit
            self.dropped += cut
            del self.buf[:cut]

    def flush(self) -> None:
        pass

    def text(self) -> str:
        data = bytes(self.buf[-self.limit :])
        return data.decode("utf-8", errors="replace")


def classify(exit_code: int | None, timed_out: bool, ok_codes: tuple[int, ...] = (0,)) -> str:
    if timed_out:
        return TIMEOUT
    if exit_code is None or exit_code < 0:
        return SIGNALLED
    if exit_code in ok_codes:
        return OK
    if exit_code == 127:
        return NOT_FOUND
    if exit_code == 255:
        return TRANSIENT
    return NONZERO


def run(
    command: str,
    timeout: float,
    *,
    ok_codes: tuple[int, ...] = (0,),
    env: dict[str, str] | None = None,
    limit: int = OUTPUT_LIMIT,
) -> Result:
    if _stopping.is_set():
        return Result(command, INTERRUPTED, None, "", "", 0.0)
    sh = _sh()
    out, err = _Tail(limit), _Tail()
    started = time.monotonic()
    expired = threading.Event()
    exit_code: int | None
    env = env if env is not None else dict(os.environ)
    with open(os.devnull, "rb") as devnull:
        try:
            program, *argv = _bounded(command, timeout, env.get("PATH"))
            proc = sh.Command(program)(
                *argv,
                _bg=True, _bg_exc=False, _tty_out=False, _in=devnull,
                _out=out, _err=err, _no_out=True, _no_err=True,
                _out_bufsize=65536, _err_bufsize=65536,
                _new_session=True, _ok_code=list(range(256)), _env=env,
                _preexec_fn=_dies_with(os.getpid()),
            )
        except (OSError, sh.CommandNotFound) as exc:
            return Result(command, NOT_FOUND, None, "", str(exc), 0.0)
        _live.add(proc.pgid)
        if _stopping.is_set():  # kill_all ran between the check above and the line above
            _kill_group(proc.pgid)

        # Our own timer, not wait(timeout=): that one polls every 100 ms and returns before the
        # output is all read; this one kills the group and lets wait() collect every byte.
        def expire() -> None:
            if proc.process.is_alive()[0]:  # bash itself, not a child that holds its output
                expired.set()
            _kill_group(proc.pgid)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            proc.wait()
            exit_code = proc.exit_code
        except sh.ErrorReturnCode as exc:  # killed by a signal (SignalException_*)
            exit_code = exc.exit_code
        finally:
            timer.cancel()
            _kill_group(proc.pgid)  # children left behind by a finished bash die with it
            _live.discard(proc.pgid)
    timed_out = expired.is_set()
    kind = classify(exit_code, timed_out, ok_codes)
    if _stopping.is_set() and kind in (SIGNALLED, TIMEOUT):
        kind = INTERRUPTED
    return Result(command, kind, exit_code, out.text(), err.text(), time.monotonic() - started)


def kill_all() -> None:
    """Kill the group of every running command, and start no more: the process is stopping
    (SIGINT, SIGTERM, SIGHUP) and must not wait for a hung check's timeout. Safe in a signal
    handler: no lock (the handler may interrupt ``run`` itself); ``run`` adds its group before it
    looks at the flag, and this sets the flag before it looks at the groups, so none is missed."""
    _stopping.set()
    for pgid in list(_live):
        _kill_group(pgid)


def stopping() -> bool:
    """Whether ``kill_all`` was called: what ran since was killed, or never started."""
    return _stopping.is_set()


def _bounded(command: str, timeout: float, path: str | None) -> list[str]:
    """bash running the command, led by coreutils' ``timeout`` where there is one: it kills the
    group at ``timeout + GRACE`` whatever becomes of jobmon, and on SIGTERM (jobmon died) passes
    it on to the group, then SIGKILL a second later."""
    bash = ["bash", "-c", command]
    leader = shutil.which("timeout", path=path)
    if leader is None:  # not coreutils (macOS): the group kill and the parent-death signal remain
        return bash
    return [leader, "-s", "KILL", "-k", "1", f"{timeout + GRACE:.3f}", *bash]


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()
_PR_SET_PDEATHSIG = 1


def _dies_with(parent: int) -> Callable[[], None]:
    """Run in the child between fork and exec: SIGTERM when the thread that started it (and so
    jobmon) is gone. That thread waits for the command to end, so only jobmon's death sends it."""
    def preexec() -> None:
        if _LIBC is not None and hasattr(_LIBC, "prctl"):
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # jobmon died before the line above: nobody would say so
            os._exit(1)
    return preexec


_IMPORT_LOCK = threading.Lock()


def _sh():  # type: ignore[no-untyped-def]
    """``sh`` on first use (commands that run no process start faster), once: threads that
    import it at the same moment can see the module half set up."""
    with _IMPORT_LOCK:
        import sh

        return sh


def _kill_group(pgid: int | None) -> None:
    if not pgid:
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def spawn(argv: list[str], log_path: str, *, pass_fds: tuple[int, ...] = ()) -> int:
    """Start a detached background process (its own session), stdout/stderr to ``log_path``.

    Used for the detached poller (``pass_fds``: the watch lock it inherits) and the demo's
    jobs; returns the pid.
    """
    import subprocess
    from pathlib import Path

    from jobmon.files import open_file

    if log_path == os.devnull:
        fd = os.open(os.devnull, os.O_WRONLY)
    else:  # watch.log in the session folder: never through a link, 0600
        fd = open_file(Path(log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        with open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(argv, stdin=devnull, stdout=fd, stderr=fd, start_new_session=True,
                                    close_fds=True, pass_fds=pass_fds)
    finally:
        os.close(fd)
    return proc.pid
