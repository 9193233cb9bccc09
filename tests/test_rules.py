"""The rules on real captured output: text in, states and changes out, no processes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jobmon import config, findings, rules
from jobmon.rules import Book, Observation, Row
from conftest import FIXTURES

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def types() -> config.Config:
    return config.from_files([config.packaged_dir() / "monitor.yaml",
                              *sorted((config.packaged_dir() / "checkers.d").glob("*.yaml"))])


def slurm(types: config.Config) -> config.JobType:
    return types.types["slurm"]


def advance(status: str, obs: Observation, jtype: config.JobType, book: Book = Book(), now: datetime = NOW) -> rules.Step:
    return rules.advance(status, book, obs, jtype, now, unreachable_after=3, lost_after=600)


def test_real_sacct_output_gives_each_job_its_normalised_state(types: config.Config) -> None:
    text = (FIXTURES / "slurm" / "sacct_22.05_7fields.txt").read_text()
    rows = rules.parse_batch(text, slurm(types), ["501", "502", "503", "504"])
    assert {k: r.state for k, r in rows.items()} == {
        "501": "COMPLETED", "502": "FAILED", "503": "CANCELLED", "504": "PENDING"}
    assert rows["502"].groups["exit"] == "3:0"
    assert rows["501"].groups["elapsed"] == "00:00:02"


def test_batch_ignores_ids_not_asked_for_and_lines_that_do_not_match(types: config.Config) -> None:
    text = ("sacct: warning: something\n7|7|RUNNING|0:0|0:0|00:01:00|2026-11-29T11:00:00\n"
            "8|8|COMPLETED|0:0|0:0|00:02:00|2026-11-29T11:00:00\n")
    rows = rules.parse_batch(text, slurm(types), ["8", "9"])
    assert list(rows) == ["8"]


def test_cancelled_after_a_daemon_restart_reads_the_same(types: config.Config) -> None:
    # slurmctld restarts can turn "CANCELLED by 0|0:0" into "CANCELLED|0:15": match the first word.
    rows = rules.parse_batch("5|5|CANCELLED|0:15|0:0|00:00:09|2026-11-29T11:00:00\n"
                             "6|6|cancelled by 1234|0:0|0:0|00:00:01|2026-11-29T11:00:00\n", slurm(types), ["5", "6"])
    assert rows["5"].state == rows["6"].state == "CANCELLED"


@pytest.mark.parametrize("state,category", [
    ("PENDING", "pending"), ("SUSPENDED", "pending"), ("REQUEUED", "pending"),
    ("RUNNING", "running"), ("COMPLETING", "running"),
    ("COMPLETED", "success"),
    ("FAILED", "failure"), ("TIMEOUT", "failure"), ("OUT_OF_MEMORY", "failure"), ("NODE_FAIL", "failure"),
    ("PREEMPTED", "failure"), ("BOOT_FAIL", "failure"), ("DEADLINE", "failure"),
    ("UNKNOWN", "unknown"), ("SOMETHING_NEW", "unknown"),
])
def test_slurm_vocabulary(types: config.Config, state: str, category: str) -> None:
    assert slurm(types).category(state) == category


def test_an_unknown_state_is_reported_as_is_and_is_not_terminal(types: config.Config) -> None:
    step = advance("RUNNING", Observation(Row("SOMETHING_NEW", {})), slurm(types))
    assert step.status == "SOMETHING_NEW"
    (change,) = step.changes
    assert (change.before, change.after, change.terminal, change.outcome) == ("RUNNING", "SOMETHING_NEW", False, None)


def test_local_type_reads_its_own_check_output(types: config.Config) -> None:
    local = types.types["local"]
    assert rules.parse_one("RUNNING\n", local) == Row("RUNNING", {"state": "RUNNING", "exit": ""})
    assert rules.parse_one("EXITED 0\n", local).state == "COMPLETED"
    failed = rules.parse_one("EXITED 3\n", local)
    assert (failed.state, failed.groups["exit"]) == ("FAILED", "3")
    assert rules.parse_one("ENDED\n", local).state == "ENDED"
    assert local.category("ENDED") == "failure"  # an unknown exit status is never a success
    assert rules.parse_one("grep: oops\n", local) is None


def test_first_sighting_is_a_change_from_nothing(types: config.Config) -> None:
    step = advance("", Observation(Row("PENDING", {})), slurm(types))
    assert [(c.before, c.after) for c in step.changes] == [("", "PENDING")]


def test_same_state_again_is_no_change(types: config.Config) -> None:
    step = advance("RUNNING", Observation(Row("RUNNING", {})), slurm(types))
    assert step.changes == () and step.status == "RUNNING"


def test_terminal_change_carries_outcome_and_groups(types: config.Config) -> None:
    row = Row("FAILED", {"exit": "3:0", "elapsed": "00:00:01"})
    (change,) = advance("RUNNING", Observation(row), slurm(types)).changes
    assert change.terminal and change.outcome == "failure" and change.groups["exit"] == "3:0"
    (done,) = advance("RUNNING", Observation(Row("COMPLETED", {})), slurm(types)).changes
    assert done.terminal and done.outcome == "success"


def test_failed_checks_keep_the_state_and_say_unreachable_once(types: config.Config) -> None:
    book, status, said = Book(), "RUNNING", []
    for _ in range(10):  # ten failures in a row
        step = advance(status, Observation(None, "connection failed (exit 255)"), slurm(types), book)
        book, status = step.book, step.status
        said += step.changes
    assert status == "RUNNING"
    assert [(c.kind, c.after, c.terminal) for c in said] == [("unreachable", "UNREACHABLE", False)]
    assert book.errors == 10 and book.unreachable
    step = advance(status, Observation(Row("COMPLETED", {})), slurm(types), book)
    assert [(c.kind, c.after) for c in step.changes] == [("recovered", "RECOVERED"), ("state", "COMPLETED")]
    assert step.book == Book()


def test_an_end_written_by_hand_is_said_when_the_check_agrees(types: config.Config) -> None:
    step = advance("COMPLETED", Observation(Row("COMPLETED", {})), slurm(types))
    assert [(c.before, c.after, c.terminal, c.outcome) for c in step.changes] == [("", "COMPLETED", True, "success")]
    assert advance("COMPLETED", Observation(Row("RUNNING", {})), slurm(types)).status == "RUNNING"
    assert advance("COMPLETED", Observation(None, "timed out"), slurm(types)).status == "COMPLETED"  # kept


def test_two_failures_then_success_say_nothing_about_reachability(types: config.Config) -> None:
    book = Book()
    for _ in range(2):
        book = advance("RUNNING", Observation(None, "timed out after 60s"), slurm(types), book).book
    step = advance("RUNNING", Observation(Row("RUNNING", {})), slurm(types), book)
    assert step.changes == () and step.book.errors == 0


def test_missing_from_the_scheduler_is_not_yet_then_lost_after_the_grace_period(types: config.Config) -> None:
    step = advance("", Observation(None), slurm(types))
    assert step.changes == () and step.status == "" and step.book.missing_since == "2026-11-29T12:00:00+00:00"
    later = advance("", Observation(None), slurm(types), step.book, NOW + timedelta(seconds=599))
    assert later.changes == ()
    lost = advance("", Observation(None), slurm(types), later.book, NOW + timedelta(seconds=600))
    (change,) = lost.changes
    assert (change.after, change.terminal, change.outcome) == ("LOST", True, "failure")
    assert change.why == "not seen by any check for 0:10:00"


def test_seen_again_clears_the_missing_clock(types: config.Config) -> None:
    step = advance("PENDING", Observation(None), slurm(types))
    step = advance("PENDING", Observation(Row("PENDING", {})), slurm(types), step.book, NOW + timedelta(seconds=300))
    assert step.book.missing_since is None


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """This process in Tokyo's time zone (UTC+9), for the test; the old zone after it."""
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_book_times_carry_their_offset_and_old_local_ones_still_read(types: config.Config, tokyo: None) -> None:
    utc = datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc)
    step = advance("", Observation(None), slurm(types), now=utc)
    assert step.book.missing_since == "2026-11-29T12:00:00+00:00"
    # The same moment, stored by a jobmon in UTC, then read in Tokyo one second later: not lost.
    assert advance("", Observation(None), slurm(types), step.book, utc + timedelta(seconds=1)).changes == ()
    old = Book(missing_since="2026-11-29T21:00:00")  # naive, as older versions wrote it: local (Tokyo) time
    assert Book.from_dict(old.to_dict()) == old
    lost = advance("", Observation(None), slurm(types), old, utc + timedelta(seconds=600))
    assert [c.after for c in lost.changes] == ["LOST"]
    assert Book.from_dict({"missing_since": "yesterday", "grew_at": "noon"}) == Book()  # a hand edit: dropped


