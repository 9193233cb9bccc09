"""The nel type with the real NeMo Evaluator Launcher (PyPI nemo-evaluator-launcher==0.2.6, in
its own venv ``.venv-nel``, which .ci/run installs): job records written into nel's own
execution database through nel's own API, for real sbatch jobs; nel asks the cluster itself
(ssh root@testcluster sacct). The state jobmon reports is the state ``nel status --json``
reports is the state sacct reports."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Home, jobmon

from .conftest import NEL_VENV, Slurm, states, unavailable

pytestmark = pytest.mark.e2e

# nel 0.2.6's slurm executor: SLURM state -> nel status (executor.py, see /work/nel-notes.md 3.3)
NEL_STATUS = {"PENDING": "pending", "RUNNING": "running", "COMPLETED": "success", "FAILED": "failed",
              "CANCELLED": "killed"}

WRITE_RECORD = """
import sys, time
from nemo_evaluator_launcher.common.execdb import ExecutionDB, JobData
invocation, slurm_job, rundir, host, user = sys.argv[1:]
config = {"deployment": {"type": "none"},
          "execution": {"type": "slurm", "output_dir": rundir, "hostname": host, "username": user},
          "target": {"api_endpoint": {"model_id": "e2e/model", "url": "http://127.0.0.1:9/v1/chat/completions"}},
          "evaluation": {"tasks": [{"name": "simple_evals.mmlu_pro"}]}}
ExecutionDB().write_job(JobData(invocation_id=invocation, job_id=invocation + ".0", timestamp=time.time(),
                                executor="slurm", config=config,
                                data={"slurm_job_id": slurm_job, "remote_rundir_path": rundir,
                                      "hostname": host, "username": user}))
"""


@pytest.fixture(scope="session")
def nel_bin() -> Path:
    nel = NEL_VENV / "bin" / "nel"
    if not nel.exists():
        unavailable(f"nel is not installed in {NEL_VENV} (.ci/run installs nemo-evaluator-launcher==0.2.6 there)")
    return nel.parent


@pytest.fixture
def nel_env(nel_bin: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """nel first on PATH, its database a test file, its HOME a short private folder (it keeps
    ssh control sockets there: a unix socket path has ~100 bytes)."""
    home = Path(tempfile.mkdtemp(prefix="jme2e-nel-"))
    env = {**os.environ, "PATH": f"{nel_bin}{os.pathsep}{os.environ['PATH']}", "HOME": str(home),
           "NEMO_EVALUATOR_EXEC_DB_FILE": str(tmp_path / "exec.v1.jsonl"), "NEMO_EVALUATOR_TELEMETRY_LEVEL": "0"}
    yield env
    shutil.rmtree(home, ignore_errors=True)


def nel_status(env: dict[str, str], *invocations: str) -> dict[str, str]:
    proc = subprocess.run(["nel", "status", *invocations, "--json"], capture_output=True, text=True, timeout=120,
                          env={**env, "NEMO_EVALUATOR_DISABLE_COLOR": "1", "LOG_LEVEL": "WARNING"},
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return {row["invocation"]: row["status"] for row in json.loads(proc.stdout)}


def register(slurm: Slurm, home: Home, env: dict[str, str], jobdir: Path, job: str, invocation: str) -> None:
    """A nel job record for a SLURM job, written by nel's own API; then ``jobmon add --type nel``."""
    rundir = jobdir / invocation / "simple_evals.mmlu_pro.0"
    rundir.mkdir(parents=True)
    subprocess.run([str(NEL_VENV / "bin" / "python"), "-c", WRITE_RECORD, invocation, job, str(rundir),
                    slurm.host, "root"], env=env, check=True, capture_output=True, timeout=120)
    ran = jobmon("add", "--type", "nel", "--id", invocation, "--desc", f"e2e: nel {job}", *home.args())
    assert ran.code == 0, ran.err


def test_the_state_jobmon_reports_is_what_nel_and_sacct_report(slurm: Slurm, home: Home, jobdir: Path, nel_env,
                                                               watch) -> None:
    go = jobdir / "go"
    good = slurm.sbatch(f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.2; done; echo evaluated",
                        "--chdir", str(jobdir))
    bad = slurm.sbatch("echo evaluating; exit 1", "--chdir", str(jobdir))
    inv = {good: "e2e0000000000001", bad: "e2e0000000000002"}  # 16 hex digits, as nel makes them
    # Registered once accounting has them: nel 0.2.6 calls a job sacct has no row for yet "failed"
    # (jobmon asks SLURM before it believes such a FAILED), so earlier the three could not agree.
    slurm.wait_for(good, {"RUNNING"})
    slurm.wait_for(bad, {"FAILED"})
    for job, invocation in inv.items():
        register(slurm, home, nel_env, jobdir, job, invocation)
    w = watch(*home.args(), env=nel_env)

    # while the good one runs: the three agree
    w.until(lambda e: e["kind"] == "state" and e["id"] == inv[good] and e["to"] == "RUNNING")
    assert slurm.sacct(good)[good][0] == "RUNNING"
    assert nel_status(nel_env, inv[good]) == {inv[good]: "running"}
    go.touch()
    w.finish(timeout=240)
    assert w.code == 0

    # at the end: the three agree again
    told = nel_status(nel_env, *inv.values())
    for job, invocation in inv.items():
        sacct = slurm.sacct(job)[job][0]
        jobmon_says = states(w.events, invocation)[-1]
        assert (jobmon_says, told[invocation]) == (NEL_STATUS[sacct].upper(), NEL_STATUS[sacct]), (job, sacct)
    assert (slurm.sacct(good)[good][0], slurm.sacct(bad)[bad][0]) == ("COMPLETED", "FAILED")
    finals = {e["id"]: e for e in w.events if e["kind"] == "state" and e["terminal"]}
    assert {i: (e["outcome"], e["detail"].split(";")[0]) for i, e in finals.items()} == {
        inv[good]: ("success", f"slurm job {good}"), inv[bad]: ("failure", f"slurm job {bad}")}
    assert states(w.events, inv[good]) in (["RUNNING", "SUCCESS"], ["PENDING", "RUNNING", "SUCCESS"])
    assert w.events[-1]["detail"] == "2 jobs: 1 completed, 1 failed"


