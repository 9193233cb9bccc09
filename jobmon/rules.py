"""Pure functions over strings: a check's output -> each job's state -> what changed.

No processes, no files: the watcher feeds text in and gets decisions out, so every rule can be
tested on real captured output.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, NamedTuple

from jobmon import clock, idlist
from jobmon import rows as owners
from jobmon.config import JobType, Probe
from jobmon.findings import diagnose, field_events, key_events, line_at, walk
from jobmon.ids import owners_of, short_ones

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
    part_rows: Mapping[str, Row] | None = None  # a batched check: the rows of the job's parts (array tasks)
    captured: tuple[Mapping[str, str], ...] = ()  # the check's capture lines for the job (its log paths)
    progress: Mark | None = None  # what the type's progress probe saw of the job
    health: tuple[str, str] | None = None  # a ready server's answer: curl's exit, the HTTP code
    given: Mapping[str, str] | None = None  # the job's type-specific fields (an endpoint given at add)


class Mark(NamedTuple):
    """What a progress probe saw of one job at one moment, on the clock of the host that looked."""

    mark: str  # changes whenever the job shows life (its logs' sizes and mtimes); "" nothing to tell by yet
    now: float  # epoch seconds, on the clock of the host that read the mark (the cluster's, for slurm)
    mtime: float | None = None  # the newest mtime among its logs, on that same clock
    last: str = ""  # the tail of its log, when the check brought one: what STALLED quotes
    bar: str | None = None  # a read check: the open progress bar's last line; "" a bar closed; None no bar line


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def clean(text: str) -> str:
    """Output as a parser wants it: no colour codes, and tqdm's ``\r`` updates as lines."""
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def _first(data: Any, path: str) -> Any:
    return next((value for _, value in walk(data, path)), None)


