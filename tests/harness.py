"""An emulator of Claude Code's Monitor tool (2.1.328), for tests and the benchmark.

``bin/jobmon-watch --for 25m`` runs under a coding agent's Monitor tool: each stdout line becomes
part of a notification to the model. This module bounds what the model reads the way the tool does.

The tool's facts, as given:

- A watch ends at its deadline, ``timeout_ms`` (default 300000, at most 1800000; under
  ``claude -p`` at most 600000). At expiry the process is killed and the model is told it expired.
- Lines are joined into one notification for 200 ms from the first line that arrives: a fixed
  window from that first line, not a debounce. Every line that arrives within 200 ms of the
  window's first line belongs to it; the next line after the window opens a new one.
- Each line is cut at 500 characters, each notification at 3000 (the joined text, "\\n" between
  lines). What is cut is gone.
- Notifications draw on a budget of 10, refilled one every 2 s. A notification that finds no
  budget is dropped; the model later reads only ``[N events suppressed — output rate too high…]``,
  the next time a notification is delivered (or at the end).
- After 30 s of continuous suppression the monitor is killed and the model reads
  ``[Monitor stopped — too much output…]``.

Modeling assumptions (ours, where the facts leave a choice):

- Time: everything runs on the timestamps given (seconds since the monitor started); there is no
  real clock in ``Monitor``, so it is deterministic. Timestamps must not go backwards.
- Lines: a line arrives when its "\\n" does; a final partial line counts as a line when the monitor
  closes. Lines are split on "\\n" only ("\\r" is kept). Lengths count Python characters (code
  points), not bytes or UTF-16 units. A cut leaves no marker.
- Window: a line at exactly ``join`` seconds after the window's first line still joins it. The
  window closes, and its notification is sent or dropped, at first line + ``join``. When the
  command exits or the deadline comes, an open window is sent at once (at that time).
- Notification cut: the line cut (500) is applied first, then the joined text is cut at 3000. A
  line partly or wholly past 3000 counts as cut (``fate`` "cut", ``shown`` what is left of it).
  The suppression note is not counted in the 3000.
- Budget: a token bucket that starts full (``budget``) at time 0. ``ticks=True`` (the default):
  one token is added at each multiple of ``refill`` seconds since the start, never above
  ``budget``; a tick that finds the bucket full is lost. ``ticks=False``: the bucket refills
  continuously at 1/``refill`` tokens per second (fractions count). A notification spends one
  whole token, checked when its window closes. Ticks give no credit for part of a period, so a
  writer pacing by its own clock, out of phase with the ticks, can be dropped where the
  continuous bucket would let it through (see the tests for a case each way).
- Suppression note: N is the number of lines in the notifications dropped since the last note.
  The note is read just before the next delivered notification, or at the end (before a stop or
  expiry note). The wording of the notes after the ellipsis is not known: match their prefix.
- Stop rule: a suppression run starts at a drop. Taken literally ("every notification that closed
  during 30 s was dropped"), the rule could never stop a steady flood: every refill lets the next
  notification through. So a delivery ends the run only when it leaves at least ``recovery``
  tokens (default 1: the writer is back under the rate); a delivery paid by the one token a refill
  just added does not. ``recovery=0`` is the literal reading (any delivery ends the run); with
  ``budget=1`` no delivery can leave a token, so only ``recovery=0`` ever ends a run. The rule
  is judged when a notification closes: if a run is on and began ``stop_after`` seconds ago or
  more, the monitor is stopped then. A writer that falls silent is never stopped (no closing).
- Deadline: a line arriving after ``deadline`` is not read; a ``close(t, "exit")`` after it is a
  close at the deadline (the process would have been killed). The expiry note's wording is ours.
- After the end (exit, deadline, stop) lines fed are kept with fate "unsent" and not read.

``watch`` runs a real command under a ``Monitor``; ``rearm`` runs watches one after another, as an
agent arms its Monitor again while the last line it read says so.
"""
from __future__ import annotations

import codecs
import json
import math
import os
import queue
import re
import select
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

# A line's fate: read whole, read cut (partly or not at all past the notification's cut), in a
# dropped notification, never sent (after the end, or in a window when the monitor was stopped),
# or in the window still open.
READ, CUT, SUPPRESSED, UNSENT, PENDING = "read", "cut", "suppressed", "unsent", "pending"
# How a watch ended.
EXIT, DEADLINE, STOPPED = "exit", "deadline", "stopped"

