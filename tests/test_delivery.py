"""Every end reaches the model through the Monitor's bounds: ``bin/jobmon-watch --for``, as the
skill arms it, under an emulator of Claude Code's Monitor (tests/harness.py: lines joined for
200 ms, cut at 500 and 3,000 characters, 10 notifications then one every 2 s, the rest dropped,
stopped after 30 s of that), against the fake cluster. Mass completions, failures with their
causes, re-arms when the deadline comes first."""
from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, Cluster, Home, add, jobmon
from harness import Watched, rearm
from jobmon.idlist import expand
from jobmon.registry import Job

WATCH = REPO / "bin" / "jobmon-watch"
FAILED = re.compile(r"^\d\d:\d\d:\d\d slurm (\S+)@(\S+): \S+ -> FAILED \((.*)\)$")
GROUPED = re.compile(r"^\d\d:\d\d:\d\d slurm@(\S+): \d+ COMPLETED(?: \(\d+/\d+\))?: (.*)$")


@pytest.fixture
def fast(tmp_path: Path) -> str:
    conf = tmp_path / "fast.yaml"
    conf.write_text("types: {slurm: {interval: 0.2}}\n")
    return str(conf)


@pytest.fixture(autouse=True)
def no_poller_left(home: Home):  # type: ignore[no-untyped-def]
    yield
    lock = home.registry.with_name("watch.lock")
    pid = lock.read_text().strip() if lock.exists() else ""
    if pid.isdigit():
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass


def ended_at_once(home: Home, cluster: Cluster, ids: list[str], hosts: int, failing: set[str]) -> None:
    """The jobs all ended before the first poll: it finds every end at once."""
    for i, job_id in enumerate(ids):
        if job_id in failing:
            cluster.set(job_id, "FAILED", "1:0")
            cluster.output(job_id, f"step 1\nRuntimeError: shard {job_id} is missing\n")
        else:
            cluster.set(job_id, "COMPLETED")
    add(home, *(Job("slurm", job_id, host=f"c{i % hosts}") for i, job_id in enumerate(ids)))


def watches(home: Home, fast: str, duration: str) -> list[Watched]:
    """The skill's command, armed again while its last line says so, as the agent does."""
    argv = [str(WATCH), "--for", duration, "--config", fast, *home.args()]
    return rearm(lambda done: argv, runs=20, timeout_ms=1_800_000)


def read_by_model(runs: list[Watched]) -> tuple[dict[str, str], list[str], list[str]]:
    """What the model read: each failure's cause by id@host, every completed id, the last line."""
    failures: dict[str, str] = {}
    completed: list[str] = []
    for run in runs:
        for line in run.delivered_lines:
            if (m := FAILED.match(line)) is not None:
                assert f"{m[1]}@{m[2]}" not in failures, f"told twice: {line}"
                failures[f"{m[1]}@{m[2]}"] = m[3]
            elif (m := GROUPED.match(line)) is not None:
                completed += [i for item in m[2].split(", ") for i in expand(item)]
    return failures, completed, [run.last_read or "" for run in runs]


def assert_nothing_lost(runs: list[Watched]) -> None:
    for run in runs:
        assert run.code == 0, run.stderr
        assert not run.result.stopped and not run.killed_by_stop
        assert run.result.suppressed.notifications == 0, run.model_text
        assert run.lost_lines == [] and not run.result.cut_lines and not run.result.cut_notifications


def test_150_ends_in_one_poll_reach_the_model_every_failure_with_its_cause(home: Home, cluster: Cluster,
                                                                            fast: str) -> None:
    ids = [str(5000 + i) for i in range(150)]
    failing = {ids[i] for i in range(7, 150, 15)}
    ended_at_once(home, cluster, ids, 3, failing)
    runs = watches(home, fast, "2m")
    assert_nothing_lost(runs)
    failures, completed, last = read_by_model(runs)
    hosts = {job_id: f"c{i % 3}" for i, job_id in enumerate(ids)}
    assert sorted(failures) == sorted(f"{i}@{hosts[i]}" for i in failing)
    for who, cause in failures.items():
        assert f"RuntimeError: shard {who.split('@')[0]} is missing" in cause
    assert sorted(completed) == sorted(set(ids) - failing)  # each once
    assert last[-1].endswith("150 jobs: 140 completed, 10 failed")
    assert sum(len(run.result.notifications) for run in runs) <= 10  # within the first burst


def test_2000_ends_reach_the_model_across_rearms_each_once(home: Home, cluster: Cluster, fast: str) -> None:
    ids = [str(20000 + 3 * i) for i in range(2000)]  # none follows another: no range is longer than one id
    failing = {ids[i] for i in range(5, 2000, 20)}
    ended_at_once(home, cluster, ids, 3, failing)
    runs = watches(home, fast, "6s")
    assert len(runs) > 1  # the deadline came first: the next watch went on
    assert_nothing_lost(runs)
    failures, completed, last = read_by_model(runs)
    assert len(failures) == len(failing) == 100
    assert all("is missing" in cause for cause in failures.values())
    assert sorted(completed) == sorted(set(ids) - failing)
    assert all("again" in line for line in last[:-1])
    assert last[-1].endswith("2000 jobs: 1900 completed, 100 failed")


def test_a_terminal_or_raw_gets_a_plain_line_per_event_and_a_pipe_gets_them_grouped(home: Home, cluster: Cluster,
                                                                                    fast: str) -> None:
    ids = [str(700 + i) for i in range(8)]
    ended_at_once(home, cluster, ids, 1, set())
    assert jobmon("watch", "--once", "--reader", "x", "--config", fast, *home.args()).code == 0  # the poll

    def lines_of(reader: str, *flags: str, tty: bool = False) -> list[str]:
        argv = [sys.executable, "-m", "jobmon", "events", "--reader", reader, *flags, *home.args()]
        if not tty:
            return [ln[9:] for ln in jobmon(*argv[3:]).lines()]
        main, child = pty.openpty()
        proc = subprocess.run(argv, stdout=child, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=60)
        os.close(child)
        out = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the other side is closed and all was read
                break
            if not chunk:
                break
            out += chunk
        os.close(main)
        assert proc.returncode == 0
        return [ln[9:] for ln in out.decode().splitlines()]

    plain = [f"slurm {i}@c0: NEW -> COMPLETED (exit 0:0, 00:00:01)" for i in ids] + ["8 jobs: 8 completed"]
    assert lines_of("raw", "--raw") == plain
    assert lines_of("tty", tty=True) == plain
    assert lines_of("pipe") == ["slurm@c0: 8 COMPLETED: 700-707", "8 jobs: 8 completed"]
