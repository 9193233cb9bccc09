"""The session's summary line: every job registered in the session, the active ones and those
that ended (from history), each counted under one word, with the results of completed jobs.
And ``jobmon report``: the ended jobs' efficiency (what their end's metrics measured), totals
and the worst offenders.

"pending" is only what the scheduler says waits; a job no check has seen yet, one on an
unreachable host, and a SUSPENDED one each have their own word, so none is mistaken for a job
in the queue.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple

if TYPE_CHECKING:
    from datetime import datetime

    from jobmon.config import Config
    from jobmon.registry import Entry

# The words that lead, in this order; any other (a state's own name) follows by count.
ORDER = ("completed", "failed", "running", "pending")
TRAILING = ("not seen yet", "unreachable", "not watchable", "removed")
NOT_SEEN, UNREACHABLE, UNWATCHABLE, REMOVED = TRAILING


class Summary(NamedTuple):
    counts: dict[str, int]  # word -> jobs
    total: int
    metrics: tuple[str, ...] = ()  # results of completed jobs, e.g. "mmlu_pro: 42.3%"

    def words(self) -> str:
        """``8 completed (mmlu_pro: 42.3%), 3 failed, 1 running``."""
        c = self.counts
        lead = [w for w in ORDER if c.get(w)]
        rest = sorted((w for w in c if w not in ORDER and w not in TRAILING), key=lambda w: (-c[w], w))
        parts = []
        for word in lead + rest + [w for w in TRAILING if c.get(w)]:
            part = f"{c[word]} {word}"
            if word == "completed" and self.metrics:
                shown = ", ".join(self.metrics[:8]) + (f", +{len(self.metrics) - 8} more" if len(self.metrics) > 8 else "")
                part += f" ({shown})"
            parts.append(part)
        return ", ".join(parts)

    def text(self) -> str:
        if not self.total:
            return "no jobs registered"
        return f"{self.total} job{'s' if self.total != 1 else ''}: {self.words()}"


def summarize(words: Iterable[str], metrics: Iterable[str] = ()) -> Summary:
    counts = Counter(words)
    return Summary(dict(counts), sum(counts.values()), tuple(metrics))


def word(config: "Config | None", entry: "Entry") -> str:
    """What one registered job is, in the summary's words (``config``: None only when there is
    no entry, for a command that has not loaded it)."""
    from jobmon.registry import Invalid

    if isinstance(entry, Invalid) or config is None or entry.type not in config.types:
        return UNWATCHABLE
    if entry.book.final:  # claimed by a poller, not yet moved to history
        return "completed" if entry.book.final.get("outcome") == "success" else "failed"
    if entry.book.unreachable:
        return UNREACHABLE
    jtype, _ = config.resolve(entry.type, entry.host)
    state = entry.last_status
    category = jtype.category(state) if state else "missing"
    if category == "missing":
        return NOT_SEEN
    if category in ("success", "failure"):
        return "completed" if category == "success" else "failed"
    if category == "running":
        return "running"
    if category == "pending" and state.upper() == "PENDING":
        return "pending"
    return state.lower()  # SUSPENDED, REQUEUED, STARTING, an unknown state: its own word


def session(config: "Config | None", entries: Iterable["Entry"], history: Iterable[Mapping[str, Any]]) -> Summary:
    """Every job of the session once: an active entry wins over its history records, and the
    last record of a job wins over earlier ones (a job removed and registered again)."""
    ended: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for record in history:
        ended[(str(record.get("type", "")), str(record.get("id", "")), str(record.get("host", "")))] = record
    words: list[str] = []
    active: set[tuple[str, str, str]] = set()
    for entry in entries:
        words.append(word(config, entry))
        if hasattr(entry, "key"):
            active.add(entry.key)  # type: ignore[union-attr]
    metrics: list[str] = []
    for key, record in ended.items():
        if key in active:
            continue
        if record.get("removed"):
            words.append(REMOVED)
            continue
        words.append("completed" if record.get("outcome") == "success" else "failed")
        if record.get("outcome") == "success":
            metrics += [str(m) for m in record.get("summary_metrics", [])]
    return summarize(words, metrics)


def still(summary: Summary) -> str:
    """The active jobs in a few words, for a watch that ends while they go on:
    ``3 jobs (1 running, 2 pending)``."""
    n = summary.total
    return f"{n} job{'s' if n != 1 else ''} ({summary.words()})"


# ---------------------------------------------------------------- `jobmon report`: ended jobs over history

# The values an end's metrics compute that the report reads (slurm's efficiency metric gives
# them; any type's metrics may): a record without them, older or of another type, shows "-".
WAIT, ELAPSED, LIMIT, CPU, MEM, MEM_REQ, GPU_HOURS = (
    "wait_s", "elapsed_s", "limit_s", "cpu_pct", "mem_pct", "mem_req", "gpu_hours")
WORST = 3  # jobs named under each "lowest" list


class Ended(NamedTuple):
    """One ended job, as its last history record tells it."""

    type: str
    id: str
    host: str
    description: str
    state: str
    outcome: str
    finished: str
    measured: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.type} {self.id}{'@' + self.host if self.host else ''}"

    def number(self, name: str) -> float | None:
        """A measured value, or None for one that is no measure: absent, not a number, or
        negative or infinite (durations, percentages, sizes and GPU-hours are none of these; a
        hand-edited or older record may hold one, and the report shows it as ``-``)."""
        import math

        value = self.measured.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        return float(value) if math.isfinite(value) and value >= 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The job's object in ``--json``: its own fields, then its measured values."""
        own = {"kind": "job", "type": self.type, "id": self.id, "host": self.host, "description": self.description,
               "state": self.state, "outcome": self.outcome, "finished": self.finished}
        # A metric may name a value type, id or state: the job's own field wins (and leads).
        return {**own, **{k: v for k, v in self.measured.items() if k not in own}}


