"""How a reader's backlog of events becomes lines, and lines become notifications.

A coding agent's Monitor joins the lines written within 200 ms into one notification, cuts a
line at 500 characters and a notification at 3,000, and drops notifications past its budget
(10, then one every 2 s). What is cut or dropped never reaches the model, so a backlog is
shaped before it is written:

- every end that is not a success keeps a line of its own, with its cause and log;
- successes that arrive together, more than ``group_after`` of one type, host and state, become
  one line that names every id as ranges (``5000-5049``, ``1234_[0-99]``) with their key
  figures (an nel score), going on over more lines where the ids need them, never "+N more";
- lines are packed into notifications of at most ``notification`` characters, in order.

Pure functions over events and strings; ``pace.py`` says when each notification may go.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from jobmon import clock, idlist
from jobmon.events import Event, clip, json_line, one_line, render


@dataclass(frozen=True)
class Line:
    text: str
    seqs: tuple[int, ...] = ()  # the events it completes: given once this line is written


def width(text: str) -> int:
    """Length as the harness counts it (JavaScript strings: UTF-16 units; an emoji is 2)."""
    return len(text.encode("utf-16-le")) // 2


def lines(events: Sequence[Event], *, as_json: bool, max_line: int, group_after: int | None) -> list[Line]:
    """The lines for ``events``, in their order; a group of successes stands where its first
    member did. ``group_after`` None: one line per event (a person at a terminal)."""
    members: dict[tuple[str, str, str], list[Event]] = {}
    for e in events:
        if group_after is not None and _success(e):
            members.setdefault(_key(e), []).append(e)
    out: list[Line] = []
    for e in events:
        group = members.get(_key(e)) if _success(e) else None
        if group is not None and len(group) > group_after:  # type: ignore[operator]
            if group[0] is e:
                out += _ends(group, as_json, max_line)
            continue
        out += _tagged(render(e, as_json, max_line), (e.seq,) if e.seq else ())
    return out


def _tagged(texts: list[str], seqs: tuple[int, ...]) -> list[Line]:
    """A group of lines gives its events once its last line is written."""
    return [Line(t, seqs if i == len(texts) - 1 else ()) for i, t in enumerate(texts)]


def _success(event: Event) -> bool:
    return event.kind == "state" and event.terminal and event.outcome == "success" and bool(event.id)


def _key(event: Event) -> tuple[str, str, str]:
    return (event.type, event.host, event.after or "")


def _items(group: Sequence[Event], room: int) -> list[tuple[str, tuple[int, ...]]]:
    """The group's ids as ranges, each with the seqs of the jobs it names; an id with key
    figures stands alone with them (JSON keeps them apart: ``figures``)."""
    seq = {e.id: e.seq for e in group}
    plain = [(span, tuple(seq[i] for i in idlist.expand(span) if i in seq))
             for span in idlist.spans([e.id for e in group if not e.figures], room)]
    return plain + [(one_line(f"{e.id} ({'; '.join(e.figures)})"), (e.seq,)) for e in group if e.figures]


def _ends(group: Sequence[Event], as_json: bool, max_line: int) -> list[Line]:
    """``08:12:01 slurm@c: 51 COMPLETED: 5000-5049, 5051`` (or its JSON), over several lines
    where the ids need them; each line gives the jobs it names."""
    first = group[0]
    state = one_line(first.after or "")
    if as_json:
        return _ends_json(group, state, max_line)
    items = dict(_items(group, max_line // 2))
    where = clip(first.type, 40) + (f"@{clip(first.host, 60)}" if first.host else "")
    head = f"{clock.shown(first.time)} {where}: {len(group)} {state}"
    laid = idlist.layout(lambda part: head + part, [("", list(items), "")], max_line)
    return [Line(text, tuple(s for item in named for s in items.get(item, ()))) for text, named in laid]


def _ends_json(group: Sequence[Event], state: str, max_line: int) -> list[Line]:
    """``{"kind": "ends", "type", "host", "to", "outcome", "count", "ids": [ranges],
    "figures": {id: ...}}``, one object per line, with ``part`` when there are several."""
    first = group[0]
    figures = {e.id: "; ".join(e.figures) for e in group if e.figures}
    base: dict[str, Any] = {"time": clock.stamp(first.time), "kind": "ends", "type": first.type, "host": first.host,
                            "to": state, "terminal": True, "outcome": "success", "count": len(group),
                            "seq": max(e.seq for e in group)}
    items = _items([e for e in group if not e.figures], max_line // 3)
    items += [(e.id, (e.seq,)) for e in group if e.figures]
    parts = idlist.packed(items, lambda run: len(json_line(_ends_line(base, run, figures, "99/99"))) <= max_line)
    total = len(parts)
    return [Line(json_line(_ends_line(base, part, figures, f"{i}/{total}" if total > 1 else None)),
                 tuple(s for _, seqs in part for s in seqs)) for i, part in enumerate(parts, 1)]


def _ends_line(base: dict[str, Any], part: Sequence[tuple[str, tuple[int, ...]]], figures: dict[str, str],
               label: str | None) -> dict[str, Any]:
    line = {**base, "ids": [span for span, _ in part]}
    named = {span: figures[span] for span, _ in part if span in figures}
    if named:
        line["figures"] = named
    if label is not None:
        line["part"] = label
    return line


def notifications(shaped: Sequence[Line], limit: int) -> list[list[Line]]:
    """``shaped`` in order, packed into groups of at most ``limit`` characters (a newline after
    each line), each written at once to become one notification."""
    groups: list[list[Line]] = []
    used = limit + 1
    for line in shaped:
        size = width(line.text) + 1
        if used + size > limit:
            groups.append([])
            used = 0
        groups[-1].append(line)
        used += size
    return groups


def within(group: Sequence[Line], room: int) -> list[Line]:
    """The first lines of ``group`` that fit in ``room`` characters (a newline after each)."""
    out: list[Line] = []
    for line in group:
        room -= width(line.text) + 1
        if room < 0:
            break
        out.append(line)
    return out


def given(backlog: Sequence[int], written: set[int]) -> int | None:
    """The reader's cursor once ``written`` seqs were written: the last seq of the backlog's
    longest run (from its start) that is all written; None if its first is not."""
    cursor = None
    for seq in backlog:
        if seq not in written:
            break
        cursor = seq
    return cursor
