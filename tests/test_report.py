"""The session summary: every job of the session, each under one word."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from jobmon import config
from jobmon.registry import Invalid, Job
from jobmon.report import session, still, summarize
from jobmon.rules import Book
from conftest import Home

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


# ---------------------------------------------------------------- `jobmon report`: ended jobs over history

GIB = 2**30
# A session's history as jobmon writes it: slurm ends with what their efficiency metric measured,
# a record of an older jobmon (no "measured"), a nel evaluation, a removal, a job registered
# again, one that ended two days ago, and a hand-edited one.
MIXED = [
    {"type": "slurm", "id": "1582", "host": "c", "description": "long", "last_status": "COMPLETED",
     "outcome": "success", "finished": "2026-12-01T22:55:00+00:00",
     "measured": {"wait_s": 1.0, "elapsed_s": 41, "limit_s": 600, "cpu_pct": 45.6, "max_rss": 139156 * 1024.0,
                  "mem_req": 300 * 2.0**20, "mem_pct": 45.3}},
    {"type": "slurm", "id": "1581", "host": "c", "description": "fail", "last_status": "FAILED",
     "outcome": "failure", "finished": "2026-12-01T22:54:00+00:00",
     "measured": {"wait_s": 0.0, "elapsed_s": 4, "limit_s": 120, "cpu_pct": 0.1}},
    {"type": "slurm", "id": "900", "host": "c", "description": "train", "last_status": "COMPLETED",
     "outcome": "success", "finished": "2026-12-01T20:00:00+00:00",
     "measured": {"wait_s": 750.0, "elapsed_s": 9667, "limit_s": 14400, "cpu_pct": 71.0, "max_rss": 24.3 * GIB,
                  "mem_req": 64.0 * GIB, "mem_pct": 38.0, "gpus": 8, "gpu_hours": 21.48}},
    {"type": "slurm", "id": "17", "host": "c", "last_status": "TIMEOUT", "outcome": "failure",
     "finished": "2026-12-01T21:00:00"},  # an older jobmon: naive local time, nothing measured
    {"type": "nel", "id": "3f9c2a1b7d4e8f60", "host": "", "description": "MMLU-Pro", "last_status": "SUCCESS",
     "outcome": "success", "finished": "2026-12-01T21:30:00+00:00", "summary_metrics": ["mmlu_pro: 42.3%"]},
    {"type": "slurm", "id": "5", "host": "c", "removed": "2026-12-01T21:00:00+00:00"},
    {"type": "slurm", "id": "6", "host": "c", "last_status": "FAILED", "outcome": "failure",
     "finished": "2026-12-01T18:00:00+00:00", "measured": {"cpu_pct": 1.0}},
    {"type": "slurm", "id": "6", "host": "c", "last_status": "COMPLETED", "outcome": "success",  # registered again
     "finished": "2026-12-01T22:00:00+00:00", "measured": {"cpu_pct": 97.0, "mem_pct": 88.0}},
    {"type": "slurm", "id": "4", "host": "c", "last_status": "COMPLETED", "outcome": "success",
     "finished": "2026-11-29T12:00:00+00:00", "measured": {"cpu_pct": 3.0, "gpus": 4, "gpu_hours": 100.0}},
    {"type": "slurm", "id": "8", "host": "c", "last_status": "COMPLETED", "outcome": "success",
     "finished": "2026-12-01T22:56:00+00:00", "measured": {"cpu_pct": "high", "mem_pct": True}},  # a hand edit
    "not a record",
]


def test_the_report_reads_every_ended_job_once_old_records_included() -> None:
    from jobmon.report import ended

    jobs = ended(MIXED)  # type: ignore[arg-type]
    assert [(j.id, j.state) for j in jobs] == [("1582", "COMPLETED"), ("1581", "FAILED"), ("900", "COMPLETED"),
                                              ("17", "TIMEOUT"), ("3f9c2a1b7d4e8f60", "SUCCESS"), ("6", "COMPLETED"),
                                              ("4", "COMPLETED"), ("8", "COMPLETED")]
    assert jobs[3].measured == {} and jobs[-1].number("cpu_pct") is None and jobs[-1].number("mem_pct") is None


def test_since_keeps_the_jobs_that_ended_after_it() -> None:
    from datetime import datetime, timezone

    from jobmon.report import ended

    since = datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc)
    assert "4" not in [j.id for j in ended(MIXED, since)]  # type: ignore[arg-type]
    assert len(ended(MIXED, since)) == 7  # type: ignore[arg-type]


def test_the_table_then_totals_then_the_least_efficient() -> None:
    from jobmon.report import ended, table

    assert table(ended(MIXED)) == [  # type: ignore[arg-type]
        "JOB                   STATE      ELAPSED   LIMIT     WAITED    CPU  MEM          GPU-H  DESCRIPTION",
        "slurm 1582@c          COMPLETED  00:00:41  00:10:00  00:00:01  46%  45% of 300M  -      long",
        "slurm 1581@c          FAILED     00:00:04  00:02:00  00:00:00  0%   -            -      fail",
        "slurm 900@c           COMPLETED  02:41:07  04:00:00  00:12:30  71%  38% of 64G   21.48  train",
        "slurm 17@c            TIMEOUT    -         -         -         -    -            -",
        "nel 3f9c2a1b7d4e8f60  SUCCESS    -         -         -         -    -            -      MMLU-Pro",
        "slurm 6@c             COMPLETED  -         -         -         97%  88%          -",
        "slurm 4@c             COMPLETED  -         -         -         3%   -            100",
        "slurm 8@c             COMPLETED  -         -         -         -    -            -",
        "8 jobs: 6 completed, 2 failed (1 FAILED, 1 TIMEOUT); 121.48 GPU-hours",
        "lowest CPU: slurm 1581@c 0%, slurm 4@c 3%, slurm 1582@c 46%",
        "lowest memory: slurm 900@c 38% of 64G, slurm 1582@c 45% of 300M, slurm 6@c 88%",
    ]
    assert table([]) == ["no ended jobs"]


def test_jobmon_report_json_and_since(home: Home) -> None:
    import json

    from conftest import jobmon

    home.registry.parent.mkdir(parents=True)
    now = datetime.now(timezone.utc)
    records = [{**r, "finished": (now - timedelta(hours=2 if r["id"] != "4" else 50)).isoformat()}
               for r in MIXED if isinstance(r, dict) and "finished" in r]
    home.registry.with_name("history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "{damaged\n")
    ran = jobmon("report", "--since", "1d", "--json", *home.args())
    assert (ran.code, ran.err) == (0, "")
    *jobs, totals = ran.events()
    assert [j["id"] for j in jobs] == ["1582", "1581", "900", "17", "3f9c2a1b7d4e8f60", "6", "8"]
    assert jobs[2] == {"kind": "job", "type": "slurm", "id": "900", "host": "c", "description": "train",
                       "state": "COMPLETED", "outcome": "success", "finished": jobs[2]["finished"], "wait_s": 750.0,
                       "elapsed_s": 9667, "limit_s": 14400, "cpu_pct": 71.0, "max_rss": 24.3 * GIB,
                       "mem_req": 64.0 * GIB, "mem_pct": 38.0, "gpus": 8, "gpu_hours": 21.48}
    assert totals == {"kind": "totals", "jobs": 7, "outcomes": {"completed": 5, "failed": 2},
                      "failures": {"FAILED": 1, "TIMEOUT": 1},
                      "gpu_hours": 21.48,
                      "lowest_cpu": [{"type": "slurm", "id": "1581", "host": "c", "cpu_pct": 0.1},
                                     {"type": "slurm", "id": "1582", "host": "c", "cpu_pct": 45.6},
                                     {"type": "slurm", "id": "900", "host": "c", "cpu_pct": 71.0}],
                      "lowest_mem": [{"type": "slurm", "id": "900", "host": "c", "mem_pct": 38.0},
                                     {"type": "slurm", "id": "1582", "host": "c", "mem_pct": 45.3},
                                     {"type": "slurm", "id": "6", "host": "c", "mem_pct": 88.0}]}
    text = jobmon("report", *home.args())
    assert text.code == 0 and text.lines()[-3] == "8 jobs: 6 completed, 2 failed (1 FAILED, 1 TIMEOUT); 121.48 GPU-hours"
    bad = jobmon("report", "--since", "yesterday", *home.args())
    assert (bad.code, bad.err) == (2, "jobmon: --since 'yesterday': expected a duration such as 90s, 25m or 1h\n")


def test_a_negative_or_infinite_figure_shows_a_dash(home: Home) -> None:
    import json

    from conftest import jobmon
    from jobmon.report import ended, table

    # an older jobmon read sacct's local times as UTC: across a DST fall-back it kept wait_s -3600
    odd = [{"type": "slurm", "id": "31", "host": "c", "last_status": "COMPLETED", "outcome": "success",
            "finished": "2026-10-25T03:00:00+00:00",
            "measured": {"wait_s": -3600.0, "elapsed_s": 10, "cpu_pct": float("inf"), "gpu_hours": -1.0}}]
    assert table(ended(odd)) == [
        "JOB         STATE      ELAPSED   LIMIT  WAITED  CPU  MEM  GPU-H  DESCRIPTION",
        "slurm 31@c  COMPLETED  00:00:10  -      -       -    -    -",
        "1 job: 1 completed; 0 GPU-hours"]
    home.registry.parent.mkdir(parents=True)
    home.registry.with_name("history.jsonl").write_text(json.dumps(odd[0]) + "\n")
    ran = jobmon("report", *home.args())
    assert (ran.code, ran.err) == (0, "") and ran.lines()[1].startswith("slurm 31@c  COMPLETED  00:00:10  -")


def test_a_measured_value_never_stands_for_the_jobs_own_field() -> None:
    from jobmon.report import as_json, ended

    record = {"type": "slurm", "id": "32", "host": "c", "description": "d", "last_status": "FAILED",
              "outcome": "failure", "finished": "2026-12-01T22:00:00+00:00",
              "measured": {"type": "gpu", "id": "x", "state": "ok", "kind": "totals", "host": "h", "cpu_pct": 5.0}}
    (job, _totals) = as_json(ended([record]))
    assert job == {"kind": "job", "type": "slurm", "id": "32", "host": "c", "description": "d", "state": "FAILED",
                   "outcome": "failure", "finished": "2026-12-01T22:00:00+00:00", "cpu_pct": 5.0}
