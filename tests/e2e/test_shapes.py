"""Job shapes beyond one plain batch job, against the real cluster: an array, a heterogeneous
job, a requeue after a node failure, the controller down, failed steps, split logs, a cause far
above the log's last line, log paths kept from the start, a dependency that can never be met.

Real sbatch jobs, registered with the real CLI, followed by the real ``bin/jobmon-watch --json``
process (the ``watch`` fixture: ``--interval 1``). The real outputs behind the engine's unit tests
for the same shapes are in tests/fixtures/slurm/shapes/.

Jobs that must not end before the test has seen something wait for a file the test creates
(``go``), so what the watcher sees does not depend on timing. Every job a test submits is
cancelled when the test ends, whatever happened.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import Home, jobmon

from .conftest import DEADLINE, FIGURE, FIGURES, Slurm, Watch, states, wait_until

pytestmark = pytest.mark.e2e

Event = dict[str, Any]


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _cancel_this_tests_jobs(slurm: Slurm) -> Iterator[None]:
    """Whatever a test submitted is cancelled when it ends, passed or not."""
    start = len(slurm.submitted)
    yield
    slurm.cancel(*slurm.submitted[start:])


def add(home: Home, slurm: Slurm, job_id: str, *extra: str) -> None:
    ran = jobmon("add", "--type", "slurm", "--id", job_id, "--host", slurm.host, *extra, *home.args())
    assert ran.code == 0, ran.err


def script(path: Path, body: str) -> Path:
    """A job script: bash, then ``body`` (dedented)."""
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body).lstrip("\n"))
    path.chmod(0o755)
    return path


def submit(slurm: Slurm, job_script: Path, *options: str) -> str:
    """``sbatch --parsable OPTIONS SCRIPT`` on the cluster (the same machine: the same path)."""
    out = slurm.ssh(shlex.join(["sbatch", "--parsable", *options, str(job_script)])).stdout.strip()
    job_id = out.split(";")[0]
    assert job_id.isdigit(), f"sbatch said {out!r}"
    slurm.submitted.append(job_id)
    return job_id


def sacct_rows(slurm: Slurm, ids: str, fields: str, *, steps: bool = False) -> list[list[str]]:
    out = slurm.ssh(f"sacct -j {ids} {'' if steps else '-X '}-n -P --format={fields}").stdout
    return [line.split("|") for line in out.splitlines() if line]


def squeue_reason(slurm: Slurm, job_id: str) -> str:
    return slurm.ssh(f"squeue -h -j {job_id} -o %r", check=False).stdout.strip()


def final_row(slurm: Slurm, job_id: str) -> tuple[str, str, str]:
    """sacct's final State, ExitCode and Elapsed of a job (or of one array task, 12_4)."""
    state, exit_code, took = slurm.sacct(job_id)[job_id]
    return state, exit_code, took


def of(events: list[Event], job_id: str, kind: str | None = None) -> list[Event]:
    return [e for e in events if e["id"] == job_id and (kind is None or e["kind"] == kind)]


def state_of(job_id: str, to: str | None = None) -> Callable[[Event], bool]:
    return lambda e: e["kind"] == "state" and e["id"] == job_id and (to is None or e["to"] == to)


def each(w: Watch, *preds: Callable[[Event], bool], timeout: float = DEADLINE) -> list[Event]:
    """Events until each predicate has accepted one of them, in any order; the accepted ones."""
    found: list[Event | None] = [None] * len(preds)

    def seen(e: Event) -> bool:
        for i, pred in enumerate(preds):
            if found[i] is None and pred(e):
                found[i] = e
        return all(f is not None for f in found)

    w.until(seen, timeout)
    return [f for f in found if f is not None]


def checks_so_far(w: Watch) -> int:
    """How many checks a ``-vv`` watcher has started (its debug line names the squeue it runs)."""
    return w.stderr_path.read_text().count("squeue -h -j")


def more_checks(w: Watch, n: int, timeout: float = DEADLINE) -> None:
    """Bounded wait until a ``-vv`` watcher has run ``n`` more checks than now."""
    start = checks_so_far(w)
    wait_until(f"{n} more checks by the watcher", lambda: checks_so_far(w) >= start + n, timeout)


