"""jobmon's performance, measured side by side in one run (these machines are noisy: compare
ratios, not absolute times). Prints a markdown table; `make bench` writes it to
docs/performance.md with a description of the machine.

1. Commands and wall time per poll: jobmon (one batched sacct per host, hosts in parallel) vs
   the per-job method it replaces (one `ssh host sacct -j ID` per job, one after another), with
   a fake ssh that sleeps a fixed latency before answering.
2. A real ssh round trip to the e2e cluster's sshd on 127.0.0.1 (tests/e2e/cluster/up.sh):
   multiplexed (ControlMaster) vs a fresh connection each time. Skipped if it is not up.
3. The watcher while idle: CPU and peak RSS over 60 s with 100 pending jobs.
4. Start-up: `jobmon --help` and `jobmon status` (empty registry) vs `python -c pass`.
5. A follower (`jobmon-watch --for`): the time from an event being appended to the log (by
   another process, as a detached poller does) to the follower printing it, and its CPU while
   no event comes.
6. Mass completion: 500 jobs ending in one poll, on_complete batched per host vs one call per
   job (how it ran before), side by side.
7. A deployment on the e2e cluster: from its server writing "Application startup complete." to
   `jobmon watch` printing READY, at two intervals. Skipped if the cluster is not up.
8. `jobmon events` on a 100,000-event log with 10 new events: this tree (finds its place by
   halving the file) vs main at 4224a2a (read and parsed the log whole), as whole processes.
9. A mass completion (150 and 2,000 ends, one in 15 failed) as the model reads it through the
   Monitor (tests/harness.py's emulator): ends and causes read, notifications used, the time to
   the last end read; this tree vs main at 4224a2a (bench/delivery.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

REPO = Path(__file__).resolve().parent.parent
READING = "### Reading the figures"  # `--write` keeps a page's hand-written part from here on
sys.path.insert(0, str(REPO))

FAKE_SSH = """#!/usr/bin/env bash
while [ $# -gt 0 ]; do
  case "$1" in -o|-p|-i|-J|-l|-F|-S) shift 2 ;; --) shift; break ;; -*) shift ;; *) break ;; esac
