"""The one funnel to stdout: one line per event, text or JSON, never longer than ``max_line``.

A coding agent's Monitor tool turns each stdout line into a notification and cuts lines at 500
characters, so a line is bounded here, control characters never split it, and it is flushed at
once. Logs go to stderr through loguru, never here. Events travel through the session's event
log as JSON (``to_json`` / ``from_json``); the line is made when a reader prints it.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Callable, Mapping, NamedTuple

from jobmon import clock, idlist

# Line breaks and tabs fold into one space (a log's traceback reads on one line); every other C0 or
# C1 control and the bidi overrides and isolates are shown escaped, so a job name can neither
# drive the terminal (ESC, BEL) nor make "DELIAF" display as "FAILED" (U+202E).
_LAYOUT = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]+")
_UNSAFE = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069]")
JOBS_DETAIL = 160  # a digest's or host line's detail, shortened to leave room for the jobs it names
_STEP = re.compile(r"\[[^\]]*\](?=@\d+$|$)|@\d+$")


class JobRef(NamedTuple):
    """One job named by a digest or a host line: who, and where it went."""

    type: str
    id: str
    host: str
    before: str | None
    after: str

    @property
    def label(self) -> str:
        return f"{self.id}@{self.host}" if self.host else self.id

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "host": self.host, "from": self.before, "to": self.after}


@dataclass(frozen=True)
class Event:
    kind: str  # "state" | "event" | "changes" | "summary" | "rearm" | "error"
    type: str = ""
    id: str = ""
    host: str = ""
    description: str = ""
    before: str | None = None
    after: str | None = None
    terminal: bool = False
    outcome: str | None = None  # "success" | "failure" | None
    detail: str = ""
    replayed: bool = False
    counts: Mapping[str, int] | None = None
    time: datetime = field(default_factory=clock.now)  # aware; naive (a test's, an old log's) is local
    jobs: tuple[JobRef, ...] = ()  # a digest's jobs, or the jobs behind a host's UNREACHABLE
    seq: int = 0  # its place in the session's event log (0: not logged)
    figures: tuple[str, ...] = ()  # an end's key figures (an nel score): kept when ends are told together

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": clock.stamp(self.time),
            "kind": self.kind, "type": self.type, "id": self.id, "host": self.host,
            "description": self.description, "from": self.before, "to": self.after,
            "terminal": self.terminal, "outcome": self.outcome, "detail": self.detail,
        }
        if self.replayed:
            out["replayed"] = True
        if self.counts is not None:
            out["counts"] = dict(self.counts)
        if self.jobs:
            out["jobs"] = [j.to_json() for j in self.jobs]
        if self.figures:
            out["figures"] = list(self.figures)
        if self.seq:
            out["seq"] = self.seq
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Event":
        """An event as the log keeps it. Raises ValueError for a line that is not one."""
        try:
            jobs = tuple(JobRef(str(j["type"]), str(j["id"]), str(j["host"]), j.get("from"), str(j["to"]))
                         for j in data.get("jobs", ()))
            counts = data.get("counts")
            return cls(kind=str(data["kind"]), type=str(data.get("type", "")), id=str(data.get("id", "")),
                       host=str(data.get("host", "")), description=str(data.get("description", "")),
                       before=data.get("from"), after=data.get("to"), terminal=bool(data.get("terminal")),
                       outcome=data.get("outcome"), detail=str(data.get("detail", "")),
                       replayed=bool(data.get("replayed")), counts=dict(counts) if isinstance(counts, dict) else None,
                       time=_time(data["time"]), jobs=jobs, seq=_seq(data.get("seq", 0)),
                       figures=tuple(str(f) for f in data.get("figures", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not an event: {exc}") from None


def _seq(value: Any) -> int:
    """A logged seq: a whole number of at least 0 (``Infinity``, ``1e400``, ``true`` are no seq)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"seq {str(value)[:40]!r}")
    return value


def _time(text: Any) -> datetime:
    """An event's time as the log keeps it: UTC with its offset, or naive local in older logs."""
    when = clock.parse(str(text))
    if when is None:
        raise ValueError(f"time {str(text)[:40]!r}")
    return when