def test_a_registration_in_utc_still_picks_the_sacct_row_of_its_local_submit_time(tokyo: None) -> None:
    from jobmon import rows

    # sacct prints the cluster's local time, naive; the registration is stored in UTC.
    old, new = ({"id": "12", "submit": "2026-12-01T06:00:00"}, {"id": "12", "submit": "2026-12-02T06:00:00"})
    assert rows.pick([old, new], "2026-11-30T21:05:00+00:00") == [old]  # 06:05 in Tokyo on the 1st
    assert rows.pick([old, new], "2026-12-01 06:05") == [old]  # an older registration: naive local


def test_book_round_trips_through_the_registry_dict() -> None:
    book = Book(errors=2, unreachable=True, missing_since="2026-11-29T12:00:00", last_error="x",
                final={"to": "COMPLETED"}, seen=("a", "b@25"), offset=1234, grew_at="2026-11-29T12:00:00",
                captured={"jid": "1"})
    assert Book.from_dict(book.to_dict()) == book
    assert Book().to_dict() == {}


def _type_with_patterns(tmp_path) -> config.JobType:  # type: ignore[no-untyped-def]
    conf = tmp_path / "t.yaml"
    conf.write_text(r"""
types:
  logfile:
    check: {command: "cat {{ file }}", regex: '(?m)^Job \d+ finished: (?P<state>\w+)'}
    states: {success: [SUCCEEDED], failure: [FAILED]}
    events:
      - {name: experiment, regex: 'Entering Experiment (?P<exp>\S+) with id: (?P<eid>\S+)', text: "experiment {{ exp }} ({{ eid }})"}
      - {name: slurm-job, regex: 'Job id: (?P<jid>\d+)'}
    diagnosis:
      - {name: cuda-oom, regex: 'CUDA out of memory', text: CUDA out of memory}
      - {name: traceback, regex: '^\w+(\.\w+)*(Error|Exception): .*'}
""")
    return config.from_files([conf]).types["logfile"]


