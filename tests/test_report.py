"""The aggregate line."""
from __future__ import annotations

from jobmon.report import summarize


def test_summary_counts_each_category() -> None:
    s = summarize(["success", "success", "failure", "running", "pending", "unknown", "unreachable"])
    assert s.text() == "2 of 7 completed, 1 failed, 1 running, 1 pending, 1 in another state, 1 unreachable"
    assert s.counts["success"] == 2 and s.total == 7


def test_nothing_to_summarize() -> None:
    assert summarize([]).text() == "no jobs registered"
    assert summarize(["running"]).text() == "0 of 1 completed, 1 running"
