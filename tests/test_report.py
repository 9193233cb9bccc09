"""The session summary: every job of the session, each under one word."""
from __future__ import annotations

from jobmon import config
from jobmon.registry import Invalid, Job
from jobmon.report import session, still, summarize
from jobmon.rules import Book

CONFIG = config.load(env={})


def test_words_lead_in_order_then_own_words_then_the_trailing_ones() -> None:
    s = summarize(["running", "failed", "suspended", "completed", "completed", "pending", "unreachable",
                   "not seen yet", "requeued", "suspended"], ["mmlu_pro: 42.3%"])
    assert s.text() == ("10 jobs: 2 completed (mmlu_pro: 42.3%), 1 failed, 1 running, 1 pending, 2 suspended, "
                        "1 requeued, 1 not seen yet, 1 unreachable")


def test_nothing_to_summarize() -> None:
    assert summarize([]).text() == "no jobs registered"
    assert summarize(["running"]).text() == "1 job: 1 running"


def test_the_session_counts_history_and_the_registry_each_job_once() -> None:
    entries = [
        Job("slurm", "1", host="c", last_status="RUNNING"),
        Job("slurm", "2", host="c", last_status="PENDING"),
        Job("slurm", "3", host="c", last_status="SUSPENDED"),  # pending to SLURM, but not waiting in the queue
        Job("slurm", "4", host="c"),  # no check has seen it yet
        Job("slurm", "5", host="c", last_status="RUNNING", book=Book(unreachable=True)),
        Job("slurm", "6", host="c", last_status="COMPLETED",  # claimed by a poller that was killed
            book=Book(final={"to": "COMPLETED", "outcome": "success"})),
        Job("nosuch", "7"),
        Invalid(7, 42, "entry 7 is the number 42, not an object"),
    ]
    history = [
        {"type": "nel", "id": "a" * 16, "host": "", "outcome": "failure"},
        {"type": "nel", "id": "a" * 16, "host": "", "outcome": "success", "summary_metrics": ["mmlu_pro: 42.3%"]},
        {"type": "slurm", "id": "8", "host": "c", "outcome": "failure"},
        {"type": "slurm", "id": "9", "host": "c", "removed": "2026-12-01T10:00:00"},
        {"type": "slurm", "id": "1", "host": "c", "removed": "2026-12-01T09:00:00"},  # registered again since
    ]
    s = session(CONFIG, entries, history)
    assert s.text() == ("11 jobs: 2 completed (mmlu_pro: 42.3%), 1 failed, 1 running, 1 pending, 1 suspended, "
                        "1 not seen yet, 1 unreachable, 2 not watchable, 1 removed")
    assert s.counts["completed"] == 2 and s.total == 11


def test_still_names_the_jobs_that_go_on() -> None:
    s = session(CONFIG, [Job("slurm", "1", host="c", last_status="RUNNING"),
                         Job("slurm", "2", host="c", last_status="PENDING"),
                         Job("slurm", "3", host="c", last_status="PENDING")], [])
    assert still(s) == "3 jobs (1 running, 2 pending)"
