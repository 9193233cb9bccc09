"""A follower: prints the session's events from its reader's cursor, as the poller logs them.

Any number may run (a Monitor watch, a terminal, ``jobmon events``, ``jobmon wait``). What it
reads is shaped into lines (shape.py) and written a notification at a time, as fast as the
reader's harness lets them through (pace.py); the reader's cursor moves past an event only once
a written line told it, so a watch that ends or is killed and armed again goes on where it
stopped. A follower never waits for anyone: when no poller holds the registry while
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

from jobmon import report, shape, told
from jobmon.config import Config
from jobmon.eventlog import Cursor, EventLog, Position
from jobmon.events import Event, Printer
from jobmon.pace import Pacer, Unpaced
from jobmon.registry import Registry
from jobmon.shape import Line
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
    shaped: bool = True  # successes that arrive together as one line of ids (False: a line per event)
    pacer: Pacer | None = None  # when each notification may go (None: at once, as on a terminal)
    _where: Position | None = None  # how far the log's current file was read
    _read: int | None = None  # the last seq read from the log (the cursor, until something is read)
    _queue: list[Line] = field(default_factory=list)  # shaped lines not yet written
    _pending: list[int] = field(default_factory=list)  # seqs read but not yet given, in log order
    _written: set[int] = field(default_factory=set)  # of those, the ones a written line told
    _told: set[int] = field(default_factory=set)  # told past the cursor (readers/<name>.told)
    _ended: set[tuple[str, str, str]] = field(default_factory=set)  # jobs whose end was read

    def __post_init__(self) -> None:
        if self.pacer is None:
            self.pacer = Unpaced(self.config.delivery)

    def run(self, deadline: float | None = None) -> str:
        """Print events until one of the ends above; which one it was."""
        self._read = None
        next_check = 0.0
        while True:
            self._fetch()
            self._deliver(deadline)
            if self.cursor.superseded():
                return SUPERSEDED
            if self.stop.is_set():  # SIGTERM: perhaps the harness's deadline, so say how to go on
                self._rearm_line("watch stopped: ", paced=False)
                return STOPPED
            now = time.monotonic()
            if now >= next_check and not self._queue:  # an end is said only once all before it is
                next_check = now + CHECK
                if self.ensure_poller() is None:  # no poller and no job left: the poller's last
                    self._fetch()                  # events are in the log by now
                    if not self._queue:
                        self.summary_line()
                        return DONE
                elif self.until_ready and self._ready_line():
                    return READY
            if deadline is not None and now >= deadline:
                self._rearm_line()
                return DEADLINE
            # A poller in this process wakes this follower at each append: then only the looks
            # at the poller (CHECK) need a timer, and an idle watch costs less.
            idle = CHECK if self.poller_here() and not self._queue else IDLE
            if self._queue:
                idle = min(idle, max(self.pacer.wait(), 0.01))  # type: ignore[union-attr]
            self.log.appended.wait(min(idle, max(deadline - now, 0.0)) if deadline is not None else idle)
            self.log.appended.clear()

    def _fetch(self) -> int:
        """Read what the log has after what was read, and shape it into the queue; how many."""
        if self._read is None:  # read once: while this follower serves the reader, only it moves it
            self._read = self.cursor.get()
            self._told = {s for s in told.load(told.path_for(self.cursor.path)) if s > self._read}
        events, self._where = self.log.read_from(self._read, self._where)
        if events and events[0].seq <= self._read:  # the log began anew (its numbers went down):
            self._told = set()                       # what was told past the cursor is another log's
        if events:
            self._read = events[-1].seq
            events = [e for e in events if e.seq not in self._told]  # given by a watch before this one
        if events:
            self._queue += shape.lines(events, as_json=self.printer.as_json, max_line=self.printer.max_line,
                                       group_after=self.config.settings.aggregate_after if self.shaped else None)
            self._pending += [e.seq for e in events]
            self._ended.update((e.type, e.id, e.host) for e in events if e.terminal)
        return len(events)

    def _deliver(self, deadline: float | None = None, max_chars: int | None = None) -> int:
        """Write the queue, one notification at a time, as the pacer allows (before ``deadline``,
        and within ``max_chars`` in all); the cursor moves past each event once it is told. How
        many characters were written."""
        pacer = self.pacer
        assert pacer is not None
        used = 0
        while self._queue:
            if pacer.wait() > 0 or (deadline is not None and time.monotonic() >= deadline):
                return used
            group = shape.notifications(self._queue, self.config.delivery.notification)[0]
            if max_chars is not None:  # what fits of it (a first line always: each call gets on)
                group = shape.within(group, max_chars - used) or ([] if used else group[:1])
                if not group:
                    return used
            size = sum(shape.width(line.text) + 1 for line in group)
            self.printer.write([line.text for line in group])
            pacer.spend()
            used += size
            del self._queue[:len(group)]
            self._give(group)
        return used

    def _give(self, lines: list[Line]) -> None:
        """Move the reader past what ``lines`` told: the cursor as far as every event before it
        was told, and the ones told beyond it named in its ``.told`` file first."""
        for line in lines:
            self._written.update(line.seqs)
        cursor = shape.given(self._pending, self._written)
        done = 0 if cursor is None else self._pending.index(cursor) + 1
        beyond = self._written.difference(self._pending[:done])
        keep = beyond | {s for s in self._told if cursor is None or s > cursor}
        if keep or self._told:  # before the cursor moves: a watch killed between repeats nothing
            told.save(told.path_for(self.cursor.path), keep)
            self._told = keep
        if cursor is None:
            return
        self._written = beyond
        del self._pending[:done]
        self.cursor.set(cursor)

    @property
    def untold(self) -> int:
        """Events read but not yet given to the reader."""
        return len(self._pending)

    def catch_up(self) -> int:
        """Print every event after the reader's cursor, at once; how many were read."""
        n = self._fetch()
        pacer, self.pacer = self.pacer, Unpaced(self.config.delivery)
        try:
            self._deliver()
        finally:
            self.pacer = pacer
        return n

    def print_new(self, max_chars: int | None = None) -> bool:
        """For a one-shot command: the reader's new events (within ``max_chars``), unless a
        running watch serves that reader (it prints them); a one-shot command never takes a
        reader from a watch. False if it could not."""
        if not self.cursor.claim(wait=0.0, ask=False):
            print(f"jobmon: reader {self.cursor.name} is served by a running watch, which prints its events "
                  "(give --reader NAME for another reader)", file=sys.stderr)
            return False
        try:
            self._fetch()
            self._deliver(max_chars=max_chars)
        finally:
            self.cursor.release()
        return True

    def has_new(self) -> bool:
        """Whether the log holds events the reader was not given (read, not yet printed)."""
        self._fetch()
        return bool(self._queue)

    def rest_line(self) -> None:
        """What is left for the next call, when a bound stopped the printing."""
        self._say(Event(kind="rearm", detail=f"{self.untold} event{'s' if self.untold != 1 else ''} not yet shown: "
                                             f"run {self.rearm} again"), paced=False)

    def wait(self, deadline: float, until: str | None = None, max_chars: int | None = None) -> str:
        """``jobmon wait``: return at the reader's first new events (with ``until``: once no job is
        left, or every ready-type job is ready), at ``deadline`` or on SIGTERM; which end it was.
        The caller holds the reader's cursor."""
        room = max_chars
        next_check = 0.0
        while True:
            self._fetch()
            if self._queue:
                room = None if room is None else room - self._deliver(max_chars=room)
                if self._queue:  # the bound is reached: the rest is for the next call
                    self.rest_line()
                    return DEADLINE
                if until is None:
                    if self._all_ended():
                        self.summary_line()
                    return DONE
            now = time.monotonic()
            if now >= next_check:
                next_check = now + CHECK
                if self.ensure_poller() is None:
                    if self._fetch():
                        continue  # the poller's last events first
                    self.summary_line()
                    return DONE
                if until == "ready" and self._ready_line():
                    return READY
            if self.stop.is_set():
                self._rearm_line("wait stopped: ", paced=False)
                return STOPPED
            if now >= deadline:
                self._rearm_line()
                return DEADLINE
            self.log.appended.wait(min(IDLE, max(deadline - now, 0.0)))
            self.log.appended.clear()

    def _all_ended(self) -> bool:
        """Whether no job is left once the ends just told reach history (the poller writes it
        right after it logs them: a short wait, so the summary comes now, not a call later)."""
        deadline = time.monotonic() + 2 * CHECK
        while left := to_watch(self.config, self.registry):
            if any(job.key not in self._ended for job in left) or time.monotonic() >= deadline:
                return False  # a job goes on: no summary yet
            if self.ensure_poller() is None:
                return True
            self.log.appended.wait(0.05)
        return True

    def _say(self, event: Event, paced: bool = True) -> None:
        """A line of the follower's own (summary, rearm), as its own notification when ``paced``."""
        pacer = self.pacer
        assert pacer is not None
        while paced and (wait := pacer.wait()) > 0 and not self.stop.is_set():
            self.stop.wait(wait)
        self.printer.emit(event)
        pacer.spend()

    def summary_line(self, prefix: str = "") -> None:
        """The session summary, as the follower's last line (not an event: never logged)."""
        summary = report.session(self.config, self.registry.read(), self.registry.history())
        self._say(Event(kind="summary", detail=prefix + summary.text(), counts=summary.counts))

    def _ready_line(self) -> bool:
        """``--until ready``: once every job left whose type has a ``ready`` event has reached it
        (a server's READY), one summary line naming where each listens, and the watch ends; the
        jobs stay registered and the poller goes on, so an end is still reported (to the next
        watch). A job with no such event (a training run beside the server) holds nothing up."""
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
        self._say(Event(kind="summary", counts=active.counts,
                        detail=f"ready: {where}; still registered: the poller goes on and logs how it ends"))
        return True

    def _rearm_line(self, prefix: str = "", paced: bool = True) -> None:
        """While jobs remain, or events wait to be told: how many, and the command that arms
        the watch again. Else the summary: there is nothing to arm again for."""
        active = report.session(self.config, to_watch(self.config, self.registry), [])
        untold = f"{self.untold} event{'s' if self.untold != 1 else ''} not yet shown" if self.untold else ""
        if not active.total and not untold:
            self.summary_line(prefix)
            return
        what = "; ".join(w for w in (f"still watching {report.still(active)}" if active.total else "", untold) if w)
        self._say(Event(kind="rearm", counts=active.counts, detail=f"{prefix}{what}: run {self.rearm} again"), paced)
