"""``jobmon demo``: two short local jobs, one that succeeds and one that fails.

Needs no cluster: the jobs are processes on this machine, followed by the ``local`` job type
from checkers.d/ exactly as a real job type is. ``cli`` registers and watches them.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import NamedTuple

from jobmon import run

JOBS = (
    ("demo: calibrate and export", "echo calibrating; sleep 3; echo 'exported to /tmp/demo-model'"),
    ("demo: evaluate", "echo loading model; sleep 5; echo 'Traceback (most recent call last):'; "
                       "echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB'; exit 3"),
)


class DemoJob(NamedTuple):
    pid: int
    description: str
    exit_file: Path
    log: Path


def start(work: Path) -> list[DemoJob]:
    """Start the demo's jobs in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    jobs = []
    for n, (desc, script) in enumerate(JOBS):
        log, code = work / f"job{n}.log", work / f"job{n}.exit"
        # The wrapper's pid is the job: it writes the exit code before it ends, so a gone pid
        # with no exit file really means the code was never recorded.
        wrapper = f"( {script} ) > {shlex.quote(str(log))} 2>&1; echo $? > {shlex.quote(str(code))}"
        pid = run.spawn(["bash", "-c", wrapper], str(work / "spawn.log"))
        jobs.append(DemoJob(pid, desc, code, log))
    return jobs