def load_json(output: str) -> Any:
    """A command's JSON output; ValueError (one line) for output that is not JSON, or is nested
    deeper than the parser's stack (a check's output is not trusted)."""
    try:
        return json.loads(output)
    except json.JSONDecodeError as exc:
        raise ValueError(f"output is not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ValueError("output is not JSON (nested too deeply)") from None


def parse_json(output: str, jtype: JobType, ids: Iterable[str], probe: Probe | None = None) -> dict[str, Row]:
    """Rows from JSON output, as the probe's ``json`` says. Raises ValueError on bad JSON."""
    spec = (probe or jtype.check).json
    assert spec is not None
    data = load_json(output)
    wanted = set(ids)
    # A type whose system resolves prefixes (nel) answers a registered prefix with full ids.
    short = short_ones(wanted, jtype.resolve.when) if jtype.resolve else frozenset()
    found: dict[str, list[Row]] = {}
    for _, item in walk(data, spec.items):
        state = _first(item, spec.state)
        if state is None:
            continue
        groups = {name: _text(_first(item, path)) for name, path in spec.fields.items()}
        groups["state"] = str(state)
        row = Row(normalize(str(state), jtype), groups)
        # A row belongs to each registered job it names: an invocation and one of its jobs alike.
        named = (str(v) for v in (_first(item, key) for key in spec.id) if v is not None)
        for job_id in owners_of(named, wanted, short):
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
    """A batched check's rows, one per job that has one (see ``read_batch``)."""
    answers = read_batch(output, jtype, {i: "" for i in ids}, probe)
    return {job_id: a.row for job_id, a in answers.items() if a.row is not None}


class Answer(NamedTuple):
    """What one batched output says about one job."""

    row: Row | None
    parts: Mapping[str, Row] | None = None  # part id -> its row (an array's tasks)
    captured: tuple[Mapping[str, str], ...] = ()
    error: str | None = None  # nothing can be said of the job this time (the check, not the job, failed)
    progress: Mark | None = None
    text: str = ""  # the job's new log lines (``check.lines``), for key events
    offset: int | None = None  # where the next read of its log starts (``check.offset``)
    health: tuple[str, str] | None = None  # a ready server's answer (``health``): curl's exit, the HTTP code


def read_batch(output: str, jtype: JobType, jobs: Mapping[str, str], probe: Probe | None = None, *,
               failed: str | None = None, live_failed: str | None = None) -> dict[str, Answer]:
    """A batched check: its rows, matched to jobs (``jobs``: id -> registration time) by the
    groups ``rows`` reads; the controller's live rows weighed against them; captured lines.

    ``failed`` says the check's own rows could not be had (its ``fail_if``): a live row still
    answers. ``live_failed`` says the controller could not be asked: only rows that say the job
    runs are believed.
    """
    probe = probe or jtype.check
    if probe.json is not None:
        return {i: Answer(r) for i, r in parse_json(output, jtype, jobs, probe).items()}
    # Lines end at "\n" only: a log's tail in the output (progress.last) may hold \f or U+2028,
    # and must not make a line of its own that reads as a row.
    lines = output.split("\n")
    verdict = {} if failed else owners.assign(_groups(lines, probe.regexes), jobs)
    live = owners.assign(_groups(lines, probe.live.regexes), jobs) if probe.live and not live_failed else {}
    captured: dict[str, list[Mapping[str, str]]] = {}
    if probe.capture is not None:
        for groups in _groups(lines, (probe.capture,)):
            if groups.get("id") in jobs:
                captured.setdefault(groups["id"], []).append(groups)
    marks = read_marks(output, jtype, jobs) if probe is jtype.check else {}
    texts, offsets = read_lines(output, probe, jobs)
    answers = read_health(output, jtype, jobs) if probe is jtype.check else {}
    out: dict[str, Answer] = {}
    for job_id in jobs:
        v, lv = verdict.get(job_id), live.get(job_id)
        parts = _parts(v.parts if v else {}, lv.parts if lv else {}, jtype)
        row = _of_parts(parts, jtype) if parts else _own(v.own if v else (), lv.own if lv else (), jtype)
        error = None
        if row is None and (failed or live_failed):
            error = failed or live_failed
        elif row is not None and live_failed and jtype.category(row.state) != "running":
            # Without the controller, only "it runs" is sure: an end may be a requeued run's,
            # and "pending" may be accounting that has not heard of the start yet.
            error, row = f"{row.state} not confirmed: {live_failed}", None
        if row is not None or error or job_id in captured:
            out[job_id] = Answer(row, parts or None, tuple(captured.get(job_id, ())), error, marks.get(job_id),
                                 texts.get(job_id, ""), offsets.get(job_id), answers.get(job_id))
    return out


def read_health(output: str, jtype: JobType, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Each ready server's answer to the health probe: curl's exit and the HTTP code."""
    wanted = set(ids)
    spec = jtype.health
    return {m.group("id"): (m.group("exit"), m.group("code"))
            for m in (spec.regex.finditer(output) if spec is not None else ()) if m.group("id") in wanted}


def read_lines(output: str, probe: Probe, ids: Iterable[str]) -> tuple[dict[str, str], dict[str, int]]:
    """Each job's new log lines (its text) and where its next read starts, as a batched check
    that reads the jobs' logs says them. Lines of a job the check was not asked about are
    dropped: a log cannot speak for another job."""
    wanted = set(ids)
    texts: dict[str, list[str]] = {}
    offsets: dict[str, int] = {}
    for match in probe.lines.finditer(output) if probe.lines is not None else ():
        if match.group("id") in wanted:
            texts.setdefault(match.group("id"), []).append(match.group("line"))
    for match in probe.offset.finditer(output) if probe.offset is not None else ():
        if match.group("id") in wanted and match.group("offset").isdigit():
            offsets[match.group("id")] = int(match.group("offset"))
    return {i: "\n".join(lines) for i, lines in texts.items()}, offsets


def read_marks(output: str, jtype: JobType, ids: Iterable[str]) -> dict[str, Mark]:
    """A batched check's progress lines, per job: the mark of its logs (every group of a line but
    ``id``, so the size and the mtime together), their newest mtime, and the clock of the host
    that read them. Without that clock nothing is judged: the watcher's own clock is not the one
    the mtimes were written by."""
    spec = jtype.progress
    if spec is None or spec.regex is None or spec.clock is None:
        return {}
    clock_line = spec.clock.search(output)  # the first: it comes before any line a log holds
    try:
        now = float(clock_line.group("now")) if clock_line else None
    except ValueError:
        now = None
    if now is None:
        return {}
    wanted = set(ids)
    logs: dict[str, list[str]] = {}
    mtimes: dict[str, list[float]] = {}
    for match in spec.regex.finditer(output):
        groups = {k: (v or "").strip() for k, v in match.groupdict().items()}
        job_id = groups.pop("id")
        if job_id not in wanted:
            continue
        logs.setdefault(job_id, []).append("|".join(f"{k}={v}" for k, v in sorted(groups.items())))
        if groups.get("mtime", "").isdigit():
            mtimes.setdefault(job_id, []).append(float(groups["mtime"]))
    tails: dict[str, list[str]] = {}
    for match in spec.last.finditer(output) if spec.last is not None else ():
        tails.setdefault(match.group("id"), []).append(match.group("line"))
    return {job_id: Mark(";".join(sorted(logs.get(job_id, []))), now, max(mtimes.get(job_id, []), default=None),
                         "\n".join(tails.get(job_id, [])))
            for job_id in wanted}


def read_mark(text: str, offset: int, jtype: JobType, now: float) -> Mark | None:
    """A read check's progress: how far its log has grown, on this machine's clock (the log is
    read here). While a progress bar is open (under 100 %), the bar's own line is what moves:
    a calibration that hangs while other lines still come is a stall too."""
    spec = jtype.progress
    if spec is None:
        return None
    bar = None
    found = list(spec.bar.finditer(text)) if spec.bar is not None else []
    if found:
        try:
            open_ = float(found[-1].group("percent")) < 100
        except ValueError:
            open_ = False
        bar = line_at(text, found[-1].start()).strip() if open_ else ""
    return Mark(str(offset), now, None, text[-TAIL:], bar)


TAIL = 2048  # characters of a log's tail kept for what STALLED quotes


def row_mark(row: Row | None, jtype: JobType, now: float) -> Mark | None:
    """Progress a check's row tells by itself (nel's count of requests done), on the clock of
    the machine that read it. A value with no digit in it (null, "unknown") tells nothing."""
    spec = jtype.progress
    if spec is None or not spec.row or row is None:
        return None
    values = [row.groups.get(name, "") for name in spec.row]
    counted = any(ch.isdigit() for value in values for ch in value)
    return Mark("|".join(values) if counted else "", now)


def _groups(lines: list[str], regexes: Iterable[re.Pattern[str]]) -> list[dict[str, str]]:
    regexes = tuple(regexes)
    found = []
    for line in lines:
        match = next((m for r in regexes if (m := r.search(line))), None)
        if match:
            found.append({k: (v or "").strip() for k, v in match.groupdict().items()})
    return found


def _as_row(groups: Mapping[str, str], jtype: JobType) -> Row:
    return Row(normalize(groups.get("state", ""), jtype), groups)


def _live_wins(live: Row | None, jtype: JobType) -> bool:
    """The controller's row counts while it says the job waits or runs: a terminal row with the
    job pending again (requeued) is its last run's, and the controller never gives a verdict."""
    return live is not None and not jtype.terminal(live.state) and jtype.category(live.state) != "unknown"


