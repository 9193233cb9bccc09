"""The CLI as users and agents run it: a child process, its stdout, stderr and exit code."""
from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import pytest

from jobmon import config
from conftest import FAKE_SSH, FIXTURES, Cluster, FakeBin, Home, Ran, jobmon, slurm_check


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
         "jobmon: slurm: --id '12;rm -rf /' is not valid: a SLURM job id: 1234567, an array or het job 1234567 "
         "(all its tasks), one task 1234567_3, one component 1234567+1 (must match [0-9]+([_+][0-9]+)?(\\.[0-9A-Za-z]+)?)"),
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
        "slurm 1@eos: NEW -> RUNNING",  # an exit code belongs to an end
        "slurm 2@eos: NEW -> COMPLETED (exit 0:0, 00:05:00)",  # no MaxRSS: sacct gave none
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
    first = slurm_check(cache_home, "eos", ["99"])  # squeue is in the same call now
    assert ran.out.startswith(f"# its first check\n{first}\n# once it runs, with stderr, stdout, workdir kept\n")
    assert "stat -c '\"'\"'%s|%Y|%F|%n'\"'\"' -- '\"'\"'<stdout>'\"'\"' '\"'\"'<stderr>'\"'\"'" in ran.out  # its logs, for stalls
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
    assert check.code == 0 and check.out.startswith("config OK: 5 job types, 0 clusters, from monitor.yaml")


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


# ---------------------------------------------------------------- discover, on real squeue output

CAPTURES = FIXTURES / "slurm" / "discover"

# squeue replaying tests/fixtures/slurm/discover/: each -u value is one capture's stdout, stderr
# and exit code. It runs under the fake ssh, as the real one runs under sshd.
REPLAY_SQUEUE = r"""#!/usr/bin/env bash
echo "squeue $*" >> "${FAKE_LOG:-/dev/null}"
while [ $# -gt 0 ]; do case "$1" in -u) user="$2"; shift 2 ;; *) shift ;; esac; done
d="$FAKE_CAPTURES/$user"
cat "$d.txt"; cat "$d.stderr.txt" >&2; exit "$(cat "$d.rc")"
"""


Queue = Callable[[str, str], None]


