"""When a follower may write its next notification, so that none is joined, cut or dropped.

Claude Code's Monitor joins what arrives within ``join`` (200 ms) of a notification's first line
and lets ``burst`` (10) notifications through, then one every ``refill`` (2 s); one without
budget is dropped, and 30 s of that kills the watch. A follower that writes each notification
at once, leaves ``gap`` (more than ``join``) of silence after it and never spends a budget it
has not got loses nothing. Its own count starts one below the harness's and refills a little
slower: the harness's budget began before this process did, and may refill in whole ticks.
"""
from __future__ import annotations

import time
from typing import Callable

from jobmon.settings import Delivery

MARGIN = 0.05  # seconds added to each refill: the harness's clock is not ours


class Pacer:
    def __init__(self, delivery: Delivery, clock: Callable[[], float] = time.monotonic) -> None:
        self.delivery = delivery
        self.clock = clock
        self.capacity = max(delivery.burst - 1, 1)
        self.tokens = float(self.capacity)
        self.at = clock()
        self.last: float | None = None
        self.spent = 0  # notifications written, for the benchmark

    def _refill(self, now: float) -> None:
        rate = self.delivery.refill + MARGIN
        self.tokens = min(float(self.capacity), self.tokens + (now - self.at) / rate)
        self.at = now

    def wait(self) -> float:
        """Seconds until the next notification may be written (0: now)."""
        now = self.clock()
        self._refill(now)
        quiet = 0.0 if self.last is None else self.last + self.delivery.gap - now
        short = 0.0 if self.tokens >= 1 else (1 - self.tokens) * (self.delivery.refill + MARGIN)
        return max(quiet, short, 0.0)

    def spend(self) -> None:
        """A notification was just written."""
        now = self.clock()
        self._refill(now)
        self.tokens -= 1
        self.last = now
        self.spent += 1


class Unpaced(Pacer):
    """A terminal or ``--raw``: every line as it comes."""

    def wait(self) -> float:
        return 0.0

    def spend(self) -> None:
        self.spent += 1
