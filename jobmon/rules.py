"""Pure functions over strings: a check's output -> each job's state -> what changed.

No processes, no files: the watcher feeds text in and gets decisions out, so every rule can be
tested on real captured output.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, NamedTuple

from jobmon.config import JobType, Probe
from jobmon.findings import key_events, walk

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
    offset: int | None = None  # a read check: where the next read starts
    grew: bool = False  # a read check: the file had new text
    parts: Mapping[str, str] | None = None  # a read check: the states of the job's parts so far
    note: str | None = None  # why there is no row (e.g. "/x.log: no such file"), said if it ends LOST
    answered: bool = True  # a failed check whose command still reached the host (sacct erred, ssh worked)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def clean(text: str) -> str:
    """Output as a parser wants it: no colour codes, and tqdm's ``\r`` updates as lines."""
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def _first(data: Any, path: str) -> Any:
    return next((value for _, value in walk(data, path)), None)


def parse_json(output: str, jtype: JobType, ids: Iterable[str], probe: Probe | None = None) -> dict[str, Row]:
    """Rows from JSON output, as the probe's ``json`` says. Raises ValueError on bad JSON."""
    spec = (probe or jtype.check).json
    assert spec is not None
    try:
        data = json.loads(output)
    except json.JSONDecodeError as exc:
        raise ValueError(f"output is not JSON ({exc.msg} at line {exc.lineno})") from None
    wanted = set(ids)
    found: dict[str, list[Row]] = {}
    for _, item in walk(data, spec.items):
        state = _first(item, spec.state)
        if state is None:
            continue
        groups = {name: _text(_first(item, path)) for name, path in spec.fields.items()}
        groups["state"] = str(state)
        row = Row(normalize(str(state), jtype), groups)
        # A row belongs to each registered job it names: an invocation and one of its jobs alike.
        for job_id in dict.fromkeys(str(v) for v in (_first(item, key) for key in spec.id) if v is not None):
            if job_id in wanted:
                found.setdefault(job_id, []).append(row)
    return {job_id: combine(rows, jtype) for job_id, rows in found.items()}


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


_NOT_DONE_ORDER = {"running": 0, "pending": 1, "unknown": 2, "missing": 3}


def combine(rows: list[Row], jtype: JobType) -> Row:
    """Several rows for one job (an invocation's jobs): done when all are, failed if any failed."""
    if len(rows) == 1:
        return rows[0]
    not_done = [r for r in rows if not jtype.terminal(r.state)]
    if not_done:
        return min(not_done, key=lambda r: _NOT_DONE_ORDER[jtype.category(r.state)])
    failed = [r for r in rows if jtype.category(r.state) == "failure"]
    return failed[0] if failed else rows[0]


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


def _matches(text: str, probe: Probe) -> list[re.Match[str]]:
    """Every match of every state regex, in output order."""
    found = [m for r in probe.regexes for m in r.finditer(text)]
    return sorted(found, key=lambda m: m.start())


def _default(probe: Probe) -> Row | None:
    if probe.default is None:
        return None
    return Row(probe.default, {g: "" for r in probe.regexes for g in r.groupindex})


def parse_one(output: str, jtype: JobType, job_id: str = "", probe: Probe | None = None) -> Row | None:
    """A single job's check: the first match anywhere in the output, else the probe's default."""
    probe = probe or jtype.check
    if probe.json is not None:
        return parse_json(output, jtype, [job_id], probe).get(job_id)
    found = _matches(output, probe)
    return _row(found[0], jtype) if found else _default(probe)


