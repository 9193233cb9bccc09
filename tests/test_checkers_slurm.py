"""checkers.d/slurm.yaml end to end against a fake SLURM behind a fake ssh."""
from __future__ import annotations

from pathlib import Path

from jobmon import config, rules
from jobmon.registry import Job
from conftest import Cluster, FIXTURES, Home, add, events, jobmon, make_watcher, summary








def test_real_sacct_lines_through_the_packaged_type() -> None:
    slurm = config.load(env={}).types["slurm"]
    text = (FIXTURES / "slurm" / "sacct_22.05.txt").read_text()
    rows = rules.parse_batch(text, slurm, ["1", "2", "3", "4"])
    assert [(i, r.state, slurm.category(r.state)) for i, r in rows.items()] == [
        ("1", "COMPLETED", "success"), ("2", "FAILED", "failure"), ("3", "CANCELLED", "failure"),
        ("4", "PENDING", "pending")]


def test_squeue_answers_for_a_job_sacct_has_no_row_for_yet(home: Home, cluster: Cluster) -> None:
    cluster.queue("41", "PENDING")
    cluster.set("42", "RUNNING")
    add(home, Job("slurm", "41", host="c"), Job("slurm", "42", host="c"), Job("slurm", "43", host="c"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [(e["id"], e["to"]) for e in events(out)] == [("41", "PENDING"), ("42", "RUNNING")]
    # one sacct for all three, one squeue for the two sacct did not know
    assert cluster.check_calls() == ["sacct -j 41,42,43 -X -n -P --format=JobID,State,ExitCode,Elapsed"]
    assert cluster.fakebin.calls("squeue") == ["squeue -h -j 41,43 -o %i|%T"]
    assert {j["id"]: j.get("jobmon", {}).get("missing_since") is not None for j in home.jobs()} == {
        "41": False, "42": False, "43": True}


def test_squeue_failing_for_unknown_ids_is_still_not_yet(home: Home, cluster: Cluster) -> None:
    add(home, Job("slurm", "44", host="c"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert events(out) == []
    (job,) = home.jobs()
    assert job["last_status"] == "" and "errors" not in job.get("jobmon", {})


def test_completion_carries_state_exit_elapsed_and_maxrss(home: Home, cluster: Cluster) -> None:
    cluster.set("45", "COMPLETED", "0:0", "01:02:03")
    cluster.output("45", "done\n", rss="2.5G")
    add(home, Job("slurm", "45", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert (event["to"], event["outcome"], event["detail"]) == ("COMPLETED", "success", "exit 0:0, 01:02:03; MaxRSS 2.5G")
    assert home.history()[0]["metrics"] == ["MaxRSS 2.5G"]
    assert summary(home).text() == "1 job: 1 completed"  # MaxRSS is not a score


def test_failure_tails_the_output_file_scontrol_names_and_diagnoses_it(home: Home, cluster: Cluster) -> None:
    cluster.set("46", "FAILED", "1:0", "00:03:00")
    out_file = cluster.output("46", "step 1\nTraceback (most recent call last):\n  File \"t.py\", line 3\n"
                                    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB\n"
                                    "srun: error: node7: task 0: Exited with exit code 1\n")
    add(home, Job("slurm", "46", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert event["detail"] == (f"exit 1:0, 00:03:00; torch.OutOfMemoryError: CUDA out of memory. "
                               f"Tried to allocate 20.00 GiB (log: {out_file})")
    assert cluster.fakebin.calls("scontrol") == ["scontrol show job 46"]


def test_failure_falls_back_to_the_registered_file(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    # the controller forgot the job (MinJobAge): the path given at registration is read instead
    log = tmp_path / "job.out"
    log.write_text("slurmstepd: error: *** JOB 47 ON node3 CANCELLED AT 2026-11-29T03:52:25 DUE TO TIME LIMIT ***\n")
    cluster.set("47", "TIMEOUT", "0:0", "00:01:00")
    add(home, Job("slurm", "47", host="c", last_status="RUNNING", fields={"file": str(log)}))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert event["detail"] == (f"exit 0:0, 00:01:00; JOB 47 ON node3 CANCELLED AT 2026-11-29T03:52:25 "
                               f"DUE TO TIME LIMIT (log: {log})")


def test_suspended_and_requeued_are_not_terminal(home: Home, cluster: Cluster) -> None:
    cluster.set("48", "SUSPENDED")
    cluster.set("49", "REQUEUED")
    add(home, Job("slurm", "48", host="c"), Job("slurm", "49", host="c"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [(e["to"], e["terminal"]) for e in events(out)] == [("SUSPENDED", False), ("REQUEUED", False)]
    assert len(home.jobs()) == 2


def test_discover_lists_the_registry_then_squeue_and_adds_the_chosen(home: Home, cluster: Cluster) -> None:
    cluster.queue("50", "RUNNING", "train-llama")
    cluster.queue("51", "PENDING", "eval")
    assert jobmon("add", "--type", "slurm", "--id", "50", "--host", "c", *home.args()).code == 0
    ran = jobmon("discover", "--type", "slurm", "--user", "alice", *home.args())
    assert ran.code == 0, ran.err
    assert [ln.split() for ln in ran.lines()] == [
        ["registered", "slurm", "50@c", "NEW"], ["new", "slurm", "51@c", "PENDING", '"eval"']]
    assert cluster.fakebin.calls("squeue") == ["squeue -h -u alice -o %i|%T|%j"]
    added = jobmon("discover", "--type", "slurm", "--user", "alice", "--add", "51", *home.args())
    assert added.code == 0
    assert [(j["id"], j["description"]) for j in home.jobs()] == [("50", ""), ("51", "eval")]
    nothing = jobmon("discover", "--type", "slurm", "--user", "alice", "--add", "99", *home.args())
    assert (nothing.code, nothing.err.splitlines()[-1]) == (1, "jobmon: --add: no candidate 99 (see the list above)")


def test_with_accounting_down_squeue_still_answers(home: Home, cluster: Cluster, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FAKE_SACCT_FAIL", "1")  # slurmdbd down: sacct errs, the controller still answers
    cluster.queue("52", "RUNNING")
    add(home, Job("slurm", "52", host="c", last_status="PENDING"), Job("slurm", "53", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [(e["id"], e["from"], e["to"]) for e in events(out)] == [("52", "PENDING", "RUNNING")]
    jobs = {j["id"]: j for j in home.jobs()}
    assert "errors" not in jobs["52"].get("jobmon", {})
    assert jobs["53"]["last_status"] == "RUNNING" and jobs["53"]["jobmon"]["errors"] == 1  # squeue has no row: unknown


def test_an_unreachable_host_is_not_asked_twice(home: Home, cluster: Cluster, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FAKE_SSH_EXIT", "255")
    add(home, Job("slurm", "54", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert len(cluster.ssh_calls()) == 1  # no squeue fallback through a connection that failed


def test_squeue_never_gives_the_verdict(home: Home, cluster: Cluster) -> None:
    # sacct lags: squeue already says COMPLETED. The verdict waits for sacct and its exit code.
    cluster.queue("55", "COMPLETED")
    add(home, Job("slurm", "55", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert events(out) == []
    cluster.set("55", "COMPLETED", "0:0", "00:00:07")
    w.cycle(everything=True)
    assert [(e["to"], e["detail"]) for e in events(out)] == [("COMPLETED", "exit 0:0, 00:00:07; MaxRSS 0")]


def test_an_empty_log_is_named_once_not_given_as_the_cause(home: Home, cluster: Cluster) -> None:
    cluster.set("46", "FAILED", "3:0", "00:00:08")
    out_file = cluster.output("46", "")
    add(home, Job("slurm", "46", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert event["detail"] == f"exit 3:0, 00:00:08; log: {out_file}"
