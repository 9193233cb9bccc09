"""The poller: the one process per registry that polls, and how one is made sure to run.

The holder of ``watch.lock`` polls: it runs the watcher's cycles and appends every event to the
session's event log. It prints nothing; followers print. It runs either inside a foreground
``jobmon watch`` (a thread) or detached (``jobmon poll``, started by ``watch --detach``,
``add --watch``, ``jobmon-watch --for`` and ``jobmon events``), so polling goes on whether or
not anyone is listening, and a watch's deadline never interrupts a check, an action or a write.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from loguru import logger

from jobmon import notify, run
from jobmon.config import Config
from jobmon.events import Event
from jobmon.registry import Registry, WatchLock
from jobmon.watch import Watcher, to_watch

WAKE = 1.0  # seconds between looks at the registry while waiting: a new job is checked at once


class Poller:
    def __init__(self, watcher: Watcher, lock: WatchLock) -> None:
        self.watcher = watcher
        self.lock = lock

    def run(self, *, once: bool = False) -> bool:
        """Cycle until no job is left to watch, ``once`` is done or ``stop`` is set; then let
        go of the lock. False if the poller failed: its last event says why."""
        w = self.watcher
        try:
            stamp = _stamp(w.registry.path)
            while not w.stop.is_set():
                w.replay_claimed()  # each time: a claimant may die while this poller runs
                active = w.cycle(everything=once)
                if once or not w.watchable(active):
                    return True
                stamp = self._sleep(stamp)
            return True
        except Exception as exc:  # said to every follower, in one line
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.opt(exception=exc).debug("poller failed")
            logger.error("poller failed: {}", message)
            with contextlib.suppress(Exception):
                w.log.append([Event(kind="error", detail=f"jobmon poller: fatal: {message}")])
            return False
        finally:
            self.lock.release()
            if w.notifier is not None:  # the last ends are the ones people wait for
                w.notifier.drain(notify.QUICK if w.stop.is_set() else None)

    def _sleep(self, stamp: tuple[int, int] | None) -> tuple[int, int] | None:
        """Until the next group is due; a change of the registry (a job added) wakes it at once."""
        w = self.watcher
        idle = time.monotonic() + WAKE  # nothing due (only claims another process finishes): a look then
        while not w.stop.is_set():
            now = time.monotonic()
            nearest = min(w._due.values(), default=idle)
            current = _stamp(w.registry.path)
            if nearest <= now or current != stamp:
                return current
            w.stop.wait(min(nearest - now, WAKE))
        return stamp


def _stamp(path: os.PathLike[str]) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def ensure(registry: Registry, wanted: Callable[[], bool], start: Callable[[WatchLock], int]) -> int | None:
    """Make sure a poller holds the registry while it has jobs to watch: the pid of the one that
    runs (started with ``start``, which takes over the lock), or None when no job is left.

    Whoever takes the lock only to look must look at the registry again after letting go: a job
    added meanwhile saw the lock held and started no poller.
    """
    while True:
        lock = WatchLock(registry)
        holder = lock.acquire()
        if holder is not None:
            return holder
        if wanted():
            return start(lock)
        lock.release()
        if not wanted():
            return None


class PollerError(Exception):
    """Pollers keep dying: one line, for the watch's last words."""


def at_most(ensure: Callable[[], int | None], starts: int = 5) -> Callable[[], int | None]:
    """``ensure`` that gives up after ``starts`` pollers: one that dies at once every time (a
    bug, a broken config) must not be started again forever."""
    pids: set[int] = set()

    def bounded() -> int | None:
        pid = ensure()
        if pid is not None and pid > 0 and pid not in pids:
            pids.add(pid)
            if len(pids) > starts:
                raise PollerError(f"the poller has died {starts} times; see watch.log beside the registry")
        return pid
    return bounded


def jobs_left(config: Config, registry: Registry) -> Callable[[], bool]:
    return lambda: bool(to_watch(config, registry))


def detach(lock: WatchLock, registry: Registry, options: list[str]) -> int:
    """Start ``jobmon poll`` in its own session, handing it the lock; its pid. Its logs go to
    ``watch.log`` beside the registry."""
    fd = lock.fileno()
    # By its file, not `-m jobmon`: -m puts the current folder (anyone's) first on sys.path.
    argv = [sys.executable, str(Path(__file__).with_name("__main__.py")), "poll", "--root", str(root_of(registry)),
            "--session", registry.path.parent.name, "--lock-fd", str(fd), *options]
    pid = run.spawn(argv, str(registry.path.with_name("watch.log")), pass_fds=(fd,))
    lock.write_pid(pid)
    lock.release()  # the child holds the same open file, so the lock stays held
    return pid


def root_of(registry: Registry) -> Path:
    """The --root a registry path was made from (<root>/.claude/agents/<session>/active_jobs.json)."""
    return registry.path.parents[3]


def in_thread(watcher: Watcher, threads: list[threading.Thread], starts: int = 5) -> Callable[[WatchLock], int]:
    """A ``start`` for ``ensure`` that polls in this process, beside a foreground follower; each
    thread it starts is added to ``threads``, for the follower to wait for at its end. After
    ``starts`` failed pollers it gives up (PollerError), as ``at_most`` does for processes."""
    failed: list[bool] = []

    def start(lock: WatchLock) -> int:
        if len(failed) >= starts:
            lock.release()
            raise PollerError(f"the poller has failed {starts} times; its errors are above")

        def poll() -> None:
            if not Poller(watcher, lock).run():
                failed.append(True)

        thread = threading.Thread(target=poll, name="poller", daemon=True)
        threads.append(thread)
        thread.start()
        return os.getpid()
    return start


def serve(watcher: Watcher, lock: WatchLock) -> bool:
    """A detached poller's life: poll until no job is left, then look once more (a job added
    as it let go) and go on if there is one."""
    registry = watcher.registry
    taken: list[WatchLock] = [lock]
    while taken and not watcher.stop.is_set():
        if not Poller(watcher, taken.pop()).run():
            return False  # a follower starts another, a bounded number of times
        if watcher.stop.is_set():
            break
        ensure(registry, jobs_left(watcher.config, registry), lambda again: taken.append(again) or os.getpid())
    return True