SUPPRESSED_NOTE = "[{n} events suppressed — output rate too high…]"
STOPPED_NOTE = "[Monitor stopped — too much output…]"
EXPIRED_NOTE = "[Monitor expired — timeout of {seconds:g} s reached; the command was killed]"

DEFAULT_TIMEOUT_MS = 300_000
MAX_TIMEOUT_MS = 1_800_000
PRINT_MODE_MAX_MS = 600_000  # under `claude -p`

EPS = 1e-9  # float slack for comparisons of hand-made timestamps (0.1 + 0.1 vs 0.2)


@dataclass
class Line:
    """One stdout line: when its "\\n" arrived, its text as written, what the model read of it."""
    t: float
    text: str
    shown: str = ""
    fate: str = PENDING

    @property
    def whole(self) -> bool:
        return self.fate == READ


@dataclass(frozen=True)
class Notification:
    """A delivered notification: its window opened at ``opened``, it was sent at ``t``. ``text``
    is what the model reads (after both cuts); ``note`` the suppression note read just before it."""
    opened: float
    t: float
    lines: tuple[Line, ...]
    text: str
    note: str = ""
    cut: bool = False


@dataclass(frozen=True)
class Suppressed:
    """What was dropped for want of budget."""
    notifications: int = 0
    lines: int = 0


@dataclass(frozen=True)
class Result:
    """What a monitor did with a command's stdout. ``reads`` is everything the model reads, in
    order: notification texts, suppression notes, the stop or expiry note."""
    notifications: tuple[Notification, ...]
    lines: tuple[Line, ...]
    suppressed: Suppressed
    cut_lines: tuple[Line, ...]  # delivered lines cut at the line limit (500)
    cut_notifications: tuple[Notification, ...]  # delivered notifications cut at 3000
    stopped: bool  # killed for too much output
    ended: str | None  # EXIT, DEADLINE, STOPPED; None while still open
    ended_at: float | None
    reads: tuple[str, ...]

    @property
    def model_text(self) -> str:
        return "\n".join(self.reads)


@dataclass
class Bucket:
    """The notification budget: see the module's docstring (ticks vs continuous refill)."""
    size: int
    period: float
    ticks: bool
    tokens: float = field(init=False)
    at: float = 0.0

    def __post_init__(self) -> None:
        if self.period <= 0:
            raise ValueError("refill must be > 0 seconds (math.inf: never)")
        self.tokens = float(self.size)

    def refill(self, t: float) -> None:
        if t <= self.at:
            return
        if self.ticks:
            gained = math.floor(t / self.period + EPS) - math.floor(self.at / self.period + EPS)
        else:
            gained = (t - self.at) / self.period
        self.tokens = min(float(self.size), self.tokens + gained)
        self.at = t

    def take(self, t: float) -> bool:
        """Spend one token at ``t`` if there is one."""
        self.refill(t)
        if self.tokens + EPS < 1:
            return False
        self.tokens = max(0.0, self.tokens - 1)
        return True