def full(home: Home, event: Event) -> Event:
    """The event as the session's event log holds it. A printed line is 400 characters at most,
    so a long detail (a cause and two long log paths) may be printed shortened in its middle, and
    the figures after its ``(log: …)`` dropped; the log keeps it whole. Checks that the printed
    one is the logged one, whole or so shortened: its pieces between "…", in order, from its start."""
    (logged,) = [e for e in home.logged() if e["seq"] == event["seq"]]
    printed, whole = event["detail"], logged["detail"]
    pieces, at = printed.split("…"), 0
    for i, piece in enumerate(pieces):
        found = whole.find(piece, at)
        assert found >= 0 and (i or found == 0), (printed, whole)
        at = found + len(piece)
    assert printed == whole or len(pieces) > 1 or whole.startswith(printed), (printed, whole)
    assert {k: v for k, v in logged.items() if k != "detail"} == {k: v for k, v in event.items() if k != "detail"}
    return logged


def ended(w: Watch) -> list[Event]:
    """Every event until the watcher exits by itself, then checks it exited 0 with a summary."""
    w.finish()
    assert w.code == 0
    assert w.events[-1]["kind"] == "summary"
    return w.events


# ---------------------------------------------------------------- 1. an array


ARRAY = """\
#SBATCH --job-name=jobmon-e2e-array
# each task waits for its go-N file; task 4 raises, then exits 3
echo "task ${SLURM_ARRAY_TASK_ID} of array ${SLURM_ARRAY_JOB_ID} (job id ${SLURM_JOB_ID})"
while [ ! -e "go-${SLURM_ARRAY_TASK_ID}" ]; do sleep 0.2; done
if [ "${SLURM_ARRAY_TASK_ID}" = 4 ]; then
    python3 -c 'raise RuntimeError("task 4 failed on purpose")'
    exit 3
fi
echo "task ${SLURM_ARRAY_TASK_ID} done"
"""


def test_an_array_is_followed_to_its_end_with_progress_and_its_failed_task(slurm: Slurm, home: Home, jobdir: Path,
                                                                           watch) -> None:
    array = submit(slurm, script(jobdir / "array.sh", ARRAY), "--array=0-5%2", "--chdir", str(jobdir))
    add(home, slurm, array, "--desc", "e2e: array")
    w = watch(*home.args())
    first = w.until(state_of(array))[-1]
    assert (first["from"], first["to"] in ("PENDING", "RUNNING"), first["detail"]) == (None, True, "0/6 done"), first

    # one task, and the raw id of the same task, registered in the same session
    def task1_raw() -> str | None:
        rows = sacct_rows(slurm, f"{array}_1", "JobIDRaw,State")
        return rows[0][0] if rows and rows[0][1] == "RUNNING" else None

    raw1 = wait_until(f"task {array}_1 running", task1_raw)
    assert raw1 != array
    add(home, slurm, f"{array}_1", "--desc", "e2e: task 1")
    add(home, slurm, raw1, "--desc", "e2e: task 1 by its raw id")
    each(w, state_of(f"{array}_1", "RUNNING"), state_of(raw1, "RUNNING"))

    # the tasks end one by one, each when the test says so: each end is one progress line
    said = ["1/6 done", "2/6 done", "3/6 done", "4/6 done", "5/6 done, 1 failed"]
    for task, progress in enumerate(said):
        (jobdir / f"go-{task}").touch()
        got = w.until(lambda e: e["id"] == array and (e["to"] == "PROGRESS" or e["terminal"]))[-1]
        assert (got["kind"], got["to"], got["detail"]) == ("event", "PROGRESS", progress), got
    (jobdir / "go-5").touch()
    events = ended(w)

    mine = of(events, array)
    assert [(e["from"], e["to"]) for e in of(mine, array, "state")] in (
        [(None, "PENDING"), ("PENDING", "RUNNING"), ("RUNNING", "FAILED")],
        [(None, "RUNNING"), ("RUNNING", "FAILED")])
    lines = [e for e in mine if e["kind"] == "event"]
    assert [e["detail"] for e in lines if e["to"] == "PROGRESS"] == said
    # no line per completed task; one for the failed task, said while the array went on
    state4, exit4, took4 = final_row(slurm, f"{array}_4")
    assert (state4, exit4) == ("FAILED", "3:0")
    log4 = jobdir / f"slurm-{array}_4.out"
    (task4,) = [full(home, e) for e in lines if e["to"] != "PROGRESS"]  # with the cause its own log gives
    assert (task4["to"], task4["terminal"], task4["outcome"]) == (f"{array}_4 FAILED", False, "failure")
    assert re.fullmatch(re.escape(f"exit 3:0, {took4}{slurm.limit_and_wait(f'{array}_4')}; RuntimeError: task 4 "
                                  f"failed on purpose (log: {log4})") + FIGURES, task4["detail"]), task4
    failed_at = next(i for i, e in enumerate(mine) if e["to"] == f"{array}_4 FAILED")
    assert mine[failed_at + 1]["detail"] == "5/6 done, 1 failed"  # the same check

    final = full(home, mine[-1])
    assert (final["kind"], final["to"], final["terminal"], final["outcome"]) == ("state", "FAILED", True, "failure")
    assert "Traceback (most recent call last):" in log4.read_text()
    assert re.fullmatch(re.escape(f"failed: {array}_4 FAILED (of 6); RuntimeError: task 4 failed on purpose "
                                  f"(log: {log4})") + FIGURES, final["detail"]), final

    # the task and its raw id: each its own job, ended as the task did
    state1, exit1, took1 = final_row(slurm, f"{array}_1")
    assert (state1, exit1) == ("COMPLETED", "0:0")
    for job in (f"{array}_1", raw1):
        assert states(events, job) == ["RUNNING", "COMPLETED"], of(events, job)
        end = full(home, of(events, job)[-1])
        assert (end["outcome"], end["terminal"]) == ("success", True)
        assert re.fullmatch(re.escape(f"exit 0:0, {took1}{slurm.limit_and_wait(job)}") + FIGURES, end["detail"]), end
    assert events[-1]["detail"] == "3 jobs: 2 completed, 1 failed"
    assert home.jobs() == []


