"""The watcher against a fake SLURM behind a fake ssh (real executables first on PATH)."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobmon import config
from jobmon.registry import Job
from jobmon.rules import Book
from conftest import Cluster, Home, add, events, jobmon, make_watcher








def test_one_sacct_call_per_host_per_poll(home: Home, cluster: Cluster) -> None:
    jobs = [Job("slurm", str(100 + i), host=f"c{i % 2}") for i in range(6)]
    for job in jobs:
        cluster.set(job.id, "PENDING")
    add(home, *jobs)
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    assert sorted(c.split()[1] for c in cluster.ssh_calls()) == ["c0", "c1"]
    assert len(cluster.sacct_calls()) == 2
    # six changes in one cycle: one digest line naming the jobs, not six notifications
    (digest,) = events(out)
    assert (digest["kind"], digest["detail"]) == ("changes", "6 changes")
    # every job named, by where it went, type and host (ids as ranges), never "+N more"
    assert digest["groups"] == [{"to": "PENDING", "type": "slurm", "host": h, "ids": ids}
                                for h, ids in (("c0", ["100", "102", "104"]), ("c1", ["101", "103", "105"]))]


def test_every_end_is_a_line_of_its_own_and_only_moves_are_folded(home: Home, cluster: Cluster) -> None:
    jobs = [Job("slurm", str(500 + i), host="c") for i in range(15)]
    for job in jobs[:13]:
        cluster.set(job.id, "RUNNING")
    cluster.set("513", "COMPLETED")
    cluster.set("514", "DEADLINE")
    add(home, *jobs)
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    digest, *ends = events(out)
    assert (digest["kind"], digest["detail"], digest["groups"]) == (
        "changes", "13 changes", [{"to": "RUNNING", "type": "slurm", "host": "c", "ids": ["500-512"]}])
    assert [(e["kind"], e["id"], e["to"], e["terminal"]) for e in ends] == [
        ("state", "513", "COMPLETED", True), ("state", "514", "DEADLINE", True)]


def test_an_unreachable_host_is_one_line_for_all_its_jobs(home: Home, cluster: Cluster,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [Job("slurm", str(600 + i), host="down" if i < 100 else "up") for i in range(102)]
    for job in jobs:
        cluster.set(job.id, "RUNNING")
    add(home, *jobs)
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    events(out)
    monkeypatch.setenv("FAKE_SSH_DOWN", "down")
    for _ in range(3):  # unreachable_after
        watcher.cycle(everything=True)
    (line,) = events(out)
    assert (line["kind"], line["host"], line["id"], line["to"]) == ("event", "down", "", "UNREACHABLE")
    assert line["detail"].startswith("100 slurm jobs: connection failed (exit 255)")
    assert line["groups"] == [{"to": "UNREACHABLE", "type": "slurm", "host": "down", "ids": ["600-699"]}]
    monkeypatch.delenv("FAKE_SSH_DOWN")
    cluster.set("600", "COMPLETED")
    watcher.cycle(everything=True)
    recovered, end = events(out)
    assert (recovered["host"], recovered["to"], recovered["detail"]) == (
        "down", "RECOVERED", "100 slurm jobs: checks work again after 3 failures")
    assert (end["id"], end["to"]) == ("600", "COMPLETED")


@pytest.mark.parametrize("n,hosts", [(100, 10), (50, 1), (23, 7)])
def test_n_jobs_on_h_hosts_cost_h_commands_per_poll(home: Home, cluster: Cluster, n: int, hosts: int) -> None:
    jobs = [Job("slurm", str(200 + i), host=f"h{i % hosts}") for i in range(n)]
    for job in jobs:
        cluster.set(job.id, "RUNNING")
    add(home, *jobs)
    watcher, _ = make_watcher(home)
    watcher.cycle(everything=True)
    watcher.cycle(everything=True)
    assert len(cluster.ssh_calls()) == 2 * hosts  # two polls
    assert len(cluster.check_calls()) == 2 * hosts
    assert {j["last_status"] for j in home.jobs()} == {"RUNNING"}


# Put in front of the fake ssh: each call waits until $BARRIER holds $PARTIES arrivals
# ($PATIENCE hundredths of a second at most), so every call ends "met" only if all of them were
# running at the same moment.
BARRIER_SSH = r"""#!/usr/bin/env bash
touch "$BARRIER/$$"
for _ in $(seq "$PATIENCE"); do
  [ "$(ls "$BARRIER" | wc -l)" -ge "$PARTIES" ] && { echo met >> "$BARRIER.log"; exec "$REAL_SSH" "$@"; }
  sleep 0.01
