"""The aggregate line: how many jobs completed, failed, run and wait."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, NamedTuple


class Summary(NamedTuple):
    counts: dict[str, int]  # category -> jobs
    total: int

    def text(self) -> str:
        if not self.total:
            return "no jobs registered"
        c = self.counts
        parts = [f"{c.get('success', 0)} of {self.total} completed"]
        for cat, word in (("failure", "failed"), ("running", "running"), ("pending", "pending"),
                          ("unknown", "in another state"), ("unreachable", "unreachable")):
            if c.get(cat):
                parts.append(f"{c[cat]} {word}")
        return ", ".join(parts)


def summarize(categories: Iterable[str]) -> Summary:
    """``categories``: one per job, from JobType.category (or 'unknown' / 'unreachable')."""
    counts = Counter(categories)
    return Summary(dict(counts), sum(counts.values()))