def test_key_events_are_found_in_output_order_and_said_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    jtype = _type_with_patterns(tmp_path)
    text = "noise\nJob id: 777\nEntering Experiment ptq_qwen with id: ptq_qwen_1712\n"
    assert findings.key_events(text, jtype.events, ()) == [
        ("slurm-job", "Job id: 777", {"jid": "777"}),
        ("experiment", "experiment ptq_qwen (ptq_qwen_1712)", {"exp": "ptq_qwen", "eid": "ptq_qwen_1712"})]
    assert [e[0] for e in findings.key_events(text, jtype.events, ("slurm-job",))] == ["experiment"]
    step = advance("", Observation(None, text=text), jtype)
    assert [(c.kind, c.after) for c in step.changes] == [("event", "slurm-job"), ("event", "experiment")]
    again = advance("", Observation(None, text=text), jtype, step.book)
    assert again.changes == () and again.book.seen == ("slurm-job", "experiment")
    assert again.book.captured == {"jid": "777", "exp": "ptq_qwen", "eid": "ptq_qwen_1712"}


def test_diagnosis_takes_the_first_pattern_in_declared_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    jtype = _type_with_patterns(tmp_path)
    log = "Traceback (most recent call last):\nRuntimeError: boom\ntorch.OutOfMemoryError: CUDA out of memory. Tried\n"
    assert findings.diagnose(log, jtype.diagnosis) == "CUDA out of memory"
    assert findings.diagnose("x\nValueError: bad value\n", jtype.diagnosis) == "ValueError: bad value"
    assert findings.diagnose("all fine\n", jtype.diagnosis) is None


