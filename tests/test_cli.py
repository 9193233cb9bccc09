"""The CLI as users and agents run it: a child process, its stdout, stderr and exit code."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import Cluster, Home, jobmon, ssh_words


def test_add_records_every_documented_field(home: Home, monkeypatch) -> None:
    env = {**os.environ, "CLAUDE_CODE_SESSION_ID": "abc-123", "JOBMON_ROOT": str(home.root)}
    ran = jobmon("add", "--type", "slurm", "--id", "4242", "--host", "eos", "--user", "alice",
                 "--desc", "PTQ Qwen3-8B", "--file", "/lustre/out/4242.log", env=env)
    assert ran.code == 0, ran.err
    path = home.root / ".claude" / "agents" / "abc-123" / "active_jobs.json"
    (job,) = json.loads(path.read_text())
    assert job.pop("submitted")[:2] == "20"
    assert job == {"type": "slurm", "id": "4242", "host": "eos", "user": "alice", "description": "PTQ Qwen3-8B",
                   "last_status": "", "owner": {"agent": "claude-code", "session_id": "abc-123"},
                   "file": "/lustre/out/4242.log"}


def test_add_refuses_bad_values_with_one_line_and_exit_2(home: Home) -> None:
    cases = [
        (["--type", "slurm", "--id", "12;rm -rf /", "--host", "eos"],
         "jobmon: slurm: --id '12;rm -rf /' is not valid: a SLURM job id, e.g. 1234567 or 1234567_3 "
         "(must match [0-9]+(_[0-9]+)?(\\.[0-9A-Za-z]+)?)"),
        (["--type", "slurm", "--id", "12"], "jobmon: job type 'slurm' needs --host (the cluster's login node or ssh alias)"),
        (["--type", "slurm", "--id", "12", "--host=-oProxyCommand=x"],
         "jobmon: slurm: --host '-oProxyCommand=x' is not valid: the cluster's login node or ssh alias (must match [A-Za-z0-9_][A-Za-z0-9._-]{0,252})"),
        (["--type", "slurrm", "--id", "12"], "jobmon: --type: unknown job type 'slurrm' (did you mean 'slurm'?); see `jobmon types`"),
        (["--type", "local", "--id", "1", "--field", "color=red"],
         "jobmon: --field color: job type 'local' has no such field (fields: id, file, log)"),
        (["--type", "local", "--id", "1", "--field", "nonsense"], "jobmon: --field 'nonsense': expected NAME=VALUE"),
        (["--id", "1"], "jobmon: --type is required (see `jobmon types`)"),
    ]
    for argv, message in cases:
        ran = jobmon("add", *argv, *home.args())
        assert (ran.code, ran.out, ran.err.splitlines()) == (2, "", [message]), argv
    assert not home.registry.exists()


def test_adding_the_same_job_twice_keeps_one(home: Home) -> None:
    for desc in ("first", "second"):
        assert jobmon("add", "--type", "local", "--id", "77", "--desc", desc, *home.args()).code == 0
    (job,) = home.jobs()
    assert job["description"] == "second"


def test_list_and_remove(home: Home) -> None:
    jobmon("add", "--type", "local", "--id", "5", "--desc", "five", *home.args())
    jobmon("add", "--type", "slurm", "--id", "6", "--host", "eos", *home.args())
    listed = jobmon("list", "--json", *home.args())
    assert [json.loads(ln)["id"] for ln in listed.lines()] == ["5", "6"]
    text = jobmon("list", *home.args()).lines()
    assert text[0].split()[:3] == ["local", "5", "NEW"] and text[0].endswith('"five"')
    assert jobmon("remove", "--id", "5", *home.args()).code == 0
    assert [j["id"] for j in home.jobs()] == ["6"]
    assert [r["id"] for r in home.history()] == ["5"] and "removed" in home.history()[0]
    missing = jobmon("remove", "--id", "5", *home.args())
    assert (missing.code, missing.err) == (1, f"jobmon: no job 5 in {home.registry}\n")


def test_status_with_no_jobs(home: Home) -> None:
    ran = jobmon("status", *home.args())
    assert ran.code == 0 and ran.out[9:] == "no jobs registered\n"


def test_status_checks_every_job_once_and_updates_the_registry(home: Home, cluster: Cluster) -> None:
    cluster.set("1", "RUNNING")
    cluster.set("2", "COMPLETED", "0:0", "00:05:00")
    for job_id in ("1", "2"):
        jobmon("add", "--type", "slurm", "--id", job_id, "--host", "eos", *home.args())
    ran = jobmon("status", *home.args())
    assert ran.code == 0
    assert [ln[9:] for ln in ran.lines()] == [
        "slurm 1@eos: NEW -> RUNNING (exit 0:0, 00:00:01)",
        "slurm 2@eos: NEW -> COMPLETED (exit 0:0, 00:05:00; MaxRSS 0)",
        "2 jobs: 1 completed, 1 running",
    ]
    assert len(cluster.check_calls()) == 1
    assert [(j["id"], j["last_status"]) for j in home.jobs()] == [("1", "RUNNING")]
    again = jobmon("status", "--json", *home.args())
    assert [e["kind"] for e in again.events()] == ["summary"]
    assert again.events()[0]["detail"] == "2 jobs: 1 completed, 1 running"  # the session, history too
    assert [(e["seq"], e["id"], e["to"]) for e in home.logged()] == [(1, "1", "RUNNING"), (2, "2", "COMPLETED")]


def test_render_prints_the_exact_command(home: Home, cache_home: Path) -> None:
    ran = jobmon("render", "--type", "slurm", "--id", "99", "--host", "eos", *home.args())
    assert ran.lines() == [
        f"{ssh_words(cache_home)} eos 'sacct -j 99 -X -n -P --format=JobID,State,ExitCode,Elapsed'",
        f"# for jobs the check has no row for: {ssh_words(cache_home)} eos 'squeue -h -j 99 -o '\"'\"'%i|%T'\"'\"''"]
    launcher = jobmon("render", "--type", "launcher", "--id", "e1", "--file", "/tmp/l og", *home.args())
    assert launcher.lines() == ["# launcher reads this file from where its last check stopped; it runs no command",
                                "/tmp/l og"]
    jobmon("add", "--type", "local", "--id", "31", "--file", "/tmp/x", *home.args())
    registered = jobmon("render", "--id", "31", *home.args())
    assert registered.code == 0 and "/proc/31/status" in registered.out and "/tmp/x" in registered.out
    unknown = jobmon("render", "--id", "404", *home.args())
    assert (unknown.code, unknown.err) == (1, "jobmon: no registered job 404: give --type (and --host) to render a new one\n")


def test_types_and_check(home: Home) -> None:
    types = jobmon("types", *home.args())
    assert "local: a process on this machine, by pid (exit code from --file)" in types.lines()
    assert any(ln.startswith("slurm: ") for ln in types.lines())
    assert "  fields: id, host, [file]; every 30s; from checkers.d/slurm.yaml" in types.lines()
    check = jobmon("check", *home.args())
    assert check.code == 0 and check.out.startswith("config OK: 4 job types, 0 clusters, from monitor.yaml")


def test_a_bad_config_is_exit_2_with_one_line(home: Home, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("types:\n  slurm:\n    check:\n      regex: '(unclosed'\n")
    for command in ("check", "status", "types", "watch"):
        ran = jobmon(command, "--config", str(bad), *home.args())
        if command in ("status",):  # with no jobs, status never needs the config
            continue
        assert (ran.code, ran.err.splitlines()) == (
            2, [f"jobmon: {bad}: slurm.check.regex: bad regex: missing ), unterminated subpattern at position 0"]), command


def test_demo_runs_two_jobs_to_the_end(tmp_path: Path) -> None:
    ran = jobmon("demo", "--root", str(tmp_path), "--json", "--interval", "0.2")
    assert ran.code == 0, ran.err
    events = ran.events()
    finals = {e["description"]: (e["to"], e["outcome"]) for e in events if e["terminal"]}
    assert finals == {"demo: calibrate and export": ("COMPLETED", "success"), "demo: evaluate": ("FAILED", "failure")}
    failed = next(e for e in events if e["to"] == "FAILED")
    assert failed["detail"] == (f"exit 3; torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB "
                                f"(log: {tmp_path}/demo-jobs/job1.log)")
    assert events[-1] == {**events[-1], "kind": "summary", "detail": "2 jobs: 1 completed, 1 failed"}


def fast(tmp_path: Path) -> Path:
    """A config under which slurm jobs are checked every 0.2 s (a detached poller reads it too)."""
    conf = tmp_path / "fast.yaml"
    conf.write_text("types: {slurm: {interval: 0.2}}\n")
    return conf


def wait_until(ready, what: str, limit: float = 60) -> None:  # type: ignore[no-untyped-def]
    """A bounded wait for a background process, not a timing assert."""
    deadline = time.monotonic() + limit
    while not ready():
        assert time.monotonic() < deadline, f"still waiting after {limit:.0f} s for {what}"
        time.sleep(0.05)


def test_add_watch_starts_one_detached_poller(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    conf = str(fast(tmp_path))
    cluster.set("3", "RUNNING")
    first = jobmon("add", "--type", "slurm", "--id", "3", "--host", "eos", "--watch", "--config", conf, *home.args())
    assert first.code == 0 and first.out == ""
    assert first.err.splitlines()[-1].startswith("jobmon: poller started (pid ")
    pid = int(first.err.split("(pid ")[1].split(")")[0])
    second = jobmon("add", "--type", "slurm", "--id", "4", "--host", "eos", "--watch", "--config", conf, *home.args())
    assert second.err.splitlines()[-1] == f"jobmon: a poller already runs for this registry (pid {pid})"
    cluster.set("4", "RUNNING")
    wait_until(lambda: len(home.logged()) == 2, "both jobs to be seen running")
    cluster.set("3", "COMPLETED")
    cluster.set("4", "FAILED", "1:0")
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z",
               "the poller to end with no job left")
    assert [(e["seq"], e["id"], e["to"]) for e in home.logged()] == [
        (1, "3", "RUNNING"), (2, "4", "RUNNING"), (3, "3", "COMPLETED"), (4, "4", "FAILED")]
    assert home.jobs() == [] and sorted(r["id"] for r in home.history()) == ["3", "4"]
    assert "Traceback" not in home.registry.with_name("watch.log").read_text()