# ---------------------------------------------------------------- 2. a heterogeneous job


HET = """\
#SBATCH --job-name=jobmon-e2e-het
#SBATCH --ntasks=1 --cpus-per-task=1
#SBATCH hetjob
#SBATCH --ntasks=1 --cpus-per-task=1
srun --het-group=1 sh -c 'echo "component 1 of $SLURM_JOB_ID"'
echo "component 0 done"
"""


def nodes(slurm: Slurm) -> list[str]:
    return slurm.ssh("sinfo -h -N -o %N").stdout.split()


def test_a_het_job_is_followed_by_its_components_and_one_component_is_accepted(slurm: Slurm, home: Home,
                                                                               jobdir: Path, watch) -> None:
    # Slurm's backfill scheduler, the only one that starts heterogeneous jobs, plans each component
    # on a node of its own (heterogeneous_jobs.html, "Limitations"): on a one-node cluster the job
    # waits for Resources for good. What is asserted here holds either way; scancel ends it.
    het = submit(slurm, script(jobdir / "het.sh", HET), "--chdir", str(jobdir))
    add(home, slurm, het, "--desc", "e2e: het job")
    add(home, slurm, f"{het}+1", "--desc", "e2e: its component 1")  # accepted
    wait_until("sacct's rows of both components",
               lambda: [r[0] for r in sacct_rows(slurm, het, "JobID")] == [f"{het}+0", f"{het}+1"])
    w = watch(*home.args())
    first, component = each(w, state_of(het), state_of(f"{het}+1"))
    assert (first["from"], first["to"], first["detail"]) == (None, "PENDING", "0/2 done"), first
    assert (component["from"], component["to"]) == (None, "PENDING"), component
    slurm.cancel(het)
    events = ended(w)
    final, end1 = full(home, of(events, het)[-1]), full(home, of(events, f"{het}+1")[-1])
    assert (final["to"], final["terminal"], final["outcome"]) == ("CANCELLED", True, "failure")
    assert final["detail"].startswith(f"failed: {het}+0 CANCELLED, {het}+1 CANCELLED (of 2)"), final
    assert (end1["to"], end1["terminal"]) == ("CANCELLED", True)
    assert states(events, het) == ["PENDING", "CANCELLED"]


def test_a_het_job_that_runs_is_completed_when_both_components_are(slurm: Slurm, home: Home, jobdir: Path,
                                                                   watch) -> None:
    if len(nodes(slurm)) < 2:
        pytest.skip("a heterogeneous job never starts on a one-node cluster: Slurm's backfill plans each "
                    "component on a node of its own (heterogeneous_jobs.html, Limitations)")
    het = submit(slurm, script(jobdir / "het.sh", HET), "--chdir", str(jobdir))
    add(home, slurm, het, "--desc", "e2e: het job")
    w = watch(*home.args())
    events = ended(w)
    assert states(events, het)[-1] == "COMPLETED"
    final = full(home, of(events, het)[-1])
    assert (final["outcome"], final["detail"]) == ("success", "all 2 done"), final
    assert all(r[1] == "COMPLETED" for r in sacct_rows(slurm, het, "JobID,State"))