CHAINED = """\
Traceback (most recent call last):
  File "load.py", line 3, in <module>
    open(path)
FileNotFoundError: [Errno 2] No such file or directory: '/ckpt/model.safetensors'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "hf_ptq.py", line 9, in main
    load()
RuntimeError: could not load the checkpoint
"""


def test_the_fallback_cause_is_the_innermost_exception_of_the_last_chain() -> None:
    assert findings.last_exception(CHAINED) == (
        "FileNotFoundError: [Errno 2] No such file or directory: '/ckpt/model.safetensors'")


def test_an_earlier_unrelated_traceback_is_not_the_cause() -> None:
    text = ("Traceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'warmup'\n"
            "recovered, training on\n"
            "Traceback (most recent call last):\n  File \"b.py\", line 2\nValueError: loss is nan\n")
    assert findings.last_exception(text) == "ValueError: loss is nan"


def test_tracebacks_behind_a_task_prefix_are_read() -> None:
    text = "".join(f"3-8B_FP8_0/0 {line}\n" for line in CHAINED.splitlines())
    assert findings.last_exception(text).startswith("FileNotFoundError: [Errno 2]")


def test_an_exception_without_a_message_is_kept_when_no_other_names_the_cause() -> None:
    text = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    raise KeyboardInterrupt\nKeyboardInterrupt\n"
    assert findings.last_exception(text) == "KeyboardInterrupt"
    assert findings.last_exception("no traceback here\n") is None


def test_the_packaged_diagnosis_order(types: config.Config) -> None:
    slurm = types.types["slurm"]
    log = ("NCCL WARN Call to connect returned Connection refused\n"
           "slurmstepd: error: Detected 1 oom_kill event in StepId=12.batch. Some of your processes may have been killed\n"
           "srun: error: node3: task 0: Out Of Memory\n")
    assert findings.diagnose(log, slurm.diagnosis) == (
        "Detected 1 oom_kill event in StepId=12.batch. Some of your processes may have been killed")
    assert findings.diagnose(CHAINED + "srun: error: node3: task 0: Exited with exit code 1\n", slurm.diagnosis) == (
        "srun: error: node3: task 0: Exited with exit code 1")
    assert findings.diagnose(CHAINED, slurm.diagnosis).startswith("FileNotFoundError")


# ---------------------------------------------------------------- stalls: progress, STALLED, RESUMED

T0 = 1_800_000_000.0  # the cluster's clock, epoch seconds: never the watcher's


def look(mark: str, now: float, mtime: float | None = None, last: str = "", bar: str | None = None) -> rules.Mark:
    return rules.Mark(mark, now, mtime, last, bar)


def stalls(jtype: config.JobType, looks: list[tuple[str, rules.Mark]], book: Book = Book()) -> tuple[Book, list[tuple[str, str]]]:
    """Each (state, what the probe saw) in turn through the pure decision: the book, what was said."""
    said: list[tuple[str, str]] = []
    for state, seen in looks:
        book, changes = rules.stall(book, seen, jtype, state)
        said += [(c.after, c.why) for c in changes]
    return book, said


