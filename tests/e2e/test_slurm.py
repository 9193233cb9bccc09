"""The slurm type against the real cluster: real sbatch jobs, registered with the real CLI,
followed by the real ``bin/jobmon-watch --json`` process."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Home, jobmon

from jobmon.idlist import expand

from .conftest import FIGURES, Slurm, Watch, states

pytestmark = pytest.mark.e2e


def add(home: Home, slurm: Slurm, job_id: str, *extra: str) -> None:
    ran = jobmon("add", "--type", "slurm", "--id", job_id, "--host", slurm.host, *extra, *home.args())
    assert ran.code == 0, ran.err


def scheduler_detail(slurm: Slurm, job_id: str) -> tuple[str, str]:
    """The final state sacct reports, and the start of the detail jobmon must give for it."""
    state, exit_code, elapsed = slurm.sacct(job_id)[job_id]
    return state, f"exit {exit_code}, {elapsed}{slurm.limit_and_wait(job_id)}"


def ending(w: Watch, events: list[dict[str, Any]], job_id: str) -> dict[str, Any]:
    """The job's terminal event; checks that the watcher then summed up and exited 0."""
    assert w.code == 0
    *before, final, summary = events
    assert summary["kind"] == "summary"
    assert [e for e in before if e["kind"] != "state" or e["terminal"]] == []  # nothing else ended
    assert (final["kind"], final["id"], final["terminal"]) == ("state", job_id, True)
    assert len(set(states(events))) == len(states(events))  # each state reported once
    return final


def test_a_job_that_succeeds_is_completed_with_its_exit_code(slurm: Slurm, home: Home, jobdir: Path, watch) -> None:
    job = slurm.sbatch("echo hello from jobmon", "--chdir", str(jobdir))
    add(home, slurm, job, "--desc", "e2e: succeeds")
    w = watch(*home.args())
    events = w.finish()
    final = ending(w, events, job)
    state, detail = scheduler_detail(slurm, job)
    assert state == "COMPLETED" and detail.startswith("exit 0:0, ")
    assert (final["to"], final["outcome"], final["host"], final["description"]) == (
        "COMPLETED", "success", slurm.host, "e2e: succeeds")
    assert re.fullmatch(re.escape(detail) + FIGURES, final["detail"]), final["detail"]
    assert events[-1]["detail"] == "1 job: 1 completed"
    assert home.jobs() == []
    assert [(r["id"], r["last_status"], r["outcome"]) for r in home.history()] == [(job, "COMPLETED", "success")]


def test_a_failed_job_names_its_root_cause_and_its_log(slurm: Slurm, home: Home, jobdir: Path, watch) -> None:
    # A real Python traceback on stderr, then a last line that is not the cause, then exit 3.
    job = slurm.sbatch("echo step 1; python3 -c 'raise RuntimeError(\"boom 42\")'; echo cleanup done; exit 3",
                       "--chdir", str(jobdir))
    add(home, slurm, job)
    w = watch(*home.args())
    events = w.finish()
    final = ending(w, events, job)
    state, detail = scheduler_detail(slurm, job)
    assert state == "FAILED" and detail.startswith("exit 3:0, ")
    assert (final["to"], final["outcome"]) == ("FAILED", "failure")
    log = jobdir / f"slurm-{job}.out"
    assert "Traceback (most recent call last):" in log.read_text()
    assert re.fullmatch(re.escape(f"{detail}; RuntimeError: boom 42 (log: {log})") + FIGURES, final["detail"])
    assert events[-1]["detail"] == "1 job: 1 failed"
    (record,) = home.history()
    assert "cleanup done" in record["action_output"]  # the tail was read; the cause was picked from it


def test_scancel_while_running_is_cancelled(slurm: Slurm, home: Home, jobdir: Path, watch) -> None:
    job = slurm.sbatch("sleep 300", "--chdir", str(jobdir))
    add(home, slurm, job)
    w = watch(*home.args())
    w.until(lambda e: e["kind"] == "state" and e["to"] == "RUNNING")
    slurm.cancel(job)
    events = w.finish()
    final = ending(w, w.events, job)
    state, detail = scheduler_detail(slurm, job)
    assert re.fullmatch(r"CANCELLED by \d+", state)  # sacct's own words, normalised by jobmon
    assert (final["to"], final["outcome"]) == ("CANCELLED", "failure")
    assert states(w.events)[-2:] == ["RUNNING", "CANCELLED"]
    assert re.fullmatch(re.escape(f"{detail}; ") + ".*" + re.escape(f"(log: {jobdir}/slurm-{job}.out)") + FIGURES,
                        final["detail"]), final["detail"]
    assert f"JOB {job} ON" in final["detail"] and "CANCELLED AT" in final["detail"]  # slurmstepd's line
    assert events[-1]["detail"] == "1 job: 1 failed"


