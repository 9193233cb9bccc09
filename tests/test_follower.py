"""Followers as an agent runs them, as child processes against the fake cluster: watches with a
deadline that are armed again, a poller killed under a follower, two readers, a reader taken
over. No sleeps: every wait is for a condition, bounded."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import REPO, Cluster, Home, jobmon

WATCH = REPO / "bin" / "jobmon-watch"


@pytest.fixture
def fast(tmp_path: Path) -> str:
    """A config that checks slurm jobs every 0.1 s; detached pollers are handed it too."""
    conf = tmp_path / "fast.yaml"
    conf.write_text("types: {slurm: {interval: 0.1}}\n")
    return str(conf)


def wait_until(ready: Callable[[], Any], what: str, limit: float = 60) -> Any:
    deadline = time.monotonic() + limit
    while not (value := ready()):
        assert time.monotonic() < deadline, f"still waiting after {limit:.0f} s for {what}"
        time.sleep(0.05)
    return value


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def poller_pid(home: Home) -> int:
    return int(home.registry.with_name("watch.lock").read_text())


def add(home: Home, fast: str, job_id: str) -> None:
    ran = jobmon("add", "--type", "slurm", "--id", job_id, "--host", "c", "--watch", "--config", fast, *home.args())
    assert ran.code == 0, ran.err


def watch_for(home: Home, fast: str, duration: str, *, as_json: bool = True) -> list[Any]:
    """One armed watch, run to its end: its lines (parsed, with ``as_json``)."""
    proc = subprocess.run([str(WATCH), "--for", duration, *(["--json"] if as_json else []), "--config", fast,
                           *home.args()], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return [json.loads(ln) for ln in proc.stdout.splitlines()] if as_json else proc.stdout.splitlines()


def ends(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["id"], e["to"]) for e in lines if e["kind"] == "state" and e["terminal"]]


@pytest.fixture(autouse=True)
def no_poller_left(home: Home):  # type: ignore[no-untyped-def]
    """A detached poller outlives the test's commands: end it with the test."""
    yield
    lock = home.registry.with_name("watch.lock")
    if lock.exists() and lock.read_text().strip().isdigit() and alive(poller_pid(home)):
        os.kill(poller_pid(home), signal.SIGTERM)


def test_a_watch_with_a_deadline_ends_with_rearm_and_the_next_one_goes_on(home: Home, cluster: Cluster,
                                                                           fast: str) -> None:
    cluster.set("1", "RUNNING")
    cluster.set("2", "PENDING")
    add(home, fast, "1")
    add(home, fast, "2")
    first = watch_for(home, fast, "1s", as_json=False)
    assert [ln[9:] for ln in first] == [
        "slurm 1@c: NEW -> RUNNING", "slurm 2@c: NEW -> PENDING",  # an exit code belongs to an end
        f"still watching 2 jobs (1 running, 1 pending): run {WATCH} --for 1s --config {fast} {' '.join(home.args())} again"]
    cluster.set("1", "COMPLETED")  # ends while no watch is armed: the poller goes on
    wait_until(lambda: home.history(), "the end to reach history with no watch armed")
    assert alive(poller_pid(home))
    second = watch_for(home, fast, "1s")
    assert [(e["kind"], e["id"], e["to"]) for e in second] == [("state", "1", "COMPLETED"), ("rearm", "", None)]
    assert second[-1]["detail"].startswith("still watching 1 job (1 pending): ")
    cluster.set("2", "FAILED", "3:0")
    third = watch_for(home, fast, "1m")  # ends well before its deadline: no job is left
    assert ends(third) == [("2", "FAILED")]
    assert (third[-1]["kind"], third[-1]["detail"]) == ("summary", "2 jobs: 1 completed, 1 failed")
    seqs = [e["seq"] for e in second + third if "seq" in e]
    assert seqs == [3, 4]  # each event once, in order, over the three watches