def test_a_mark_that_does_not_move_for_stall_after_is_stalled_once_then_resumed(types: config.Config) -> None:
    _, said = stalls(slurm(types), [
        ("RUNNING", look("size=10|mtime=0", T0, mtime=T0 - 10)),  # first look: dated by its mtime
        ("RUNNING", look("size=10|mtime=0", T0 + 1700, last="step 41\nNCCL WARN NET/IB : Got async event\n")),
        ("RUNNING", look("size=10|mtime=0", T0 + 1800)),
        ("RUNNING", look("size=10|mtime=0", T0 + 5000)),  # said once
        ("RUNNING", look("size=20|mtime=9", T0 + 5030, mtime=T0 + 5020)),
        ("RUNNING", look("size=20|mtime=9", T0 + 5060)),
    ])
    assert said == [("STALLED", "no progress for 0:30:10; last: NCCL WARN NET/IB : Got async event"),
                    ("RESUMED", "moving again after 1:23:50 without progress")]


def test_a_single_look_never_stalls_and_without_a_mark_nothing_is_judged(types: config.Config) -> None:
    book, said = stalls(slurm(types), [("RUNNING", look("size=10|mtime=0", T0, mtime=T0 - 86400))])
    assert said == [] and book.progress["since"] == T0 - 86400
    _, said = stalls(slurm(types), [("RUNNING", look("", T0 + 60 * i)) for i in range(100)])
    assert said == []  # no log found (yet): not a stall


def test_a_stale_mtime_never_dates_a_move_nor_fakes_a_stall(types: config.Config) -> None:
    # the size grows at every look while the mtime stays two hours old (a stale view of it)
    stale = T0 - 7200
    book, said = stalls(slurm(types), [("RUNNING", look(f"size={n}|mtime=0", T0 + 1000 * n, mtime=stale))
                                       for n in range(1, 6)])
    assert said == [] and book.progress["since"] == T0 + 5000


def test_only_a_running_job_is_stalled_and_its_clock_starts_when_it_runs(types: config.Config) -> None:
    jtype = slurm(types)
    # the probe stats only jobs that ran at the last poll: a pending one is seen with no mark
    book, said = stalls(jtype, [("PENDING", look("", T0 + 1000 * n)) for n in range(5)])
    assert said == [] and book.progress == {"at": T0}
    # its log, created when it starts, dates its first move; the poll that saw it start looked at nothing
    _, said = stalls(jtype, [("RUNNING", look("", T0 + 5000)),
                             ("RUNNING", look("size=0|mtime=0", T0 + 5300, mtime=T0 + 5100)),
                             ("RUNNING", look("size=0|mtime=0", T0 + 6899)),
                             ("RUNNING", look("size=0|mtime=0", T0 + 6900))], book)
    assert said == [("STALLED", "no progress for 0:30:00")]


def test_requeued_after_a_stall_starts_anew_without_a_resumed_line(types: config.Config) -> None:
    jtype = slurm(types)
    book, said = stalls(jtype, [("RUNNING", look("m", T0, mtime=T0 - 10)), ("RUNNING", look("m", T0 + 1800)),
                                ("REQUEUED", look("", T0 + 1900)), ("PENDING", look("", T0 + 5000)),
                                ("RUNNING", look("", T0 + 9000)),
                                ("RUNNING", look("m2", T0 + 9030, mtime=T0 + 9010))])
    assert [s for s, _ in said] == ["STALLED"]  # the REQUEUED line said the rest: no "moving again after 2:30:20"
    assert book.progress == {"mark": "m2", "at": T0 + 9030, "since": T0 + 9010}
    # the same with --open-mode=append: its log's mtime from before the requeue dates nothing
    book, said = stalls(jtype, [("RUNNING", look("m", T0, mtime=T0 - 10)), ("RUNNING", look("m", T0 + 1800)),
                                ("REQUEUED", look("", T0 + 1900)), ("RUNNING", look("", T0 + 9000)),
                                ("RUNNING", look("m", T0 + 9030, mtime=T0 - 10)),
                                ("RUNNING", look("m", T0 + 9060))])
    assert [s for s, _ in said] == ["STALLED"] and book.progress["since"] == T0 + 9030