def test_a_running_evaluation_is_not_failed_when_accounting_cannot_answer(slurm: Slurm, home: Home, jobdir: Path,
                                                                          nel_env) -> None:
    go = jobdir / "go"
    job = slurm.sbatch(f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.2; done", "--chdir", str(jobdir))
    try:
        slurm.wait_for(job, {"RUNNING"})
        register(slurm, home, nel_env, jobdir, job, "e2e00000000000aa")
        first = jobmon("status", "--json", *home.args(), env=nel_env, timeout=120)
        assert [(e["kind"], e["to"]) for e in first.events()] == [("state", "RUNNING"), ("summary", None)]
        with slurm.down("slurmdbd"):
            told = nel_status(nel_env, "e2e00000000000aa")
            ran = jobmon("status", "--json", *home.args(), env=nel_env, timeout=120)
            still = slurm.squeue(job)
        assert (told, still) == ({"e2e00000000000aa": "failed"}, "RUNNING|None")  # nel is wrong, SLURM runs it
        assert ran.code == 0, ran.err
        assert [e for e in ran.events() if e["kind"] == "state"] == []  # a failed check, not a failed job
        assert [j["last_status"] for j in home.jobs()] == ["RUNNING"]
    finally:
        go.touch()


def test_an_evaluation_nel_calls_pending_after_its_time_limit_ends_failed(slurm: Slurm, home: Home, jobdir: Path,
                                                                          nel_env, watch, timeout_job: tuple[str, Path],
                                                                          tmp_path: Path) -> None:
    # The job of the time limit (--time=1), submitted when the session started; this test runs
    # last (see conftest.py). No autoresume follows it: nel 0.2.6 says "pending" for ever.
    job, out = timeout_job
    slurm.wait_for(job, {"TIMEOUT"}, timeout=240)
    invocation = "e2e7100000000001"
    rundir = jobdir / invocation / "simple_evals.mmlu_pro.0"
    (rundir / "logs").mkdir(parents=True)
    # where nel's sbatch script sends a job's output (#SBATCH --output <rundir>/logs/slurm-%A.log)
    shutil.copy(out, rundir / "logs" / f"slurm-{job}.log")
    subprocess.run([str(NEL_VENV / "bin" / "python"), "-c", WRITE_RECORD, invocation, job, str(rundir),
                    slurm.host, "root"], env=nel_env, check=True, capture_output=True, timeout=120)
    assert nel_status(nel_env, invocation) == {invocation: "pending"}
    # registered by a prefix: the real nel resolves it
    ran = jobmon("add", "--type", "nel", "--id", "e2e71", "--desc", "e2e: nel after a time limit", *home.args(),
                 env=nel_env, timeout=120)
    assert ran.code == 0, ran.err
    assert f"jobmon: nel e2e71 resolved to {invocation}" in ran.err.splitlines()
    fast = tmp_path / "fast.yaml"
    fast.write_text("settings:\n  lost_after: 3\n")  # how long no autoresume may come
    w = watch(*home.args(), "--config", str(fast), env=nel_env)
    events = w.finish(timeout=240)
    assert w.code == 0
    said = [e for e in events if e.get("id") == invocation]
    assert [(e["kind"], e["to"]) for e in said] == [("state", "PENDING"), ("event", "not-resumed"), ("state", "FAILED")]
    assert re.fullmatch(rf"slurm job {job} ended TIMEOUT; nel still says PENDING \(no autoresume for \d+ s\)",
                        said[1]["detail"]), said[1]["detail"]
    assert said[2]["outcome"] == "failure"
    # explained by the logs nel itself copies (nel info --copy-logs), the Slurm job's among them
    (record,) = home.history()
    assert re.fullmatch(rf"slurm job {job}; JOB {job} ON \S+ CANCELLED AT \S+ DUE TO TIME LIMIT "
                        rf"\(log: \S+/jobmon/nel/{invocation}/\S+/slurm-{job}\.log\)", record["detail"]), record["detail"]
