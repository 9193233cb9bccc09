"""The Monitor emulator (tests/harness.py) on hand-made timestamps: no clock, no sleeps. Only the
runner's tests start real processes, and they assert what was read and how it ended, never times."""
from __future__ import annotations

import json
import math
import sys
from typing import Sequence

import pytest

from harness import (CUT, DEADLINE, EXIT, EXPIRED_NOTE, READ, STOPPED, STOPPED_NOTE, SUPPRESSED, UNSENT, Monitor,
                     Result, Watched, effective_timeout, is_rearm, rearm, watch)


def lines_at(monitor: Monitor, times: Sequence[float], text: str = "x") -> None:
    """One line at each time, numbered: x0, x1, …"""
    for i, t in enumerate(times):
        monitor.feed(t, f"{text}{i}\n")


def texts(result: Result) -> list[list[str]]:
    return [[line.text for line in n.lines] for n in result.notifications]


def paced(n: int, every: float = 0.3) -> list[float]:
    return [round(i * every, 6) for i in range(n)]


# -- joining


def test_lines_within_200_ms_join_one_notification_and_a_later_one_opens_another() -> None:
    m = Monitor()
    lines_at(m, [0.0, 0.1, 0.5])
    r = m.close(1.0, EXIT)
    assert texts(r) == [["x0", "x1"], ["x2"]]
    assert [n.text for n in r.notifications] == ["x0\nx1", "x2"]
    assert [n.t for n in r.notifications] == [pytest.approx(0.2), pytest.approx(0.7)]
    assert r.model_text == "x0\nx1\nx2"


def test_the_window_is_fixed_from_its_first_line_not_a_debounce() -> None:
    m = Monitor()
    lines_at(m, [0.0, 0.1, 0.15, 0.25, 0.35, 0.5])  # never 200 ms apart: a debounce would join all
    r = m.close(1.0, EXIT)
    assert texts(r) == [["x0", "x1", "x2"], ["x3", "x4"], ["x5"]]


def test_a_line_at_exactly_the_window_end_still_joins() -> None:
    m = Monitor()
    lines_at(m, [0.1, 0.1 + 0.2])
    assert texts(m.close(1.0, EXIT)) == [["x0", "x1"]]


def test_a_line_arrives_with_its_newline_and_a_final_partial_line_at_the_close() -> None:
    m = Monitor()
    m.feed(0.0, "ab")
    m.feed(0.5, "c\nd")  # "abc" arrives at 0.5, not when its first bytes did
    m.feed(0.6, "e")
    r = m.close(2.0, EXIT)
    assert [(line.t, line.text) for line in r.lines] == [(0.5, "abc"), (2.0, "de")]
    assert texts(r) == [["abc"], ["de"]]
    assert r.notifications[1].t == 2.0  # the open window is sent at once when the command exits


def test_an_open_window_is_sent_when_the_command_exits() -> None:
    m = Monitor()
    m.feed(1.0, "a\n")
    r = m.close(1.05, EXIT)
    assert [(n.t, n.text) for n in r.notifications] == [(1.05, "a")]
    assert (r.ended, r.ended_at, r.stopped) == (EXIT, 1.05, False)


def test_time_must_not_go_backwards() -> None:
    m = Monitor()
    m.feed(1.0, "a\n")
    with pytest.raises(ValueError):
        m.feed(0.5, "b\n")


# -- cuts


def test_a_600_character_line_is_cut_to_500_and_counted() -> None:
    m = Monitor()
    m.feed(0.0, "y" * 600 + "\nshort\n")
    r = m.close(1.0, EXIT)
    long, short = r.lines
    assert (long.fate, len(long.shown), short.fate) == (CUT, 500, READ)
    assert r.cut_lines == (long,)
    assert r.notifications[0].text == "y" * 500 + "\nshort"
    assert not r.cut_notifications