class Monitor:
    """Claude Code's Monitor tool, driven by timestamps: ``feed`` it stdout as it arrives,
    ``close`` it when the command exits or its deadline comes, read ``result``.

    All times are seconds since the monitor started. Limits are the tool's by default; see the
    module's docstring for the facts and for what is assumed."""

    def __init__(self, join: float = 0.2, line: int = 500, notification: int = 3000, budget: int = 10,
                 refill: float = 2.0, stop_after: float = 30.0, deadline: float = 300.0, ticks: bool = True,
                 *, recovery: float = 1.0) -> None:
        self.join, self.line, self.notification = join, line, notification
        self.stop_after, self.deadline, self.recovery = stop_after, deadline, recovery
        self._bucket = Bucket(budget, refill, ticks)
        self._now = 0.0
        self._partial = ""
        self._opened: float | None = None  # the open window's first line, if one is open
        self._window: list[Line] = []
        self._lines: list[Line] = []
        self._notifications: list[Notification] = []
        self._cut_lines: list[Line] = []
        self._reads: list[str] = []
        self._dropped = Suppressed()
        self._unreported = 0  # lines dropped since the last suppression note
        self._run: float | None = None  # when the current suppression run began
        self._ended: str | None = None
        self._ended_at: float | None = None

    @property
    def now(self) -> float:
        """The latest time the monitor was given."""
        return self._now

    @property
    def closed(self) -> bool:
        return self._ended is not None

    @property
    def stopped(self) -> bool:
        return self._ended == STOPPED

    @property
    def ended(self) -> str | None:
        return self._ended

    def feed(self, t: float, data: str) -> None:
        """A chunk of stdout arrived at ``t``: any lines it completes arrive then."""
        self.advance(t)
        *complete, self._partial = (self._partial + data).split("\n")
        for text in complete:
            self._arrive(Line(t, text))

    def advance(self, t: float) -> None:
        """Time passed to ``t`` with no output: a window that ended before it closes, the deadline
        if it is passed closes the monitor."""
        self._tick(t)
        if self.closed:
            return
        if t > self.deadline + EPS:
            self._close_window_before(self.deadline)
            if not self.closed:
                self._finish(self.deadline, DEADLINE)
            return
        self._close_window_before(t)

    def close(self, t: float, reason: str) -> Result:
        """The command exited (``"exit"``) or its deadline came (``"deadline"``) at ``t``: a final
        partial line arrives, the open window is sent at once, the notes are read."""
        if reason not in (EXIT, DEADLINE):
            raise ValueError(f"reason must be {EXIT!r} or {DEADLINE!r}, not {reason!r}")
        self.advance(t)
        if not self.closed:
            self._finish(t, reason)
        return self.result

    @property
    def result(self) -> Result:
        """What the model has read so far (final once the monitor is closed)."""
        delivered = tuple(self._notifications)
        return Result(notifications=delivered, lines=tuple(self._lines), suppressed=self._dropped,
                      cut_lines=tuple(self._cut_lines), cut_notifications=tuple(n for n in delivered if n.cut),
                      stopped=self.stopped, ended=self._ended, ended_at=self._ended_at, reads=tuple(self._reads))

    # -- lines and windows

    def _tick(self, t: float) -> None:
        if t + EPS < self._now:
            raise ValueError(f"time went backwards: {t} after {self._now}")
        self._now = max(self._now, t)

    def _arrive(self, line: Line) -> None:
        self._lines.append(line)
        if self.closed:
            line.fate = UNSENT
            return
        if self._opened is None:
            self._opened = line.t
        self._window.append(line)

    def _close_window_before(self, t: float) -> None:
        """Close the open window if it ended before ``t``."""
        if self._opened is not None and self._opened + self.join + EPS < t:
            self._close_window(self._opened + self.join)

    def _close_window(self, at: float) -> None:
        """Send the open window's notification at ``at``, or drop it; then judge the stop rule."""
        assert self._opened is not None
        opened, lines = self._opened, self._window
        self._opened, self._window = None, []
        if self._bucket.take(at):
            self._deliver(at, opened, lines)
            if self._run is not None and self._bucket.tokens + EPS >= self.recovery:
                self._run = None
        else:
            self._drop(lines)
            if self._run is None:
                self._run = at
        if self._run is not None and at - self._run + EPS >= self.stop_after:
            self._stop(at)

    def _deliver(self, at: float, opened: float, lines: list[Line]) -> None:
        note = self._note()
        text, cut = self._render(lines)
        self._notifications.append(Notification(opened, at, tuple(lines), text, note, cut))
        self._reads.append(text)

    def _render(self, lines: list[Line]) -> tuple[str, bool]:
        """The notification's text after both cuts; each line's ``shown`` and fate set."""
        short = [line.text[:self.line] for line in lines]
        offset = 0
        for line, text in zip(lines, short):
            if len(text) < len(line.text):
                self._cut_lines.append(line)
            line.shown = text[:max(0, self.notification - offset)]
            line.fate = READ if line.shown == line.text and offset + len(text) <= self.notification else CUT
            offset += len(text) + 1
        joined = "\n".join(short)
        return joined[:self.notification], len(joined) > self.notification

    def _drop(self, lines: list[Line]) -> None:
        for line in lines:
            line.fate = SUPPRESSED
        self._dropped = Suppressed(self._dropped.notifications + 1, self._dropped.lines + len(lines))
        self._unreported += len(lines)

    def _note(self) -> str:
        """The suppression note owed to the model, now read (appended to ``reads``), or ""."""
        if not self._unreported:
            return ""
        note = SUPPRESSED_NOTE.format(n=self._unreported)
        self._unreported = 0
        self._reads.append(note)
        return note

    # -- the end

    def _finish(self, t: float, reason: str) -> None:
        if self._partial:
            text, self._partial = self._partial, ""
            self._close_window_before(t)  # a partial line after the window opens a new one
            if self.closed:
                self._lines.append(Line(t, text, fate=UNSENT))
                return
            self._arrive(Line(t, text))
        if self._opened is not None:
            self._close_window(t)
        if self.closed:  # the stop rule fired on that last window
            return
        self._end(t, reason)
        self._note()
        if reason == DEADLINE:
            self._reads.append(EXPIRED_NOTE.format(seconds=self.deadline))

    def _stop(self, at: float) -> None:
        for line in self._window:
            line.fate = UNSENT
        self._opened, self._window = None, []
        self._end(at, STOPPED)
        self._note()
        self._reads.append(STOPPED_NOTE)

    def _end(self, t: float, reason: str) -> None:
        self._ended, self._ended_at = reason, t


