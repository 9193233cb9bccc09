"""``jobmon discover`` for the slurm type against the real cluster: the real squeue, reached
through the real ssh, listed and registered by the real CLI."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Home, jobmon

from .conftest import Slurm

pytestmark = pytest.mark.e2e


def test_an_array_and_a_het_job_are_one_candidate_each(slurm: Slurm, home: Home, jobdir: Path) -> None:
    array = slurm.sbatch("sleep 300", "--array=0-3%2", "--chdir", str(jobdir))  # a pending record 1_[2-3%2] at least
    # Held: a het job that waits for resources keeps this one-node cluster's node for itself.
    het = slurm.sbatch("sleep 300", "--hold", "-n1", ":", "-n1", "--chdir", str(jobdir))
    try:
        ran = jobmon("discover", "--type", "slurm", "--host", slurm.host, "--user", "root", "--json",
                     "--add", array, het, *home.args(), timeout=120)
        assert ran.code == 0, ran.err
        found = [c["id"] for c in ran.events()]
        assert (found.count(array), found.count(het)) == (1, 1)
        assert all(i.isdigit() for i in found), found  # every task, record and component named by its job
        assert sorted(j["id"] for j in home.jobs()) == sorted([array, het])
    finally:
        slurm.cancel(array, het)


def test_a_user_slurm_does_not_know_is_a_failure_naming_the_host(slurm: Slurm, home: Home) -> None:
    ran = jobmon("discover", "--type", "slurm", "--host", slurm.host, "--user", "nosuchuser", *home.args(),
                 timeout=120)
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == f"jobmon: discover slurm on {slurm.host}: exit 1: squeue: error: Invalid user: nosuchuser\n"