@pytest.fixture
def queue(fakebin: FakeBin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Queue:
    """``queue(user, capture)``: what squeue says for ``-u user`` on any host."""
    folder = tmp_path / "captures"
    folder.mkdir()
    monkeypatch.setenv("FAKE_CAPTURES", str(folder))
    fakebin.add("ssh", FAKE_SSH)
    fakebin.add("squeue", REPLAY_SQUEUE)
    manifest = (CAPTURES / "MANIFEST.tsv").read_text().splitlines()
    codes = {row["stdout_file"]: row["exit_code"] for row in csv.DictReader(manifest, delimiter="\t")}

    def serve(user: str, capture: str) -> None:
        shutil.copy(CAPTURES / f"{capture}.txt", folder / f"{user}.txt")
        shutil.copy(CAPTURES / f"{capture}.stderr.txt", folder / f"{user}.stderr.txt")
        (folder / f"{user}.rc").write_text(codes[f"{capture}.txt"])

    return serve


def discovered(ran: Ran) -> list[tuple[str, str, str, bool]]:
    return [(c["id"], c["host"], c["state"], c["registered"]) for c in ran.events()]


def test_discover_lists_an_array_and_a_het_job_once_each_by_their_own_id(home: Home, queue: Queue) -> None:
    queue("alice", "squeue_arrays_het")
    ran = jobmon("discover", "--type", "slurm", "--host", "c", "--user", "alice", "--json", *home.args())
    assert (ran.code, ran.err) == (0, "")
    # 483: two running tasks and its throttled pending record; 487: two het components; 486: a
    # held array's one record; 489: a plain job. An array with a running task is running.
    assert discovered(ran) == [("483", "c", "RUNNING", False), ("487", "c", "PENDING", False),
                               ("486", "c", "PENDING", False), ("489", "c", "RUNNING", False)]
    assert {c["description"] for c in ran.events()} == {"jm-discover"}


def test_discover_add_registers_each_array_and_het_job_once(home: Home, queue: Queue) -> None:
    queue("alice", "squeue_arrays_het")
    assert jobmon("add", "--type", "slurm", "--id", "483", "--host", "c", *home.args()).code == 0
    added = jobmon("discover", "--type", "slurm", "--host", "c", "--user", "alice", "--add", *home.args())
    assert added.code == 0, added.err
    assert [(j["id"], j["description"]) for j in home.jobs()] == [
        ("483", ""), ("487", "jm-discover"), ("486", "jm-discover"), ("489", "jm-discover")]
    again = jobmon("discover", "--type", "slurm", "--host", "c", "--user", "alice", "--json", "--add", *home.args())
    assert again.code == 0, again.err
    assert [c for c in discovered(again) if not c[3]] == []  # the tasks' rows are the registered array


def test_discover_add_skips_a_row_the_type_refuses_and_adds_the_rest(home: Home, queue: Queue, tmp_path: Path) -> None:
    # A cluster's own discover regex that takes squeue's %i as it is: the pending records are
    # candidates that the slurm type refuses to register.
    conf = tmp_path / "raw-ids.yaml"
    conf.write_text("types:\n  slurm:\n    discover:\n"
                    "      regex: '^(?P<id>[^|]+)\\|(?P<state>[^|]+)\\|(?P<description>.*)$'\n")
    queue("alice", "squeue_arrays_het")
    ran = jobmon("discover", "--type", "slurm", "--host", "c", "--user", "alice", "--add", "--config", str(conf),
                 *home.args())
    slurm = config.load(env={}).types["slurm"]
    rows = [ln.split("|")[0] for ln in (CAPTURES / "squeue_arrays_het.txt").read_text().splitlines()]
    refused = [r for r in rows if slurm.problem({"id": r, "host": "c"})]
    assert {"483_[2-3%2]", "486_[0-2]"} <= set(refused) and "483_0" not in refused
    assert ran.code == 1
    assert [ln for ln in ran.err.splitlines() if not ln.startswith("registered ")] == [
        f"jobmon: --add: skipped slurm {r}@c: {slurm.problem({'id': r, 'host': 'c'})}" for r in refused]
    assert [j["id"] for j in home.jobs()] == [r for r in rows if r not in refused]


def test_discover_names_each_host_where_squeue_does_not_know_the_user(home: Home, queue: Queue) -> None:
    # squeue 22.05 exits 0 here, saying why on stderr only
    queue("nosuchuser", "squeue_invalid_user")
    ran = jobmon("discover", "--type", "slurm", "--host", "c", "--host", "d", "--user", "nosuchuser", "--add",
                 *home.args())
    assert (ran.code, ran.out) == (1, "")
    assert ran.err.splitlines() == [
        f"jobmon: discover slurm on {h}: exit 1: squeue: error: Invalid user: nosuchuser" for h in ("c", "d")]
    assert home.jobs() == []


def test_discover_trusts_no_row_of_a_listing_that_failed(home: Home, queue: Queue) -> None:
    queue("alice,nosuchuser", "squeue_valid_and_invalid_user")
    ran = jobmon("discover", "--type", "slurm", "--host", "c", "--user", "alice,nosuchuser", *home.args())
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == "jobmon: discover slurm on c: exit 1: squeue: error: Invalid user: nosuchuser\n"


def test_discover_adds_what_the_reachable_hosts_list(home: Home, queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_DOWN", "d")
    queue("alice", "squeue_arrays_het")
    ran = jobmon("discover", "--type", "slurm", "--host", "d", "--host", "c", "--user", "alice", "--add", "489", "99",
                 *home.args())
    assert ran.code == 1
    err = ran.err.splitlines()
    assert err[0] == ("jobmon: discover slurm on d: connection failed (exit 255): "
                      "ssh: connect to host d port 22: Connection refused")
    assert err[-1] == "jobmon: --add: no candidate 99 (see the list above)"
    assert [(j["id"], j["host"]) for j in home.jobs()] == [("489", "c")]


# ---------------------------------------------------------------- issue 12: durations, what a terminal shows


@pytest.mark.parametrize("command", [["watch", "--once"], ["watch"], ["poll"], ["demo"]])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-5"])
def test_non_finite_or_non_positive_intervals_are_refused_in_one_line(home: Home, command: list[str], value: str) -> None:
    ran = jobmon(*command, f"--interval={value}", *home.args(), timeout=30)
    shown = str(float(value))
    assert (ran.code, ran.out, ran.err.splitlines()) == (
        2, "", [f"jobmon: --interval {shown}: must be a number of seconds greater than 0"])


@pytest.mark.parametrize("value", ["nan", "inf", "1e999s", "9" * 400 + "s"])
def test_non_finite_durations_are_refused_in_one_line(home: Home, value: str) -> None:
    ran = jobmon("watch", "--for", value, *home.args())
    assert (ran.code, ran.out, ran.err.splitlines()) == (
        2, "", [f"jobmon: --for {value!r}: expected a duration such as 90s, 25m or 1h"])


HOSTILE_DESC = "x\x1b]0;owned\x07\x1b[2J\u202eDELIAF\u2066\x9b"


def test_list_and_discover_show_controls_and_bidi_overrides_escaped(home: Home, queue: Queue) -> None:
    home.registry.parent.mkdir(parents=True)
    home.registry.write_text(json.dumps([{"type": "slurm", "id": "7", "host": "c", "description": HOSTILE_DESC,
                                          "last_status": "RUN\u202eNING"}]))
    shown = jobmon("list", *home.args())
    assert shown.code == 0, shown.err
    assert not any(c in shown.out for c in "\x1b\x07\u202e\u2066\x9b"), shown.out
    assert "\\x1b]0;owned\\x07\\x1b[2J\\u202eDELIAF\\u2066\\x9b" in shown.out and "RUN\\u202eNING" in shown.out
    exact = jobmon("list", "--json", *home.args())
    assert not any(c in exact.out for c in "\x1b\x07\u202e\u2066\x9b"), exact.out
    assert [j["description"] for j in exact.events()] == [HOSTILE_DESC]  # JSON keeps the exact value
    queue("alice", "squeue_arrays_het")
    found = jobmon("discover", "--type", "slurm", "--host", "c", "--user", "alice", *home.args())
    assert found.code == 0, found.err
    assert not any(c in found.out for c in "\x1b\x07\u202e\u2066\x9b"), found.out
    assert "\\u202eDELIAF" in found.out


def test_status_shows_a_hostile_description_escaped(home: Home, cluster: Cluster) -> None:
    cluster.set("7", "RUNNING")
    home.registry.parent.mkdir(parents=True)
    home.registry.write_text(json.dumps([{"type": "slurm", "id": "7", "host": "c", "description": HOSTILE_DESC}]))
    ran = jobmon("status", *home.args())
    assert ran.code == 0, ran.err
    assert not any(c in ran.out for c in "\x1b\x07\u202e\u2066\x9b"), ran.out
    assert '"x\\x1b]0;owned\\x07\\x1b[2J\\u202eDELIAF\\u2066\\x9b": NEW -> RUNNING' in ran.out