# -- running a real command under a Monitor


@dataclass(frozen=True)
class Watched:
    """One watch of a real command: the monitor's result and what the command did."""
    argv: tuple[str, ...]
    result: Result
    code: int | None  # the exit code; negative: killed by that signal; None: could not be reaped
    stderr: str
    lines: tuple[str, ...]  # every stdout line as written, read or not
    wall: float  # seconds from start until the watch was over
    timeout_ms: int  # the deadline in effect (after the tool's caps)
    killed_by_stop: bool  # the monitor stopped it for too much output, and it was killed
    expired: bool  # it reached its deadline and was killed

    @property
    def delivered_lines(self) -> list[str]:
        """The lines the model read in full: in delivered notifications, not cut."""
        return [line.text for line in self.result.lines if line.fate == READ]

    @property
    def lost_lines(self) -> list[str]:
        """The lines written but never read whole: suppressed, cut, or never sent."""
        return [line.text for line in self.result.lines if line.fate != READ]

    @property
    def model_text(self) -> str:
        return self.result.model_text

    @property
    def last_read(self) -> str | None:
        """The last line the model read (whole or what was left of it after a cut), if any."""
        for notification in reversed(self.result.notifications):
            for line in reversed(notification.lines):
                if line.shown:
                    return line.shown
        return None


def effective_timeout(timeout_ms: int, headless: bool = False) -> int:
    """The tool's deadline for a requested ``timeout_ms``: at most 1800000, 600000 under ``claude
    -p`` (``headless``). Assumed capped, not refused."""
    if timeout_ms <= 0:
        raise ValueError("timeout_ms must be > 0")
    return min(timeout_ms, PRINT_MODE_MAX_MS if headless else MAX_TIMEOUT_MS)