def test_a_notification_of_20_lines_of_200_characters_is_cut_at_3000() -> None:
    m = Monitor()
    m.feed(0.0, "".join(f"{i:03d}" + "z" * 197 + "\n" for i in range(20)))
    r = m.close(1.0, EXIT)
    (n,) = r.notifications
    assert len(n.text) == 3000 and n.cut and r.cut_notifications == (n,)
    fates = [line.fate for line in r.lines]
    # line k takes characters 201k … 201k+199: 14 fit whole, the 15th is cut, the rest are gone
    assert fates == [READ] * 14 + [CUT] * 6
    assert len(r.lines[14].shown) == 3000 - 14 * 201
    assert [line.shown for line in r.lines[15:]] == [""] * 5
    assert not r.cut_lines  # no line was over 500


# -- budget and suppression


def test_eleven_notifications_300_ms_apart_are_all_delivered_the_tick_at_2_s_pays_the_11th() -> None:
    # 11 windows 0.3 s apart span 3 s: a refill tick always falls inside, so the budget of 10 holds.
    m = Monitor()
    lines_at(m, paced(11))
    r = m.close(10.0, EXIT)
    assert len(r.notifications) == 11 and r.suppressed.notifications == 0


def test_past_the_budget_notifications_are_dropped_and_the_next_delivered_one_carries_the_note() -> None:
    m = Monitor()
    lines_at(m, paced(13))  # sent at 0.2, 0.5, …, 3.8: 10 + the tick at 2 s = 11 tokens
    m.feed(4.1, "after\n")  # sent at 4.3, after the tick at 4 s
    r = m.close(10.0, EXIT)
    assert [line.fate for line in r.lines] == [READ] * 11 + [SUPPRESSED] * 2 + [READ]
    assert (r.suppressed.notifications, r.suppressed.lines) == (2, 2)
    last = r.notifications[-1]
    assert last.text == "after" and last.note.startswith("[2 events suppressed — output rate too high")
    assert r.reads[-2:] == (last.note, "after")
    assert not r.stopped


def test_the_note_counts_lines_and_is_read_at_the_end_if_nothing_is_delivered_after() -> None:
    m = Monitor(budget=1, refill=math.inf)
    m.feed(0.0, "a\n")
    m.feed(1.0, "b\nc\nd\n")  # one dropped notification of 3 lines
    r = m.close(2.0, EXIT)
    assert (r.suppressed.notifications, r.suppressed.lines) == (1, 3)
    assert r.reads[0] == "a" and r.reads[1].startswith("[3 events suppressed")
    assert len(r.reads) == 2


def test_ticks_and_a_continuous_bucket_refill_differently() -> None:
    def fates(ticks: bool) -> list[str]:
        m = Monitor(budget=1, ticks=ticks)
        lines_at(m, [0.8, 2.3, 3.3])  # sent at 1.0 (spends the one token), 2.5, 3.5
        return [line.fate for line in m.close(10.0, EXIT).lines]

    # ticks: the tick at 2 s pays the second, none comes before the third;
    # continuous: 0.75 token at 2.5 s is not enough, 1.25 at 3.5 s is
    assert fates(ticks=True) == [READ, READ, SUPPRESSED]
    assert fates(ticks=False) == [READ, SUPPRESSED, READ]


@pytest.mark.parametrize("ticks", [True, False])
def test_both_refills_let_a_writer_paced_at_the_refill_rate_through(ticks: bool) -> None:
    m = Monitor(ticks=ticks)
    lines_at(m, paced(10, 0.3))  # spends the budget
    lines_at(m, [4.0 + 2 * i for i in range(20)], "p")  # then one every 2 s
    r = m.close(50.0, EXIT)
    assert r.suppressed.notifications == 0 and len(r.notifications) == 30


# -- the stop rule


def flood(monitor: Monitor, until: float) -> None:
    t, i = 0.0, 0
    while t < until and not monitor.closed:
        monitor.feed(t, f"f{i}\n")
        t, i = round(t + 0.3, 6), i + 1


