"""The aggregate line: how many jobs completed, failed, run and wait."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, NamedTuple


class Summary(NamedTuple):
    counts: dict[str, int]  # category -> jobs
    total: int
    metrics: tuple[str, ...] = ()  # results of completed jobs, e.g. "MMLU-Pro: 42.3%"

    def text(self) -> str:
        if not self.total:
            return "no jobs registered"
        c = self.counts
        done = f"{c.get('success', 0)} of {self.total} completed"
        if self.metrics:
            shown = ", ".join(self.metrics[:8]) + (f", +{len(self.metrics) - 8} more" if len(self.metrics) > 8 else "")
            done += f" ({shown})"
        parts = [done]
        for cat, word in (("failure", "failed"), ("running", "running"), ("pending", "pending"),
                          ("unknown", "in another state"), ("unreachable", "unreachable")):
            if c.get(cat):
                parts.append(f"{c[cat]} {word}")
        return ", ".join(parts)


def summarize(categories: Iterable[str], metrics: Iterable[str] = ()) -> Summary:
    """``categories``: one per job, from JobType.category (or 'unknown' / 'unreachable')."""
    counts = Counter(categories)
    return Summary(dict(counts), sum(counts.values()), tuple(metrics))