def test_a_suspended_job_is_not_stalled_when_it_runs_again(types: config.Config) -> None:
    # suspended for two hours: its log did not move, and neither did the job
    jtype = slurm(types)
    book, said = stalls(jtype, [("RUNNING", look("size=10|mtime=1", T0, mtime=T0 - 10)),
                                ("SUSPENDED", look("", T0 + 60)),
                                ("SUSPENDED", look("", T0 + 7260)),
                                ("RUNNING", look("", T0 + 7290)),  # resumed: this poll did not stat its log
                                ("RUNNING", look("size=10|mtime=1", T0 + 7320, mtime=T0 - 10)),
                                ("RUNNING", look("size=10|mtime=1", T0 + 7350))])
    assert said == [] and book.progress["since"] == T0 + 7320  # counted from the look that saw it again
    _, said = stalls(jtype, [("RUNNING", look("size=10|mtime=1", T0 + 9119)),
                             ("RUNNING", look("size=10|mtime=1", T0 + 9120))], book)
    assert said == [("STALLED", "no progress for 0:30:00")]


def test_a_log_that_one_look_could_not_stat_is_no_progress(types: config.Config) -> None:
    # its StdErr's stat failed once (an NFS hiccup): the hung job is still stalled, and once
    # stalled, the log coming back is no RESUMED
    jtype = slurm(types)
    both, out_only = "10|1;20|1", "10|1"
    book, said = stalls(jtype, [("RUNNING", look(both, T0)), ("RUNNING", look(both, T0 + 60)),
                                ("RUNNING", look(out_only, T0 + 1200)), ("RUNNING", look(both, T0 + 1800))])
    assert said == [("STALLED", "no progress for 0:30:00")]
    _, said = stalls(jtype, [("RUNNING", look(out_only, T0 + 2400)), ("RUNNING", look(both, T0 + 3000))], book)
    assert said == []
    _, said = stalls(jtype, [("RUNNING", look("11|2;20|1", T0 + 3600))], book)
    assert [name for name, _ in said] == ["RESUMED"]


def test_a_job_that_does_not_run_or_shows_no_mark_leaves_its_book_as_it_is(types: config.Config) -> None:
    # a registry write per poll for nothing would wake every reader
    jtype = slurm(types)
    first = advance("PENDING", Observation(Row("PENDING", {}), progress=look("", T0)), jtype)
    book = first.book
    for n in range(1, 4):
        step = advance("PENDING", Observation(Row("PENDING", {}), progress=look("", T0 + 60 * n)), jtype, book)
        assert step.book == book and step.changes == ()
    running = Book(progress={"mark": "m", "at": T0, "since": T0 - 10})
    for n in range(1, 4):
        assert rules.stall(running, look("", T0 + 60 * n), jtype, "RUNNING") == (running, ())


def test_a_type_without_progress_is_never_stalled(types: config.Config) -> None:
    book, said = stalls(types.types["local"], [("RUNNING", look("m", T0 + 10000 * n)) for n in range(5)])
    assert said == [] and book.progress is None


def test_advance_says_stalled_beside_the_state_and_keeps_the_progress_in_the_book(types: config.Config) -> None:
    jtype = slurm(types)
    row = Row("RUNNING", {})
    first = advance("RUNNING", Observation(row, progress=look("m", T0)), jtype)
    step = advance("RUNNING", Observation(row, progress=look("m", T0 + 3600)), jtype, first.book)
    assert [(c.kind, c.after, c.terminal) for c in step.changes] == [("event", "STALLED", False)]
    assert step.status == "RUNNING"  # never an end
    kept = Book.from_dict(step.book.to_dict())
    assert kept.progress == {"mark": "m", "at": T0 + 3600, "since": T0, "stalled": True}
    # a failed check says nothing of progress: the book is kept as it was
    failed = advance("RUNNING", Observation(None, "ssh: connect to host c port 22: Connection refused"), jtype, kept)
    assert failed.book.progress == kept.progress and failed.changes == ()