done
echo late >> "$BARRIER.log"; exec "$REAL_SSH" "$@"
"""


def barrier_poll(home: Home, cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: list[Job], *,
                 parties: int, patience: int, cfg: config.Config | None = None) -> list[str]:
    """One poll of ``jobs`` (all RUNNING) through BARRIER_SSH: how each ssh call ended."""
    real = cluster.fakebin.path / "real-ssh"
    (cluster.fakebin.path / "ssh").rename(real)
    cluster.fakebin.add("ssh", BARRIER_SSH)
    (tmp_path / "barrier").mkdir()
    for name, value in (("BARRIER", str(tmp_path / "barrier")), ("PARTIES", str(parties)),
                        ("PATIENCE", str(patience)), ("REAL_SSH", str(real))):
        monkeypatch.setenv(name, value)
    for job in jobs:
        cluster.set(job.id, "RUNNING")
    add(home, *jobs)
    watcher, _ = make_watcher(home, cfg)
    watcher.cycle(everything=True)
    assert {j["last_status"] for j in home.jobs()} == {"RUNNING"}
    return (tmp_path / "barrier.log").read_text().split()


def test_ten_hosts_are_asked_at_once_under_the_default_bound(home: Home, cluster: Cluster, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # max_parallel (8) bounds each host, not the poll: ten hosts take one round trip, not two.
    jobs = [Job("slurm", str(300 + i), host=f"h{i}") for i in range(10)]
    ended = barrier_poll(home, cluster, tmp_path, monkeypatch, jobs, parties=10, patience=1000)
    assert ended == ["met"] * 10


def test_a_cluster_can_lower_its_own_bound(home: Home, cluster: Cluster, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Two chunks of one host's batch, and a cluster bound of 1: the second call starts only when
    # the first has given up waiting for it.
    override = tmp_path / "small.yaml"
    override.write_text("clusters: {small: {hosts: [small], settings: {max_parallel: 1},"
                        " types: {slurm: {check: {batch_size: 1}}}}}\n")
    jobs = [Job("slurm", "401", host="small"), Job("slurm", "402", host="small")]
    ended = barrier_poll(home, cluster, tmp_path, monkeypatch, jobs, parties=2, patience=30,
                         cfg=config.load(str(override), env={}))
    assert ended == ["late", "met"]


def test_a_job_followed_to_completion_then_moved_to_history(home: Home, cluster: Cluster) -> None:
    cluster.set("7", "PENDING")
    add(home, Job("slurm", "7", host="c", description="PTQ Qwen3-8B"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    watcher.cycle(everything=True)  # nothing changed: nothing printed
    cluster.set("7", "RUNNING")
    watcher.cycle(everything=True)
    cluster.set("7", "COMPLETED", "0:0", "01:02:03")
    active = watcher.cycle(everything=True)
    got = [(e["from"], e["to"], e["terminal"], e["outcome"], e["detail"]) for e in events(out)]
    assert got == [
        (None, "PENDING", False, None, ""),  # an exit code belongs to an end
        ("PENDING", "RUNNING", False, None, ""),
        ("RUNNING", "COMPLETED", True, "success", "exit 0:0, 01:02:03"),  # no MaxRSS: sacct gave none
    ]
    assert active == [] and home.jobs() == []
    (record,) = home.history()
    assert (record["id"], record["last_status"], record["outcome"]) == ("7", "COMPLETED", "success")


def test_failure_runs_on_failure_and_carries_its_result(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    extra = tmp_path / "diag.yaml"
    extra.write_text(
        "types:\n  slurm:\n    on_failure: \"{{ ssh }} {{ host }} {% remote %}echo first; echo diagnosis for {{ id }}: {{ state }}{% endremote %}\"\n")
    cluster.set("8", "FAILED", "3:0", "00:00:05")
    add(home, Job("slurm", "8", host="c"))
    watcher, out = make_watcher(home, config.load(cli_config=str(extra), env={}))
    watcher.cycle(everything=True)
    (event,) = events(out)
    assert event["to"] == "FAILED" and event["outcome"] == "failure"
    assert event["detail"] == "exit 3:0, 00:00:05; diagnosis for 8: FAILED"
    (record,) = home.history()
    assert record["action_output"].splitlines() == ["first", "diagnosis for 8: FAILED"]


def test_an_unreachable_host_is_not_a_failed_job(home: Home, cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster.set("9", "RUNNING")
    add(home, Job("slurm", "9", host="c"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    events(out)
    monkeypatch.setenv("FAKE_SSH_EXIT", "255")
    for _ in range(10):
        watcher.cycle(everything=True)
    (unreachable,) = events(out)
    assert (unreachable["kind"], unreachable["to"], unreachable["terminal"]) == ("event", "UNREACHABLE", False)
    assert "connection failed (exit 255)" in unreachable["detail"]
    assert home.jobs()[0]["last_status"] == "RUNNING"
    monkeypatch.delenv("FAKE_SSH_EXIT")
    cluster.set("9", "COMPLETED")
    watcher.cycle(everything=True)
    assert [(e["kind"], e["to"]) for e in events(out)] == [("event", "RECOVERED"), ("state", "COMPLETED")]


def test_a_failing_host_backs_off_without_slowing_the_others(
        home: Home, cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    import time as clock

    from jobmon.watch import BACKOFF_CAP

    monkeypatch.setenv("FAKE_SSH_DOWN", "bad")
    cluster.set("60", "RUNNING")
    cluster.set("61", "RUNNING")
    add(home, Job("slurm", "60", host="good"), Job("slurm", "61", host="bad"))
    watcher, _ = make_watcher(home)
    watcher.interval = 30
    waits = []
    for _ in range(7):
        watcher.cycle(everything=True)
        now = clock.monotonic()
        waits.append((round(watcher._due[("slurm", "good")] - now), round(watcher._due[("slurm", "bad")] - now)))
    assert [good for good, _ in waits] == [30] * 7
    assert [bad for _, bad in waits] == [30, 60, 120, 240, 480, BACKOFF_CAP, BACKOFF_CAP]


def test_sacct_erroring_keeps_the_last_state(home: Home, cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster.set("10", "RUNNING")
    add(home, Job("slurm", "10", host="c"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    monkeypatch.setenv("FAKE_SACCT_FAIL", "1")
    watcher.cycle(everything=True)
    (job,) = home.jobs()
    assert job["last_status"] == "RUNNING" and job["jobmon"]["errors"] == 1
    assert "Problem talking to the database" in job["jobmon"]["last_error"]


def test_a_job_missing_from_sacct_is_not_yet(home: Home, cluster: Cluster) -> None:
    add(home, Job("slurm", "11", host="c"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    assert events(out) == []
    (job,) = home.jobs()
    assert job["last_status"] == "" and "missing_since" in job["jobmon"]


def test_a_claimed_final_state_is_replayed_after_a_crash(home: Home, cluster: Cluster) -> None:
    final = {"from": "RUNNING", "to": "COMPLETED", "outcome": "success", "groups": {"exit": "0:0", "elapsed": "00:00:09"}}
    add(home, Job("slurm", "12", host="c", last_status="COMPLETED", book=Book(final=final)),
        Job("slurm", "13", host="c", last_status="RUNNING"))
    cluster.set("13", "RUNNING")
    watcher, out = make_watcher(home)
    watcher.replay_claimed()
    (event,) = events(out)
    assert (event["id"], event["to"], event["replayed"], event["detail"]) == ("12", "COMPLETED", True, "exit 0:0, 00:00:09")
    assert [j["id"] for j in home.jobs()] == ["13"]
    assert [r["id"] for r in home.history()] == ["12"]


def test_a_claim_is_replayed_only_once_its_process_is_gone(home: Home, cluster: Cluster) -> None:
    from jobmon import finish

    other = subprocess.Popen(["sleep", "300"])
    try:
        final = {"from": "RUNNING", "to": "COMPLETED", "outcome": "success", "groups": {}, **finish.claimant(other.pid)}
        add(home, Job("slurm", "18", host="c", last_status="COMPLETED", book=Book(final=final)))
        watcher, out = make_watcher(home)
        watcher.replay_claimed()
        assert events(out) == [] and home.history() == []  # its claimant is alive: it finishes the job
    finally:
        other.kill()
        other.wait()
    watcher.replay_claimed()
    (event,) = events(out)
    assert (event["id"], event["replayed"]) == ("18", True)
    assert home.jobs() == [] and [r["id"] for r in home.history()] == ["18"]


def test_a_claimed_end_already_in_the_log_is_not_logged_again(home: Home, cluster: Cluster) -> None:
    # Killed after logging the end, before moving the job to history: the end is not repeated.
    from jobmon.eventlog import EventLog
    from jobmon.events import Event

    log = EventLog(home.registry.with_name("events.jsonl"))
    log.append([Event("state", "slurm", "17", "c", after="RUNNING")])
    final = {"from": "RUNNING", "to": "COMPLETED", "outcome": "success", "groups": {}, "seq": 1}
    log.append([Event("state", "slurm", "17", "c", before="RUNNING", after="COMPLETED", terminal=True, outcome="success")])
    add(home, Job("slurm", "17", host="c", last_status="COMPLETED", book=Book(final=final)))
    watcher, out = make_watcher(home)
    watcher.replay_claimed()
    assert events(out) == []
    assert [e["seq"] for e in home.logged()] == [1, 2]
    assert home.jobs() == [] and [r["id"] for r in home.history()] == ["17"]


@pytest.mark.parametrize("final, why", [
    ({"groups": ["x"]}, "jobmon.final.groups: is an array, not an object of strings"),
    ({"groups": "x"}, "jobmon.final.groups: is the string 'x', not an object of strings"),
    ({"to": 5}, "jobmon.final.to: is the number 5, not a state"),
    ({"outcome": "maybe"}, "jobmon.final.outcome: is the string 'maybe', not success or failure"),
    ({"groups": {"delegate_type": "slurm", "delegate_host": "c"}}, "jobmon.final.groups.delegate_id: is null, "
                                                                    "not a job id of type slurm"),
])
def test_a_malformed_claim_is_said_once_and_set_aside_while_the_others_go_on(
        home: Home, cluster: Cluster, final: dict, why: str) -> None:
    good = {"from": "RUNNING", "to": "FAILED", "outcome": "failure", "groups": {"exit": "1:0", "elapsed": "00:00:01"}}
    add(home, Job("slurm", "40", host="c", last_status="FAILED", book=Book(final={**good, **final})),
        Job("slurm", "41", host="c", last_status="COMPLETED", book=Book(final={**good, "to": "COMPLETED",
                                                                              "outcome": "success"})),
        Job("slurm", "42", host="c", last_status="RUNNING"))
    cluster.set("42", "COMPLETED")
    watcher, out = make_watcher(home)
    watcher.replay_claimed()
    watcher.cycle(everything=True)
    lines = events(out)
    (error,) = [e["detail"] for e in home.logged() if e["kind"] == "error"]  # as logged: not cut to a line
    assert error.startswith(f"job 40: {why}") and error.endswith(f"; not watched, left as it is in {home.registry}")
    assert [(e["id"], e["to"], e.get("replayed", False)) for e in lines if e["kind"] == "state"] == [
        ("41", "COMPLETED", True), ("42", "COMPLETED", False)]
    (left,) = home.jobs()
    assert left["id"] == "40" and left["jobmon"]["final"] == {**good, **final}  # untouched
    watcher.replay_claimed()
    assert watcher.cycle(everything=True) == [Job.from_dict(left)] and events(out) == []  # said once


def test_a_claimed_end_the_watcher_would_not_run_is_set_aside(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    marker = tmp_path / "M"
    final = {"from": "RUNNING", "to": "FAILED", "outcome": "failure", "groups": {}}
    add(home, Job("slurm", "43", host=f"-oProxyCommand=touch {marker}", last_status="FAILED", book=Book(final=final)))
    watcher, out = make_watcher(home)
    watcher.replay_claimed()
    watcher.cycle(everything=True)
    (error,) = events(out)
    assert error["kind"] == "error" and error["detail"].startswith("job 43: slurm: --host '-oProxyCommand=touch ")
    assert not marker.exists() and cluster.ssh_calls() == []
    assert [j["id"] for j in home.jobs()] == ["43"] and home.history() == []


def test_a_hand_written_end_the_scheduler_agrees_with_is_said_once_and_moved_to_history(
        home: Home, cluster: Cluster) -> None:
    # An agent wrote last_status itself: jobmon has never said this end, so it says it now.
    cluster.set("44", "COMPLETED", "0:0", "00:00:07")
    add(home, Job("slurm", "44", host="c", last_status="COMPLETED"))
    watcher, out = make_watcher(home)
    assert watcher.cycle(everything=True) == []
    (event,) = events(out)
    assert (event["from"], event["to"], event["terminal"], event["detail"]) == (None, "COMPLETED", True, "exit 0:0, 00:00:07")
    assert home.jobs() == [] and [r["id"] for r in home.history()] == ["44"]


def test_hostile_registry_entries_are_reported_and_never_run(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    add(home, Job("slurm", "14", host=f"-oProxyCommand=touch {marker}"),
        Job("slurm", f"15;touch {marker}", host="c"), Job("nosuch", "1"), Job("slurm", "16", host="c"))
    cluster.set("16", "RUNNING")
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    lines = events(out)
    errors = [e["detail"] for e in lines if e["kind"] == "error"]
    assert len(errors) == 3
    assert errors[0].startswith("job 14: slurm: --host '-oProxyCommand=touch ")
    assert errors[0].endswith(f" in {home.registry}")
    assert errors[1].startswith("job 15;touch ") and ": slurm: --id '15;touch " in errors[1]
    assert errors[2] == f"job 1: unknown job type 'nosuch'; left as it is in {home.registry}"
    assert [(e["id"], e["to"]) for e in lines if e["kind"] == "state"] == [("16", "RUNNING")]
    assert cluster.check_calls() == ["sacct -j 16 -X -n -P --format=JobID,JobIDRaw,State,ExitCode,DerivedExitCode,Elapsed,Submit"]
    assert not marker.exists()
    watcher.cycle(everything=True)
    assert [e for e in events(out) if e["kind"] == "error"] == []  # said once per watcher
    assert len(home.jobs()) == 4  # nothing dropped


# ---------------------------------------------------------------- the real watcher process


def test_watch_process_follows_jobs_to_the_end(home: Home, cluster: Cluster) -> None:
    cluster.set("20", "COMPLETED", "0:0", "00:10:00")
    cluster.set("21", "TIMEOUT", "0:0", "01:00:00")
    for job_id in ("20", "21"):
        assert jobmon("add", "--type", "slurm", "--id", job_id, "--host", "c", *home.args()).code == 0
    ran = jobmon("watch", "--json", "--interval", "0.05", *home.args())
    assert ran.code == 0, ran.err
    got = [(e["kind"], e["id"], e["to"], e["outcome"]) for e in ran.events()]
    assert got == [("state", "20", "COMPLETED", "success"), ("state", "21", "TIMEOUT", "failure"),
                   ("summary", "", None, None)]
    assert ran.events()[-1]["detail"] == "2 jobs: 1 completed, 1 failed"


def test_bin_jobmon_watch_prints_text_events_only_on_stdout(home: Home, cluster: Cluster) -> None:
    cluster.set("22", "COMPLETED", "0:0", "00:00:03")
    assert jobmon("add", "--type", "slurm", "--id", "22", "--host", "c", "--desc", "eval", *home.args()).code == 0
    proc = subprocess.run([str(Path(__file__).parent.parent / "bin" / "jobmon-watch"), "--interval", "0.05",
                           "-v", *home.args()], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert [ln[9:] for ln in lines] == ['slurm 22@c "eval": NEW -> COMPLETED (exit 0:0, 00:00:03)',
                                       "1 job: 1 completed"]


def test_a_corrupt_registry_is_the_watchers_last_line(home: Home) -> None:
    home.registry.parent.mkdir(parents=True)
    home.registry.write_text('[{"type": "slurm", "id": ')
    ran = jobmon("watch", *home.args())
    assert ran.code == 3
    (line,) = ran.lines()
    assert line[9:] == (f"jobmon-watch: fatal: {home.registry}: not valid JSON "
                        "(line 1, column 26: Expecting value); left as it is")
    assert home.registry.read_text() == '[{"type": "slurm", "id": '


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])  # SIGHUP: the terminal was closed
def test_sigterm_stops_the_watcher_cleanly(home: Home, cluster: Cluster, sig: int) -> None:
    cluster.set("23", "RUNNING")
    assert jobmon("add", "--type", "slurm", "--id", "23", "--host", "c", *home.args()).code == 0
    proc = subprocess.Popen([sys.executable, "-m", "jobmon", "watch", "--interval", "30", *home.args()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # blocks until the first event: no sleep needed
    assert first.endswith(" slurm 23@c: NEW -> RUNNING\n")
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert rest.splitlines()[-1][9:] == ("watch stopped: still watching 1 job (1 running): "
                                         f"run jobmon watch --interval 30 {' '.join(home.args())} again")
    assert home.jobs()[0]["last_status"] == "RUNNING"


def test_sighup_ends_a_poller_after_its_cycle_and_it_lets_go(home: Home, cluster: Cluster) -> None:
    from jobmon.registry import Registry, WatchLock

    cluster.set("24", "RUNNING")
    assert jobmon("add", "--type", "slurm", "--id", "24", "--host", "c", *home.args()).code == 0
    proc = subprocess.Popen([sys.executable, "-m", "jobmon", "poll", "--interval", "30", *home.args()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not [e for e in home.logged() if e["kind"] == "state"]:  # its first cycle is logged
        assert proc.poll() is None
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, "Traceback" in err) == (0, "", False)
    lock = WatchLock(Registry(home.registry))
    assert lock.acquire() is None  # let go
    lock.release()


def test_a_closed_stdout_ends_a_watch_cleanly(home: Home, cluster: Cluster) -> None:
    # A one-shot command still checks and ends its jobs; a watch ends at its first line (its reader is gone).
    for job_id, argv in (("25", ["watch", "--once"]), ("26", ["status"]), ("29", ["watch", "--interval", "0.05"])):
        cluster.set(job_id, "COMPLETED")
        assert jobmon("add", "--type", "slurm", "--id", job_id, "--host", "c", *home.args()).code == 0
        proc = subprocess.run(["bash", "-c", 'exec "$@" >&-', "-", sys.executable, "-m", "jobmon", *argv,
                               *home.args()], capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stderr) == (0, ""), argv
        if argv != ["watch", "--interval", "0.05"]:
            assert home.jobs() == [] and home.history()[-1]["id"] == job_id


def test_times_are_stored_in_utc_and_shown_in_local_time(home: Home, cluster: Cluster) -> None:
    import os
    from datetime import datetime, timedelta

    def in_zone(zone: str, *argv: str):  # type: ignore[no-untyped-def]
        return jobmon(*argv, *home.args(), env={**os.environ, "TZ": zone})

    assert in_zone("UTC", "add", "--type", "slurm", "--id", "27", "--host", "c").code == 0
    assert in_zone("UTC", "status").code == 0  # no row yet: missing since now
    ran = in_zone("Asia/Tokyo", "status", "--json")  # a second later, nine hours east
    assert [e["kind"] for e in ran.events()] == ["summary"], ran.out  # not LOST "for 9:00:00"
    (job,) = home.jobs()
    assert job["submitted"].endswith("+00:00") and job["jobmon"]["missing_since"].endswith("+00:00")
    tokyo = (datetime.fromisoformat(job["submitted"]) + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M")
    assert f" {tokyo}" in in_zone("Asia/Tokyo", "list").out  # shown in local time
    cluster.set("27", "COMPLETED")
    ran = in_zone("Asia/Tokyo", "status")
    (logged,) = [e for e in home.logged() if e["kind"] == "state"]
    at = datetime.fromisoformat(logged["time"])
    assert at.utcoffset() == timedelta(0)
    assert ran.lines()[0].startswith((at + timedelta(hours=9)).strftime("%H:%M:%S "))  # shown in Tokyo time
    (record,) = home.history()
    assert record["finished"].endswith("+00:00") and record["submitted"] == job["submitted"]
    assert in_zone("UTC", "add", "--type", "slurm", "--id", "28", "--host", "c").code == 0
    assert in_zone("Asia/Tokyo", "remove", "--id", "28").code == 0
    assert home.history()[-1]["removed"].endswith("+00:00")


def test_key_events_and_diagnosis_reach_the_events(home: Home, tmp_path: Path) -> None:
    conf = tmp_path / "logfile.yaml"
    conf.write_text(r"""
