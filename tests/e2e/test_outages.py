"""Parts of the cluster go away during a watch and come back (up.sh starts only what is
stopped): a failed check is never a failed job."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from conftest import Home, jobmon

from .conftest import Slurm

pytestmark = pytest.mark.e2e


def waiting_job(slurm: Slurm, jobdir: Path) -> tuple[str, Path]:
    """A job that runs until the test creates its ``go`` file."""
    go = jobdir / "go"
    job = slurm.sbatch(f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.2; done; echo ended", "--chdir", str(jobdir))
    return job, go


def test_sshd_down_is_one_unreachable_then_one_recovered_then_the_true_state(slurm: Slurm, home: Home,
                                                                          jobdir: Path, tmp_path: Path,
                                                                          watch) -> None:
    job, go = waiting_job(slurm, jobdir)
    ran = jobmon("add", "--type", "slurm", "--id", job, "--host", slurm.host, *home.args())
    assert ran.code == 0, ran.err
    conf = tmp_path / "outage.yaml"
    conf.write_text("settings:\n  unreachable_after: 2\n")
    w = watch("--config", str(conf), *home.args())
    w.until(lambda e: e["kind"] == "state" and e["to"] == "RUNNING")
    with slurm.down("sshd"):
        during = w.until(lambda e: e["to"] == "UNREACHABLE", timeout=90)
        go.touch()  # the job ends while the cluster cannot be asked
    (unreachable,) = during  # nothing else while the cluster could not be asked: one line for the host
    assert (unreachable["kind"], unreachable["host"], unreachable["terminal"], unreachable["outcome"]) == (
        "event", slurm.host, False, None)
    assert [i for g in unreachable["groups"] for i in g["ids"]] == [job]
    assert unreachable["detail"].startswith("1 slurm job: ") and "exit 255" in unreachable["detail"], unreachable
    after = w.finish()
    assert w.code == 0
    assert [(e["kind"], e["to"]) for e in after] == [("event", "RECOVERED"), ("state", "COMPLETED"), ("summary", None)]
    _, final, summary = after
    assert (final["from"], final["outcome"]) == ("RUNNING", "success")
    assert final["detail"].startswith("exit 0:0, ")
    assert summary["detail"] == "1 job: 1 completed"
    assert slurm.sacct(job)[job][0] == "COMPLETED"
    assert [(e["kind"], e["to"]) for e in w.events].count(("event", "UNREACHABLE")) == 1


def test_with_accounting_down_squeue_still_follows_the_job(slurm: Slurm, home: Home, jobdir: Path) -> None:
    job, go = waiting_job(slurm, jobdir)
    try:
        assert jobmon("add", "--type", "slurm", "--id", job, "--host", slurm.host, *home.args()).code == 0
        slurm.wait_for(job, {"RUNNING"})
        first = jobmon("status", "--json", *home.args())
        assert [(e["kind"], e["to"]) for e in first.events()] == [("state", "RUNNING"), ("summary", None)]
        with slurm.down("slurmdbd"):  # sacct fails: "Problem talking to the database"; squeue answers
            ran = jobmon("status", "--json", *home.args())
        assert ran.code == 0, ran.err
        assert [(e["kind"], e["detail"]) for e in ran.events()] == [("summary", "1 job: 1 running")]
        (entry,) = home.jobs()
        assert entry["last_status"] == "RUNNING" and "errors" not in entry.get("jobmon", {})
    finally:
        go.touch()