@pytest.mark.parametrize("ticks", [True, False])
def test_thirty_seconds_of_continuous_suppression_stops_the_monitor(ticks: bool) -> None:
    m = Monitor(ticks=ticks)
    flood(m, 60.0)
    m.feed(m.now + 0.1, "late\n")
    r = m.close(60.0, EXIT)
    first_drop = next(line.t for line in r.lines if line.fate == SUPPRESSED) + 0.2
    assert r.stopped and r.ended == STOPPED
    assert r.ended_at is not None and first_drop + 30 <= r.ended_at + 1e-6 < first_drop + 30.6
    assert r.reads[-1] == STOPPED_NOTE and r.reads[-2].startswith("[")  # the last drops' note
    assert r.lines[-1].fate == UNSENT  # after the stop nothing is read
    assert len(r.notifications) > 11  # refills kept letting one through: still over the rate


def test_read_literally_a_delivery_ends_the_run_so_a_flood_is_never_stopped() -> None:
    m = Monitor(recovery=0)
    flood(m, 60.0)
    r = m.close(60.0, EXIT)
    assert not r.stopped and r.ended == EXIT and r.suppressed.notifications > 100


def test_a_writer_back_under_the_rate_ends_the_run() -> None:
    m = Monitor()
    flood(m, 20.0)  # suppressed from 3.5 s on
    lines_at(m, [25.0 + 3 * i for i in range(10)], "calm")  # one per 3 s: tokens pile up again
    flood_start = 55.0
    for i in range(20):  # a short burst later: a new run, not 30 s old
        m.feed(flood_start + 0.3 * i, f"b{i}\n")
    r = m.close(70.0, EXIT)
    assert not r.stopped


def test_a_writer_that_falls_silent_after_a_drop_is_not_stopped_while_silent() -> None:
    m = Monitor(budget=1, refill=100.0)
    lines_at(m, [0.0, 0.5])  # the second is dropped: a run begins at 0.7
    m.advance(40.0)
    assert not m.stopped  # no notification closed: nothing to judge
    m.feed(40.0, "later\n")  # no token until 100 s: dropped at 40.2, 39.5 s into the run
    m.advance(41.0)
    assert m.stopped and m.result.ended_at == pytest.approx(40.2)
    m2 = Monitor(budget=2, refill=20.0)
    lines_at(m2, [0.0, 0.3, 0.6])  # the third is dropped
    m2.feed(40.0, "later\n")  # tokens came at 20 s and 40 s: delivered with one to spare, the run is over
    r2 = m2.close(41.0, EXIT)
    assert not r2.stopped and r2.notifications[-1].text == "later"
    assert r2.notifications[-1].note.startswith("[1 events suppressed")


# -- the deadline


def test_the_deadline_closes_the_monitor_with_the_expiry_note() -> None:
    m = Monitor(deadline=5.0)
    m.feed(1.0, "a\n")
    m.feed(4.9, "b\n")  # its window would end at 5.1: sent at the deadline
    m.feed(6.0, "late\n")
    assert m.closed and m.ended == DEADLINE
    r = m.close(6.5, EXIT)
    assert (r.ended, r.ended_at) == (DEADLINE, 5.0)
    assert texts(r) == [["a"], ["b"]] and r.notifications[1].t == 5.0
    assert r.lines[-1].fate == UNSENT
    assert r.reads[-1] == EXPIRED_NOTE.format(seconds=5.0)


def test_close_at_the_deadline_reads_the_notes_in_order() -> None:
    m = Monitor(budget=1, refill=math.inf)
    lines_at(m, [0.0, 1.0])
    r = m.close(3.0, DEADLINE)
    assert r.reads[0] == "x0" and r.reads[1].startswith("[1 events suppressed") and r.reads[2].startswith(
        "[Monitor expired")


