"""checkers.d/slurm.yaml end to end against a fake SLURM behind a fake ssh."""
from __future__ import annotations

from pathlib import Path

from jobmon import config, rules
from jobmon.registry import Job
from conftest import Cluster, FIXTURES, Home, add, events, jobmon, make_watcher, summary








def test_real_sacct_lines_through_the_packaged_type() -> None:
    slurm = config.load(env={}).types["slurm"]
    text = (FIXTURES / "slurm" / "sacct_22.05_7fields.txt").read_text()
    rows = rules.parse_batch(text, slurm, ["501", "502", "503", "504"])
    assert [(i, r.state, slurm.category(r.state)) for i, r in rows.items()] == [
        ("501", "COMPLETED", "success"), ("502", "FAILED", "failure"), ("503", "CANCELLED", "failure"),
        ("504", "PENDING", "pending")]


def test_squeue_answers_for_a_job_sacct_has_no_row_for_yet(home: Home, cluster: Cluster) -> None:
    cluster.queue("41", "PENDING")
    cluster.set("42", "RUNNING")
    add(home, Job("slurm", "41", host="c"), Job("slurm", "42", host="c"), Job("slurm", "43", host="c"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [(e["id"], e["to"]) for e in events(out)] == [("41", "PENDING"), ("42", "RUNNING")]
    # one ssh call: one sacct and one squeue for all three, scontrol for the log paths of each
    assert len(cluster.ssh_calls()) == 1
    assert cluster.check_calls() == [
        "sacct -j 41,42,43 -X -n -P --format=JobID,JobIDRaw,State,ExitCode,DerivedExitCode,Elapsed,Submit"]
    assert cluster.fakebin.calls("squeue") == ["squeue -h -j 41,42,43 -o squeue|%i|%A|%T|%r|%N"]
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
    # asked once, by the check that first saw the job; on_failure reads what the registry kept
    assert cluster.fakebin.calls("scontrol") == ["scontrol -o show job"]


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
    assert [(e["to"], e["detail"]) for e in events(out)] == [("COMPLETED", "exit 0:0, 00:00:07")]


def test_an_empty_log_is_named_once_not_given_as_the_cause(home: Home, cluster: Cluster) -> None:
    cluster.set("46", "FAILED", "3:0", "00:00:08")
    out_file = cluster.output("46", "")
    add(home, Job("slurm", "46", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert event["detail"] == f"exit 3:0, 00:00:08; log: {out_file}"


# ---------------------------------------------------------------- job shapes, as the real cluster printed them
# (tests/fixtures/slurm/shapes/*/README.md says how each was produced)


def test_an_array_follows_all_its_tasks_with_progress_and_names_the_failed_one(home: Home, cluster: Cluster) -> None:
    add(home, Job("slurm", "505", host="c", submitted="2026-12-01 18:39"))
    w, out = make_watcher(home)
    cluster.replay("505", "array", "meta")  # 505_0 and 505_1 run, 505_[2-5%2] waits
    w.cycle(everything=True)
    cluster.replay("505", "array", "mid")  # 0 and 1 done, 2 and 3 run
    w.cycle(everything=True)
    cluster.replay("505", "array", "end")  # 505_4 FAILED 3:0, the rest COMPLETED
    real = "/tmp/jobmon-shapes/array"  # where the real tasks wrote: here, the fake cluster's folder
    (cluster.dir / "505.scontrol").write_text((cluster.dir / "505.scontrol").read_text().replace(real, str(cluster.dir)))
    shape = FIXTURES / "slurm" / "shapes" / "array"
    (cluster.dir / "slurm-505_4.out").write_text((shape / "end.task4-output.txt").read_text())
    w.cycle(everything=True)
    said = [(e["kind"], e["to"], e["detail"]) for e in events(out)]
    assert said[:2] == [("state", "RUNNING", "0/6 done"), ("event", "PROGRESS", "2/6 done")]
    assert said[2][:2] == ("state", "FAILED")
    assert said[2][2] == f"failed: 505_4 FAILED (of 6); task 4: failing on purpose (log: {cluster.dir}/slurm-505_4.out)"
    assert len(said) == 3  # no line per completed task
    assert home.history()[0]["outcome"] == "failure"


def test_a_task_failing_before_the_end_is_a_line_of_its_own(home: Home, cluster: Cluster) -> None:
    add(home, Job("slurm", "454", host="c", last_status="RUNNING"))
    (cluster.dir / "454.rows").write_text(
        "454_0|456|COMPLETED|0:0|0:0|00:00:15|2026-12-01T18:39:42\n"
        "454_1|457|FAILED|3:0|0:0|00:00:15|2026-12-01T18:39:42\n"
        "454_[2-5%2]|454|PENDING|0:0|0:0|00:00:00|2026-12-01T18:39:42\n")
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [(e["kind"], e["to"], e["detail"]) for e in events(out)] == [
        ("event", "454_1 FAILED", "exit 3:0, 00:00:15; no output file found"),  # its own log is looked for
        ("event", "PROGRESS", "2/6 done, 1 failed")]
    assert home.jobs()[0]["last_status"] == "RUNNING"


def test_an_array_whose_pending_record_vanished_is_not_ended_yet(home: Home, cluster: Cluster) -> None:
    add(home, Job("slurm", "454", host="c"))
    rows = cluster.dir / "454.rows"
    rows.write_text("454_0|456|COMPLETED|0:0|0:0|00:00:15|2026-12-01T18:39:42\n"
                    "454_[1-3]|454|PENDING|0:0|0:0|00:00:00|2026-12-01T18:39:42\n")
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [e["to"] for e in events(out) if e["kind"] == "state"] == ["PENDING"]  # what its rows say as one
    # slurmdbd dropped the pending record before writing the tasks' rows: 454_2 and 454_3 are
    # in no row, so the array has not ended, though every row it has is an end
    rows.write_text("454_0|456|COMPLETED|0:0|0:0|00:00:15|2026-12-01T18:39:42\n"
                    "454_1|457|COMPLETED|0:0|0:0|00:00:15|2026-12-01T18:39:42\n")
    w.cycle(everything=True)
    assert [e for e in events(out) if e["terminal"]] == [] and home.jobs()[0]["last_status"] == "PENDING"
    rows.write_text("".join(f"454_{t}|{456 + t}|COMPLETED|0:0|0:0|00:00:15|2026-12-01T18:39:42\n" for t in range(4)))
    w.cycle(everything=True)
    (end,) = [e for e in events(out) if e["terminal"]]
    assert (end["to"], end["outcome"]) == ("COMPLETED", "success")


def test_every_task_that_failed_as_the_array_ended_has_its_own_cause(home: Home, cluster: Cluster) -> None:
    add(home, Job("slurm", "454", host="c", last_status="RUNNING"))
    (cluster.dir / "454.rows").write_text(
        "454_0|456|COMPLETED|0:0|0:0|00:00:15|2026-12-01T18:39:42\n"
        "454_1|457|FAILED|3:0|0:0|00:00:15|2026-12-01T18:39:42\n"
        "454_2|458|FAILED|1:0|0:0|00:00:15|2026-12-01T18:39:42\n")
    cluster.output("454_1", "RuntimeError: task 1: shard 3 of 8 is missing\n")
    cluster.output("454_2", "ValueError: task 2: tokenizer has 32000 tokens, the model 32064\n")
    w, out = make_watcher(home)
    w.cycle(everything=True)
    got = [(e["kind"], e["to"], e["terminal"]) for e in events(out)]
    assert got == [("event", "454_2 FAILED", False), ("state", "FAILED", True)]
    lines = [e for e in home.logged()]
    assert "ValueError: task 2: tokenizer has 32000 tokens, the model 32064" in lines[0]["detail"]
    assert "slurm-454_2.out" in lines[0]["detail"]
    assert lines[1]["detail"].startswith("failed: 454_1 FAILED, 454_2 FAILED (of 3)")
    assert "RuntimeError: task 1: shard 3 of 8 is missing" in lines[1]["detail"]


def test_one_task_and_a_raw_task_id_each_follow_the_task_they_name(home: Home, cluster: Cluster) -> None:
    rows = (FIXTURES / "slurm" / "shapes" / "array" / "end.sacct.txt").read_text()
    slurm = config.load(env={}).types["slurm"]
    found = rules.parse_batch(rows, slurm, ["505_4", "509", "505"])
    assert {i: (r.state, r.groups["id"]) for i, r in found.items() if i != "505"} == {
        "505_4": ("FAILED", "505_4"), "509": ("COMPLETED", "505_1")}
    assert (found["505"].state, found["505"].groups["parts_failed"]) == ("FAILED", "505_4 FAILED")


def test_a_task_still_in_the_pending_record_is_pending_not_lost(home: Home, cluster: Cluster) -> None:
    cluster.replay("505_5", "array", "mid")  # sacct and squeue -j 505_5 both say 505_[4-5%2]
    add(home, Job("slurm", "505_5", host="c"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [(e["to"], e["detail"]) for e in events(out)] == [("PENDING", "JobArrayTaskLimit")]


def test_a_het_job_follows_its_components_and_one_component_is_accepted(home: Home, cluster: Cluster) -> None:
    cluster.replay("470", "het", "held")
    add(home, Job("slurm", "470", host="c"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert (event["to"], event["detail"]) == ("PENDING", "0/2 done")
    ran = jobmon("add", "--type", "slurm", "--id", "470+1", "--host", "c", *home.args())
    assert ran.code == 0, ran.err


def test_a_node_fail_row_of_a_requeued_job_is_not_its_end(home: Home, cluster: Cluster) -> None:
    # sacct -X: the first run's NODE_FAIL; squeue: requeued, waiting again (the real moment)
    cluster.replay("742", "requeue_node_down", "node_fail")
    add(home, Job("slurm", "742", host="c", last_status="RUNNING", submitted="2026-12-01 19:36"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [(e["from"], e["to"], e["terminal"], e["detail"]) for e in events(out)] == [
        ("RUNNING", "PENDING", False, "BeginTime")]
    cluster.replay("742", "requeue_node_down", "rerunning")  # a new record, with a new Submit time
    w.cycle(everything=True)
    cluster.replay("742", "requeue_node_down", "end")
    w.cycle(everything=True)
    assert [(e["to"], e["terminal"]) for e in events(out)] == [("RUNNING", False), ("COMPLETED", True)]


def test_of_two_jobs_with_one_id_the_one_registered_wins(home: Home, cluster: Cluster) -> None:
    # job ids restarted (the controller's state was reset); accounting keeps the old 61
    (cluster.dir / "61.rows").write_text("61|61|FAILED|1:0|0:0|00:00:03|2026-11-20T10:00:00\n"
                                         "61|61|COMPLETED|0:0|0:0|00:00:09|2026-12-01T18:50:02\n")
    add(home, Job("slurm", "61", host="c", last_status="RUNNING", submitted="2026-12-01 18:50"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [(e["to"], e["outcome"]) for e in events(out)] == [("COMPLETED", "success")]


def test_squeue_unable_to_reach_the_controller_is_a_failed_check_not_unknown_id(
        home: Home, cluster: Cluster, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FAKE_SQUEUE_DOWN", "1")
    cluster.set("62", "COMPLETED", "0:0", "00:00:05")
    add(home, Job("slurm", "62", host="c", last_status="RUNNING"), Job("slurm", "63", host="c"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert events(out) == []  # an end the controller cannot confirm waits; an unseen job is not "not yet"
    jobs = {j["id"]: j["jobmon"] for j in home.jobs()}
    assert jobs["62"]["errors"] == 1 and "Unable to contact slurm controller" in jobs["62"]["last_error"]
    assert jobs["63"]["errors"] == 1 and "missing_since" not in jobs["63"]
    monkeypatch.delenv("FAKE_SQUEUE_DOWN")
    w.cycle(everything=True)
    assert [(e["id"], e["to"]) for e in events(out)] == [("62", "COMPLETED")]


def test_a_failed_step_under_a_script_that_exits_0_is_said(home: Home, cluster: Cluster) -> None:
    (cluster.dir / "453.steps").write_text("453|453|COMPLETED|0:0|\n453.batch|453.batch|COMPLETED|0:0|\n"
                                           "453.0|453.0|FAILED|5:0|\n")
    (cluster.dir / "455.rows").write_text("455|455|COMPLETED|0:0|0:9|00:00:08|2026-12-01T18:39:42\n")
    (cluster.dir / "453.rows").write_text("453|453|COMPLETED|0:0|5:0|00:00:08|2026-12-01T18:39:41\n")
    (cluster.dir / "455.steps").write_text("455|455|COMPLETED|0:0|\n455.batch|455.batch|COMPLETED|0:0|\n"
                                           "455.0|455.0|CANCELLED|0:9|\n")
    add(home, Job("slurm", "453", host="c", last_status="RUNNING"), Job("slurm", "455", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert sorted((e["id"], e["to"], e["detail"]) for e in events(out)) == [
        ("453", "COMPLETED", "exit 0:0, 00:00:08, derived exit 5:0; step 453.0 FAILED exit 5"),
        ("455", "COMPLETED", "exit 0:0, 00:00:08, derived exit 0:9; step 455.0 CANCELLED signal 9")]
    # both ends, one round trip: one sacct for the steps of both
    assert [c for c in cluster.sacct_calls() if " -X " not in c] == [
        "sacct -j 453,455 -n -P --format=JobID,JobIDRaw,State,ExitCode,MaxRSS,Submit,Start,ElapsedRaw,TimelimitRaw,"
        "TotalCPU,AllocCPUS,ReqTRES,AllocTRES"]


def test_the_error_file_is_read_and_its_cause_wins(home: Home, cluster: Cluster) -> None:
    shape = FIXTURES / "slurm" / "shapes" / "split"
    out_file = cluster.output("416", (shape / "end.stdout-file.txt").read_text())
    err_file = cluster.dir / "split-416.err"
    err_file.write_text((shape / "end.stderr-file.txt").read_text())
    (cluster.dir / "416.err").write_text(str(err_file))
    cluster.set("416", "FAILED", "1:0", "00:00:10")
    add(home, Job("slurm", "416", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert event["to"] == "FAILED"
    assert home.history()[0]["detail"] == (f"exit 1:0, 00:00:10; ValueError: bad shard header b'\\x00\\x00\\x00\\x00' in "
                               f"/data/shard-0007.bin (log: {out_file}, {err_file})")


def test_a_cuda_oom_far_above_the_last_line_is_the_cause_and_a_sigkill_is_named(home: Home, cluster: Cluster) -> None:
    shape = FIXTURES / "slurm" / "shapes" / "oom_window"
    cluster.output("418", (shape / "end.oom-log-file.txt").read_text())
    cluster.output("420", (shape / "end.sigkill-log-file.txt").read_text())
    cluster.set("418", "FAILED", "1:0", "00:00:01")
    cluster.set("420", "FAILED", "0:9", "00:00:01")
    add(home, Job("slurm", "418", host="c", last_status="RUNNING"), Job("slurm", "420", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    causes = {e["id"]: e["detail"].split("; ", 1)[1].split(" (log: ")[0] for e in events(out)}
    assert causes["418"].startswith("torch.OutOfMemoryError: CUDA out of memory.")
    assert causes["420"] == "killed by signal 9 (SIGKILL)"


def test_the_log_paths_kept_when_first_seen_serve_after_the_controller_forgot(home: Home, cluster: Cluster) -> None:
    log = cluster.output("64", "loading\n")
    cluster.set("64", "RUNNING")
    add(home, Job("slurm", "64", host="c"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert home.jobs()[0]["jobmon"]["captured"]["stdout"] == str(log)
    log.write_text("loading\nRuntimeError: CUDA error: an illegal memory access was encountered\n")
    (cluster.dir / "64.out").unlink()  # MinJobAge passed: scontrol no longer knows the job
    cluster.set("64", "FAILED", "1:0", "00:05:00")
    w.cycle(everything=True)
    assert events(out)[-1]["detail"] == (f"exit 1:0, 00:05:00; RuntimeError: CUDA error: an illegal memory access "
                                         f"was encountered (log: {log})")
    assert cluster.fakebin.calls("scontrol") == ["scontrol -o show job"]  # asked once, when first seen


def test_a_dependency_that_can_never_be_satisfied_is_said_once(home: Home, cluster: Cluster) -> None:
    cluster.replay("421", "dependency", "never_satisfied")
    add(home, Job("slurm", "421", host="c"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    w.cycle(everything=True)
    said = [(e["kind"], e["to"], e["detail"]) for e in events(out)]
    assert said[0] == ("state", "PENDING", "DependencyNeverSatisfied")
    assert said[1][:2] == ("event", "NEVER_STARTS") and said[1][2].startswith("pending with reason DependencyNeverSatisfied")
    assert len(said) == 2 and home.jobs()[0]["last_status"] == "PENDING"


def test_a_job_the_controller_still_completes_ends_as_sacct_says(home: Home, cluster: Cluster) -> None:
    cluster.set("65", "COMPLETED", "0:0", "00:00:09")
    cluster.queue("65", "COMPLETING")  # the epilog still runs: the job itself has ended
    add(home, Job("slurm", "65", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [(e["from"], e["to"]) for e in events(out)] == [("RUNNING", "COMPLETED")]


# ---------------------------------------------------------------- stalls: the progress probe

FAKE_DATE = """#!/usr/bin/env bash
# the cluster's clock: $FAKE_SLURM/clock (epoch seconds), as a test sets it
cat "$FAKE_SLURM/clock"
"""


class ClusterClock:
    """The fake cluster's own clock, which a test moves on: `date +%s` there prints it."""

    def __init__(self, cluster: Cluster, start: int) -> None:
        self.file = cluster.dir / "clock"
        self.now = start
        cluster.fakebin.add("date", FAKE_DATE)
        self.file.write_text(f"{start}\n")

    def advance(self, seconds: int) -> None:
        self.now += seconds
        self.file.write_text(f"{self.now}\n")


def said(out) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(e["kind"], e["to"], e["detail"]) for e in events(out)]


def test_a_running_job_whose_log_stops_is_stalled_once_then_resumed_then_completes(home: Home, cluster: Cluster) -> None:
    import time

    clock = ClusterClock(cluster, int(time.time()))
    cluster.set("70", "RUNNING")
    log = cluster.output("70", "epoch 1\n")
    add(home, Job("slurm", "70", host="c"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert said(out) == [("state", "RUNNING", "")]
    for _ in range(3):  # it writes: never stalled, however long it runs
        clock.advance(1000)
        with log.open("a") as f:
            f.write("epoch n\n")
        w.cycle(everything=True)
    assert said(out) == []
    with log.open("a") as f:
        f.write("NCCL WARN Call to ibv_reg_mr failed\n\n   \n")
    clock.advance(60)
    w.cycle(everything=True)  # its last write
    for _ in range(2):  # then nothing for 2000 s on the cluster's clock
        clock.advance(1000)
        w.cycle(everything=True)
    assert said(out) == [("event", "STALLED", "no progress for 0:33:20; last: NCCL WARN Call to ibv_reg_mr failed")]
    clock.advance(1000)
    w.cycle(everything=True)
    assert said(out) == []  # said once
    with log.open("a") as f:
        f.write("epoch 9\n")
    clock.advance(30)
    w.cycle(everything=True)
    assert said(out) == [("event", "RESUMED", "moving again after 0:50:30 without progress")]
    cluster.set("70", "COMPLETED", "0:0", "02:00:00")
    clock.advance(30)
    w.cycle(everything=True)
    assert [(kind, to) for kind, to, _ in said(out)] == [("state", "COMPLETED")]
    # the probe rode in the state check: one ssh call per poll, no more
    assert len(cluster.ssh_calls()) == 10 + 1  # ten polls, and on_complete's one call


def test_a_stale_mtime_here_while_the_cluster_sees_the_log_grow_is_no_stall(home: Home, cluster: Cluster) -> None:
    import os
    import time

    clock = ClusterClock(cluster, int(time.time()))
    cluster.set("71", "RUNNING")
    log = cluster.output("71", "step 0\n")
    stale = clock.now - 7200  # what a stale NFS view shows: written two hours ago
    add(home, Job("slurm", "71", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    for step in range(1, 6):
        with log.open("a") as f:
            f.write(f"step {step}\n")
        os.utime(log, (stale, stale))
        clock.advance(1000)
        w.cycle(everything=True)
    assert said(out) == []  # its size grew at every look: alive, whatever its mtime says
    (job,) = home.jobs()
    assert job["jobmon"]["progress"]["since"] == clock.now  # dated by the look, not by the stale mtime


def test_a_log_already_quiet_when_first_seen_is_stalled_at_the_second_look_by_its_mtime(home: Home, cluster: Cluster) -> None:
    import os
    import time

    clock = ClusterClock(cluster, int(time.time()))
    cluster.set("72", "RUNNING")
    log = cluster.output("72", "waiting for rank 3\n")
    os.utime(log, (clock.now - 3600, clock.now - 3600))  # on the cluster: untouched for an hour
    add(home, Job("slurm", "72", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    for _ in range(2):  # the first check learns its log's path, the second looks at the log once
        w.cycle(everything=True)
        clock.advance(30)
    assert said(out) == []  # one look proves nothing
    w.cycle(everything=True)
    assert said(out) == [("event", "STALLED", "no progress for 1:01:00; last: waiting for rank 3")]


def test_pending_jobs_and_a_type_without_progress_are_not_watched_for_stalls(home: Home, cluster: Cluster) -> None:
    import time

    clock = ClusterClock(cluster, int(time.time()))
    cluster.set("73", "PENDING")
    cluster.output("73", "")
    add(home, Job("slurm", "73", host="c", last_status="PENDING"))
    w, out = make_watcher(home)
    for _ in range(3):
        clock.advance(1000)
        w.cycle(everything=True)
    assert said(out) == []
    assert not any(c.startswith("ssh ") and " stat " in c for c in cluster.ssh_calls())  # a pending job's logs are not looked at


def test_two_hours_suspended_are_no_stall_once_it_runs_again(home: Home, cluster: Cluster) -> None:
    import os
    import time

    clock = ClusterClock(cluster, int(time.time()))
    cluster.set("74", "RUNNING")
    log = cluster.output("74", "epoch 1\n")
    os.utime(log, (clock.now - 10, clock.now - 10))
    add(home, Job("slurm", "74", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    for _ in range(2):  # the first check learns its log's path, the second looks at the log
        w.cycle(everything=True)
        clock.advance(30)
    cluster.set("74", "SUSPENDED")
    w.cycle(everything=True)
    clock.advance(7200)
    w.cycle(everything=True)
    cluster.set("74", "RUNNING")
    for wait in (30, 30, 30, 1000):  # resumed: its log, untouched for two hours, is looked at again
        clock.advance(wait)
        w.cycle(everything=True)
    assert [(kind, to) for kind, to, _ in said(out)] == [("state", "SUSPENDED"), ("state", "RUNNING")]
    clock.advance(800)  # its clock started at the first look after it resumed
    w.cycle(everything=True)
    assert said(out) == [("event", "STALLED", "no progress for 0:30:30; last: epoch 1")]


# ---------------------------------------------------------------- efficiency at the end (issue 13)

EFFICIENCY = FIXTURES / "slurm" / "efficiency"  # real sacct outputs: see its capture.sh


def ended(cluster: Cluster, job_id: str, rows: str = "", steps: str = "") -> None:
    """The fake accounting answers for ``job_id`` with what the real cluster said of it (or with
    ``rows`` and ``steps``, in the same shapes)."""
    for suffix, given, name in ((".rows", rows, "end.sacct.txt"), (".steps", steps, "end.steps.txt")):
        text = given or (EFFICIENCY / name).read_text()
        lines = [ln for ln in text.splitlines(keepends=True) if ln.split("|")[0].split(".")[0] == job_id]
        (cluster.dir / f"{job_id}{suffix}").write_text("".join(lines))


def test_completed_jobs_say_their_limit_wait_cpu_and_memory_from_the_one_end_call(home: Home, cluster: Cluster) -> None:
    ended(cluster, "1871")  # 2 CPUs, one spinning 31 s over 40, 136M held of 300M asked
    ended(cluster, "1869")  # 5 s of CPU over 10 s on 2 CPUs; too short for JobAcctGather to see its memory
    add(home, Job("slurm", "1871", host="c", last_status="RUNNING"), Job("slurm", "1869", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert sorted((e["id"], e["to"], e["detail"]) for e in events(out)) == [
        ("1869", "COMPLETED", "exit 0:0, 00:00:10 of 00:05:00, waited 00:00:00; CPU 27%"),
        ("1871", "COMPLETED", "exit 0:0, 00:00:40 of 00:10:00, waited 00:00:00; CPU 39%, mem 45% of 300M")]
    records = {r["id"]: r for r in home.history()}
    assert records["1871"]["measured"] == {"wait_s": 0.0, "elapsed_s": 40, "limit_s": 600, "cpu_pct": 39.1,
                                           "max_rss": 139192 * 1024.0, "mem_req": 300 * 2.0**20, "mem_pct": 45.3}
    assert records["1869"]["measured"] == {"wait_s": 0.0, "elapsed_s": 10, "limit_s": 300, "cpu_pct": 27.1,
                                           "mem_req": 200 * 2.0**20}
    assert summary(home).text() == "2 jobs: 2 completed"  # efficiency is no score
    # the check, then one more call for both ends: the efficiency rides in on_complete's sacct
    assert len(cluster.ssh_calls()) == 2 and len([c for c in cluster.sacct_calls() if " -X " not in c]) == 1


def test_a_failed_job_says_its_cause_then_its_efficiency_in_the_same_call(home: Home, cluster: Cluster) -> None:
    ended(cluster, "1870")
    log = cluster.output("1870", "loading\nRuntimeError: boom\n")
    add(home, Job("slurm", "1870", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert (event["to"], event["detail"]) == (
        "FAILED", f"exit 3:0, 00:00:03 of 00:02:00, waited 00:00:00; RuntimeError: boom (log: {log}); CPU 0%")
    assert home.history()[0]["measured"] == {"wait_s": 0.0, "elapsed_s": 3, "limit_s": 120, "cpu_pct": 0.2,
                                             "mem_req": 100 * 2.0**20}
    assert len(cluster.ssh_calls()) == 2  # on_failure's one call brings the logs and the sacct
    assert [c for c in cluster.sacct_calls() if " -X " not in c] == [
        "sacct -j 1870 -n -P --format=JobID,JobIDRaw,State,ExitCode,MaxRSS,Submit,Start,ElapsedRaw,TimelimitRaw,"
        "TotalCPU,AllocCPUS,ReqTRES,AllocTRES"]


def test_a_job_cancelled_before_it_ran_says_only_what_can_be_known(home: Home, cluster: Cluster) -> None:
    ended(cluster, "1872")  # Elapsed 0: no CPU efficiency; no step: no memory
    add(home, Job("slurm", "1872", host="c", last_status="PENDING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert (event["to"], event["detail"]) == (
        "CANCELLED", "exit 0:0, 00:00:00 of 00:01:00, waited 00:00:01; no output file found")
    assert home.history()[0]["measured"] == {"wait_s": 1.0, "elapsed_s": 0, "limit_s": 60, "mem_req": 24105 * 2.0**20}


def test_gpus_are_counted_from_alloctres_as_gpu_hours(home: Home, cluster: Cluster) -> None:
    # The e2e cluster has no GPU: the real rows' shape with a GPU job's figures (8 GPUs, 2:41:07
    # of a 4 h limit, 12:30 in the queue, 71% of 16 CPUs, 24.3G of 64G).
    ended(cluster, "900", rows="900|900|COMPLETED|0:0|0:0|02:41:07|2026-12-01T08:00:00\n", steps=(
        "900|900|COMPLETED|0:0||1796112000|1796112750|9667|240|1-06:30:17|16|billing=16,cpu=16,gres/gpu=8,mem=64G,node=1|"
        "billing=16,cpu=16,gres/gpu=8,mem=64G,node=1\n"
        "900.batch|900.batch|COMPLETED|0:0|24.3G|1796112750|1796112750|9667||1-06:30:17|16||"
        "cpu=16,gres/gpu=8,mem=64G,node=1\n"))
    add(home, Job("slurm", "900", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert event["detail"] == "exit 0:0, 02:41:07 of 04:00:00, waited 00:12:30; CPU 71%, mem 38% of 64G, 8 GPU × 2.7 h"
    measured = home.history()[0]["measured"]
    assert (measured["gpus"], measured["gpu_hours"], measured["cpu_pct"], measured["mem_pct"]) == (8, 21.48, 71.0, 38.0)


def test_the_end_of_job_sacct_says_submit_and_start_in_epoch_seconds(home: Home, cluster: Cluster) -> None:
    # The cluster's local time would lose (or gain) an hour across a DST change: both end calls
    # ask for epoch seconds, and the captured rows of that call are read.
    ended(cluster, "1869")
    ended(cluster, "1870")
    cluster.output("1870", "RuntimeError: boom\n")
    add(home, Job("slurm", "1869", host="c", last_status="RUNNING"), Job("slurm", "1870", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    ends = [c for c in cluster.ssh_calls() if " -X " not in c]
    assert len(ends) == 2 and all("SLURM_TIME_FORMAT=%s sacct -j " in c for c in ends)
    assert {r["id"]: r["measured"]["wait_s"] for r in home.history()} == {"1869": 0.0, "1870": 0.0}


def test_a_start_before_its_submit_leaves_the_wait_out_and_the_rest_of_the_detail_stands(
        home: Home, cluster: Cluster) -> None:
    # 1869's rows in the cluster's local time of an older sacct call, across the DST fall-back:
    # submitted 02:50 CEST, started 20 minutes later at 02:10 CET, so Start reads 40 minutes
    # before Submit. No wait is said or kept, but the exit code, elapsed time and CPU are.
    rows = (EFFICIENCY / "end.steps.txt").read_text().replace(
        "1869|1869|COMPLETED|0:0||1796171608|1796171608|", "1869|1869|COMPLETED|0:0||2026-10-25T02:50:00|2026-10-25T02:10:00|")
    ended(cluster, "1869", steps=rows)
    add(home, Job("slurm", "1869", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    (event,) = events(out)
    assert event["detail"] == "exit 0:0, 00:00:10 of 00:05:00; CPU 27%"
    assert "wait_s" not in home.history()[0]["measured"]


def test_memory_asked_per_cpu_counts_as_the_jobs_total(home: Home, cluster: Cluster) -> None:
    ended(cluster, "1873")  # --mem-per-cpu=50M on 2 CPUs: ReqTRES says mem=100M (AllocTRES: no mem on CR_Core)
    add(home, Job("slurm", "1873", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert home.history()[0]["measured"] == {"wait_s": 2.0, "elapsed_s": 1, "limit_s": 60, "cpu_pct": 0.2,
                                             "mem_req": 100 * 2.0**20}


def test_an_array_by_its_id_has_no_figures_and_a_task_by_either_id_its_own(home: Home, cluster: Cluster) -> None:
    # The real array 1875: task 1875_0 (JobIDRaw 1876) slept 6 s, task 1875_1 spun; 1875_1's
    # JobIDRaw is the array's own id, 1875, yet its figures are not the whole array's.
    from typing import Callable

    def capture(job_id: str, keep: Callable[[list[str]], bool]) -> None:
        for suffix, name in ((".rows", "end.sacct.txt"), (".steps", "end.steps.txt")):
            lines = (EFFICIENCY / name).read_text().splitlines(keepends=True)
            (cluster.dir / f"{job_id}{suffix}").write_text("".join(ln for ln in lines if keep(ln.split("|"))))

    capture("1875", lambda f: f[0].startswith("1875_"))
    capture("1875_1", lambda f: f[0].split(".")[0] == "1875_1")
    capture("1876", lambda f: f[1].split(".")[0] == "1876")
    add(home, *(Job("slurm", i, host="c", last_status="RUNNING") for i in ("1875", "1875_1", "1876")))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert sorted((e["id"], e["detail"]) for e in events(out)) == [
        ("1875", "all 2 done"),
        ("1875_1", "exit 0:0, 00:00:06 of 00:02:00, waited 00:00:01; CPU 47%"),
        ("1876", "exit 0:0, 00:00:06 of 00:02:00, waited 00:00:01; CPU 0%")]
    measured = {r["id"]: r.get("measured", {}) for r in home.history()}
    assert measured["1875"] == {}
    assert (measured["1875_1"]["cpu_pct"], measured["1876"]["cpu_pct"]) == (47.0, 0.1)


def test_stall_after_0_turns_the_probe_off_and_the_check_is_as_before(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    import time

    ClusterClock(cluster, int(time.time()))
    off = tmp_path / "off.yaml"
    off.write_text("types:\n  slurm:\n    stall_after: 0\n")
    cfg = config.load(str(off), env={})
    assert cfg.types["slurm"].progress is None
    cluster.set("74", "RUNNING")
    cluster.output("74", "epoch 1\n")
    add(home, Job("slurm", "74", host="c", last_status="RUNNING"))
    w, out = make_watcher(home, cfg)
    for _ in range(2):
        w.cycle(everything=True)
    assert "clock|" not in "".join(cluster.ssh_calls()) and "progress" not in home.jobs()[0]["jobmon"]


def test_a_log_tail_cannot_forge_a_row_of_the_check(home: Home, cluster: Cluster) -> None:
    import os
    import time

    clock = ClusterClock(cluster, int(time.time()))
    cluster.set("75", "RUNNING")
    cluster.set("76", "RUNNING")
    forged = "76|76|COMPLETED|0:0|0:0|00:00:01|2026-01-01T00:00:00"
    log = cluster.output("75", f"step 1\rx\n\x0c{forged}\nw\u2028{forged}\nv\r{forged}\nclock|1\nprogress|76|1|1\n")
    os.utime(log, (clock.now - 3600, clock.now - 3600))
    cluster.output("76", "epoch 1\n")
    add(home, Job("slurm", "75", host="c", last_status="RUNNING"), Job("slurm", "76", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    for _ in range(3):  # paths, a first look, then 75's tail comes with the check: it is about to stall
        w.cycle(everything=True)
        clock.advance(60)
    (stalled,) = events(out)
    assert (stalled["id"], stalled["to"], stalled["detail"]) == ("75", "STALLED", "no progress for 1:02:00; last: progress|76|1|1")
    assert [j["last_status"] for j in home.jobs()] == ["RUNNING", "RUNNING"]  # 76 did not end
    assert home.jobs()[1]["jobmon"]["progress"]["mark"] != "mtime=1|size=1"
