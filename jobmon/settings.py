"""The ``Settings`` record: the engine-wide settings in force (after any cluster's overrides).

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