def parse_log(text: str, jtype: JobType, parts: Mapping[str, str]) -> tuple[Row | None, dict[str, str]]:
    """New text of a growing log, and the states its parts had so far -> the job's row.

    Every match is a state line of one part (the ``part`` group, e.g. a Slurm job of a
    launcher's pipeline; "" without one); a later line of a part replaces its earlier state,
    and the job is done when all its parts are, failed if any failed.
    """
    merged = dict(parts)
    groups: dict[str, str] = {}
    for match in _matches(text, jtype.check):
        row = _row(match, jtype)
        merged[row.groups.get("part", "")] = row.state
        groups = dict(row.groups)
    if not merged:
        return _default(jtype.check), merged
    state = combine([Row(s, {}) for s in merged.values()], jtype).state
    return Row(state, groups), merged


def parse_batch(output: str, jtype: JobType, ids: Iterable[str], probe: Probe | None = None) -> dict[str, Row]:
    """A batched check: one line per row, matched to jobs by the ``id`` group (or by JSON)."""
    probe = probe or jtype.check
    if probe.json is not None:
        return parse_json(output, jtype, ids, probe)
    wanted = set(ids)
    found: dict[str, list[Row]] = {}
    for line in output.splitlines():
        match = next((m for r in probe.regexes if (m := r.search(line))), None)
        if not match:
            continue
        job_id = (match.group("id") or "").strip()
        if job_id in wanted:
            found.setdefault(job_id, []).append(_row(match, jtype))
    return {job_id: combine(rows, jtype) for job_id, rows in found.items()}


# ---------------------------------------------------------------- the state machine


class Book(NamedTuple):
    """jobmon's bookkeeping for one job, kept in the registry under ``jobmon``."""

    errors: int = 0  # consecutive failed checks
    unreachable: bool = False
    missing_since: str | None = None  # first check that had no row for the job
    last_error: str | None = None
    final: Mapping[str, object] | None = None  # a terminal event claimed but not yet in history
    seen: tuple[str, ...] = ()  # key events already reported
    parts: Mapping[str, str] | None = None  # a read check: the last state of each part of the job
    offset: int = 0  # how far a read check has read its file
    grew_at: str | None = None  # when a read check last found new text
    captured: Mapping[str, str] | None = None  # named groups of key events (e.g. a Slurm job id)

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self._asdict().items() if v not in (None, 0, False, ())}
        if self.seen:
            out["seen"] = list(self.seen)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "Book":
        """Values of the wrong kind (a hand-edited registry) fall back to the defaults."""
        kinds = {"errors": int, "unreachable": bool, "missing_since": str, "last_error": str,
                 "final": dict, "seen": list, "offset": int, "grew_at": str, "captured": dict, "parts": dict}
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
    book = Book()._replace(missing_since=book.missing_since, seen=book.seen, offset=book.offset,
                           grew_at=book.grew_at, captured=book.captured, parts=book.parts)
    if obs.text and jtype.events:
        found = key_events(obs.text, jtype.events, book.seen)
        changes += [Change("event", status, name, False, None, groups, text) for name, text, groups in found]
        captured = dict(book.captured or {})
        for _, _, groups in found:
            captured.update({k: v for k, v in groups.items() if v})
        book = book._replace(seen=book.seen + tuple(name for name, _, _ in found), captured=captured or None)

    row = obs.row
    if row is not None and jtype.category(row.state) == "missing":
        row = None  # the type's own word for "no such job (yet)", e.g. nel's NOT_FOUND
    if row is None:  # not in the scheduler (yet): never a verdict until the grace period ends
        since = book.missing_since or now.strftime(TIME_FORMAT)
        waited = (now - datetime.strptime(since, TIME_FORMAT)).total_seconds()
        if waited >= lost_after:
            why = f"{obs.note or 'not seen by any check'} for {_duration(waited)}"
            changes.append(Change("state", status, LOST, True, "failure", {}, why))
            return Step(LOST, book._replace(missing_since=since), tuple(changes))
        return Step(status, book._replace(missing_since=since), tuple(changes))

    book = book._replace(missing_since=None)
    state = row.state
    if state != status:
        category = jtype.category(state)
        outcome = outcome_of(category)
        changes.append(Change("state", status, state, outcome is not None, outcome, row.groups))
    return Step(state, book, tuple(changes))


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))