types:
  logfile:
    fields: {file: {required: true}}
    check: {command: "cat {{ file }}", regex: '(?m)^Job \d+ finished: (?P<state>\w+)', default: RUNNING}
    states: {running: [RUNNING], success: [SUCCEEDED], failure: [FAILED]}
    events:
      - {name: slurm-job, regex: 'Job id: (?P<jid>\d+)', text: "slurm job {{ jid }}"}
    diagnosis:
      - {name: cuda-oom, regex: 'CUDA out of memory', text: CUDA out of memory}
    on_failure: "tail -n 50 {{ file }}"
""")
    log = tmp_path / "launcher.log"
    log.write_text("starting\n")
    add(home, Job("logfile", "exp1", fields={"file": str(log)}))
    watcher, out = make_watcher(home, config.load(cli_config=str(conf), env={}))
    watcher.cycle(everything=True)
    assert [(e["from"], e["to"]) for e in events(out)] == [(None, "RUNNING")]  # no final line yet: the default
    log.write_text("starting\nJob id: 4242\n")
    watcher.cycle(everything=True)
    watcher.cycle(everything=True)
    (event,) = events(out)
    assert (event["kind"], event["to"], event["detail"], event["terminal"]) == ("event", "slurm-job", "slurm job 4242", False)
    log.write_text("starting\nJob id: 4242\nRuntimeError: CUDA out of memory. Tried 2 GiB\nmore\nJob 4242 finished: FAILED\n")
    watcher.cycle(everything=True)
    (final,) = events(out)
    assert (final["to"], final["outcome"], final["detail"]) == ("FAILED", "failure", "CUDA out of memory")


def test_finished_groups_leave_no_schedule_behind(home: Home, cluster: Cluster) -> None:
    # A due time left for a group with no jobs would wake the loop at once, forever (a busy loop).
    cluster.set("30", "COMPLETED")
    cluster.set("31", "RUNNING")
    add(home, Job("slurm", "30", host="a"), Job("slurm", "31", host="b"))
    watcher, _ = make_watcher(home)
    watcher.cycle()
    assert set(watcher._due) == {("slurm", "a"), ("slurm", "b")}
    watcher.cycle(everything=True)
    assert set(watcher._due) == {("slurm", "b")}


def test_a_reader_that_goes_away_ends_the_watcher_quietly(home: Home, cluster: Cluster) -> None:
    cluster.set("70", "RUNNING")
    add(home, Job("slurm", "70", host="c"))
    proc = subprocess.Popen([sys.executable, "-m", "jobmon", "watch", "--interval", "0.05", *home.args()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "NEW -> RUNNING" in proc.stdout.readline()
    proc.stdout.close()  # `| head -n 1` has read its line and gone
    cluster.set("70", "COMPLETED")  # the next line meets a closed pipe
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "Traceback" not in err and "BrokenPipe" not in err


# ---------------------------------------------------------------- a batched check that reads each job's log


SERVED = r"""
types:
  served:
    description: a batched check that reads each job's log from where it stopped
    fields:
      id: {pattern: '[a-z0-9]+'}
      file: {required: true}
    interval: 1
    check:
      batch: >-
        {% for j in jobs %}echo "row|{{ j.id }}|RUNNING";
        s=$(stat -c %s -- {{ j.file }}); o={{ j.offset }}; [ "$s" -lt "$o" ] && o=0;
        tail -c +$((o + 1)) -- {{ j.file }} | head -c $((s - o)) |
        awk -v i={{ j.id }} '{ sub(/.*\r/, "") } { print "log|" i "|" $0 }';
        echo "offset|{{ j.id }}|$s";{% endfor %}
      regex: '^row\|(?P<id>[^|]+)\|(?P<state>\w+)$'
      lines: '^log\|(?P<id>[^|]+)\|(?P<line>.*)$'
      offset: '^offset\|(?P<id>[^|]+)\|(?P<offset>[0-9]+)$'
    states: {running: [RUNNING], success: [DONE], failure: [FAILED]}
    events:
      - {name: LOADING, regex: 'Starting to load model (?P<model>\S+?)\.*$', text: "{{ model }}"}
      - {name: READY, regex: 'Uvicorn running on (?P<url>\S+)', text: "{{ url }}"}
