"""The one funnel to stdout: one line per event, text or JSON, never longer than ``max_line``.

A coding agent's Monitor tool turns each stdout line into a notification and cuts lines at 500
characters, so a line is bounded here, control characters never split it, and it is flushed at
once. Logs go to stderr through loguru, never here.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Mapping

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_STEP = re.compile(r"\[[^\]]*\](?=@\d+$|$)|@\d+$")


@dataclass(frozen=True)
class Event:
    kind: str  # "state" | "event" | "summary" | "changes" | "error"
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
    time: datetime = field(default_factory=datetime.now)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time.isoformat(timespec="seconds"),
            "kind": self.kind, "type": self.type, "id": self.id, "host": self.host,
            "description": self.description, "from": self.before, "to": self.after,
            "terminal": self.terminal, "outcome": self.outcome, "detail": self.detail,
        }
        if self.replayed:
            out["replayed"] = True
        if self.counts is not None:
            out["counts"] = dict(self.counts)
        return out


def display_name(name: str) -> str:
    """A key event's name without the task and step it is kept under ("calibration[t0]@50")."""
    return _STEP.sub("", name)


def one_line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def clip(text: str, limit: int) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def clip_middle(text: str, limit: int) -> str:
    """Shorten from the middle: a detail's start (the cause) and end ("(log: /path)") both stay."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    if limit < 20:
        return clip(text, limit)
    tail = min(len(text) // 3, limit // 2)
    return text[: limit - tail - 1] + "…" + text[len(text) - tail:]


def format_text(event: Event, max_line: int = 400) -> str:
    stamp = event.time.strftime("%H:%M:%S")
    if event.kind in ("summary", "changes", "error"):
        return clip(f"{stamp} {event.detail}", max_line)
    who = event.id if not event.host else f"{event.id}@{event.host}"
    head = f"{stamp} {event.type} {clip(who, 80)}"
    if event.description:
        head += f' "{clip(event.description, 60)}"'
    if event.kind == "state":
        body = f"{event.before or 'NEW'} -> {event.after}"
    else:
        body = display_name(event.after or "")
    tail = " [replayed after a restart]" if event.replayed else ""
    line = f"{head}: {body}"
    if event.detail:
        room = max_line - len(line) - len(tail) - 3
        return f"{line} ({clip_middle(event.detail, room)}){tail}" if room > 10 else clip(line + tail, max_line)
    return clip(line + tail, max_line)


def format_json(event: Event, max_line: int = 400) -> str:
    data = event.to_json()
    for key in ("description", "detail", "id", "host"):
        if isinstance(data[key], str):
            data[key] = one_line(data[key])
    line = json.dumps(data, ensure_ascii=False)
    # Shrink the free-text fields until the line fits: the description first (to a readable
    # size), then the detail, then the rest.
    if len(line) > max_line and "counts" in data:  # the detail says the same in words
        del data["counts"]
        line = json.dumps(data, ensure_ascii=False)
    if len(line) > max_line:
        data["description"] = clip(data["description"], 80)
        line = json.dumps(data, ensure_ascii=False)
    for key in ("detail", "description", "id", "host"):
        if len(line) <= max_line:
            break
        excess = len(line) - max_line
        value = data[key]
        cut = clip_middle if key == "detail" else clip
        data[key] = cut(value, max(len(value) - excess - 8, 0))
        line = json.dumps(data, ensure_ascii=False)
    return line


class Printer:
    def __init__(self, *, as_json: bool = False, max_line: int = 400, stream: IO[str] | None = None) -> None:
        self.as_json = as_json
        self.max_line = max_line
        self.stream = stream or sys.stdout

    def emit(self, event: Event) -> None:
        fmt = format_json if self.as_json else format_text
        try:
            self.stream.write(fmt(event, self.max_line) + "\n")
            self.stream.flush()
        except BrokenPipeError:  # `jobmon watch | head -1`: nobody reads any more
            raise OutputClosed from None


class OutputClosed(Exception):
    """stdout's reader went away: the watcher has no one left to tell."""