done
echo "$1" >> "$BENCH_LOG"
shift
sleep "$BENCH_LATENCY"
exec bash -c "$*"
"""

# Every job is in $BENCH_STATE (RUNNING unless set): the answer's size grows with the ids asked
# for, as sacct's does. Without -X (on_complete's query): each job's row and its batch step's.
FAKE_SACCT = """#!/usr/bin/env bash
ids=""; steps=1
while [ $# -gt 0 ]; do case "$1" in -j) ids="$2"; shift 2 ;; -X) steps=0; shift ;; *) shift ;; esac; done
IFS=, read -ra list <<< "$ids"
state="${BENCH_STATE:-RUNNING}"
for id in "${list[@]}"; do
  if [ "$steps" = 0 ]; then printf '%s|%s|%s|0:0|0:0|00:01:00|2026-01-01T00:00:00\\n' "$id" "$id" "$state"
  else printf '%s|%s|%s|0:0|\\n%s.batch|%s.batch|%s|0:0|1.5G\\n' "$id" "$id" "$state" "$id" "$id" "$state"; fi
done
"""

# The controller: knows no job (sacct answers for all), and gives each job's log paths once.
FAKE_SQUEUE = """#!/usr/bin/env bash
echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
for id in $(seq 1000 1999) $(seq 5000 5099); do  # the ids parts 1, 3 and 6 register
  echo "JobId=$id JobName=bench JobState=RUNNING WorkDir=/tmp StdErr=$BENCH_LOGS/slurm-$id.out StdIn=/dev/null StdOut=$BENCH_LOGS/slurm-$id.out Power="
done
"""

FAKE_CURL = """#!/bin/sh
printf 200
"""


def fake_cluster(tmp: Path, latency: float) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("ssh", FAKE_SSH), ("sacct", FAKE_SACCT), ("squeue", FAKE_SQUEUE), ("scontrol", FAKE_SCONTROL),
                       ("curl", FAKE_CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    logs = tmp / "logs"  # the jobs' own output files, which the progress probe stats
    logs.mkdir(exist_ok=True)
    for job_id in [*range(1000, 2000), *range(5000, 5100)]:
        (logs / f"slurm-{job_id}.out").write_text(f"step 1 of job {job_id}\n")
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "BENCH_LOG": str(tmp / "calls.log"),
            "BENCH_LOGS": str(logs),
            "BENCH_LATENCY": str(latency), "XDG_CACHE_HOME": str(tmp / "cache")}


def calls(tmp: Path) -> int:
    log = tmp / "calls.log"
    n = len(log.read_text().splitlines()) if log.exists() else 0
    log.unlink(missing_ok=True)
    return n


# ---------------------------------------------------------------- 1. per poll


class Polled(NamedTuple):
    tmp: Path
    env: dict[str, str]
    jobs: list[Any]
    watcher: Any
    log: Any


@contextlib.contextmanager
def polled(n: int, hosts: int, latency: float, config_file: str | None = None, kind: str = "slurm"
           ) -> Iterator[Polled]:
    """A watcher over ``n`` registered jobs of type ``kind`` on ``hosts`` hosts behind the fake
    ssh, with the fake cluster's environment in force until the block ends. deploy jobs are
    servers already READY: each poll reads their logs' new lines and asks their health."""
    from loguru import logger

    from jobmon import config
    from jobmon.eventlog import EventLog
    from jobmon.registry import Job, Registry
    from jobmon.rules import Book
    from jobmon.watch import Watcher

    logger.remove()  # the bench prints figures, not the watcher's log
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = fake_cluster(tmp, latency)
        book = Book(seen=("READY",), captured={"url": "http://gpu07:8000"}) if kind == "deploy" else Book()
        jobs = [Job(kind, str(1000 + i), host=f"cluster-{i % hosts}", book=book) for i in range(n)]
        reg = Registry(tmp / "reg" / "active_jobs.json")
        with reg.transaction() as entries:
            entries.extend(jobs)
        old = dict(os.environ)
        os.environ.update(env)
        try:
            log = EventLog(reg.events_path)
            yield Polled(tmp, env, jobs, Watcher(config.load(config_file, env={}), reg, log), log)
        finally:
            os.environ.clear()
            os.environ.update(old)


def per_poll(n: int, hosts: int, latency: float, baseline: bool = True, config_file: str | None = None,
             kind: str = "slurm") -> dict[str, float]:
    with polled(n, hosts, latency, config_file, kind) as p:
        p.watcher.cycle(everything=True)  # first sighting: NEW -> RUNNING for every job
        if kind == "deploy":
            p.watcher.cycle(everything=True)  # the first read of each running job's log
        calls(p.tmp)
        start = time.monotonic()
        p.watcher.cycle(everything=True)  # a steady-state poll
        ours = time.monotonic() - start
        our_calls = calls(p.tmp)
        if not baseline:
            return {"ours": ours, "our_calls": our_calls}
        # The method jobmon replaces: one ssh per job, one after another.
        start = time.monotonic()
        for job in p.jobs:
            subprocess.run(["ssh", "-o", "BatchMode=yes", job.host,
                            f"sacct -j {job.id} -X -n -P --format=JobID,State,ExitCode,Elapsed"],
                           env=p.env, stdout=subprocess.DEVNULL, check=True)
        theirs = time.monotonic() - start
        their_calls = calls(p.tmp)
    return {"ours": ours, "theirs": theirs, "our_calls": our_calls, "their_calls": their_calls}


PROBE_OFF = "types:\n  slurm:\n    stall_after: 0\n"  # no progress probe: the check as it was before


def two_ways(n: int, hosts: int, latency: float, rounds: int, first: dict[str, Any], second: dict[str, Any]
             ) -> dict[str, float]:
    """A steady-state poll of ``n`` running jobs two ways (``per_poll``'s keyword arguments):
    commands and wall time, the best of ``rounds`` each (the difference is small beside the
    machine's noise)."""
    a = [per_poll(n, hosts, latency, baseline=False, **first) for _ in range(rounds)]
    b = [per_poll(n, hosts, latency, baseline=False, **second) for _ in range(rounds)]
    return {"a": min(r["ours"] for r in a), "b": min(r["ours"] for r in b),
            "a_calls": a[0]["our_calls"], "b_calls": b[0]["our_calls"]}


def probe_cost(n: int, hosts: int, latency: float, rounds: int) -> dict[str, float]:
    """With the progress probe (a stat of every job's log and the cluster's clock, in the same
    call) and without it."""
    with tempfile.TemporaryDirectory() as d:
        off = Path(d) / "probe-off.yaml"
        off.write_text(PROBE_OFF)
        return two_ways(n, hosts, latency, rounds, {}, {"config_file": str(off)})


# ---------------------------------------------------------------- 6. mass completion

# How on_complete ran before it was batched: one ssh per ending job (max_parallel at once).
PER_JOB_ON_COMPLETE = """types:
  slurm:
    on_complete: >-
      {{ ssh }} -- {{ host }} {% remote %}sacct -j {{ id }} -n -P --format=JobID,JobIDRaw,State,ExitCode,MaxRSS
      | awk -F'|' '$5 != "" { print "maxrss " $5 }' | tail -n 1{% endremote %}
"""


def mass_end(n: int, hosts: int, latency: float, per_job: bool = False) -> dict[str, float]:
    """``n`` running jobs all end in one poll: the time until their end events are logged, the
    poll's wall time and its commands, with on_complete batched per host (or one per job); and
    a quiet poll of the same check, for scale."""
    with tempfile.TemporaryDirectory() as d:
        override = Path(d) / "per-job.yaml"
        override.write_text(PER_JOB_ON_COMPLETE)
        with polled(n, hosts, latency, str(override) if per_job else None) as p:
            p.watcher.cycle(everything=True)  # NEW -> RUNNING, log paths kept
            start = time.monotonic()
            p.watcher.cycle(everything=True)  # one round trip of the check: nothing changes
            quiet = time.monotonic() - start
            calls(p.tmp)
            os.environ["BENCH_STATE"] = "COMPLETED"
            logged_at: list[float] = []
            append = p.log.append

            def timed(events):  # type: ignore[no-untyped-def]
                out = append(events)
                logged_at.append(time.monotonic())
                return out

            p.log.append = timed
            start = time.monotonic()
            p.watcher.cycle(everything=True)
            wall = time.monotonic() - start
            printed = logged_at[0] - start  # a follower prints what the log holds
            ended = sum(1 for e in p.log.since(0) if e.kind == "state" and e.terminal)
            used = calls(p.tmp)
    assert ended == n, f"{ended} of {n} ends logged"
    return {"wall": wall, "calls": used, "quiet": quiet, "printed": printed}


# ---------------------------------------------------------------- 2. real sshd


def ssh_round_trips(host: str, rounds: int, user: str | None = None) -> dict[str, float] | None:
    login = ["-l", user] if user else []
    probe = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", *login, host, "true"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    if probe.returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as d:
        mux = ["-o", "ControlMaster=auto", "-o", f"ControlPath={d}/cm-%C", "-o", "ControlPersist=60"]
        fresh = ["-o", "ControlMaster=no", "-o", "ControlPath=none"]

        def once(opts: list[str]) -> float:
            start = time.monotonic()
            subprocess.run(["ssh", "-o", "BatchMode=yes", *opts, *login, host, "true"], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            return time.monotonic() - start

        once(mux)  # opens the master
        f, m = [], []
        for _ in range(rounds):  # interleaved, so both see the same machine
            f.append(once(fresh))
            m.append(once(mux))
        subprocess.run(["ssh", *mux, *login, "-O", "exit", host], stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return {"fresh": statistics.median(f), "mux": statistics.median(m)}


# ---------------------------------------------------------------- 3. idle watcher


def idle(jobs: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = fake_cluster(tmp, 0.05)
        (tmp / "bin" / "sacct").write_text(FAKE_SACCT.replace("RUNNING", "PENDING"))
        root = tmp / "root"
        reg_dir = root / ".claude" / "agents" / "bench"
        reg_dir.mkdir(parents=True)
        (reg_dir / "active_jobs.json").write_text(json.dumps(
            [{"type": "slurm", "id": str(5000 + i), "host": f"cluster-{i % 10}", "last_status": "PENDING"}
             for i in range(jobs)]))
        proc = subprocess.Popen([sys.executable, "-m", "jobmon", "watch", "--root", str(root), "--session", "bench"],
                                env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        tick = os.sysconf("SC_CLK_TCK")
        time.sleep(3)  # start-up and the first poll are not "idle"
        cpu0, t0 = _cpu(proc.pid, tick), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = _cpu(proc.pid, tick), time.monotonic()
        hwm = _hwm(proc.pid)
        proc.terminate()
        proc.wait(timeout=30)
    own = (cpu1[0] - cpu0[0]) / (t1 - t0) * 100
    with_children = (cpu1[1] - cpu0[1]) / (t1 - t0) * 100
    return {"cpu": own, "cpu_children": with_children, "rss_mb": hwm / 1024}


def _cpu(pid: int, tick: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) / tick for x in fields[11:15])
    return utime + stime, utime + stime + cutime + cstime


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- 4. start-up


def startup(rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        commands = {
            "python": [sys.executable, "-c", "pass"],
            "help": [sys.executable, "-m", "jobmon", "--help"],
            "status": [sys.executable, "-m", "jobmon", "status", "--root", d, "--session", "bench"],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(rounds):  # interleaved
            for name, argv in commands.items():
                start = time.monotonic()
                subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
                times[name].append(time.monotonic() - start)
    return {k: statistics.median(v) for k, v in times.items()}


# ---------------------------------------------------------------- 5. a follower


def follower(events: int, idle_seconds: float, *flags: str) -> dict[str, float]:
    """This process plays the poller (it holds the watch lock and appends to the log at random
    moments); a real ``jobmon watch --for`` (with ``flags``) follows in another process."""
    import random
    import threading

    from jobmon.eventlog import EventLog
    from jobmon.events import Event
    from jobmon.registry import Registry, WatchLock

    with tempfile.TemporaryDirectory() as d:
        registry = Registry(Path(d) / ".claude" / "agents" / "bench" / "active_jobs.json")
        lock = WatchLock(registry)
        assert lock.acquire() is None
        log = EventLog(registry.events_path)
        proc = subprocess.Popen([sys.executable, "-m", "jobmon", "watch", "--for", "1h", "--json", *flags,
                                 "--root", d, "--session", "bench"], env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
        printed: dict[int, float] = {}

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                printed[json.loads(line).get("seq", 0)] = time.monotonic()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        appended: dict[int, float] = {}
        rng = random.Random(7)
        for n in range(events):
            time.sleep(rng.uniform(0.0, 0.3))  # at any phase of the follower's wake-ups
            (event,) = log.append([Event("state", "slurm", str(n), "c", after="RUNNING")])
            appended[event.seq] = time.monotonic()
        deadline = time.monotonic() + 10
        while len(printed) < events and time.monotonic() < deadline:
            time.sleep(0.05)
        tick = os.sysconf("SC_CLK_TCK")
        cpu0, t0 = _cpu(proc.pid, tick), time.monotonic()
        time.sleep(idle_seconds)
        cpu1, t1 = _cpu(proc.pid, tick), time.monotonic()
        proc.terminate()
        proc.wait(timeout=30)
        lock.release()
    waits = sorted(printed[seq] - at for seq, at in appended.items() if seq in printed)
    return {"n": len(waits), "p50": waits[len(waits) // 2], "p95": waits[int(len(waits) * 0.95)],
            "max": waits[-1], "cpu": (cpu1[0] - cpu0[0]) / (t1 - t0) * 100}


# ---------------------------------------------------------------- 7. READY on the real cluster

SERVE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "deploy" / "server" / "serve.py"


def ready_latency(host: str, interval: float) -> float | None:
    """Seconds from the stand-in server's startup line reaching its log (seen here: the cluster
    runs on this machine) to `jobmon watch --interval` printing READY; None without a cluster."""
    import queue
    import socket
    import threading

    if subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", host, "sinfo -h"],
                      capture_output=True, stdin=subprocess.DEVNULL).returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as d, socket.socket() as sock:
        tmp = Path(d)
        os.chmod(tmp, 0o755)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        wrap = f"exec python3 {SERVE} {port} {tmp / 'sick'}"
        job = subprocess.run(["ssh", host, f"sbatch --parsable --chdir {tmp} --job-name jobmon-bench --wrap '{wrap}'"],
                             capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL).stdout.strip()
        common = ["--root", str(tmp), "--session", "bench"]
        jobmon = [sys.executable, str(Path(__file__).resolve().parent.parent / "jobmon" / "__main__.py")]
        subprocess.run([*jobmon, "add", "--type", "deploy", "--id", job, "--host", host, *common], check=True,
                       capture_output=True)
        watch = subprocess.Popen([*jobmon, "watch", "--json", "--interval", str(interval), *common],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready: queue.Queue[float] = queue.Queue()

        def read() -> None:
            for line in watch.stdout or ():
                if json.loads(line).get("to") == "READY":
                    ready.put(time.monotonic())

        threading.Thread(target=read, daemon=True).start()
        log = tmp / f"slurm-{job}.out"
        try:
            while b"Application startup complete." not in (log.read_bytes() if log.exists() else b""):
                time.sleep(0.005)
            written = time.monotonic()
            return ready.get(timeout=interval + 60) - written
        finally:
            subprocess.run(["ssh", host, f"scancel {job}"], stdin=subprocess.DEVNULL)
            watch.terminate()
            watch.wait(30)


# ---------------------------------------------------------------- 8. `jobmon events` on a long log

BASELINE = "4224a2a"  # main before the event log found its place by halving


def baseline_tree(commit: str = BASELINE) -> Path:
    """main at ``commit``, checked out beside this tree (a git worktree, made once)."""
    tree = Path(tempfile.gettempdir()) / f"jobmon-{commit}"
    if not (tree / "jobmon" / "__main__.py").exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", str(tree), commit], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return tree


def long_log(folder: Path, n: int, cursor: int, big_last: bool) -> int:
    """A session whose events.jsonl holds ``n`` state events of slurm jobs (~300 bytes each, as
    EventLog.append writes them, in one file), the reader ``agent`` at ``cursor``; with
    ``big_last`` a digest of 2,500 jobs (~200 KB) after them. How many events are new."""
    from datetime import datetime, timezone

    from jobmon.events import Event, JobRef

    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    events = [Event("state", "slurm", str(4_000_000 + i), f"cluster-{i % 4}", description=f"train-llama-{i % 97:02d}-seed7",
                    before="PENDING", after="RUNNING", detail=f"node gpu{i % 64:02d}, elapsed 00:00:{i % 60:02d}, "
                    "partition batch, account ml-research", time=start, seq=i + 1) for i in range(n)]
    if big_last:
        jobs = tuple(JobRef("slurm", str(5_000_000 + j), "cluster-0", "RUNNING", "COMPLETED") for j in range(2500))
        events.append(Event("changes", detail="2500 jobs moved", jobs=jobs, time=start, seq=n + 1))
    (folder / "readers").mkdir(parents=True)
    (folder / "events.jsonl").write_text("".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in events))
    (folder / "events.seq").write_text(f"{len(events)}\n")
    (folder / "readers" / "agent.seq").write_text(f"{cursor}\n")
    for path in folder.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    folder.chmod(0o700)
    return len(events) - cursor


def measured(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one whole process. The RSS by GNU time, whose
    child starts small: a child of this process (by fork or vfork) keeps this process's
    resident size as its high-water mark through exec, and this one holds what built the log."""
    timer = Path("/usr/bin/time")
    with tempfile.TemporaryDirectory() as d:
        said = Path(d) / "rss"
        wrap = [str(timer), "-f", "%M", "-o", str(said)] if timer.exists() else []
        start = time.monotonic()
        ran = subprocess.run([*wrap, *argv], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, text=True, check=False)
        wall = time.monotonic() - start
        assert ran.returncode == 0, f"{argv}: exit {ran.returncode}"
        peak = int(said.read_text().split()[-1]) / 1024 if wrap else float("nan")
    return wall, peak, ran.stdout


def events_read(n: int = 100_000, cursor: int = 99_990, rounds: int = 3, big_last: bool = False) -> dict[str, Any]:
    """``jobmon events --session S --root R`` on a fresh copy of the session each run (the cursor
    moves), main at 4224a2a and this tree in turn; min and median wall, peak RSS."""
    import shutil

    trees = {"main": baseline_tree(), "this": REPO}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        session = Path(".claude") / "agents" / "bench"
        new = long_log(tmp / "base" / session, n, cursor, big_last)
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp / "xdg"), "XDG_CACHE_HOME": str(tmp / "cache")}
        walls: dict[str, list[float]] = {k: [] for k in trees}
        rss: dict[str, list[float]] = {k: [] for k in trees}
        for _ in range(rounds):
            for name, tree in trees.items():  # alternated: both see the same machine
                root = tmp / "run"
                shutil.rmtree(root, ignore_errors=True)
                shutil.copytree(tmp / "base", root)
                wall, peak, printed = measured([sys.executable, str(tree / "jobmon" / "__main__.py"), "events",
                                                "--session", "bench", "--root", str(root)], env, tmp)  # no project's monitor.yaml
                got = len(printed.splitlines()) - 1  # the last line is the session summary
                assert got == new, f"{name}: {got} events printed, {new} expected"
                walls[name].append(wall)
                rss[name].append(peak)
        size = (tmp / "base" / session / "events.jsonl").stat().st_size
    return {"size": size, "new": new, **{f"{k}_min": min(v) for k, v in walls.items()},
            **{f"{k}_median": statistics.median(v) for k, v in walls.items()},
            **{f"{k}_rss": max(v) for k, v in rss.items()}}


def events_rows(quick: bool) -> list[str]:
    """Part 8's table: the cursor near the end, and (unless ``quick``) the same with a 200 KB
    last line."""
    rows = ["| log | cursor | main at 4224a2a | this tree | main / this | RSS main | RSS this |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    cases = [(100_000, 99_990, False)] + ([] if quick else [(100_000, 99_990, True)]) + [(10, 0, False)]
    for n, cursor, big_last in cases:  # the last: 10 events, for scale (start-up and the summary)
        r = events_read(n, cursor, rounds=1 if quick else 3, big_last=big_last)
        what = f"{n:,} events, {r['size'] / 1e6:.1f} MB" + (", then a 200 KB digest" if big_last else "")
        rows.append(f"| {what} | {cursor:,} ({r['new']} new) | {r['main_min']:.2f} s (median {r['main_median']:.2f}) "
                    f"| {r['this_min']:.2f} s (median {r['this_median']:.2f}) | {r['main_min'] / r['this_min']:.1f}× "
                    f"| {r['main_rss']:.0f} MB | {r['this_rss']:.0f} MB |")
        print(rows[-1], file=sys.stderr)
    return rows


# ---------------------------------------------------------------- report


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = next((int(ln.split()[1]) // 1024 // 1024 for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} cores ({cpu}), {mem} GiB, {platform.platform()}, "
            f"Python {platform.python_version()}")


def deploy_cost(n: int, hosts: int, latency: float, rounds: int) -> dict[str, float]:
    """As deploy (READY servers: each log watched from its offset and one health probe each, in
    the same call) and as plain slurm."""
    return two_ways(n, hosts, latency, rounds, {"kind": "deploy"}, {})


def side_by_side(out: list[str], title: str, note: str, names: tuple[str, str], sizes: list[tuple[int, int]],
                 measure: Callable[[int, int], dict[str, float]]) -> None:
    """One table of ``two_ways`` figures: commands and wall time each way, and the difference."""
    a, b = names
    out += ["", title, note, "", f"| jobs | hosts | commands, {a} | commands, {b} | wall, {a} | wall, {b} | extra per poll |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for n, h in sizes:
        r = measure(n, h)
        out.append(f"| {n} | {h} | {r['a_calls']} | {r['b_calls']} | {r['a']:.2f} s | {r['b']:.2f} s "
                   f"| {(r['a'] - r['b']) * 1000:+.0f} ms |")
        print(out[-1], file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2, help="the fake ssh's latency, seconds")
    ap.add_argument("--idle-seconds", type=float, default=60)
    ap.add_argument("--quick", action="store_true", help="fewer and smaller runs (a smoke test)")
    ap.add_argument("--host", default="testcluster", help="the real sshd for part 2")
    ap.add_argument("--write", type=Path, metavar="MD",
                    help="replace the figures in this markdown file, keeping its part from '### Reading the figures' on")
    ap.add_argument("--plain-user", default=os.environ.get("JOBMON_E2E_PLAIN_USER", "jobmonplain"),
                    help="a login there whose shell does little at start (tests/e2e/cluster/up.sh makes one)")
    args = ap.parse_args()
    sizes = [(10, 1), (10, 10)] if args.quick else [(10, 1), (10, 10), (100, 1), (100, 10), (500, 1), (500, 10)]
    out = [f"Machine: {machine()}. Measured {time.strftime('%Y-%m-%d %H:%M')}.", ""]

    out += ["### 1. One poll: jobmon vs one `ssh host sacct -j ID` per job, in turn",
            f"Fake ssh latency {args.latency * 1000:.0f} ms.", "",
            "Default settings: `max_parallel: 8` per host, `max_parallel_total: 32`, `batch_size: 500`.", "",
            "| jobs | hosts | commands jobmon | commands per-job | wall jobmon | wall per-job | jobmon / latency | per-job / jobmon |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, h in sizes:
        r = per_poll(n, h, args.latency)
        out.append(f"| {n} | {h} | {r['our_calls']} | {r['their_calls']} | {r['ours']:.2f} s "
                   f"| {r['theirs']:.1f} s | {r['ours'] / args.latency:.2f} | {r['theirs'] / r['ours']:.0f}× |")
        print(out[-1], file=sys.stderr)
    # Past the figures the issue asks for (no per-job baseline: it would take minutes): chunks of
    # one host's batch run side by side, and more hosts than max_parallel_total take two rounds.
    for n, h in [] if args.quick else [(1200, 1), (500, 40)]:
        r = per_poll(n, h, args.latency, baseline=False)
        out.append(f"| {n} | {h} | {r['our_calls']} | – | {r['ours']:.2f} s | – | {r['ours'] / args.latency:.2f} | – |")
        print(out[-1], file=sys.stderr)

    rounds = 1 if args.quick else 3
    side_by_side(out, "### 1b. The progress probe (stalls): one poll of running jobs with it and without it",
                 f"Fake ssh latency {args.latency * 1000:.0f} ms. Each job has one log file, which the probe stats in the "
                 "same call as sacct and squeue (with the cluster's `date`). Best of 3 polls each.",
                 ("probe on", "probe off"), [(10, 1)] if args.quick else [(100, 1), (500, 1), (500, 10)],
                 lambda n, h: probe_cost(n, h, args.latency, rounds))
    side_by_side(out, "### 1c. Deployments: one poll of READY servers vs the same jobs as slurm",
                 f"Fake ssh latency {args.latency * 1000:.0f} ms. Each deploy job's log is watched from its offset (past "
                 "READY, only for a restart) and its `/health` asked (a fake `curl` that answers 200 at once), side by "
                 "side, in the same call as sacct and squeue. Best of 3 polls each.",
                 ("deploy", "slurm"), [(10, 1)] if args.quick else [(10, 1), (100, 1), (100, 10)],
                 lambda n, h: deploy_cost(n, h, args.latency, rounds))

    out += ["", "### 2. A real ssh round trip (`ssh host true`) to sshd on 127.0.0.1", ""]
    rows = []
    for user, what in ((args.plain_user, "a plain login (Debian's default shell files)"),
                       (None, "root, whose ~/.bashrc runs pyenv init on every command")):
        rt = ssh_round_trips(args.host, 5 if args.quick else 20, user)
        if rt is not None:
            rows.append(f"| {what} | {rt['fresh'] * 1000:.0f} ms | {rt['mux'] * 1000:.0f} ms | {rt['mux'] / rt['fresh']:.2f} |")
    if not rows:
        out.append(f"Skipped: `ssh {args.host}` does not answer (start it with tests/e2e/cluster/up.sh).")
    else:
        out += ["| login | fresh connection | multiplexed | multiplexed / fresh |", "|---|---:|---:|---:|", *rows]

    seconds = 10 if args.quick else args.idle_seconds
    r = idle(100, seconds)
    out += ["", f"### 3. The watcher while idle: 100 pending jobs on 10 hosts, {seconds:.0f} s", "",
            "| CPU, watcher | CPU, with its checks | peak RSS |", "|---:|---:|---:|",
            f"| {r['cpu']:.2f} % | {r['cpu_children']:.2f} % | {r['rss_mb']:.1f} MB |"]

    s = startup(5 if args.quick else 20)
    out += ["", "### 4. Start-up (median)", "",
            "| `python -c pass` | `jobmon --help` | `jobmon status` (empty) | help − python | status − python |",
            "|---:|---:|---:|---:|---:|",
            f"| {s['python'] * 1000:.0f} ms | {s['help'] * 1000:.0f} ms | {s['status'] * 1000:.0f} ms "
            f"| {(s['help'] - s['python']) * 1000:.0f} ms | {(s['status'] - s['python']) * 1000:.0f} ms |"]
    n, quiet = (50, 10) if args.quick else (200, args.idle_seconds)
    paced, raw = follower(n, quiet), follower(n, quiet, "--raw")
    out += ["", f"### 5. A follower (`jobmon-watch --for`): {paced['n']:.0f} events appended by another process, "
            "one every 0–0.3 s",
            "Paced for a Monitor (a pipe: at most 9 notifications at once, then one every 2 s, the events "
            "between them packed into the next) and with `--raw` (a line per event, at once), side by side.", "",
            "| follower | logged → printed, p50 | p95 | max | CPU while idle |", "|---|---:|---:|---:|---:|",
            *(f"| {name} | {f['p50'] * 1000:.0f} ms | {f['p95'] * 1000:.0f} ms | {f['max'] * 1000:.0f} ms "
              f"| {f['cpu']:.2f} % |" for name, f in (("paced (a pipe)", paced), ("--raw", raw)))]
    out += ["", "### 6. Mass completion: every job ends in one poll", f"Fake ssh latency {args.latency * 1000:.0f} ms. "
            "Ends logged: from the poll's start to its end events in the session's log (what followers "
            "print); a quiet poll (the same check, nothing ends) is one round trip as jobmon sees it. "
            "The whole poll also moves the jobs to history.", "",
            "| jobs | hosts | commands, batched | ends logged, batched | logged / a quiet poll | whole poll, batched "
            "| commands, one per job | whole poll, one per job | one per job / batched |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, h in [(50, 1)] if args.quick else [(50, 1), (500, 1), (500, 10)]:
        b = mass_end(n, h, args.latency)
        p = mass_end(n, h, args.latency, per_job=True)
        out.append(f"| {n} | {h} | {b['calls']} | {b['printed']:.2f} s | {b['printed'] / b['quiet']:.2f} "
                   f"| {b['wall']:.2f} s | {p['calls']} | {p['wall']:.1f} s | {p['wall'] / b['wall']:.0f}× |")
        print(out[-1], file=sys.stderr)

    seen = [(i, ready_latency(args.host, i)) for i in ((1.0,) if args.quick else (1.0, 5.0))]
    if any(r is None for _, r in seen):
        out += ["", f"### 7. READY on the real cluster: skipped, `ssh {args.host} sinfo` does not answer"]
    else:
        out += ["", "### 7. READY on the real cluster: the server's startup line written → `jobmon watch` prints READY",
                "The e2e cluster's stand-in server (tests/fixtures/deploy/server/serve.py) as a SLURM job; "
                "`--interval` as given. One run each.", "",
                "| interval | log line → READY printed | / interval |", "|---:|---:|---:|",
                *(f"| {i:g} s | {r:.2f} s | {r / i:.2f} |" for i, r in seen if r is not None)]
        print(*out[-len(seen):], sep="\n", file=sys.stderr)

    out += ["", f"### 8. `jobmon events` on a 100,000-event log: this tree vs main at {BASELINE}",
            ("The reader's cursor at 99,990: 10 new events to print, then the session summary. Each run is a whole "
             "process on a fresh copy of the session, the two trees in turn; "
             f"{'one run' if args.quick else 'min (median) of 3 runs'} each; peak RSS of the process."), "",
            *events_rows(args.quick)]

    import delivery  # bench/delivery.py: beside this file, on sys.path when run as bench/bench.py

    out += ["", f"### 9. A mass completion as the model reads it through the Monitor: this tree vs main at {BASELINE}",
            "N jobs on 3 hosts end before the first poll, one in 15 failed with its cause in its log; "
            "`bin/jobmon-watch --for 25m` runs under tests/harness.py's emulator of Claude Code's Monitor (lines "
            "joined for 200 ms, cut at 500 and 3,000 characters, 10 notifications then one every 2 s, the rest "
            "dropped, stopped after 30 s of that), armed again while its last line says so. Ends read: the ids "
            "the model read whole; the time is from the watch's start (the poll is its first second) to the "
            "notification that told the last of them. One run each.", "",
            *delivery.rows((150,) if args.quick else (150, 2000), baseline_tree(), f"main at {BASELINE}")]

    text = "\n".join(out) + "\n"
    if args.write is None:
        print(text, end="")
        return 0
    old = args.write.read_text() if args.write.exists() else ""
    reading = old[old.find(READING):] if READING in old else ""
    args.write.write_text(text + ("\n" + reading if reading else ""))
    print(f"figures written to {args.write}", file=sys.stderr)
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