def display_name(name: str) -> str:
    """A key event's name without the task and step it is kept under ("calibration[t0]@50")."""
    return _STEP.sub("", name)


def one_line(text: str) -> str:
    """The one sanitizer of what a person reads (events, ``list``, ``discover``, errors): one line,
    every control and bidi override shown escaped (``\\x1b``, ``\\u202e``)."""
    return _UNSAFE.sub(_escaped, _LAYOUT.sub(" ", text)).strip()


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _exact(text: str) -> str:
    return text


def clip(text: str, limit: int, shown: Callable[[str], str] = one_line) -> str:
    text = shown(text)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def clip_middle(text: str, limit: int, shown: Callable[[str], str] = one_line) -> str:
    """Shorten from the middle: a detail's start (the cause) and its end both stay. Where its
    ``(log: /path)`` is followed by figures (``; CPU 3%, …``), the figures go first, so that the
    log, where the reader goes next, ends what is kept."""
    text = shown(text)
    if len(text) <= limit:
        return text
    if limit < 20:
        return clip(text, limit, shown)
    logs = list(_LOG.finditer(text))
    if logs and logs[-1].end() < len(text):
        end = logs[-1].end()
        room = limit - end
        if room > 1:
            return text[:end] + text[end:end + room - 1] + "…"
        text = text[:end]
    tail = min(len(text) // 3, limit // 2)
    return text[: limit - tail - 1] + "…" + text[len(text) - tail:]


_LOG = re.compile(r"\(log: [^()]*\)")


def format_text(event: Event, max_line: int = 400) -> str:
    stamp = clock.shown(event.time)
    if event.kind == "changes":
        return render(event, False, max_line)[0]
    if event.kind in ("summary", "error", "rearm"):
        return clip(f"{stamp} {event.detail}", max_line)
    if event.id:
        who = event.id if not event.host else f"{event.id}@{event.host}"
        head = f"{stamp} {event.type} {clip(who, 80)}"
    else:  # a host's line (UNREACHABLE, RECOVERED): the detail counts its jobs
        head = f"{stamp} host {clip(event.host or 'localhost', 80)}"
    if event.description:
        head += f' "{clip(event.description, 60)}"'
    if event.kind == "state":
        body = one_line(f"{event.before or 'NEW'} -> {event.after}")
    else:
        body = one_line(display_name(event.after or ""))
    tail = " [replayed after a restart]" if event.replayed else ""
    line = f"{head}: {body}"
    if event.detail:
        room = max_line - len(line) - len(tail) - 3
        return f"{line} ({clip_middle(event.detail, room)}){tail}" if room > 10 else clip(line + tail, max_line)
    return clip(line + tail, max_line)


def render(event: Event, as_json: bool = False, max_line: int = 400) -> list[str]:
    """The lines an event prints as: one, except an event that names many jobs (a digest, a
    host's line), which goes on over as many lines as it needs to name every job."""
    if event.jobs and as_json:
        return _json_with_jobs(event, max_line)
    if event.kind == "changes":
        return _digest_text(event, max_line)
    return [(format_json if as_json else format_text)(event, max_line)]


def _groups(jobs: tuple[JobRef, ...]) -> dict[tuple[str, str, str], list[str]]:
    """A digest's jobs by where they went, type and host, in order: (to, type, host) -> ids."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for j in jobs:
        out.setdefault((display_name(j.after), j.type, j.host), []).append(j.id)
    return out


def _digest_text(event: Event, max_line: int) -> list[str]:
    """``15 changes: 12 RUNNING (slurm@c: 5000-5011); 3 PENDING (slurm@c: 5012-5014)``, over
    several lines where the ids need them."""
    stamp = clock.shown(event.time)
    detail = clip(event.detail, JOBS_DETAIL)
    sections = [(f"{len(ids)} {one_line(to)} ({clip(kind, 40)}{'@' + clip(host, 60) if host else ''}: ",
                 [one_line(i) for i in idlist.spans(ids)], ")")
                for (to, kind, host), ids in _groups(event.jobs).items()]
    return idlist.fill(lambda part: f"{stamp} {detail}{part}", sections, max_line)


def _json_with_jobs(event: Event, max_line: int) -> list[str]:
    """The event as JSON lines that name its jobs in ``groups`` (``{"to", "type", "host", "ids"}``,
    ids as ranges), as many lines as they need, each with ``part`` ("2/3") when there are
    several: every job is named, none is left to "+N more"."""
    base = {k: v for k, v in event.to_json().items() if k != "jobs" and not (k == "description" and not v)}
    base["detail"] = clip_middle(event.detail, JOBS_DETAIL, _exact)
    counts = base.pop("counts", None)
    items = [(to, kind, host, span) for (to, kind, host), ids in _groups(event.jobs).items()
             for span in idlist.spans(ids, max_line // 3)]
    runs = idlist.packed(items, lambda run: len(_dumps({**base, "part": "99/99", "groups": _json_groups(run)})) <= max_line)
    parts = [_json_groups(run) for run in runs]
    lines = [{**base, "groups": g} for g in parts]
    if len(parts) > 1:
        for i, line in enumerate(lines, 1):
            line["part"] = f"{i}/{len(parts)}"
    if counts is not None and len(_dumps({**lines[0], "counts": counts})) <= max_line:
        lines[0]["counts"] = counts  # how many made each move, where the first line has room
    return [_dumps(line) for line in lines]


def _json_groups(items: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """(to, type, host, ids) items -> ``groups``: one per run of the same to, type and host."""
    groups: list[dict[str, Any]] = []
    for to, kind, host, span in items:
        if groups and (groups[-1]["to"], groups[-1]["type"], groups[-1]["host"]) == (to, kind, host):
            groups[-1]["ids"].append(span)
        else:
            groups.append({"to": to, "type": kind, "host": host, "ids": [span]})
    return groups


def format_json(event: Event, max_line: int = 400) -> str:
    data = event.to_json()  # exact values: JSON escapes what a terminal must not see (_dumps)
    if event.jobs:
        return _json_with_jobs(event, max_line)[0]
    line = _dumps(data)
    # Shrink the free-text fields until the line fits: the description first (to a readable
    # size), then the detail, then the rest.
    if len(line) > max_line and "counts" in data:  # the detail says the same in words
        del data["counts"]
        line = _dumps(data)
    if len(line) > max_line:
        data["description"] = clip(data["description"], 80, _exact)
        line = _dumps(data)
    for key in ("detail", "description", "id", "host"):
        if len(line) <= max_line:
            break
        excess = len(line) - max_line
        value = data[key]
        cut = clip_middle if key == "detail" else clip
        data[key] = cut(value, max(len(value) - excess - 8, 0), _exact)
        line = _dumps(data)
    return line


def json_line(data: Any) -> str:
    """One JSON value on one line, as ``--json`` prints it (see ``_dumps``)."""
    return _dumps(data)


def _dumps(data: Any) -> str:
    """Compact: every character of a 400-character line goes to what it says. JSON escapes C0
    controls itself; C1 controls, the bidi overrides and line separators get ``\\uXXXX`` too: the
    same string to a parser, nothing a terminal acts on."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, ensure_ascii=False, separators=(",", ":")))


_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class Printer:
    def __init__(self, *, as_json: bool = False, max_line: int = 400, stream: IO[str] | None = None) -> None:
        self.as_json = as_json
        self.max_line = max_line
        self.stream = stream or sys.stdout

    def emit(self, event: Event) -> None:
        self.write(render(event, self.as_json, self.max_line))

    def write(self, lines: list[str]) -> None:
        """Lines in one write, flushed at once: a notification's lines arrive together."""
        try:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()
        except BrokenPipeError:  # `jobmon watch | head -1`: nobody reads any more
            raise OutputClosed from None


class OutputClosed(Exception):
    """stdout's reader went away: the watcher has no one left to tell."""
