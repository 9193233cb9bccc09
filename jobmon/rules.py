"""Pure functions over strings: a check's output -> each job's state -> what changed.

No processes, no files: the watcher feeds text in and gets decisions out, so every rule can be
tested on real captured output.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Iterable, Mapping, NamedTuple

from jobmon.config import JobType, Pattern

UNREACHABLE = "UNREACHABLE"
LOST = "LOST"
RECOVERED = "RECOVERED"


class Row(NamedTuple):
    """One job's line in a check's output: its normalised state and every named group."""

    state: str
    groups: Mapping[str, str]


class Observation(NamedTuple):
    """What one check said about one job: a row, nothing (not seen), or a failed check."""

    row: Row | None
    error: str | None = None  # the check itself failed: says nothing about the job
    text: str = ""  # the job's own output (one-job checks), searched for key events


def normalize(raw: str, jtype: JobType) -> str:
    state = " ".join(raw.split())
    if jtype.upper:
        state = state.upper()
    for pattern, to in jtype.rewrite:
        if pattern.search(state):
            return to
    return state


def _row(match: re.Match[str], jtype: JobType) -> Row:
    groups = {k: (v or "").strip() for k, v in match.groupdict().items()}
    return Row(normalize(groups.get("state", ""), jtype), groups)


def parse_one(output: str, jtype: JobType) -> Row | None:
    """A single job's check: the first match anywhere in the output, else the type's default."""
    match = jtype.check.regex.search(output)
    if match:
        return _row(match, jtype)
    if jtype.check.default is not None:
        return Row(jtype.check.default, {g: "" for g in jtype.check.regex.groupindex})
    return None


def parse_batch(output: str, jtype: JobType, ids: Iterable[str]) -> dict[str, Row]:
    """A batched check: one line per job, matched by the ``id`` group; the first row wins."""
    wanted = set(ids)
    rows: dict[str, Row] = {}
    for line in output.splitlines():
        match = jtype.check.regex.search(line)
        if not match:
            continue
        job_id = (match.group("id") or "").strip()
        if job_id in wanted and job_id not in rows:
            rows[job_id] = _row(match, jtype)
    return rows


# ---------------------------------------------------------------- the state machine


class Book(NamedTuple):
    """jobmon's bookkeeping for one job, kept in the registry under ``jobmon``."""

    errors: int = 0  # consecutive failed checks
    unreachable: bool = False
    missing_since: str | None = None  # first check that had no row for the job
    last_error: str | None = None
    final: Mapping[str, object] | None = None  # a terminal event claimed but not yet in history
    seen: tuple[str, ...] = ()  # key events already reported

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self._asdict().items() if v not in (None, 0, False, ())}
        if self.seen:
            out["seen"] = list(self.seen)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "Book":
        """Values of the wrong kind (a hand-edited registry) fall back to the defaults."""
        kinds = {"errors": int, "unreachable": bool, "missing_since": str, "last_error": str,
                 "final": dict, "seen": list}
        known = {k: data[k] for k, kind in kinds.items()
                 if isinstance(data.get(k), kind) and not (kind is int and isinstance(data.get(k), bool))}
        if "seen" in known:
            known["seen"] = tuple(str(x) for x in known["seen"])  # type: ignore[union-attr]
        if "missing_since" in known:
            try:
                datetime.strptime(str(known["missing_since"]), TIME_FORMAT)
            except ValueError:
                del known["missing_since"]
        return cls(**known)  # type: ignore[arg-type]


class Change(NamedTuple):
    kind: str  # "state" | "unreachable" | "recovered"
    before: str
    after: str
    terminal: bool
    outcome: str | None  # "success" | "failure" | None
    groups: Mapping[str, str]
    why: str = ""


class Step(NamedTuple):
    status: str
    book: Book
    changes: tuple[Change, ...]


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def outcome_of(category: str) -> str | None:
    return category if category in ("success", "failure") else None


def advance(
    status: str,
    book: Book,
    obs: Observation,
    jtype: JobType,
    now: datetime,
    *,
    unreachable_after: int,
    lost_after: float,
) -> Step:
    """One job, one check: the new status, bookkeeping and the changes worth an event."""
    if obs.error is not None:
        errors = book.errors + 1
        if errors >= unreachable_after and not book.unreachable:
            change = Change("unreachable", status, UNREACHABLE, False, None, {}, obs.error)
            return Step(status, book._replace(errors=errors, unreachable=True, last_error=obs.error), (change,))
        return Step(status, book._replace(errors=errors, last_error=obs.error), ())

    changes: list[Change] = []
    if book.unreachable:
        changes.append(Change("recovered", UNREACHABLE, RECOVERED, False, None, {},
                              f"checks work again after {book.errors} failures"))
    book = Book()._replace(missing_since=book.missing_since, seen=book.seen)
    if obs.text and jtype.events:
        found = key_events(obs.text, jtype.events, book.seen)
        changes += [Change("event", status, name, False, None, {}, text) for name, text in found]
        book = book._replace(seen=book.seen + tuple(name for name, _ in found))

    if obs.row is None:  # not in the scheduler (yet): never a verdict until the grace period ends
        since = book.missing_since or now.strftime(TIME_FORMAT)
        waited = (now - datetime.strptime(since, TIME_FORMAT)).total_seconds()
        if waited >= lost_after:
            why = f"not seen by any check for {_duration(waited)}"
            changes.append(Change("state", status, LOST, True, "failure", {}, why))
            return Step(LOST, book._replace(missing_since=since), tuple(changes))
        return Step(status, book._replace(missing_since=since), tuple(changes))

    book = book._replace(missing_since=None)
    state = obs.row.state
    if state != status:
        category = jtype.category(state)
        outcome = outcome_of(category)
        changes.append(Change("state", status, state, outcome is not None, outcome, obs.row.groups))
    return Step(state, book, tuple(changes))


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


# ---------------------------------------------------------------- key events and diagnosis


def _say(pattern: Pattern, match: re.Match[str], line: str) -> str:
    if pattern.text is None:
        return line.strip()
    values = {k: v or "" for k, v in match.groupdict().items()}
    return pattern.text.render(line=line.strip(), **values).strip()


def key_events(text: str, patterns: Iterable[Pattern], seen: Iterable[str]) -> list[tuple[str, str]]:
    """Each pattern not yet seen that matches a line: (its name, what to say), in output order."""
    todo = [p for p in patterns if p.name not in set(seen)]
    found: list[tuple[int, str, str]] = []
    lines = text.splitlines()
    for pattern in todo:
        for n, line in enumerate(lines):
            match = pattern.regex.search(line)
            if match:
                found.append((n, pattern.name, _say(pattern, match, line)))
                break
    return [(name, said) for _, name, said in sorted(found)]


def diagnose(text: str, patterns: Iterable[Pattern]) -> str | None:
    """The root cause in one line: the first pattern, in declared order, that matches a line."""
    lines = text.splitlines()
    for pattern in patterns:
        for line in lines:
            match = pattern.regex.search(line)
            if match:
                return _say(pattern, match, line)
    return None