def test_a_hand_edited_progress_is_read_as_no_time(types: config.Config) -> None:
    book = Book.from_dict({"progress": {"mark": "m", "at": "yesterday", "since": True}})
    _, said = stalls(slurm(types), [("RUNNING", look("m", T0 + 99999))], book)
    assert said == []  # no time it could trust: the look that saw the mark starts the count


def test_the_progress_lines_of_a_batched_check_are_read_per_job(types: config.Config) -> None:
    text = ("17|17|RUNNING|0:0|0:0|00:10:00|2026-11-29T11:00:00\n"
            "clock|1800000000\n"
            "progress|17|4096|1799999000\nprogress|17|10|1799990000\n"  # its StdOut and its StdErr
            "progress|99|1|1\n"  # not asked for
            "last|17|epoch 3\nlast|17|NCCL WARN timeout\n")
    marks = rules.read_marks(text, slurm(types), ["17", "18"])
    assert marks["17"] == rules.Mark("mtime=1799990000|size=10;mtime=1799999000|size=4096", 1_800_000_000.0,
                                     1_799_999_000.0, "epoch 3\nNCCL WARN timeout")
    assert marks["18"] == rules.Mark("", 1_800_000_000.0)  # looked at, nothing found: no mark
    assert rules.read_marks(text.replace("clock|", "kloc|"), slurm(types), ["17"]) == {}  # no clock there: no judgement


def test_the_last_meaningful_line_is_what_the_diagnosis_finds_else_the_last_line(types: config.Config) -> None:
    jtype = slurm(types)
    assert rules.meaningful("step 1\nNCCL WARN Call to connect returned Connection refused\nstep 2\n\n", jtype) == (
        "NCCL WARN Call to connect returned Connection refused")
    assert rules.meaningful("step 1\nstep 2\n  \n", jtype) == "step 2"
    assert rules.meaningful("", jtype) == ""


def test_a_read_checks_progress_is_its_logs_growth_or_its_open_bar(types: config.Config) -> None:
    jtype = types.types["launcher"]
    bar = "3-8B_FP8_0/0  40%|████      | 205/512 [01:02<01:33,  3.28it/s]"
    opened = rules.read_mark(f"Launched app: x/12\n{bar}\n", 100, jtype, T0)
    assert (opened.mark, opened.bar) == ("100", bar)
    assert rules.read_mark("a warning from another rank\n", 180, jtype, T0).bar is None  # no bar line: the last one stands
    closed = rules.read_mark("3-8B_FP8_0/0 100%|██████████| 512/512 [02:40<00:00,  3.19it/s]\n", 260, jtype, T0)
    assert closed.bar == ""
    # while the bar is open, other lines are no progress: the calibration hangs
    _, said = stalls(jtype, [("LAUNCHED", opened), ("LAUNCHED", rules.read_mark("rank 3 warning\n", 300, jtype, T0 + 900)),
                             ("LAUNCHED", rules.read_mark("rank 5 warning\n", 420, jtype, T0 + 1800))])
    assert said == [("STALLED", f"no progress for 0:30:00; the bar stands at: {bar}")]


def test_progress_config_is_checked_at_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def error(text: str) -> str:
        path = tmp_path / "monitor.yaml"
        path.write_text("types:\n  " + text)
        with pytest.raises(config.ConfigError) as exc:
            config.from_files([config.packaged_dir() / "monitor.yaml", *sorted((config.packaged_dir() / "checkers.d").glob("*.yaml")), path])
        return str(exc.value).replace(str(path), "F")

    assert error("mine: {check: {command: 'true', regex: '(?P<state>x)'}, states: {success: [x]}, stall_after: 60}\n") == (
        "F: mine.stall_after: needs progress: (what shows the job is alive)")
    assert error("slurm: {stall_after: -1}\n") == "F: slurm.stall_after: must be 0 (no stall watch) or more"
    assert error("slurm: {progress: {bar: '(?P<percent>x)'}}\n") == "F: slurm.progress.bar: only for a read check"
    assert error("launcher: {progress: {regex: '(?P<id>x)'}}\n") == (
        "F: launcher.progress.regex: only for a batched check: a read check's progress is its log's growth")
    assert error("slurm: {progress: {regex: '^(?P<id>x)$'}}\n") == (
        "F: slurm.progress.regex: no group beside id: nothing to tell progress by")
    assert error("slurm: {progress: {clock: '^x$'}}\n") == "F: slurm.progress.clock: no (?P<now>…) group"
    assert error("nel: {progress: {row: [nope]}}\n") == "F: nel.progress.row: nope is not a group of the check's rows"