# ---------------------------------------------------------------- 3. a requeue after a node failure


REQUEUE = """\
#SBATCH --job-name=jobmon-e2e-requeue
# each run waits for its own go-<restart count> file (at most 5 min: an orphaned first run ends)
run=${SLURM_RESTART_COUNT:-0}
echo "run $run started"
for _ in $(seq 1500); do [ -e "go-$run" ] && break; sleep 0.2; done
echo "run $run done"
"""
LIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")


def quiet_cluster(slurm: Slurm, timeout: float = 240) -> None:
    """Killing the node's slurmd fails every job on it: wait (bounded) until no other job is
    alive, this session's time-limit job included; skip if others keep the cluster busy."""
    def others() -> list[str]:
        out = slurm.ssh("squeue -h -o '%A|%T|%j|%u'").stdout.split()
        return [row for row in out if row.split("|")[1] in LIVE]

    deadline = time.monotonic() + timeout
    while (busy := others()) and time.monotonic() < deadline:
        time.sleep(1)
    if busy:
        pytest.skip(f"the cluster kept other live jobs for {timeout:.0f} s, which a node failure would hit: {busy}")


def once(home: Home) -> list[Event]:
    """``jobmon watch --once --json``: one check of every job now, then what is new (no summary)."""
    ran = jobmon("watch", "--once", "--json", *home.args(), timeout=120)
    assert ran.code == 0, ran.err
    return [e for e in ran.events() if e["kind"] != "summary"]


def test_a_job_requeued_after_a_node_failure_goes_on_until_its_rerun_completes(slurm: Slurm, home: Home,
                                                                               jobdir: Path, watch) -> None:
    # When the node is marked down the controller requeues the job at once (squeue: PENDING);
    # sacct -X shows the first run's NODE_FAIL until the controller records the new run, within
    # about 5 s. jobmon must check inside that moment, so the test has it check then: the watch
    # stops, and `jobmon watch --once` runs between two sacct calls that both say NODE_FAIL. A
    # moment too short for that is tried again with the next run (a few times at most).
    quiet_cluster(slurm)
    job = submit(slurm, script(jobdir / "requeue.sh", REQUEUE), "--requeue", "--chdir", str(jobdir))
    add(home, slurm, job, "--desc", "e2e: requeued")
    w = watch(*home.args())
    said = w.until(state_of(job, "RUNNING"))
    w.stop()
    node = slurm.ssh(f"squeue -h -j {job} -o %N").stdout.strip()
    moments: list[str] = []  # what SLURM said, moment by moment (kept next to the job's log)

    def moment() -> tuple[str, str]:
        row = slurm.sacct(job).get(job, ["?"])[0]
        queued = slurm.ssh(f"squeue -h -j {job} -o '%T|%r'", check=False).stdout.strip()
        moments.append(f"{time.strftime('%T')}\tsacct -X: {row}\tsqueue: {queued}")
        return row, queued

    def requeued() -> tuple[str, str] | None:
        row, queued = moment()
        return (row, queued) if queued.startswith("PENDING|") and row in ("NODE_FAIL", "PENDING") else None

    seen_in_the_moment = False
    try:
        for run in range(4):
            if run:  # the moment was missed: the next run, failed the same way
                slurm.up()
                slurm.ssh(f"scontrol update jobid={job} StartTime=now")  # no two minutes' wait for it
                wait_until("the rerun running", lambda: moment()[1].startswith("RUNNING|"))
                said += once(home)
            slurm.stop("slurmd")
            slurm.ssh(f"scontrol update nodename={node} state=down reason=jobmon-e2e-requeue")
            before = wait_until("the job requeued (squeue) and its run ended (sacct)", requeued, every=0.1)
            said += once(home)
            after = moment()
            if before[0] == after[0] == "NODE_FAIL" and after[1].startswith("PENDING|"):
                seen_in_the_moment = True
                break
        assert seen_in_the_moment, "\n".join(moments)
        assert [(j["id"], j["last_status"]) for j in home.jobs()] == [(job, "PENDING")]  # kept, waiting
    finally:
        (jobdir / "requeue-moments.txt").write_text("\n".join(moments) + "\n")
        slurm.up()  # slurmd again; up.sh resumes the node
    slurm.ssh(f"scontrol update jobid={job} StartTime=now")
    w = watch(*home.args())
    w.until(state_of(job, "RUNNING"))
    assert [(j["id"], j["last_status"]) for j in home.jobs()] == [(job, "RUNNING")]
    (jobdir / f"go-{run + 1}").touch()
    said += ended(w)

    mine = [(e["kind"], e["to"], e["terminal"]) for e in said if e["id"] == job]
    if mine[0][1] == "PENDING":  # seen before it started
        mine = mine[1:]
    again = [("state", "PENDING", False), ("state", "RUNNING", False)] * (run + 1)  # each failure, each rerun
    assert mine == [("state", "RUNNING", False), *again, ("state", "COMPLETED", True)], mine
    final = full(home, of(said, job)[-1])
    state, exit_code, took = final_row(slurm, job)
    assert state == "COMPLETED" and final["outcome"] == "success"
    assert re.fullmatch(re.escape(f"exit {exit_code}, {took}{slurm.limit_and_wait(job)}") + FIGURES,
                        final["detail"]), final
    assert f"run {run + 1} done" in (jobdir / f"slurm-{job}.out").read_text()
    # sacct -D: each run's record; every run but the last ended NODE_FAIL
    assert slurm.ssh(f"sacct -j {job} -X -D -n -P --format=State").stdout.split() == ["NODE_FAIL"] * (run + 1) + [
        "COMPLETED"]
    assert home.jobs() == [] and [r["last_status"] for r in home.history()] == ["COMPLETED"]


