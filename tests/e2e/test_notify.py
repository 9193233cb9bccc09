"""Notifications from the real cluster: with no one watching, the detached poller tells a
local HTTP server (apprise's json://) that a job stalled and then failed, the failure with what
its end measured."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from conftest import Home, jobmon, wait_for

from .conftest import Slurm

pytestmark = pytest.mark.e2e


def test_the_detached_poller_tells_a_person_of_a_stall_and_a_failure(slurm: Slurm, home: Home, jobdir: Path,
                                                                     tmp_path: Path, servers: Any) -> None:
    server = servers()
    conf = tmp_path / "notify.yaml"
    conf.write_text(f"types:\n  slurm:\n    interval: 1\n    stall_after: 6\n"
                    f"notify: [{{url: '{server.url('jobs')}', on: [failure, stalled]}}]\n")
    job = slurm.sbatch("echo 'NCCL WARN Call to ibv_reg_mr failed'; sleep 15; exit 3", "--chdir", str(jobdir))
    ran = jobmon("add", "--type", "slurm", "--id", job, "--host", slurm.host, "--watch", "--config", str(conf),
                 *home.args())
    assert ran.code == 0 and "poller started" in ran.err, ran.err
    stalled = server.next(within=60)
    assert (stalled["path"], stalled["type"], stalled["title"]) == (
        "/jobs", "warning", f"jobmon: STALLED slurm {job}@{slurm.host}")
    assert re.search(r"STALLED \(no progress for 0:00:\d\d; last: NCCL WARN Call to ibv_reg_mr failed\)$",
                     stalled["message"]), stalled
    failed = server.next(within=60)
    assert (failed["type"], failed["title"]) == ("failure", f"jobmon: FAILED slurm {job}@{slurm.host}")
    _, exit_code, elapsed = slurm.sacct(job)[job]
    log = jobdir / f"slurm-{job}.out"
    assert re.search(re.escape(f"slurm {job}@{slurm.host}: RUNNING -> FAILED (exit {exit_code}, {elapsed}"
                               f"{slurm.limit_and_wait(job)}; NCCL WARN Call to ibv_reg_mr failed (log: {log})")
                     + r"; CPU \d+%(, [^)]*)?\)$", failed["message"]), failed
    assert wait_for(lambda: not home.jobs())
    assert server.arrived.empty()  # no RESUMED (not asked for), nothing twice
