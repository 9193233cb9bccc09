"""Which of one cycle's events get a line of their own, and which are folded into one.

Each stdout line is a notification, so a flood must be one line; but an end the user cannot
attribute is an end lost. Hence: every terminal change is a line of its own, naming its job; a
host that stops (or starts again) answering is one line for all its jobs, with their number
and the error; and only the rest (jobs moving on, key events) folds into one ``changes`` line
that names its jobs, when more than ``aggregate_after`` jobs changed in the cycle.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable, Sequence

from jobmon.events import Event, JobRef, display_name
from jobmon.registry import Job
from jobmon.rules import Change


def by_host(changes: Iterable[tuple[Job, Change]], now: datetime) -> list[Event]:
    """UNREACHABLE / RECOVERED changes of single jobs -> one line per host and kind."""
    groups: dict[tuple[str, str], list[tuple[Job, Change]]] = {}
    for job, change in changes:
        groups.setdefault((job.host, change.after), []).append((job, change))
    lines = []
    for (host, after), members in groups.items():
        types = sorted({job.type for job, _ in members})
        n = len(members)
        what = f"{n} {'/'.join(types)} job{'s' if n != 1 else ''}"
        lines.append(Event(kind="event", type=types[0] if len(types) == 1 else "", host=host, after=after,
                           detail=f"{what}: {members[0][1].why}", time=now,
                           jobs=tuple(JobRef(job.type, job.id, job.host, None, after) for job, _ in members)))
    return lines


def fold(events: Sequence[Event], limit: int) -> list[Event]:
    """The lines for one cycle's events: unchanged while at most ``limit`` jobs moved on;
    beyond that, one digest of the moves first, then every line that must stand alone."""
    alone = [e for e in events if _alone(e)]
    rest = [e for e in events if not _alone(e)]
    if len({(e.type, e.id, e.host) for e in rest}) <= limit:
        return list(events)
    moves: dict[str, int] = {}
    for e in rest:
        move = f"{e.before or 'NEW'} -> {e.after}" if e.kind == "state" else display_name(e.after or "")
        moves[move] = moves.get(move, 0) + 1
    digest = Event(kind="changes", detail=f"{len(rest)} changes", counts=moves, time=rest[0].time,
                   jobs=tuple(JobRef(e.type, e.id, e.host, e.before, e.after or "") for e in rest))
    return [digest, *alone]


def _alone(event: Event) -> bool:
    return event.terminal or event.kind == "error" or not event.id