def test_a_held_job_is_pending_then_running_then_completed_each_once(slurm: Slurm, home: Home, jobdir: Path,
                                                                     watch) -> None:
    go = jobdir / "go"  # the job runs until the test creates this file: RUNNING is seen for sure
    job = slurm.sbatch(f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.2; done; echo released",
                       "--hold", "--chdir", str(jobdir))
    add(home, slurm, job, "--desc", "e2e: held")
    w = watch(*home.args())
    w.until(lambda e: e["kind"] == "state")
    assert slurm.squeue(job) == "PENDING|JobHeldUser"
    slurm.ssh(f"scontrol release {job}")
    w.until(lambda e: e["kind"] == "state" and e["to"] == "RUNNING")
    go.touch()
    w.finish()
    final = ending(w, w.events, job)
    assert states(w.events) == ["PENDING", "RUNNING", "COMPLETED"]
    assert [e["from"] for e in w.events if e["kind"] == "state"] == [None, "PENDING", "RUNNING"]
    assert final["outcome"] == "success" and final["detail"].startswith("exit 0:0, ")


def test_fifty_jobs_cost_one_sacct_call_per_poll(slurm: Slurm, home: Home, jobdir: Path, tmp_path: Path) -> None:
    from jobmon import config

    # 50 jobs in one ssh call: they sleep until cancelled, so that one poll sees them all alive.
    out = slurm.ssh(f"for i in $(seq 50); do sbatch --parsable --job-name jobmon-e2e --chdir "
                    f"{shlex.quote(str(jobdir))} --wrap 'sleep 600' || exit 1; done").stdout
    ids = [line.split(";")[0] for line in out.split()]
    slurm.submitted += ids
    assert len(set(ids)) == 50
    try:
        # registered with one CLI call: squeue -u root on the cluster, then --add the chosen ids
        ran = jobmon("discover", "--type", "slurm", "--host", slurm.host, "--user", "root", "--add", *ids,
                     *home.args(), timeout=120)
        assert ran.code == 0, ran.err
        assert sorted(j["id"] for j in home.jobs()) == sorted(ids)

        # settings.ssh -> a wrapper that logs each call, then runs the real ssh with the same options
        calls = tmp_path / "ssh-calls.log"
        wrapper = tmp_path / "ssh-logged"
        wrapper.write_text(f"#!{sys.executable}\n"
                           "import json, os, sys\n"
                           f"with open({str(calls)!r}, 'a') as log:\n"
                           "    log.write(json.dumps(sys.argv[1:]) + '\\n')\n"
                           "os.execvp('ssh', ['ssh', *sys.argv[1:]])\n")
        wrapper.chmod(0o755)
        default_ssh = list(config.load(env={}).settings.ssh)
        conf = tmp_path / "ssh-wrapper.yaml"
        conf.write_text(yaml.safe_dump({"settings": {"ssh": [str(wrapper), *default_ssh[1:]]}}))

        ran = jobmon("watch", "--once", "--json", "--config", str(conf), *home.args(), timeout=120)
        assert ran.code == 0, ran.err
        argvs = [json.loads(line) for line in calls.read_text().splitlines()]
        remote = [argv[-1] for argv in argvs]  # what ran on the cluster: one argument, after the host
        assert all(argv[-2] == slurm.host for argv in argvs), argvs
        # one call for all fifty: one sacct and one squeue for all the ids, and one scontrol for
        # the log paths of the jobs first seen (no call per job)
        assert len(remote) == 1, remote
        assert [remote[0].count(call) for call in ("sacct -j ", "squeue -h -j ", "scontrol -o show job")] == [1, 1, 1]
        asked = re.search(r"sacct -j (\S+) ", remote[0]).group(1)  # type: ignore[union-attr]
        assert sorted(asked.split(",")) == sorted(ids)
        assert sorted(re.search(r"squeue -h -j (\S+) ", remote[0]).group(1).split(",")) == sorted(ids)  # type: ignore[union-attr]

        jobs = home.jobs()
        assert len(jobs) == 50
        assert {j["last_status"] for j in jobs} <= {"PENDING", "CONFIGURING", "RUNNING"}, jobs
        events = ran.events()
        digests = [e for e in events if e["kind"] == "changes"]  # 50 changes: a digest naming every job
        assert all(d["detail"] == "50 changes" for d in digests)
        named = [i for d in digests for g in d["groups"] for span in g["ids"] for i in expand(span)]
        assert sorted(named) == sorted(ids)  # each once, none left to "+N more"
        assert [e["kind"] for e in events] == ["changes"] * len(digests) + ["summary"]
    finally:
        slurm.cancel(*ids)