# ---------------------------------------------------------------- 5. the controller down


def refusals(w: Watch) -> int:
    """The watcher's warnings for checks the controller could not answer (squeue retries ~20 s)."""
    return w.stderr_path.read_text().count("Unable to contact slurm controller")


def test_with_the_controller_down_a_running_job_is_neither_lost_nor_ended(slurm: Slurm, home: Home, jobdir: Path,
                                                                          watch) -> None:
    go = jobdir / "go"
    job = slurm.sbatch(f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.2; done; echo released",
                       "--chdir", str(jobdir))
    add(home, slurm, job, "--desc", "e2e: controller down")
    w = watch(*home.args())
    w.until(state_of(job, "RUNNING"))
    slurm.wait_for(job, {"RUNNING"})  # the accounting has heard of the start too
    with slurm.down("slurmctld"):
        wait_until("a check with the controller down", lambda: refusals(w) >= 1)
        go.touch()  # the job ends while the controller cannot tell anybody
        wait_until("two more checks with the controller down", lambda: refusals(w) >= 3)
        assert [(j["id"], j["last_status"]) for j in home.jobs()] == [(job, "RUNNING")]
    events = ended(w)
    said = [(e["kind"], e["to"]) for e in events]
    assert said[said.index(("state", "RUNNING")):] == [("state", "RUNNING"), ("state", "COMPLETED"), ("summary", None)]
    assert said[0] in (("state", "PENDING"), ("state", "RUNNING"))  # PENDING if seen before it started
    final = full(home, events[-2])
    assert final["outcome"] == "success" and final["detail"].startswith("exit 0:0, "), final
    assert slurm.sacct(job)[job][0] == "COMPLETED"


def start_slurmdbd_alone(slurm: Slurm) -> None:
    """Start slurmdbd the way tests/e2e/cluster/up.sh does, and nothing else (up.sh would start
    the stopped controller too); bounded wait until sacct answers through it."""
    state = slurm.run_dir.parent
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    env["MYSQL_UNIX_PORT"] = str(state / "mysql-run" / "mysqld.sock")
    with open(state / "log" / "slurmdbd.out", "a") as out:
        subprocess.run(["/usr/sbin/slurmdbd"], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                       timeout=60, check=True)
    wait_until("slurmdbd answering", lambda: slurm.ssh("sacct -n -X -j 1", check=False).returncode == 0, timeout=60)