class _Reader(threading.Thread):
    """Reads a pipe's fd with os.read as bytes arrive, stamping each chunk with the seconds since
    ``start``; (t, None) at end of file. Stops when asked (select with a short timeout)."""

    def __init__(self, fd: int, start: float) -> None:
        super().__init__(daemon=True, name="monitor-reader")
        self.fd, self.start_time = fd, start
        self.chunks: queue.Queue[tuple[float, bytes | None]] = queue.Queue()
        self._halt = threading.Event()

    def halt(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                ready, _, _ = select.select([self.fd], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self.fd, 65536)
                self.chunks.put((time.monotonic() - self.start_time, data or None))
                if not data:
                    return
        except (OSError, ValueError):  # the fd was closed under us
            self.chunks.put((time.monotonic() - self.start_time, None))


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, SIGKILL it if the command is still alive ``grace`` s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class _Pump:
    """The runner's loop state: feeds the monitor from the reader, kills the command when the
    monitor says (deadline or stop), ends once the command is gone and its stdout is read."""
    proc: subprocess.Popen[bytes]
    reader: _Reader
    monitor: Monitor
    start: float
    grace: float
    linger: float  # seconds to wait for stdout's end after the command is gone
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    eof_at: float | None = None
    gone_at: float | None = None  # when the command was seen exited (or was killed)
    killed: str | None = None

    def clock(self) -> float:
        return time.monotonic() - self.start

    def run(self) -> None:
        hard_stop = self.monitor.deadline + 2 * self.grace + self.linger + 5.0  # never loops for ever
        while self.clock() < hard_stop:
            self.drain(0.05)
            if self.step():
                return
        if self.proc.poll() is None:
            _kill_group(self.proc, self.grace)
        if not self.monitor.closed:
            self.monitor.close(max(self.monitor.now, self.clock()), EXIT)

    def drain(self, wait: float) -> None:
        """Feed every chunk that has arrived (waiting up to ``wait`` s for the first)."""
        try:
            item: tuple[float, bytes | None] | None = self.reader.chunks.get(timeout=wait)
        except queue.Empty:
            return
        while item is not None:
            t, data = item
            t = max(t, self.monitor.now)  # a chunk stamped just before a later advance
            if data is None:
                self.eof_at = t
                self.monitor.feed(t, self.decoder.decode(b"", final=True))
            else:
                self.monitor.feed(t, self.decoder.decode(data))
            try:
                item = self.reader.chunks.get_nowait()
            except queue.Empty:
                item = None

    def step(self) -> bool:
        """One look at the time and the command; whether the watch is over."""
        now = max(self.clock(), self.monitor.now)
        self.monitor.advance(now)
        if self.killed is None and self.monitor.ended in (DEADLINE, STOPPED):
            self.killed = self.monitor.ended
            _kill_group(self.proc, self.grace)
        if self.gone_at is None and self.proc.poll() is not None:
            self.gone_at = max(self.clock(), self.monitor.now)
        if self.gone_at is None:
            return False
        if self.eof_at is None and self.clock() - self.gone_at < self.linger:
            return False  # its stdout may still hold lines (or a child of its holds the pipe)
        if not self.monitor.closed:
            self.monitor.close(max(self.gone_at, self.eof_at or 0.0, self.monitor.now), EXIT)
        return True


def watch(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
          timeout_ms: int = DEFAULT_TIMEOUT_MS, headless: bool = False, grace: float = 2.0, linger: float = 1.0,
          **monitor_kwargs: Any) -> Watched:
    """Run ``argv`` as the Monitor tool does and return what the model read.

    The command starts in its own session (stdin /dev/null, stderr to a file of its own); a
    thread reads its stdout with os.read, stamping each chunk when it arrives, and a ``Monitor``
    (``monitor_kwargs``; its deadline is ``timeout_ms``) is fed with it. At the deadline, or when
    the monitor stops it for too much output, its process group gets SIGTERM, then SIGKILL
    ``grace`` s later. The call is bounded: about the deadline plus the grace and ``linger``."""
    if "deadline" in monitor_kwargs:
        raise TypeError("watch() sets the monitor's deadline from timeout_ms")
    limit = effective_timeout(timeout_ms, headless)
    monitor = Monitor(deadline=limit / 1000, **monitor_kwargs)
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                env=None if env is None else dict(env), cwd=cwd, start_new_session=True)
        assert proc.stdout is not None
        reader = _Reader(proc.stdout.fileno(), start)
        reader.start()
        pump = _Pump(proc, reader, monitor, start, grace, linger)
        try:
            pump.run()
        finally:
            reader.halt()
            reader.join(timeout=1.0)
            if proc.poll() is None:
                _kill_group(proc, grace)
            proc.stdout.close()
        wall = time.monotonic() - start
        err.seek(0)
        stderr = err.read().decode("utf-8", errors="replace")
    result = monitor.result
    return Watched(argv=tuple(argv), result=result, code=proc.returncode, stderr=stderr,
                   lines=tuple(line.text for line in result.lines), wall=wall, timeout_ms=limit,
                   killed_by_stop=pump.killed == STOPPED, expired=pump.killed == DEADLINE)


# -- arming again


_KIND_REARM = re.compile(r'"kind"\s*:\s*"rearm"')


def is_rearm(line: str) -> bool:
    """Whether a line is jobmon's rearm line: with --json an object with "kind": "rearm", else
    text saying ``still watching …: run … again`` or ``N events not yet shown: run … again`` (a cut
    JSON line is judged by its "kind")."""
    try:
        data = json.loads(line)
    except ValueError:
        return bool(_KIND_REARM.search(line)) or (("still watching" in line or "not yet shown" in line)
                                                  and "again" in line)
    return isinstance(data, dict) and data.get("kind") == "rearm"


def rearm(argv_factory: Callable[[Sequence[Watched]], Sequence[str]], *, again: Callable[[str], bool] = is_rearm,
          runs: int = 10, run: Callable[..., Watched] = watch, **watch_kwargs: Any) -> list[Watched]:
    """Watch, then watch again while the last line the model read says to (``again``), as an agent
    arms its Monitor again; at most ``runs`` watches. ``argv_factory`` gets the watches so far
    (none at first) and gives the next command; it may also change the world between watches.
    ``run`` is ``watch`` (given ``watch_kwargs``), or a stand-in for tests. All results, in order."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    done: list[Watched] = []
    while len(done) < runs:
        done.append(run(list(argv_factory(done)), **watch_kwargs))
        last = done[-1].last_read
        if last is None or not again(last):
            break
    return done
