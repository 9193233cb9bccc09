"""The ``Settings`` record: the engine-wide settings in force (after any cluster's overrides),
and ``Delivery``: what a reader's harness lets through.

Its own module so that ``jobtype`` can take the settings a type falls back on without importing
``config``, which imports ``jobtype``. ``config`` holds the defaults and validates the values.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    interval: float
    timeout: float
    action_timeout: float
    max_parallel: int  # checks (and actions) at once against one host
    max_parallel_total: int  # the same, over all hosts together
    unreachable_after: int
    lost_after: float
    aggregate_after: int
    max_line: int
    ssh: tuple[str, ...]
    max_read: int  # bytes of a growing file read per check at most
    hosts: tuple[str, ...]  # where `jobmon discover` looks when no --host is given


@dataclass(frozen=True)
class Delivery:
    """What a reader's harness lets through (``delivery:`` in monitor.yaml; Claude Code's
    Monitor by default), and how a follower paces itself to fit it."""

    line: int = 500  # the harness cuts a line past this many characters
    notification: int = 3000  # ... and a notification past this many
    join: float = 0.2  # lines within this many seconds of a notification's first line join it
    gap: float = 0.5  # the silence a follower leaves after each notification: more than join
    burst: int = 10  # notifications the harness lets through at once
    refill: float = 2.0  # then one more every this many seconds