"""


def test_a_batched_check_reads_each_jobs_log_from_where_it_stopped(home: Home, tmp_path: Path) -> None:
    cfg = tmp_path / "served.yaml"
    cfg.write_text(SERVED)
    loaded = config.load(str(cfg), env={})
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("INFO Starting to load model llama...\n")
    b.write_text("booting\n")
    add(home, Job("served", "a", fields={"file": str(a)}, last_status="RUNNING"),
        Job("served", "b", fields={"file": str(b)}, last_status="RUNNING"))
    w, out = make_watcher(home, loaded)
    w.cycle(everything=True)
    assert [(e["id"], e["to"], e["detail"]) for e in events(out)] == [("a", "LOADING", "llama")]
    with a.open("a") as f:  # a line of a's log that pretends to be b's: it stays a's
        f.write("INFO Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)\nnoise\rlog|b|Uvicorn running on http://evil\n")
    w.cycle(everything=True)
    assert [(e["id"], e["to"], e["detail"]) for e in events(out)] == [("a", "READY", "http://0.0.0.0:8000")]
    w.cycle(everything=True)
    assert events(out) == []  # each said once: the next check read only what came after
    offsets = {j["id"]: j["jobmon"]["offset"] for j in home.jobs()}
    assert offsets == {"a": a.stat().st_size, "b": b.stat().st_size}
