from __future__ import annotations

import threading

import pytest

from jobmon.parallel import map_by_host, round_robin

GUARD = 10.0  # seconds: only a broken bound ever waits this long


def test_results_keep_the_order_of_the_items():
    items = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5)]
    out = map_by_host(items, lambda i: i[0], lambda i: i[1] * 10, limit=lambda i: 2, total=3)
    assert out == [10, 20, 30, 40, 50]


def test_ten_hosts_run_in_one_round_under_a_per_host_bound_of_eight():
    # Ten hosts, one check each: all ten must be running at the same moment, or the barrier
    # (ten parties) never opens and every check raises BrokenBarrierError.
    barrier = threading.Barrier(10, timeout=GUARD)
    hosts = [f"h{i}" for i in range(10)]
    out = map_by_host(hosts, lambda h: h, lambda h: barrier.wait() >= 0, limit=lambda h: 8, total=32)
    assert out == [True] * 10


def test_one_host_never_runs_more_than_its_bound():
    # Three checks on one host with a bound of two: a barrier of three can never open.
    barrier = threading.Barrier(3, timeout=0.5)

    def work(_: str) -> str:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return "held back"
        return "all three ran at once"

    out = map_by_host(["h", "h", "h"], lambda h: h, work, limit=lambda h: 2, total=8)
    assert out == ["held back"] * 3


def test_a_busy_host_does_not_hold_up_an_idle_one():
    # Host a has more checks than the whole pool; b's single check must still get a worker and
    # run while a's first checks are in flight (they wait for it).
    b_ran = threading.Event()

    def work(item: tuple[str, int]) -> str:
        if item[0] == "b":
            b_ran.set()
            return "b"
        assert b_ran.wait(GUARD), "b waited behind a's queue"
        return "a"

    items = [("a", i) for i in range(6)] + [("b", 0)]
    out = map_by_host(items, lambda i: i[0], work, limit=lambda i: 2, total=3)
    assert out == ["a"] * 6 + ["b"]


def test_round_robin_takes_one_per_host_in_turn():
    items = ["a", "a", "a", "b", "c", "c"]
    assert list(round_robin(items, lambda h: h)) == [0, 3, 4, 1, 5, 2]


def test_the_first_item_of_a_host_sets_its_bound():
    seen: list[str] = []
    map_by_host([("x", 1), ("x", 5)], lambda i: i[0], lambda i: i, limit=lambda i: seen.append(str(i)) or i[1], total=2)
    assert seen == ["('x', 1)"]


def test_no_items_start_no_pool():
    assert map_by_host([], lambda i: i, lambda i: pytest.fail("ran"), limit=lambda i: 1, total=1) == []
