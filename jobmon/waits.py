"""How long the type a job delegates to has said the job ended while the job's own check still
says it waits (``delegate.during``: nel's PENDING after a Slurm TIMEOUT, waiting for an
autoresume that may never come).

Kept by the running poller, in memory: a poller that starts again starts each wait again, which
only delays a verdict, never gives one early.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

Key = tuple[str, str, str]  # a job's (type, id, host)


@dataclass
class Waits:
    clock: Callable[[], float] = time.monotonic  # tests move it on instead of sleeping
    _since: dict[Key, tuple[Key, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # hosts are checked side by side

    def waited(self, job: Key, other: Key) -> float:
        """Seconds since ``other`` was first seen ended for ``job``: 0 the first time, and again
        when the job now delegates to another one (nel resumed it as a new Slurm job)."""
        now = self.clock()
        with self._lock:
            seen, since = self._since.get(job, (other, now))
            if seen != other:
                since = now
            self._since[job] = (other, since)
        return now - since

    def forget(self, job: Key) -> None:
        """The job no longer waits (it runs again, or the other job did not end after all)."""
        with self._lock:
            self._since.pop(job, None)


def spoken(seconds: float) -> str:
    """A wait as a line says it: ``45 s``, ``10 min``, ``3 h``."""
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 2 * 3600:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds // 3600)} h"