class Totals(NamedTuple):
    jobs: int
    outcomes: dict[str, int]  # completed, failed -> jobs
    failures: dict[str, int]  # a failed job's final state (FAILED, TIMEOUT, …) -> jobs
    gpu_hours: float
    lowest_cpu: tuple[Ended, ...]
    lowest_mem: tuple[Ended, ...]


def ended(history: Iterable[Mapping[str, Any]], since: "datetime | None" = None) -> list[Ended]:
    """The jobs that ended (not those removed), the last record of each, finished at or after
    ``since``, in the order they finished. A hand-edited record's odd values are read as absent."""
    from jobmon import clock

    last: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for record in history:
        if isinstance(record, Mapping):
            key = (str(record.get("type", "")), str(record.get("id", "")), str(record.get("host", "")))
            last.pop(key, None)  # a job registered again ends in its latest place
            last[key] = record
    out = []
    for (type_, id_, host), record in last.items():
        if record.get("removed") or record.get("outcome") not in ("success", "failure"):
            continue
        finished = clock.parse(str(record.get("finished", "")))
        if since is not None and (finished is None or finished < since):
            continue
        measured = record.get("measured")
        out.append(Ended(type_, id_, host, str(record.get("description") or ""), str(record.get("last_status") or ""),
                         str(record["outcome"]), clock.stamp(finished) if finished else "",
                         dict(measured) if isinstance(measured, Mapping) else {}))
    return out


def totals(jobs: Iterable[Ended]) -> Totals:
    jobs = list(jobs)
    outcomes = Counter("completed" if j.outcome == "success" else "failed" for j in jobs)
    failures = Counter(j.state or "?" for j in jobs if j.outcome != "success")

    def lowest(name: str) -> tuple[Ended, ...]:
        known = [j for j in jobs if j.number(name) is not None]
        return tuple(sorted(known, key=lambda j: j.number(name))[:WORST])  # type: ignore[arg-type,return-value]

    return Totals(len(jobs), {w: outcomes[w] for w in ("completed", "failed") if outcomes[w]},
                  dict(failures.most_common()), round(sum(j.number(GPU_HOURS) or 0 for j in jobs), 2),
                  lowest(CPU), lowest(MEM))


def _cell(job: Ended, name: str) -> str:
    from jobmon.template import hms, size

    value = job.number(name)
    if value is None:
        return "-"
    if name in (WAIT, ELAPSED, LIMIT):
        return hms(value)
    if name == MEM and job.number(MEM_REQ) is not None:
        return f"{value:.0f}% of {size(job.number(MEM_REQ))}"
    return f"{value:.0f}%" if name == CPU or name == MEM else f"{value:g}"


COLUMNS = (("JOB", None), ("STATE", None), ("ELAPSED", ELAPSED), ("LIMIT", LIMIT), ("WAITED", WAIT),
           ("CPU", CPU), ("MEM", MEM), ("GPU-H", GPU_HOURS))


def table(jobs: Iterable[Ended]) -> list[str]:
    """A header and one line per job, columns aligned, then the totals and the worst offenders."""
    jobs = list(jobs)
    if not jobs:
        return ["no ended jobs"]
    cells = [[name for name, _ in COLUMNS] + ["DESCRIPTION"]]
    for job in jobs:
        cells.append([job.label, job.state or job.outcome] + [_cell(job, key) for _, key in COLUMNS[2:] if key]
                     + [job.description])
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in cells]
    return [line.rstrip() for line in lines] + words(totals(jobs))


def words(t: Totals) -> list[str]:
    """``5 jobs: 3 completed, 2 failed (1 FAILED, 1 TIMEOUT); 21.6 GPU-hours``, then the lowest
    efficiencies."""
    said = [f"{n} {w}" for w, n in t.outcomes.items()]
    if t.failures:
        said[-1] += " (" + ", ".join(f"{n} {s}" for s, n in t.failures.items()) + ")"
    lines = [f"{t.jobs} job{'s' if t.jobs != 1 else ''}: {', '.join(said)}; {t.gpu_hours:g} GPU-hours"]
    for title, worst, name in (("lowest CPU", t.lowest_cpu, CPU), ("lowest memory", t.lowest_mem, MEM)):
        if worst:
            lines.append(f"{title}: " + ", ".join(f"{j.label} {_cell(j, name)}" for j in worst))
    return lines


def as_json(jobs: Iterable[Ended]) -> list[dict[str, Any]]:
    """One object per job (``kind: job``, its measured values as numbers), then ``kind: totals``."""
    jobs = list(jobs)
    t = totals(jobs)
    return [j.to_dict() for j in jobs] + [{
        "kind": "totals", "jobs": t.jobs, "outcomes": t.outcomes, "failures": t.failures, "gpu_hours": t.gpu_hours,
        "lowest_cpu": [{"type": j.type, "id": j.id, "host": j.host, CPU: j.number(CPU)} for j in t.lowest_cpu],
        "lowest_mem": [{"type": j.type, "id": j.id, "host": j.host, MEM: j.number(MEM)} for j in t.lowest_mem]}]