def test_with_the_controller_down_accounting_behind_does_not_move_a_running_job_back(slurm: Slurm, home: Home,
                                                                                     jobdir: Path, watch) -> None:
    # Accounting lags behind the controller (a busy slurmdbd: minutes). Made certain here: the
    # job starts while slurmdbd is down, so its start waits in the controller's queue of messages
    # to slurmdbd, and the controller stops before it could send it. sacct then says PENDING for
    # a job squeue said was running; without the controller that must not be taken for a change.
    go = jobdir / "go"
    job = slurm.sbatch(f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.2; done; echo released",
                       "--hold", "--chdir", str(jobdir))
    slurm.wait_for(job, {"PENDING"})  # its submission is in the accounting
    add(home, slurm, job, "--desc", "e2e: accounting behind")
    try:
        slurm.stop("slurmdbd")
        slurm.ssh(f"scontrol release {job}")
        wait_until("the job running", lambda: slurm.squeue(job).startswith("RUNNING|"))
        w = watch(*home.args())
        first = w.until(state_of(job))[-1]  # from squeue: sacct cannot answer
        assert (first["from"], first["to"]) == (None, "RUNNING"), first
        slurm.stop("slurmctld")
        start_slurmdbd_alone(slurm)
        assert slurm.sacct(job)[job][0] == "PENDING"  # the accounting never heard of the start
        before = refusals(w)
        wait_until("two checks with only the accounting up", lambda: refusals(w) >= before + 2)
        assert [(j["id"], j["last_status"]) for j in home.jobs()] == [(job, "RUNNING")]
    finally:
        slurm.up()
    go.touch()
    events = ended(w)
    assert [(e["kind"], e["to"]) for e in of(events, job)] == [("state", "RUNNING"), ("state", "COMPLETED")], (
        of(events, job))


# ---------------------------------------------------------------- 6. steps


# The script exits 0 once the controller holds its step's end (DerivedExitCode, which sacct then
# shows). A script that exits at once after a failed srun races SLURM's own accounting: sacct may
# first show the COMPLETED job with DerivedExitCode 0:0, and 5:0 only seconds later.
STEP = """\
#SBATCH --job-name=jobmon-e2e-step
srun sh -c '{step}'
echo "srun returned $?"
for _ in $(seq 300); do
    scontrol -d -o show job "$SLURM_JOB_ID" | grep -q 'DerivedExitCode={derived} ' && break
    sleep 0.2
done
exit 0
"""


def test_a_failed_or_killed_step_under_a_script_that_exits_0_is_said(slurm: Slurm, home: Home, jobdir: Path,
                                                                     watch) -> None:
    exit5_sh = STEP.format(step="echo step says hi; exit 5", derived="5:0")
    killed_sh = STEP.format(step="echo step about to SIGKILL itself; kill -9 $$", derived="0:9")
    exit5 = submit(slurm, script(jobdir / "exit5.sh", exit5_sh), "--chdir", str(jobdir))
    killed = submit(slurm, script(jobdir / "sigkill.sh", killed_sh), "--chdir", str(jobdir))
    add(home, slurm, exit5, "--desc", "e2e: step exits 5")
    add(home, slurm, killed, "--desc", "e2e: step SIGKILLed")
    events = ended(watch(*home.args()))

    # what SLURM says: the job COMPLETED (its script exited 0); the step did not
    steps = {r[0]: r[1:] for r in sacct_rows(slurm, f"{exit5},{killed}", "JobID,State,ExitCode", steps=True)}
    assert steps[f"{exit5}.0"] == ["FAILED", "5:0"]
    assert steps[f"{killed}.0"] == ["CANCELLED", "0:9"]  # SIGKILL: sacct says CANCELLED, signal 9
    fields = "JobID,State,ExitCode,DerivedExitCode,Elapsed"
    derived = {r[0]: r[1:] for r in sacct_rows(slurm, f"{exit5},{killed}", fields)}
    assert derived[exit5][:3] == ["COMPLETED", "0:0", "5:0"]
    assert derived[killed][:3] == ["COMPLETED", "0:0", "0:9"]

    for job, step in ((exit5, f"step {exit5}.0 FAILED exit 5"), (killed, f"step {killed}.0 CANCELLED signal 9")):
        final = full(home, of(events, job)[-1])
        assert (final["to"], final["terminal"], final["outcome"]) == ("COMPLETED", True, "success"), final
        took, code = derived[job][3], derived[job][2]
        assert re.fullmatch(re.escape(f"exit 0:0, {took}{slurm.limit_and_wait(job)}, derived exit {code}; {step}")
                            + f"(?:, {FIGURE})*", final["detail"]), final
    assert "derived exit 5:0" in full(home, of(events, exit5)[-1])["detail"]
    assert events[-1]["detail"] == "2 jobs: 2 completed"