def test_timeouts_are_capped_as_the_tool_caps_them() -> None:
    assert effective_timeout(300_000) == 300_000
    assert effective_timeout(3_600_000) == 1_800_000
    assert effective_timeout(1_500_000, headless=True) == 600_000


# -- rearm


def test_is_rearm_knows_jobmon_rearm_lines_as_text_and_json() -> None:
    text = "12:00:00 still watching 2 jobs (1 running, 1 pending): run bin/jobmon-watch --for 25m again"
    assert is_rearm(text)
    assert is_rearm(json.dumps({"kind": "rearm", "detail": "still watching 1 job: run x again"}, separators=(",", ":")))
    assert is_rearm('{"kind":"rearm","detail":"still watching 1 job: run bin/jobmon-wat')  # cut at 500
    assert not is_rearm(json.dumps({"kind": "summary", "detail": "2 jobs: 2 completed"}))
    assert not is_rearm("12:00:00 slurm 1@c: RUNNING -> COMPLETED")


def fake(lines: list[str]) -> Watched:
    m = Monitor()
    for i, text in enumerate(lines):
        m.feed(float(i), text + "\n")
    result = m.close(len(lines) + 1.0, EXIT)
    return Watched(argv=("w",), result=result, code=0, stderr="", lines=tuple(lines), wall=0.0,
                   timeout_ms=300_000, killed_by_stop=False, expired=False)


def test_rearm_watches_again_while_the_last_line_read_says_so() -> None:
    outputs = [["e1", "still watching 2 jobs: run w again"], ["e2", "still watching 1 job: run w again"],
               ["e3", "2 jobs: 2 completed"]]
    seen: list[int] = []

    def factory(done: Sequence[Watched]) -> list[str]:
        seen.append(len(done))
        return ["w", str(len(done))]

    results = rearm(factory, run=lambda argv: fake(outputs[int(argv[1])]))
    assert seen == [0, 1, 2]
    assert [w.delivered_lines[0] for w in results] == ["e1", "e2", "e3"]


def test_rearm_is_bounded_and_takes_any_predicate() -> None:
    forever = rearm(lambda done: ["w"], run=lambda argv: fake(["still watching: run w again"]), runs=4)
    assert len(forever) == 4
    once = rearm(lambda done: ["w"], again=lambda line: line == "go", run=lambda argv: fake(["stop"]))
    assert len(once) == 1


# -- the runner (real processes; no timing asserted)


def test_the_runner_reads_a_command_s_lines_and_its_exit_code() -> None:
    w = watch(["sh", "-c", "echo a; echo b; echo oops >&2; exit 3"])
    assert w.delivered_lines == ["a", "b"] and w.lines == ("a", "b") and not w.lost_lines
    assert (w.code, w.stderr, w.result.ended) == (3, "oops\n", EXIT)
    assert not w.killed_by_stop and not w.expired


def test_the_runner_reads_lines_printed_far_apart() -> None:
    script = "import time\nfor i in range(3):\n    print(i, flush=True); time.sleep(0.4)"
    w = watch([sys.executable, "-c", script])
    assert w.delivered_lines == ["0", "1", "2"] and w.code == 0
    assert 1 <= len(w.result.notifications) <= 3


def test_the_runner_kills_the_command_at_its_deadline() -> None:
    w = watch([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(60)"], timeout_ms=1000)
    assert w.expired and w.code is not None and w.code < 0
    assert w.delivered_lines == ["x"] and w.model_text.endswith(EXPIRED_NOTE.format(seconds=1.0))


def test_the_runner_kills_the_command_when_the_monitor_stops_it() -> None:
    script = "import time\nfor i in range(100000):\n    print(i, flush=True); time.sleep(0.01)"
    w = watch([sys.executable, "-c", script], budget=1, refill=math.inf, stop_after=0.5)
    assert w.killed_by_stop and w.result.stopped and w.code is not None and w.code < 0
    assert w.model_text.endswith(STOPPED_NOTE) and w.lost_lines
