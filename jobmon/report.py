"""The session's summary line: every job registered in the session, the active ones and those
that ended (from history), each counted under one word, with the results of completed jobs.

"pending" is only what the scheduler says waits; a job no check has seen yet, one on an
unreachable host, and a SUSPENDED one each have their own word, so none is mistaken for a job
in the queue.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple

if TYPE_CHECKING:
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