# ---------------------------------------------------------------- a ready server's health


def answers(jtype: config.JobType, seen: list[tuple[str, tuple[str, str] | None]], book: Book = Book()
            ) -> tuple[Book, list[tuple[str, str]]]:
    said = []
    for state, answer in seen:
        book, changes = rules.health(book, answer, jtype, state)
        said += [(c.after, c.why) for c in changes]
    return book, said


def test_three_failed_probes_in_a_row_are_one_unhealthy_line_then_one_healthy(types: config.Config) -> None:
    deploy = types.types["deploy"]
    ok, sick, down = ("0", "200"), ("0", "503"), ("7", "000")
    book, said = answers(deploy, [("RUNNING", ok), ("RUNNING", sick), ("RUNNING", ok),  # one failure is no news
                                  ("RUNNING", sick), ("RUNNING", down), ("RUNNING", None), ("RUNNING", sick),
                                  ("RUNNING", sick)])
    assert said == [("UNHEALTHY", "3 failed probes in a row: HTTP 503")]  # said once; a poll not asked counts nothing
    _, said = answers(deploy, [("RUNNING", ok), ("RUNNING", ok)], book)
    assert said == [("HEALTHY", "answers again (HTTP 200) after 4 failed probes")]
    _, said = answers(deploy, [("RUNNING", down), ("RUNNING", down), ("RUNNING", ("28", "000"))])
    assert said == [("UNHEALTHY", "3 failed probes in a row: no answer: timed out")]


def test_a_server_that_stops_running_forgets_its_answers_and_a_type_without_health_has_none(
        types: config.Config) -> None:
    deploy = types.types["deploy"]
    book, _ = answers(deploy, [("RUNNING", ("0", "503"))] * 2)
    assert book.health == {"fails": 2}
    book, said = answers(deploy, [("REQUEUED", None)], book)
    assert (book.health, said) == (None, [])
    assert rules.health(Book(), ("0", "503"), slurm(types), "RUNNING") == (Book(), ())


def test_a_server_running_past_its_ready_deadline_says_so_once_with_the_last_cause(types: config.Config) -> None:
    from datetime import datetime, timedelta, timezone

    from jobmon import clock

    deploy = types.types["deploy"]
    now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    book = Book(running_at=clock.stamp(now - timedelta(seconds=1000)))
    book, said = rules.overdue(book, "Starting to load model x...\nNCCL WARN Call to ibv_reg_mr failed\n", deploy,
                               "RUNNING", now)
    assert said == ()  # 1000 s of 1800: not yet, but the cause is kept
    book, said = rules.overdue(book, "waiting for rank 3\n", deploy, "RUNNING", now + timedelta(seconds=800))
    assert [(c.after, c.why) for c in said] == [
        ("NOT_READY", "no READY after 0:30:00 running; NCCL WARN Call to ibv_reg_mr failed")]
    assert rules.overdue(book, "", deploy, "RUNNING", now + timedelta(seconds=900))[1] == ()  # once
    ready = Book(running_at=book.running_at, seen=("READY",))
    assert rules.overdue(ready, "", deploy, "RUNNING", now + timedelta(seconds=9000))[1] == ()
    quiet = Book(running_at=book.running_at)
    assert [c.why for c in rules.overdue(quiet, "", deploy, "RUNNING", now + timedelta(seconds=1800))[1]] == [
        "no READY after 0:46:40 running; its log says nothing yet"]
