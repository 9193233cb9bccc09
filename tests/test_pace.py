"""The pacer keeps a follower inside the harness's budget: a gap after each notification, 10 at
once less one, then one every 2 s (plus a margin). A clock of the test's own: no sleeps."""
from __future__ import annotations

from jobmon.pace import MARGIN, Pacer, Unpaced
from jobmon.settings import Delivery


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_then_one_per_refill_with_a_gap_after_each() -> None:
    clock = Clock()
    pacer = Pacer(Delivery(), clock)
    times = []
    for _ in range(14):
        clock.t += pacer.wait()
        times.append(clock.t)
        pacer.spend()
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g >= Delivery().gap for g in gaps)  # never joined with the one before
    # never more than the budget in any window: at most 10 by time t, plus one per 2 s since the first
    for i, t in enumerate(times):
        assert i + 1 <= 10 + (t - times[0]) / Delivery().refill
    assert gaps[-1] >= Delivery().refill + MARGIN - 1e-9  # past the burst: one per refill


def test_an_idle_pacer_refills_but_never_above_its_burst() -> None:
    clock = Clock()
    pacer = Pacer(Delivery(burst=3, refill=1.0, gap=0.3, join=0.2), clock)
    for _ in range(2):
        clock.t += pacer.wait()
        pacer.spend()
    clock.t += 1000
    allowed = 0
    while pacer.wait() == 0:
        pacer.spend()
        allowed += 1
        clock.t += 0.3
    assert allowed == 2  # burst less one: the harness's budget began before this process


def test_unpaced_never_waits() -> None:
    pacer = Unpaced(Delivery())
    for _ in range(100):
        assert pacer.wait() == 0
        pacer.spend()
    assert pacer.spent == 100