# ---------------------------------------------------------------- 7. split logs


SPLIT = """\
for step in 100 200 300; do echo "epoch 1 step $step/900 loss=2.$step lr=3.0e-04 tok/s=51234"; done
echo "saving checkpoint to /tmp/ckpt/step-300"
python3 -c '
def read_shard(path):
    raise ValueError(f"bad shard header in {path}")
def load(paths):
    for p in paths:
        read_shard(p)
load(["/data/shard-0007.bin"])
'
exit 1
"""


def test_split_logs_the_cause_comes_from_the_error_file_and_both_are_named(slurm: Slurm, home: Home, jobdir: Path,
                                                                           watch) -> None:
    job = slurm.sbatch(SPLIT, "--job-name", "jobmon-e2e-split", "--output=%x-%j.out", "--error=%x-%j.err",
                       "--chdir", str(jobdir))
    add(home, slurm, job)
    events = ended(watch(*home.args()))
    out, err = jobdir / f"jobmon-e2e-split-{job}.out", jobdir / f"jobmon-e2e-split-{job}.err"
    assert "epoch 1 step 300/900" in out.read_text() and "Traceback" not in out.read_text()
    assert "Traceback (most recent call last):" in err.read_text()
    state, exit_code, took = final_row(slurm, job)
    assert (state, exit_code) == ("FAILED", "1:0")
    final = full(home, of(events, job)[-1])
    assert (final["to"], final["outcome"]) == ("FAILED", "failure")
    assert re.fullmatch(re.escape(f"exit 1:0, {took}{slurm.limit_and_wait(job)}; ValueError: bad shard header in "
                                  f"/data/shard-0007.bin (log: {out}, {err})") + FIGURES, final["detail"]), final


# ---------------------------------------------------------------- 8. the cause window


# The jobs the fixtures were captured from (tests/fixtures/slurm/shapes/oom_window): a CUDA OOM
# traceback then 400 lines of NCCL teardown, exit 1; a batch script that SIGKILLs itself.
OOM_WINDOW = Path(__file__).resolve().parents[1] / "fixtures" / "slurm" / "shapes" / "oom_window"


def test_a_cause_far_above_the_last_line_is_found_and_a_sigkill_is_named(slurm: Slurm, home: Home, jobdir: Path,
                                                                         watch) -> None:
    oom = submit(slurm, OOM_WINDOW / "oom.sh", "--job-name=jobmon-e2e-oom", "--output=%x-%j.out",
                 "--chdir", str(jobdir))
    kill = submit(slurm, OOM_WINDOW / "sigkill.sh", "--job-name=jobmon-e2e-sigkill", "--output=%x-%j.out",
                  "--chdir", str(jobdir))
    add(home, slurm, oom, "--desc", "e2e: CUDA OOM")
    add(home, slurm, kill, "--desc", "e2e: SIGKILL")
    events = ended(watch(*home.args()))

    oom_log = jobdir / f"jobmon-e2e-oom-{oom}.out"
    after = oom_log.read_text().split("torch.OutOfMemoryError", 1)[1]
    assert after.count("destroying process group") == 400  # the cause is 400 lines above the end
    state, exit_code, took = final_row(slurm, oom)
    final = full(home, of(events, oom)[-1])
    assert (final["to"], final["outcome"], state, exit_code) == ("FAILED", "failure", "FAILED", "1:0")
    assert final["detail"].startswith(f"exit 1:0, {took}{slurm.limit_and_wait(oom)}; torch.OutOfMemoryError: "
                                      "CUDA out of memory"), final
    assert re.search(re.escape(f" (log: {oom_log})") + FIGURES + "$", final["detail"]), final

    kill_log = jobdir / f"jobmon-e2e-sigkill-{kill}.out"
    assert kill_log.read_text() == "about to be SIGKILLed\n"
    state, exit_code, took = final_row(slurm, kill)
    assert exit_code == "0:9"
    final = full(home, of(events, kill)[-1])
    assert (final["to"], final["outcome"]) == (state, "failure")
    assert re.fullmatch(re.escape(f"exit 0:9, {took}{slurm.limit_and_wait(kill)}; killed by signal 9 (SIGKILL) "
                                  f"(log: {kill_log})") + FIGURES, final["detail"]), final


