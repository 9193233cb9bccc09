"""Every end reaches the model, against the real cluster: many jobs that end together, read
through the bounds of the agent's tool.

1. The skill's own command, ``bin/jobmon-watch --for 2m``, under the emulator of Claude Code's
   Monitor (tests/harness.py) with the tool's real numbers: lines joined for 200 ms, cut at 500
   and 3,000 characters, 10 notifications then one every 2 s, the rest dropped, stopped after
   30 s of that; armed again while its last line says so. A 100-task array with two failing
   tasks and 30 plain jobs that end together: nothing dropped or cut, every end read once, both
   failed tasks with their causes, and the summary.
2. ``jobmon wait --for 30s --json`` run again and again, as an agent with Bash
   ``run_in_background`` would (it is told when the command exits): 20 jobs ending over half a
   minute, each end printed by exactly one of the waits, each failure with its cause, the last
   wait ending with the summary.

(A third case, a watch's ``--for`` coming while a backlog is still being paced, needs more than
the Monitor's burst of nine full notifications, some 27,000 characters of lines, to be waiting at
once: 30 successes read together are one line, so it would take a hundred failed jobs or more.
The fake-cluster tests (tests/test_delivery.py) cover it.)

Jobs that must end together wait for a gate file the test creates; every job a test submits is
cancelled when it ends, and the poller its ``jobmon add --watch`` started is stopped if a failed
test left it behind.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import Home, jobmon
from harness import Suppressed, Watched, rearm

from jobmon.idlist import expand

from .conftest import MAX_LINE, WATCH, Slurm, wait_until

pytestmark = pytest.mark.e2e

# Claude Code's Monitor, as the skill arms it (--for 25m under timeout_ms 1800000), scaled down:
# a 2-minute watch under a 3-minute deadline.
MONITOR = {"join": 0.2, "line": 500, "notification": 3000, "budget": 10, "refill": 2.0, "stop_after": 30.0}
TIMEOUT_MS = 180_000

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
            "DEADLINE", "REVOKED", "LOST"}
# 00:41:07 slurm 5012@testcluster "e2e delivery: job 3": RUNNING -> COMPLETED (exit 0:0, 00:00:04 …)
STATE_LINE = re.compile(r'^\S+ slurm (?P<id>\S+)@(?P<host>\S+)(?: "[^"]*")?: (?P<before>\S+) -> (?P<after>\S+)'
                        r"(?: \((?P<detail>.*)\))?$")
# 00:41:07 slurm@testcluster: 30 COMPLETED: 5012-5041   (or "30 COMPLETED (1/2): …")
ENDS_LINE = re.compile(r"^\S+ slurm@(?P<host>\S+): (?P<count>\d+) (?P<to>[A-Z_]+)(?: \((?P<part>\d+/\d+)\))?: "
                       r"(?P<ids>.+)$")


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _cancel_this_tests_jobs(slurm: Slurm) -> Iterator[None]:
    """Whatever a test submitted is cancelled when it ends, passed or not."""
    start = len(slurm.submitted)
    yield
    slurm.cancel(*slurm.submitted[start:])


@pytest.fixture(autouse=True)
def _no_poller_left(home: Home) -> Iterator[None]:
    """The detached poller this test's `jobmon add --watch` started ends by itself once no job
    is left; if a failed test left jobs, it is stopped by its pid (checked to be that poller)."""
    yield
    lock = home.registry.with_name("watch.lock")
    pid = lock.read_text().split()[0] if lock.exists() and lock.read_text().split() else ""
    if not pid.isdigit():
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"poll" in cmdline and str(home.root).encode() in cmdline:
        os.kill(int(pid), signal.SIGTERM)


@pytest.fixture
def fast(tmp_path: Path) -> Path:
    """Checks every second (the slurm type's own interval is 30 s)."""
    path = tmp_path / "fast.yaml"
    path.write_text("types:\n  slurm:\n    interval: 1\n")
    return path


def register(home: Home, slurm: Slurm, fast: Path, job_id: str, desc: str, *extra: str) -> str:
    """``jobmon add --type slurm … --watch`` as the skill says; its stderr."""
    ran = jobmon("add", "--type", "slurm", "--id", job_id, "--host", slurm.host, "--desc", desc, *extra, "--watch",
                 "--config", str(fast), *home.args())
    assert ran.code == 0, ran.err
    return ran.err


def running(slurm: Slurm, ids: Sequence[str]) -> bool:
    out = slurm.ssh(f"squeue -h -j {','.join(ids)} -o '%i|%T'", check=False).stdout
    states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
    return all(states.get(i) == "RUNNING" for i in ids)


def ended(home: Home, job_id: str) -> bool:
    return any(r.get("id") == job_id for r in home.history())


def gated(gate: Path, body: str) -> str:
    """A job script that waits (running) for the gate file, then does ``body``."""
    return f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.2; done; {body}"


def failing(message: str) -> str:
    """A job body that dies with a Python traceback whose last line is ``RuntimeError: message``."""
    return f"echo starting; python3 -c {shlex.quote(f'raise RuntimeError({message!r})')}"


# ---------------------------------------------------------------- 1. under the Monitor


ARRAY = """\
echo "task ${SLURM_ARRAY_TASK_ID} of array ${SLURM_ARRAY_JOB_ID}"
case "${SLURM_ARRAY_TASK_ID}" in
  17) python3 -c 'raise RuntimeError("task 17: checkpoint shard 3 of 8 is missing")' ;;
  62) python3 -c 'raise RuntimeError("task 62: tokenizer has 32000 tokens, the model 32064")' ;;
  *) echo "task ${SLURM_ARRAY_TASK_ID} done" ;;
esac
"""
CAUSES = {"17": "RuntimeError: task 17: checkpoint shard 3 of 8 is missing",
          "62": "RuntimeError: task 62: tokenizer has 32000 tokens, the model 32064"}


def read_lines(watches: Sequence[Watched]) -> list[str]:
    """Every line the model read whole, over all the watches, in order."""
    return [line for w in watches for line in w.delivered_lines]


def text_ends(lines: Sequence[str]) -> Counter[str]:
    """How many times each job's end was read: its own state line, or its id in a line of ends."""
    told: Counter[str] = Counter()
    for line in lines:
        single = STATE_LINE.match(line)
        if single and single["after"] in TERMINAL:
            told[single["id"]] += 1
        group = ENDS_LINE.match(line)
        if group:
            for span in group["ids"].split(", "):
                for job_id in expand(span):
                    told[job_id] += 1
    return told


def show(watches: Sequence[Watched], home: Home) -> str:
    out = []
    for i, w in enumerate(watches, 1):
        r = w.result
        out.append(f"--- watch {i}: exit {w.code}, ended {r.ended} at {r.ended_at}, {len(r.notifications)} "
                   f"notifications, suppressed {r.suppressed}, cut {len(r.cut_lines)} lines / "
                   f"{len(r.cut_notifications)} notifications, stopped {r.stopped}\n"
                   + "\n".join(f"[{line.t:7.2f} {line.fate}] {line.text}" for line in r.lines)
                   + (f"\nstderr:\n{w.stderr[-2000:]}" if w.stderr.strip() else ""))
    log = home.registry.with_name("watch.log")
    return "\n".join(out) + f"\n--- watch.log (tail):\n{log.read_text()[-3000:] if log.exists() else '(none)'}"


def test_an_array_with_two_failed_tasks_and_30_jobs_reach_the_model_through_the_monitor(
        slurm: Slurm, home: Home, jobdir: Path, fast: Path, tmp_path: Path) -> None:
    gate = jobdir / "gate"
    plain = [slurm.sbatch(gated(gate, f"echo plain job {n} done"), "--chdir", str(jobdir)) for n in range(30)]
    script = jobdir / "array.sh"
    script.write_text("#!/bin/bash\n" + ARRAY)
    array = slurm.sbatch(f"bash {shlex.quote(str(script))}", "--array=0-99", "--hold", "--chdir", str(jobdir))
    for n, job_id in enumerate(plain):
        register(home, slurm, fast, job_id, f"e2e delivery: job {n}", "--file", str(jobdir / f"slurm-{job_id}.out"))
    register(home, slurm, fast, array, "e2e delivery: array of 100")
    slurm.ssh(f"scontrol release {array}")

    # The array runs (its tasks take a few seconds in all) and the poller logs its end, while the
    # 30 jobs run, waiting for the gate; then they are let go together: the watch finds the
    # array's story waiting and the 30 ends come in a poll or two.
    wait_until(f"the array {array} ended in history.jsonl", lambda: ended(home, array),
               context=lambda: str(home.history()))
    wait_until("the 30 jobs running", lambda: running(slurm, plain))
    gate.touch()

    argv = [str(WATCH), "--for", "2m", "--config", str(fast), *home.args()]
    watches = rearm(lambda done: argv, runs=5, timeout_ms=TIMEOUT_MS, cwd=tmp_path / "cwd", **MONITOR)
    (tmp_path / "watches.txt").write_text(show(watches, home) + "\n")  # kept, for a look afterwards
    seen = show(watches, home)

    # What the cluster did is what the scripts say.
    rows = slurm.sacct(*plain)
    assert {j: rows[j][0] for j in plain} == {j: "COMPLETED" for j in plain}, rows
    tasks = {row_id.split("_", 1)[1]: row[0] for row_id, row in slurm.sacct(array).items() if "_" in row_id}
    assert tasks == {str(t): "FAILED" if t in (17, 62) else "COMPLETED" for t in range(100)}, tasks

    # The Monitor let everything through: no drop, no cut, no stop, no expiry.
    for w in watches:
        r = w.result
        assert (w.code, r.ended, w.expired, w.killed_by_stop, r.stopped) == (0, "exit", False, False, False), seen
        assert r.suppressed == Suppressed(), seen
        assert not r.cut_lines and not r.cut_notifications, seen
        assert w.lost_lines == [], seen
        assert all(len(line) <= MAX_LINE for line in w.lines), seen
        assert not any(note.startswith("[") for note in r.reads), seen  # no suppression, stop or expiry note
    *rearmed, last = watches
    assert all(w.last_read and "still watching" in w.last_read for w in rearmed), seen

    # Every end was read, once: the 30 jobs (alone or in a line of ends) and the array's own end.
    lines = read_lines(watches)
    told = text_ends(lines)
    assert told == Counter({job_id: 1 for job_id in [*plain, array]}), f"ends read: {dict(told)}\n{seen}"
    (array_end,) = [m for m in map(STATE_LINE.match, lines) if m and m["id"] == array and m["after"] in TERMINAL]
    assert array_end["after"] == "FAILED", array_end.string

    # The summary is the last line read.
    assert re.fullmatch(r"\S+ 31 jobs: 30 completed, 1 failed", last.last_read or ""), seen

    # The array's end counts its 100 tasks, and both failed tasks reach the model by id, each
    # with its cause (the failure line, or a line of the task's own said while the array went on).
    text = "\n".join(w.model_text for w in watches)
    problems = []
    if "(of 100)" not in (array_end["detail"] or ""):
        problems.append(f"the array's end does not count its 100 tasks: {array_end.string}")
    for task in ("17", "62"):
        if f"{array}_{task} FAILED" not in text:
            problems.append(f"task {array}_{task}'s failure was never read")
        if CAUSES[task] not in text:
            problems.append(f"task {array}_{task}'s cause was never read: {CAUSES[task]!r}")
    assert not problems, "\n".join(problems) + f"\n{seen}"


# ---------------------------------------------------------------- 2. jobmon wait in a loop


def test_jobmon_wait_again_and_again_gives_each_end_once_with_its_cause_then_the_summary(
        slurm: Slurm, home: Home, jobdir: Path, fast: Path, tmp_path: Path) -> None:
    gate = jobdir / "gate"
    # 20 jobs in four waves after the gate: 2, 6, 14 and 25 s; the second wave has 8 jobs, more
    # than aggregate_after succeed together there. Three fail with their own message.
    waves = [2] * 4 + [6] * 8 + [14] * 4 + [25] * 4
    causes = {5: "job 5: loss is NaN at step 1200", 13: "job 13: CUDA driver too old for this wheel",
              18: "job 18: dataset shard 7 is empty"}
    ids: list[str] = []
    for n, seconds in enumerate(waves):
        body = f"sleep {seconds}; " + (failing(causes[n]) if n in causes else f"echo job {n} done")
        ids.append(slurm.sbatch(gated(gate, body), "--chdir", str(jobdir)))
    for n, job_id in enumerate(ids):
        register(home, slurm, fast, job_id, f"e2e wait: job {n}", "--file", str(jobdir / f"slurm-{job_id}.out"))
    wait_until("the 20 jobs running", lambda: running(slurm, ids))
    gate.touch()

    argv = ["wait", "--for", "30s", "--json", "--config", str(fast), *home.args()]
    runs: list[list[dict[str, Any]]] = []
    transcript: list[str] = []
    for _ in range(20):
        ran = jobmon(*argv, timeout=90)
        transcript.append(f"$ jobmon {shlex.join(argv)}  (exit {ran.code})\n{ran.out}"
                          + (f"stderr:\n{ran.err}" if ran.err.strip() else ""))
        assert ran.code == 0, "\n".join(transcript)
        assert all(len(line) <= MAX_LINE for line in ran.lines()), ran.out
        try:
            runs.append([json.loads(line) for line in ran.lines()])
        except json.JSONDecodeError:
            raise AssertionError("a line is not JSON\n" + "\n".join(transcript)) from None
        assert runs[-1], "a wait printed nothing\n" + "\n".join(transcript)
        if runs[-1][-1]["kind"] == "summary":
            break
    (tmp_path / "waits.txt").write_text("\n".join(transcript))  # kept, for a look afterwards
    seen = "\n".join(transcript)

    rows = slurm.sacct(*ids)
    expected = {job_id: "FAILED" if n in causes else "COMPLETED" for n, job_id in enumerate(ids)}
    assert {j: rows[j][0] for j in ids} == expected, rows

    # The last wait ended with the summary, and no other did.
    assert runs[-1][-1]["kind"] == "summary", f"no summary after {len(runs)} waits\n{seen}"
    assert runs[-1][-1]["detail"] == "20 jobs: 17 completed, 3 failed", runs[-1][-1]
    assert [e["kind"] for run in runs for e in run].count("summary") == 1, seen

    # Each end was printed by exactly one wait, once: alone, or named in a line of ends.
    told: Counter[str] = Counter()
    failures: dict[str, dict[str, Any]] = {}
    for e in (e for run in runs for e in run):
        if e["kind"] == "state" and e["terminal"]:
            told[e["id"]] += 1
            if e["outcome"] == "failure":
                failures[e["id"]] = e
        elif e["kind"] == "ends":
            assert e["outcome"] == "success" and e["to"] == "COMPLETED", e
            for span in e["ids"]:
                for job_id in expand(span):
                    told[job_id] += 1
    assert told == Counter({job_id: 1 for job_id in ids}), f"ends printed: {dict(told)}\n{seen}"

    # Each failure on its own line, with its cause and its log.
    assert sorted(failures) == sorted(ids[n] for n in causes), seen
    for n, message in causes.items():
        detail = failures[ids[n]]["detail"]
        assert f"RuntimeError: {message}" in detail, failures[ids[n]]
        # (a long detail is shortened in its middle to keep the line within 400 characters)
        assert re.search(rf"\(log: /\S*slurm-{ids[n]}\.out\)", detail), failures[ids[n]]
    # Nothing is left for the reader: a wait now gives only the summary, at once.
    again = jobmon(*argv, timeout=60)
    assert again.code == 0, again.err
    assert [e["kind"] for e in again.events()] == ["summary"], again.out