def test_a_job_past_its_time_limit_is_timeout_with_the_reason(slurm: Slurm, home: Home, watch,
                                                             timeout_job: tuple[str, Path]) -> None:
    # Submitted when the session started; this test runs last (see conftest.py).
    job, out = timeout_job
    add(home, slurm, job, "--file", str(out), "--desc", "e2e: time limit")
    w = watch(*home.args())
    events = w.finish(timeout=240)
    final = ending(w, events, job)
    state, detail = scheduler_detail(slurm, job)
    assert state == "TIMEOUT"
    assert (final["to"], final["outcome"]) == ("TIMEOUT", "failure")
    logged = home.history()[0]["detail"]  # whole: a printed line may be shortened in its middle
    assert final["detail"].startswith(f"{detail}; ") and logged.startswith(f"{detail}; ")
    assert re.search(rf"; JOB {job} ON \S+ CANCELLED AT \S+ DUE TO TIME LIMIT \(log: {re.escape(str(out))}\){FIGURES}$",
                     logged), logged


def test_checks_reuse_one_ssh_connection_per_host(slurm: Slurm, home: Home, jobdir: Path, ssh_cache: Path) -> None:
    # jobmon kills each check's process group when it ends: the ControlMaster that ssh forked
    # into a session of its own must survive that, or every poll would pay a handshake again.
    job = slurm.sbatch("sleep 1", "--chdir", str(jobdir))
    add(home, slurm, job)
    assert jobmon("status", *home.args()).code == 0
    sockets = [s for s in (ssh_cache / "jobmon").iterdir() if s.is_socket()]
    assert len(sockets) == 1
    check = subprocess.run(["ssh", "-o", f"ControlPath={sockets[0]}", "-O", "check", slurm.host],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert check.returncode == 0 and check.stderr.startswith("Master running"), check.stderr
    assert jobmon("status", *home.args()).code == 0
    assert [s for s in (ssh_cache / "jobmon").iterdir() if s.is_socket()] == sockets  # the same one, reused


def test_an_ended_job_says_its_efficiency_and_the_report_lists_it(slurm: Slurm, home: Home, jobdir: Path,
                                                                  watch) -> None:
    # 2 CPUs asked, one of them kept busy for 3 s: sacct's TotalCPU over Elapsed × AllocCPUS.
    job = slurm.sbatch("python3 -c 'import time; t = time.time()\nwhile time.time() - t < 3: pass'",
                       "--chdir", str(jobdir), "--time=00:05:00", "--cpus-per-task=2", "--mem=200M")
    add(home, slurm, job, "--desc", "e2e: efficiency")
    w = watch(*home.args())
    final = ending(w, w.finish(), job)
    state, detail = scheduler_detail(slurm, job)
    assert state == "COMPLETED" and " of 00:05:00, waited " in detail
    assert re.fullmatch(re.escape(detail) + r"; CPU \d+%(, mem \d+% of 200M)?", final["detail"]), final["detail"]
    measured = home.history()[0]["measured"]
    elapsed, cpu_time = slurm.ssh(f"sacct -j {job} -n -P --format=ElapsedRaw,TotalCPU | head -n 1").stdout.strip().split("|")
    assert (measured["limit_s"], measured["elapsed_s"], measured["mem_req"]) == (300, int(elapsed), 200 * 2**20)
    assert 0 < measured["cpu_pct"] <= 100 and f"CPU {measured['cpu_pct']:.0f}%" in final["detail"], (measured, cpu_time)
    ran = jobmon("report", "--since", "1h", "--json", *home.args())
    assert ran.code == 0, ran.err
    job_line, totals = ran.events()
    assert (job_line["id"], job_line["state"], job_line["cpu_pct"]) == (job, "COMPLETED", measured["cpu_pct"])
    assert (totals["jobs"], totals["outcomes"], totals["gpu_hours"]) == (1, {"completed": 1}, 0)