# ---------------------------------------------------------------- 9. log paths captured early


def test_the_log_path_kept_while_running_serves_after_the_controller_forgot_the_job(slurm: Slurm, home: Home,
                                                                                    jobdir: Path, watch) -> None:
    go = jobdir / "go"
    job = slurm.sbatch(f"echo loading; while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.2; done; "
                       "python3 -c 'raise RuntimeError(\"CUDA error: an illegal memory access was encountered\")'",
                       "--chdir", str(jobdir))
    add(home, slurm, job)  # no --file: only what jobmon kept can say where the log is
    log = jobdir / f"slurm-{job}.out"
    w = watch(*home.args())
    w.until(state_of(job, "RUNNING"))
    (entry,) = home.jobs()
    assert entry["jobmon"]["captured"]["stdout"] == str(log), entry
    w.stop()

    go.touch()
    slurm.wait_for(job, {"FAILED"})
    # MinJobAge=10, then the controller's purge: afterwards scontrol cannot name the log any more
    wait_until("the controller to forget the job",
               lambda: "Invalid job id" in slurm.ssh(f"scontrol show job {job}", check=False).stderr,
               timeout=240, every=2)
    ran = jobmon("watch", "--once", "--json", *home.args(), timeout=120)
    assert ran.code == 0, ran.err
    final = full(home, of(ran.events(), job)[-1])
    _, exit_code, took = final_row(slurm, job)
    assert (final["to"], final["outcome"]) == ("FAILED", "failure")
    assert re.fullmatch(re.escape(f"exit {exit_code}, {took}{slurm.limit_and_wait(job)}; RuntimeError: CUDA error: "
                                  f"an illegal memory access was encountered (log: {log})") + FIGURES,
                        final["detail"]), final


# ---------------------------------------------------------------- 10. a dependency never satisfied


def test_a_dependency_that_can_never_be_met_is_said_once_and_the_job_stays(slurm: Slurm, home: Home, jobdir: Path,
                                                                           watch) -> None:
    go = jobdir / "go"
    a = slurm.sbatch(f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.2; done; echo A fails; exit 1",
                     "--chdir", str(jobdir))
    b1 = slurm.sbatch("echo B1 runs only after A succeeded", f"--dependency=afterok:{a}", "--chdir", str(jobdir))
    b2 = slurm.sbatch("echo B2 runs only after A succeeded", f"--dependency=afterok:{a}", "--chdir", str(jobdir))
    wait_until(f"{b1} waiting for its dependency", lambda: squeue_reason(slurm, b1) == "Dependency")
    add(home, slurm, b1, "--desc", "e2e: B1, registered while A runs")
    w = watch("-vv", *home.args())
    seen1 = w.until(state_of(b1))[-1]
    assert (seen1["from"], seen1["to"], seen1["detail"]) == (None, "PENDING", "Dependency"), seen1

    go.touch()  # A fails: neither B can ever start
    wait_until(f"{b2} never satisfied", lambda: squeue_reason(slurm, b2) == "DependencyNeverSatisfied")
    add(home, slurm, b2, "--desc", "e2e: B2, registered after A failed")
    never = lambda job: lambda e: e["id"] == job and e["kind"] == "event" and e["to"] == "NEVER_STARTS"  # noqa: E731
    each(w, never(b1), state_of(b2), never(b2))
    more_checks(w, 3)  # the reason stays: nothing more is said
    assert sorted((j["id"], j["last_status"]) for j in home.jobs()) == sorted([(b1, "PENDING"), (b2, "PENDING")])
    slurm.cancel(b1, b2)
    events = ended(w)

    for job, first_detail in ((b1, "Dependency"), (b2, "DependencyNeverSatisfied")):
        said = [(e["kind"], e["to"]) for e in of(events, job)]
        assert said == [("state", "PENDING"), ("event", "NEVER_STARTS"), ("state", "CANCELLED")], of(events, job)
        pending, event, final = of(events, job)
        assert pending["detail"] == first_detail
        assert event["detail"].startswith("pending with reason DependencyNeverSatisfied"), event
        assert (event["terminal"], final["terminal"], final["outcome"]) == (False, True, "failure")
    assert slurm.sacct(b1)[b1][0].startswith("CANCELLED")
