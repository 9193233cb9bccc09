"""A follower: prints the session's events from its reader's cursor, as the poller logs them.

Any number may run (a Monitor watch, a terminal, ``jobmon events``). Each line is printed, then
the reader's cursor moves past it, so a watch that ends or is killed and armed again goes on
where it stopped. A follower never waits for anyone: when no poller holds the registry while
jobs remain, it makes sure one does (``ensure_poller``). It ends when no job is left (its last
line is the session summary), at its deadline (a ``rearm`` line), on SIGTERM (``watch
stopped``), or quietly when a newer follower of the same reader takes over.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from jobmon import report
from jobmon.config import Config
from jobmon.eventlog import Cursor, EventLog, Position
from jobmon.events import Event, Printer
from jobmon.registry import Registry
from jobmon.watch import to_watch

IDLE = 0.2  # seconds between looks at the log: no busy loop, and a line is printed within this
CHECK = 1.0  # seconds between looks at the poller (is one alive while jobs remain?)

DONE, DEADLINE, STOPPED, SUPERSEDED, READY = "done", "deadline", "stopped", "superseded", "ready"


@dataclass
class Follower:
    config: Config
    registry: Registry
    log: EventLog
    cursor: Cursor
    printer: Printer
    ensure_poller: Callable[[], int | None]  # the poller's pid, or None when no job is left
    rearm: str = "bin/jobmon-watch"  # the command that arms a watch again, for the rearm line
    poller_here: Callable[[], bool] = lambda: False  # whether the poller is a thread of this process
    until_ready: bool = False  # --until ready: end once every job whose type has a ready event has reached it
    stop: threading.Event = field(default_factory=threading.Event)
    _where: Position | None = None  # how far the log's current file was read
    _seq: int | None = None  # the reader's cursor, as this follower last moved it

    def run(self, deadline: float | None = None) -> str:
        """Print events until one of the ends above; which one it was."""
        last = self.log.last_seq()
        if self.cursor.get() > last:  # the log was deleted and begun anew: a stale cursor hides it
            self.cursor.set(last)
        self._seq = None
        next_check = 0.0
        while True:
            self.catch_up()
            if self.cursor.superseded():
                return SUPERSEDED
            if self.stop.is_set():  # SIGTERM: perhaps the harness's deadline, so say how to go on
                self._rearm_line("watch stopped: ")
                return STOPPED
            now = time.monotonic()
            if now >= next_check:
                next_check = now + CHECK
                if self.ensure_poller() is None:  # no poller and no job left: the poller's last
                    self.catch_up()                # events are in the log by now
                    self.summary_line()
                    return DONE
                if self.until_ready and self._ready_line():
                    return READY
            if deadline is not None and now >= deadline:
                self._rearm_line()
                return DEADLINE
            # A poller in this process wakes this follower at each append: then only the looks
            # at the poller (CHECK) need a timer, and an idle watch costs less.
            idle = CHECK if self.poller_here() else IDLE
            self.log.appended.wait(min(idle, max(deadline - now, 0.0)) if deadline is not None else idle)
            self.log.appended.clear()

    def catch_up(self) -> int:
        """Print every event after the reader's cursor; how many."""
        if self._seq is None:  # read once: while this follower serves the reader, only it moves it
            self._seq = self.cursor.get()
        events, self._where = self.log.read_from(self._seq, self._where)
        for event in events:
            self.printer.emit(event)
            self.cursor.set(event.seq)
            self._seq = event.seq
        return len(events)

    def print_new(self) -> None:
        """For a one-shot command: the reader's new events, unless a running watch serves that
        reader (it prints them); a one-shot command never takes a reader from a watch."""
        if self.cursor.claim(wait=0.0, ask=False):
            try:
                self.catch_up()
            finally:
                self.cursor.release()
        else:
            print(f"jobmon: reader {self.cursor.name} is served by a running watch, which prints its events "
                  "(give --reader NAME for another reader)", file=sys.stderr)

    def summary_line(self, prefix: str = "") -> None:
        """The session summary, as the follower's last line (not an event: never logged)."""
        summary = report.session(self.config, self.registry.read(), self.registry.history())
        self.printer.emit(Event(kind="summary", detail=prefix + summary.text(), counts=summary.counts))

    def _ready_line(self) -> bool:
        """``--until ready``: once every job left whose type has a ``ready`` event has reached it
        (a server's READY), one summary line naming where each listens, and the watch ends; the
        jobs stay registered and the poller goes on, so an end is still reported (to the next
        watch). A job with no such event (a training run beside the server) holds nothing up."""
        self.catch_up()  # the READY lines first
        jobs = to_watch(self.config, self.registry)
        ready, waiting = [], []
        for job in jobs:
            jtype, _ = self.config.resolve(job.type, job.host)
            if jtype.ready is not None:
                (ready if jtype.reached_ready(job.book.seen) else waiting).append(job)
        if not ready or waiting:
            return False
        where = ", ".join(f"{j.type} {j.label}" + (f" at {(j.book.captured or {}).get('url')}"
                                                    if (j.book.captured or {}).get("url") else "") for j in ready)
        active = report.session(self.config, jobs, [])
        self.printer.emit(Event(kind="summary", counts=active.counts,
                                detail=f"ready: {where}; still registered: the poller goes on and logs how it ends"))
        return True

    def _rearm_line(self, prefix: str = "") -> None:
        """While jobs remain: how many, and the command that arms the watch again. Else the
        summary: there is nothing to arm again for."""
        active = report.session(self.config, to_watch(self.config, self.registry), [])
        if not active.total:
            self.summary_line(prefix)
            return
        self.printer.emit(Event(kind="rearm", counts=active.counts,
                                detail=f"{prefix}still watching {report.still(active)}: run {self.rearm} again"))