def _own(verdict: Iterable[Mapping[str, str]], live: Iterable[Mapping[str, str]], jtype: JobType) -> Row | None:
    v_rows = [_as_row(g, jtype) for g in verdict]
    l_rows = [_as_row(g, jtype) for g in live]
    v = combine(v_rows, jtype) if v_rows else None
    lv = combine(l_rows, jtype) if l_rows else None
    if _live_wins(lv, jtype):
        assert lv is not None
        return Row(lv.state, {**(v.groups if v else {}), **lv.groups})
    return v


def _parts(verdict: Mapping[str, Mapping[str, str]], live: Mapping[str, Mapping[str, str]],
           jtype: JobType) -> dict[str, Row]:
    out: dict[str, Row] = {}
    for part in sorted(set(verdict) | set(live), key=_natural):
        lv = _as_row(live[part], jtype) if part in live else None
        if _live_wins(lv, jtype):
            assert lv is not None
            out[part] = Row(lv.state, {**verdict.get(part, {}), **lv.groups})
        elif part in verdict:
            out[part] = _as_row(verdict[part], jtype)
    return out


def _natural(text: str) -> list[Any]:
    """12_2 before 12_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _of_parts(parts: Mapping[str, Row], jtype: JobType) -> Row:
    """A job made of parts: done when all are, failed if any failed; its groups say how far."""
    rep = combine(list(parts.values()), jtype)
    failed = [p for p, r in parts.items() if jtype.category(r.state) == "failure"]
    done = sum(1 for r in parts.values() if jtype.terminal(r.state))
    groups = {**rep.groups, "parts_total": str(len(parts)), "parts_done": str(done),
              "parts_failed": ", ".join(f"{p} {parts[p].state}" for p in failed),
              "failed_part": failed[0] if failed else "",
              "failed_raw": parts[failed[0]].groups.get("raw", "") if failed else ""}
    return Row(rep.state, groups)


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
    captured: Mapping[str, str] | None = None  # named groups of key events (e.g. a Slurm job id) and capture lines
    parts_captured: Mapping[str, Mapping[str, str]] | None = None  # capture lines of the job's parts, by raw id
    # the progress probe: its last mark, when (``at``) it was read and since when (``since``) it has
    # not moved, on the clock of the host that read it; whether STALLED was said; the bar, the tail.
    # A job that does not run keeps only ``at``: when it was first seen so.
    progress: Mapping[str, object] | None = None
    health: Mapping[str, object] | None = None  # a ready server's failed answers in a row, and whether said UNHEALTHY
    running_at: str | None = None  # when a check first saw it run (this run): how long a server took to be READY

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self._asdict().items() if v not in (None, 0, False, ())}
        if self.seen:
            out["seen"] = list(self.seen)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "Book":
        """Values of the wrong kind (a hand-edited registry) fall back to the defaults."""
        kinds = {"errors": int, "unreachable": bool, "missing_since": str, "last_error": str,
                 "final": dict, "seen": list, "offset": int, "grew_at": str, "captured": dict, "parts": dict,
                 "parts_captured": dict, "progress": dict, "health": dict, "running_at": str}
        known = {k: data[k] for k, kind in kinds.items()
                 if isinstance(data.get(k), kind) and not (kind is int and isinstance(data.get(k), bool))}
        if "seen" in known:
            known["seen"] = tuple(str(x) for x in known["seen"])  # type: ignore[union-attr]
        for key in ("missing_since", "grew_at", "running_at"):  # a time that cannot be read is no time
            if key in known and clock.parse(str(known[key])) is None:
                del known[key]
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


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"  # the naive local times older versions stored; still read (clock.parse)


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

    if jtype.terminal(status):
        # An end jobmon never claimed (it would be in history by now): written by hand or by an
        # agent. Never said, so it is said as if first seen, not kept unsaid for ever.
        status = ""
    changes: list[Change] = []
    if book.unreachable:
        changes.append(Change("recovered", UNREACHABLE, RECOVERED, False, None, {},
                              f"checks work again after {book.errors} failures"))
    book = Book()._replace(missing_since=book.missing_since, seen=book.seen, offset=book.offset,
                           grew_at=book.grew_at, captured=book.captured, parts=book.parts,
                           parts_captured=book.parts_captured, progress=book.progress,
                           health=book.health, running_at=book.running_at)
    if obs.captured:
        book = _capture(book, obs.captured, bool(obs.part_rows or book.parts))
    if jtype.ready and obs.offset is not None and book.offset and obs.offset < book.offset:
        book = started_over(book, jtype)
    if obs.text and jtype.events:
        ran_since = clock.parse(book.running_at or "")
        running_for = (clock.aware(now) - ran_since).total_seconds() if ran_since else 0.0
        given = obs.given or {}
        job = {**given, **(obs.row.groups if obs.row else {}), "running_for": running_for}
        found = key_events(obs.text, jtype.events, book.seen,
                           {**(book.captured or {}), **{k: v for k, v in given.items() if v}}, job)
        quiet = {p.name for p in jtype.events if not p.say}
        changes += [Change("event", status, name, False, None, groups, text) for name, text, groups in found
                    if name not in quiet]
        captured = dict(book.captured or {})
        for _, _, groups in found:
            captured.update({k: v for k, v in groups.items() if v})
        book = book._replace(seen=book.seen + tuple(name for name, _, _ in found), captured=captured or None)

    row = obs.row
    if row is not None and jtype.category(row.state) == "missing":
        row = None  # the type's own word for "no such job (yet)", e.g. nel's NOT_FOUND
    if row is None:  # not in the scheduler (yet): never a verdict until the grace period ends
        since, waited = _missing(book, now)
        if waited >= lost_after:
            why = f"{obs.note or 'not seen by any check'} for {_duration(waited)}"
            changes.append(Change("state", status, LOST, True, "failure", {}, why))
            return Step(LOST, book._replace(missing_since=since), tuple(changes))
        return Step(status, book._replace(missing_since=since), tuple(changes))

    state = row.state
    held = _vanished(book.parts or {}, obs.part_rows, jtype) if jtype.terminal(state) else []
    if held:  # accounting lags: tasks known to be coming are in no row yet, so the array has not ended
        since, waited = _missing(book, now)
        if waited < lost_after:
            return Step(status, book._replace(missing_since=since), tuple(changes))
    book = book._replace(missing_since=None)
    if (obs.part_rows and jtype.category(state) == "pending" and jtype.category(status) == "running"
            and any(jtype.terminal(r.state) for r in obs.part_rows.values())):
        state = status  # between an array's tasks: still under way, not waiting again
    if obs.part_rows is not None:
        changes += _parts_progress(status, book.parts or {}, obs.part_rows, jtype, jtype.terminal(state),
                                   row.groups.get("failed_part", ""))
        book = book._replace(parts={p: r.state for p, r in obs.part_rows.items()} or None)
    if state != status:
        category = jtype.category(state)
        outcome = outcome_of(category)
        changes.append(Change("state", status, state, outcome is not None, outcome, row.groups))
    if jtype.events and not jtype.terminal(state):  # what the row says of a job still to come
        found = field_events(row.groups, jtype.events, book.seen)
        changes += [Change("event", state, name, False, None, groups, text) for name, text, groups in found]
        book = book._replace(seen=book.seen + tuple(name for name, _, _ in found))
    running = jtype.category(state) == "running"
    if running != bool(book.running_at):
        book = book._replace(running_at=clock.stamp(now) if running else None)
        if not running and jtype.ready and not jtype.terminal(state):
            book = started_over(book, jtype)  # requeued: no longer ready; its next run comes up afresh
    book, said = stall(book, obs.progress, jtype, state)
    book, answered = health(book, obs.health, jtype, state)
    book, late = overdue(book, obs.text, jtype, state, now)
    said += answered + late
    return Step(state, book, tuple(changes) + said)


STALLED = "STALLED"
RESUMED = "RESUMED"


def stall(book: Book, seen: Mark | None, jtype: JobType, state: str) -> tuple[Book, tuple[Change, ...]]:
    """A running job whose mark has not moved for the type's ``stall_after``: one STALLED line,
    with how long and the last meaningful line of its log; one RESUMED line when it moves again.
    Never an end: the job's state is the scheduler's.

    Every time compared is on the clock of the host that read the mark. A job is stalled only
    once its mark has been read twice alike; a mark that moved dates its move by its mtime only
    if that falls after the previous look that saw a mark or saw the job not running (a stale
    mtime, as NFS may show, dates nothing; nor does one from before a suspension or a requeue),
    else by the look that saw it move."""
    spec = jtype.progress
    if spec is None or seen is None:
        return book, ()
    if jtype.category(state) != "running":
        return _not_running(book, seen), ()
    before = dict(book.progress or {})
    bar = seen.bar if seen.bar is not None else str(before.get("bar") or "")
    mark = f"bar {bar}" if bar else seen.mark
    if not mark:  # nothing to tell by (no log found yet, the first look after a resume): no look to keep
        return book, ()
    if _fewer(mark, str(before.get("mark") or "")):  # a log unseen for a moment (an NFS hiccup): no sign of life
        mark = str(before["mark"])
    at, since = _seconds(before.get("at")), _seconds(before.get("since"))
    if mark != before.get("mark") or since is None:
        # An mtime before the previous look contradicts what that look saw: it is stale.
        dated = seen.mtime is not None and (at is None or seen.mtime > at) and seen.mtime <= seen.now
        moved_at = seen.mtime if dated else seen.now
        said: tuple[Change, ...] = ()
        if before.get("stalled") and since is not None:
            said = (Change("event", state, RESUMED, False, None, {},
                           f"moving again after {_duration(max(0.0, moved_at - since))} without progress"),)
        # a tail from before the move is no longer the log's: only this look's is kept
        kept = {k: v for k, v in (("bar", bar), ("tail", seen.last)) if v}
        return book._replace(progress={"mark": mark, "at": seen.now, "since": moved_at, **kept}), said
    quiet = seen.now - since
    tail = seen.last or str(before.get("tail") or "")
    progress = {**before, "at": seen.now, **({"tail": tail} if tail else {})}
    if quiet < spec.stall_after or before.get("stalled"):
        return book._replace(progress=progress), ()
    last = f"the bar stands at: {bar[:200]}" if bar else meaningful(tail, jtype)
    why = f"no progress for {_duration(quiet)}" + (f"; {last}" if bar else f"; last: {last}" if last else "")
    return book._replace(progress={**progress, "stalled": True}), (Change("event", state, STALLED, False, None, {}, why),)


def _fewer(mark: str, before: str) -> bool:
    """A mark of several logs (``;``-joined) that lost one of them and changed nothing else."""
    parts = set(mark.split(";"))
    return bool(mark) and parts < set(before.split(";"))


def _not_running(book: Book, seen: Mark) -> Book:
    """A job that does not run (suspended, pending, requeued) shows no progress, and its probe
    does not look: what it saw is forgotten, a stall too (the state line says the job left
    RUNNING, so no RESUMED follows when it runs again). Only when it was first seen so is kept:
    its log's mtime from before then dates no move, so time suspended or queued is no stall.
    Kept once: each later poll leaves the book as it is (no registry write for nothing)."""
    before = book.progress or {}
    if set(before) == {"at"}:
        return book
    return book._replace(progress={"at": seen.now})


NOT_READY = "NOT_READY"


def started_over(book: Book, jtype: JobType) -> Book:
    """A job whose type has a ``ready`` event (a server) that stopped running (requeued, or
    held) or whose log is shorter than where the last read stopped (a new run wrote it afresh):
    it is no longer ready, and its next run must come up again. That run's key events are still
    to come: the ones said once (LOADING, READY, NOT_READY) are forgotten with what they kept (a
    URL on the old node), and so is the old run's health. A ``field`` event (said of the row)
    and ``each`` and ``step`` ones (said by value) stand."""
    run = {p.name for p in jtype.events if not (p.field or p.each or p.step)} | {NOT_READY}
    found = set().union(*(p.gives for p in jtype.events if not p.field))
    captured = {k: v for k, v in (book.captured or {}).items() if k not in found | {"cause", "last_line"}}
    return book._replace(seen=tuple(s for s in book.seen if s not in run), captured=captured or None, health=None)


def overdue(book: Book, text: str, jtype: JobType, state: str, now: datetime) -> tuple[Book, tuple[Change, ...]]:
    """A running job that has not reached the type's ``ready`` event (a server's READY) within
    ``ready_within`` seconds of running: one NOT_READY line, with the last cause its log showed
    so far (what the type's diagnosis finds in each poll's new lines, kept as ``cause``), else
    its last line."""
    if jtype.ready is None:
        return book, ()
    captured = dict(book.captured or {})
    cause = diagnose(text, [p for p in jtype.diagnosis if not p.field]) if text else None
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "") if text else ""
    if cause or last:
        captured.update({k: v[:300] for k, v in (("cause", cause), ("last_line", last)) if v})
        book = book._replace(captured=captured)
    since = clock.parse(book.running_at or "")
    if jtype.category(state) != "running" or since is None or jtype.reached_ready(book.seen) or NOT_READY in book.seen:
        return book, ()
    running_for = (clock.aware(now) - since).total_seconds()
    if running_for < jtype.ready_within:
        return book, ()
    told = captured.get("cause") or (f"last line: {captured['last_line']}" if captured.get("last_line") else "its log says nothing yet")
    why = f"no {jtype.ready} after {_duration(running_for)} running; {told}"
    return book._replace(seen=book.seen + (NOT_READY,)), (Change("event", state, NOT_READY, False, None, {}, why),)


UNHEALTHY, HEALTHY = "UNHEALTHY", "HEALTHY"
CURL = {"6": "host not found", "7": "connection refused", "28": "timed out", "52": "empty reply",
        "56": "connection reset"}


def health(book: Book, answer: tuple[str, str] | None, jtype: JobType, state: str) -> tuple[Book, tuple[Change, ...]]:
    """A ready server's answers to its health probe: ``unhealthy_after`` failures in a row are one
    UNHEALTHY line (with what the last one said); the first good answer after, one HEALTHY line.
    Never an end: the job still runs, and the scheduler says how it ends. A job that leaves
    RUNNING forgets its answers."""
    spec = jtype.health
    if spec is None:
        return book, ()
    if jtype.category(state) != "running":
        return (book._replace(health=None), ()) if book.health else (book, ())
    if answer is None:  # not asked this time (not READY yet)
        return book, ()
    exit_code, code = answer
    before = dict(book.health or {})
    fails = int(before.get("fails", 0)) if str(before.get("fails", 0)).isdigit() else 0
    if exit_code == "0" and code[:1] in ("2", "3"):
        if before.get("unhealthy"):
            return book._replace(health=None), (Change("event", state, HEALTHY, False, None, {},
                                                       f"answers again (HTTP {code}) after {fails} failed probes"),)
        return (book._replace(health=None), ()) if before else (book, ())
    fails += 1
    why = f"HTTP {code}" if code not in ("", "000") else f"no answer: {CURL.get(exit_code, f'curl exit {exit_code}')}"
    if fails >= spec.unhealthy_after and not before.get("unhealthy"):
        return (book._replace(health={"fails": fails, "unhealthy": True}),
                (Change("event", state, UNHEALTHY, False, None, {}, f"{fails} failed probes in a row: {why}"),))
    return book._replace(health={**before, "fails": fails}), ()


def stalling(book: Book, jtype: JobType) -> bool:
    """Whether a job may be said STALLED soon: then its check also brings its log's tail, which
    STALLED quotes (a tail for every job at every poll would cost more than it tells)."""
    progress = book.progress or {}
    at, since = _seconds(progress.get("at")), _seconds(progress.get("since"))
    if jtype.progress is None or progress.get("stalled") or at is None or since is None:
        return False
    return at - since >= jtype.progress.stall_after / 2


def meaningful(tail: str, jtype: JobType) -> str:
    """The line of a log's tail worth quoting: what the type's diagnosis finds (the last NCCL
    warning, a traceback's exception), else the last line that is not blank."""
    text = clean(tail)
    found = diagnose(text, jtype.diagnosis)
    if found:
        return found[:200]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _seconds(value: object) -> float | None:
    """A time kept in the book (hand edits included): a number, or None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


PROGRESS = "PROGRESS"


def _parts_progress(status: str, before: Mapping[str, str], parts: Mapping[str, Row], jtype: JobType,
                    ending: bool, named: str = "") -> list[Change]:
    """Parts that ended since the last check: a line for each that failed (its cause is found
    from its own log, as a job's), and one line of how far the job got. In the check where the
    whole job ends, no progress line, and no line for the failed part its end already names
    (``named``): every other task that failed then has its own."""
    ended = [p for p, r in parts.items() if jtype.terminal(r.state) and not jtype.terminal(before.get(p, ""))]
    if not ended or len(parts) < 2:
        return []
    out = [Change("part", status, f"{p} {parts[p].state}", False, None,
                  {**parts[p].groups, "failed_part": p, "failed_raw": parts[p].groups.get("raw", "")})
           for p in ended if jtype.category(parts[p].state) == "failure" and not (ending and p == named)]
    if ending:
        return out
    done = sum(1 for r in parts.values() if jtype.terminal(r.state))
    failed = sum(1 for r in parts.values() if jtype.category(r.state) == "failure")
    said = f"{done}/{len(parts)} done" + (f", {failed} failed" if failed else "")
    return out + [Change("event", status, PROGRESS, False, None, {}, said)]


def _missing(book: Book, now: datetime) -> tuple[str, float]:
    """Since when the job (or a part it was known to have) has been missing, and for how long."""
    since = book.missing_since or clock.stamp(now)
    began = clock.parse(since) or clock.aware(now)  # Book.from_dict drops a time it cannot read
    return since, (clock.aware(now) - began).total_seconds()


def _vanished(before: Mapping[str, str], now: Mapping[str, Row] | None, jtype: JobType) -> list[str]:
    """Parts last seen still to come (``12_[34-99]`` pending, a task running) that no row of this
    look names, neither itself nor, for a pending record, each of its tasks: slurmdbd drops the
    pending record before it writes the tasks' own rows."""
    if now is None:
        return []
    present = set(now) | {i for p in now for i in idlist.expand(_THROTTLE.sub("", p))}
    return [p for p, state in before.items() if not jtype.terminal(state) and p not in present
            and not set(idlist.expand(_THROTTLE.sub("", p))) <= present]


_THROTTLE = re.compile(r"%\d+(?=\]$)")  # 12_[0-99%4]: at most 4 at once


def _capture(book: Book, lines: tuple[Mapping[str, str], ...], has_parts: bool) -> Book:
    """Keep what capture lines say (log paths) the first time: the controller forgets a job
    minutes after its end, and its paths are needed then. A job of parts keeps each part's."""
    named = [{k: v for k, v in line.items() if v and k not in owners.NAMING} for line in lines]
    captured = dict(book.captured or {})
    if len(lines) == 1 and not has_parts:
        for key, value in named[0].items():
            captured.setdefault(key, value)
    parts_captured = dict(book.parts_captured or {})
    if has_parts or len(lines) > 1:
        for line, values in zip(lines, named):
            if line.get("raw") and values:
                parts_captured.setdefault(line["raw"], values)
    return book._replace(captured=captured or None, parts_captured=parts_captured or None)


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))
