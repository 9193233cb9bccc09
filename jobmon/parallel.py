"""Running checks and actions at once: hosts side by side, each host within its own bound.

The bound is per host because that is where it protects something: a multiplexed ssh
connection carries at most sshd's MaxSessions sessions at once (10 by default), and a login
node's scheduler is what a flood of sacct calls slows down. Distinct hosts share nothing, so
one host's queue must not hold up another's: ten hosts are polled in one round, not two. A
second, larger bound over all hosts keeps the local machine's process count sane.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_by_host(items: Sequence[T], host: Callable[[T], str], work: Callable[[T], R], *,
                limit: Callable[[T], int], total: int, name: str = "worker") -> list[R]:
    """``[work(item) for item in items]``, run in threads: at most ``limit(item)`` items of one
    host at once (a host's settings, read from its first item) and at most ``total`` in all.
    Results keep the order of ``items``."""
    if not items:
        return []
    slots: dict[str, threading.Semaphore] = {}
    for item in items:
        if host(item) not in slots:
            slots[host(item)] = threading.Semaphore(limit(item))

    def bounded(item: T) -> R:
        with slots[host(item)]:
            return work(item)

    futures: dict[int, Future[R]] = {}
    with ThreadPoolExecutor(max_workers=min(total, len(items)), thread_name_prefix=name) as pool:
        for index in round_robin(items, host):
            futures[index] = pool.submit(bounded, items[index])
    return [futures[i].result() for i in range(len(items))]


def round_robin(items: Sequence[T], host: Callable[[T], str]) -> Iterable[int]:
    """Indices of ``items`` taking one per host in turn, so that a worker waiting on a busy
    host's bound never stands in front of an idle host's first item."""
    queues: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        queues.setdefault(host(item), []).append(index)
    lanes = list(queues.values())
    for depth in range(max(len(lane) for lane in lanes)):
        for lane in lanes:
            if depth < len(lane):
                yield lane[depth]
