"""Stalls on the real cluster: a job that goes silent is STALLED, RESUMED when it writes again,
then ends as usual. The progress probe (stat of its logs and the cluster's clock) rides in the
same ssh call as sacct and squeue."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import Home, jobmon

from .conftest import FIGURE, Slurm, states

pytestmark = pytest.mark.e2e

STALL_AFTER = 6  # seconds; the watcher polls every second (--interval 1)
INTERVAL = 1
SLACK = 4  # a check's own time on a busy two-core machine, and the clock's whole seconds


def test_a_job_that_goes_silent_is_stalled_then_resumed_then_completed(slurm: Slurm, home: Home, jobdir: Path,
                                                                       tmp_path: Path, watch) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "stalls.yaml"
    conf.write_text(f"types:\n  slurm:\n    stall_after: {STALL_AFTER}\n")
    job = slurm.sbatch("echo step 1; echo 'NCCL WARN Call to ibv_reg_mr failed'; sleep 25; echo step 2; sleep 2",
                       "--chdir", str(jobdir))
    ran = jobmon("add", "--type", "slurm", "--id", job, "--host", slurm.host, "--config", str(conf), *home.args())
    assert ran.code == 0, ran.err
    w = watch("--config", str(conf), *home.args())
    got = w.until(lambda e: e["kind"] == "event" and e["to"] == "STALLED")
    stalled = got[-1]
    assert states(got, job) == ["RUNNING"] or states(got, job) == ["PENDING", "RUNNING"]
    assert (stalled["id"], stalled["terminal"], stalled["outcome"]) == (job, False, None)
    match = re.fullmatch(r"no progress for 0:00:(\d\d); last: NCCL WARN Call to ibv_reg_mr failed", stalled["detail"])
    assert match, stalled["detail"]
    # said as soon as the cluster's clock shows stall_after without a write, one poll later at most
    assert STALL_AFTER <= int(match.group(1)) <= STALL_AFTER + INTERVAL + SLACK
    resumed = w.until(lambda e: e["kind"] == "event" and e["to"] == "RESUMED")[-1]
    assert re.fullmatch(r"moving again after 0:00:\d\d without progress", resumed["detail"]), resumed["detail"]
    rest = w.finish()
    (end,) = [e for e in rest if e["kind"] != "summary"]
    assert (end["kind"], end["to"], end["outcome"]) == ("state", "COMPLETED", "success")
    _, exit_code, elapsed = slurm.sacct(job)[job]  # with what seff would say: a sleeping job's CPU is near 0 %
    assert re.fullmatch(re.escape(f"exit {exit_code}, {elapsed}{slurm.limit_and_wait(job)}; ") + rf"CPU \d+%(?:, {FIGURE})*",
                        end["detail"]), end["detail"]
    assert [e["to"] for e in w.events if e["to"] in ("STALLED", "RESUMED")] == ["STALLED", "RESUMED"]  # once each
    assert w.code == 0
    assert (jobdir / f"slurm-{job}.out").read_text().splitlines()[-1] == "step 2"