def test_a_killed_poller_is_taken_over_by_its_follower_and_no_end_is_lost(home: Home, cluster: Cluster,
                                                                          fast: str) -> None:
    cluster.set("5", "RUNNING")
    add(home, fast, "5")
    detached = poller_pid(home)
    follower = subprocess.Popen([sys.executable, "-m", "jobmon", "watch", "--json", "--config", fast, *home.args()],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    assert json.loads(follower.stdout.readline())["to"] == "RUNNING"  # type: ignore[union-attr]
    os.kill(detached, signal.SIGKILL)
    wait_until(lambda: not alive(detached), "the poller to die")
    cluster.set("5", "COMPLETED")
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    lines = [json.loads(ln) for ln in out.splitlines()]
    assert ends(lines) == [("5", "COMPLETED")] and lines[-1]["detail"] == "1 job: 1 completed"
    assert [r["id"] for r in home.history()] == ["5"]
    assert [e["to"] for e in home.logged()] == ["RUNNING", "COMPLETED"]


def test_a_watch_with_a_deadline_starts_a_new_poller_when_the_old_one_died(home: Home, cluster: Cluster,
                                                                           fast: str) -> None:
    cluster.set("6", "RUNNING")
    add(home, fast, "6")
    first_poller = poller_pid(home)
    os.kill(first_poller, signal.SIGKILL)
    wait_until(lambda: not alive(first_poller), "the poller to die")
    cluster.set("6", "COMPLETED")
    lines = watch_for(home, fast, "1m")
    assert ends(lines) == [("6", "COMPLETED")] and lines[-1]["kind"] == "summary"
    assert poller_pid(home) != first_poller


def test_two_readers_each_get_every_event_once(home: Home, cluster: Cluster, fast: str) -> None:
    cluster.set("7", "COMPLETED")
    add(home, fast, "7")
    wait_until(lambda: home.history(), "the job to end")
    for reader in ("agent", "me"):
        first = jobmon("events", "--json", "--reader", reader, *home.args())
        assert first.code == 0, first.err
        assert [(e["kind"], e.get("seq"), e["to"]) for e in first.events()] == [("state", 1, "COMPLETED"), ("summary", None, None)]
        again = jobmon("events", "--json", "--reader", reader, *home.args())
        assert [e["detail"] for e in again.events()] == ["1 job: 1 completed"]  # nothing twice
    everything = jobmon("events", "--all", *home.args())
    assert [ln[9:] for ln in everything.lines()] == ["slurm 7@c: NEW -> COMPLETED (exit 0:0, 00:00:01)",
                                                     "1 job: 1 completed"]


def test_a_new_watch_of_the_same_reader_takes_over_and_nothing_is_printed_twice(home: Home, cluster: Cluster,
                                                                               fast: str) -> None:
    cluster.set("8", "RUNNING")
    add(home, fast, "8")
    old = subprocess.Popen([str(WATCH), "--for", "10m", "--json", "--config", fast, *home.args()],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    assert json.loads(old.stdout.readline())["to"] == "RUNNING"  # type: ignore[union-attr]
    new = subprocess.Popen([str(WATCH), "--for", "10m", "--json", "--config", fast, *home.args()],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    old_rest, _ = old.communicate(timeout=60)  # the old one lets go, quietly
    assert old.returncode == 0 and old_rest == ""
    cluster.set("8", "COMPLETED")
    out, err = new.communicate(timeout=60)
    assert new.returncode == 0, err
    assert [(e["kind"], e["to"]) for e in map(json.loads, out.splitlines())] == [("state", "COMPLETED"), ("summary", None)]


def test_detach_starts_one_poller_and_says_its_pid(home: Home, cluster: Cluster, fast: str) -> None:
    assert jobmon("watch", "--detach", *home.args()).out == "no jobs to watch\n"
    cluster.set("9", "RUNNING")
    assert jobmon("add", "--type", "slurm", "--id", "9", "--host", "c", *home.args()).code == 0
    first = jobmon("watch", "--detach", "--config", fast, *home.args())
    second = jobmon("watch", "--detach", "--config", fast, *home.args())
    pid = int(first.out)
    assert alive(pid) and second.out == first.out and "already runs" in second.err
    assert pid == poller_pid(home)
    wait_until(lambda: home.logged(), "the poller to log the job")


@pytest.mark.parametrize("argv,message", [
    (["--for", "5x"], "jobmon: --for '5x': expected a duration such as 90s, 25m or 1h"),
    (["--for", "0"], "jobmon: --for '0': expected a duration such as 90s, 25m or 1h"),
    (["--reader", "../x"], "jobmon: --reader '../x': use up to 64 letters, digits, '-', '_' and '.'"),
])
def test_bad_watch_options_are_one_line_and_exit_2(home: Home, argv: list[str], message: str) -> None:
    ran = jobmon("watch", *argv, *home.args())
    assert (ran.code, ran.out, ran.err.splitlines()) == (2, "", [message])


def test_a_poller_that_fails_says_why_to_its_followers_in_one_line(home: Home, cluster: Cluster, fast: str) -> None:
    cluster.set("10", "RUNNING")
    assert jobmon("add", "--type", "slurm", "--id", "10", "--host", "c", *home.args()).code == 0
    proc = subprocess.Popen([sys.executable, "-m", "jobmon", "watch", "--json", "--config", fast, *home.args()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    assert json.loads(proc.stdout.readline())["to"] == "RUNNING"  # type: ignore[union-attr]
    damaged = home.registry.with_name("damaged")
    damaged.write_text("[{")
    damaged.replace(home.registry)  # at once: a poller that read it half-written would see no job
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3 and "Traceback" not in err
    why = f"{home.registry}: not valid JSON (line 1, column 3: Expecting property name enclosed in double quotes); left as it is"
    assert [(e["kind"], e["detail"]) for e in map(json.loads, out.splitlines())] == [
        ("error", f"jobmon poller: fatal: {why}"), ("error", f"jobmon-watch: fatal: {why}")]
    assert home.registry.read_text() == "[{"


def test_until_ready_ends_the_watch_at_ready_and_the_poller_goes_on_to_report_the_end(home: Home, cluster: Cluster,
                                                                                     tmp_path: Path) -> None:
    from conftest import FIXTURES

    conf = tmp_path / "fast.yaml"
    conf.write_text("types: {slurm: {interval: 0.1}, deploy: {interval: 0.1}}\n")
    cluster.set("80", "RUNNING")
    cluster.queue("80", "RUNNING", node="gpu07")
    cluster.fakebin.add("curl", "#!/bin/sh\nprintf 200\n")  # gpu07 answers: no UNHEALTHY races the summary
    log = cluster.output("80", "")
    ran = jobmon("add", "--type", "deploy", "--id", "80", "--host", "c", "--config", str(conf), *home.args())
    assert ran.code == 0, ran.err
    cluster.set("81", "RUNNING")  # a training run beside the server: it has no READY, so it holds nothing up
    assert jobmon("add", "--type", "slurm", "--id", "81", "--host", "c", "--config", str(conf), *home.args()).code == 0
    watch = subprocess.Popen([str(WATCH), "--until", "ready", "--json", "--config", str(conf), *home.args()],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wait_until(lambda: (home.jobs() or [{}])[0].get("jobmon", {}).get("captured", {}).get("stdout"),
               "the log's path to be kept")
    log.write_text((FIXTURES / "deploy" / "vllm_ready.log").read_text())
    out, err = watch.communicate(timeout=60)  # it ends by itself
    lines = [json.loads(ln) for ln in out.splitlines()]
    assert sorted((e["kind"], e["to"], e["id"]) for e in lines if e["kind"] == "state") == [
        ("state", "RUNNING", "80"), ("state", "RUNNING", "81")], err
    assert [(e["kind"], e["to"]) for e in lines if e["kind"] != "state"] == [
        ("event", "LOADING"), ("event", "READY"), ("summary", None)], err
    assert lines[-1]["detail"] == ("ready: deploy 80@c at http://gpu07:8000; still registered: the poller goes on "
                                   "and logs how it ends")
    assert [j["id"] for j in home.jobs()] == ["80", "81"] and alive(poller_pid(home))
    cluster.set("81", "COMPLETED")
    cluster.set("80", "FAILED", "1:0")  # no watch armed: the poller still ends it
    (cluster.dir / "80.queue").unlink()  # the controller has let go of it
    wait_until(lambda: len(home.history()) == 2, "the ends to reach history")
    after = watch_for(home, str(conf), "1m")
    assert sorted(ends(after)) == [("80", "FAILED"), ("81", "COMPLETED")]


# ---------------------------------------------------------------- jobmon wait, events --if-new


def waited(home: Home, fast: str, *argv: str) -> list[Any]:
    ran = jobmon("wait", "--json", "--config", fast, *argv, *home.args(), timeout=120)
    assert ran.code == 0 and "Traceback" not in ran.err, ran.err
    return ran.events()


def test_wait_returns_at_the_first_new_events_and_each_end_once_over_a_loop(home: Home, cluster: Cluster,
                                                                           fast: str) -> None:
    for job_id in ("21", "22", "23"):
        cluster.set(job_id, "RUNNING")
        add(home, fast, job_id)
    seen: list[Any] = []
    for turn in range(20):  # as a harness told when a command exits runs it: again after each return
        if turn == 1:
            cluster.set("21", "COMPLETED")
        elif turn == 2:
            cluster.set("22", "FAILED", "2:0")
            cluster.set("23", "COMPLETED")
        got = waited(home, fast, "--for", "1m")
        seen += got
        if got[-1]["kind"] == "summary":
            break
    assert ends(seen) == [("21", "COMPLETED"), ("22", "FAILED"), ("23", "COMPLETED")]  # each once
    assert seen[-1]["detail"] == "3 jobs: 2 completed, 1 failed"
    assert [e["kind"] for e in seen].count("summary") == 1  # only once no job is left


def test_wait_at_its_deadline_says_how_to_go_on(home: Home, cluster: Cluster, fast: str) -> None:
    cluster.set("24", "PENDING")
    add(home, fast, "24")
    first = waited(home, fast, "--for", "30s")
    assert [(e["kind"], e["to"]) for e in first] == [("state", "PENDING")]  # returned at the first event
    (rearm,) = waited(home, fast, "--for", "1s")
    assert rearm["kind"] == "rearm" and rearm["detail"].startswith("still watching 1 job (1 pending): run jobmon wait ")
    cluster.set("24", "COMPLETED")
    last = waited(home, fast, "--for", "1m", "--until", "ended")
    assert ends(last) == [("24", "COMPLETED")] and last[-1]["detail"] == "1 job: 1 completed"


def test_a_bounded_print_leaves_the_rest_for_the_next_call_and_a_hook_hears_nothing_twice(
        home: Home, cluster: Cluster, fast: str) -> None:
    for n in range(30, 42):
        cluster.set(str(n), "FAILED", "1:0")  # failures: each a line of its own
        assert jobmon("add", "--type", "slurm", "--id", str(n), "--host", "c", *home.args()).code == 0
    assert jobmon("watch", "--once", "--reader", "other", "--config", fast, *home.args()).code == 0
    first = jobmon("events", "--max-chars", "700", *home.args())
    told = [ln for ln in first.lines() if "-> FAILED" in ln]
    assert 0 < len(told) < 12 and len(first.out) < 700 + 400
    assert first.lines()[-2][9:].startswith(f"{12 - len(told)} events not yet shown: run jobmon events --max-chars 700 ")
    rest = jobmon("events", "--if-new", "--max-chars", "0", *home.args())
    assert len([ln for ln in rest.lines() if "-> FAILED" in ln]) == 12 - len(told)
    assert rest.lines()[-1][9:] == "12 jobs: 12 failed"
    quiet = jobmon("events", "--if-new", *home.args())
    assert (quiet.code, quiet.out) == (0, "")  # nothing new: not even the summary
