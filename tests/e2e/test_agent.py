"""A coding agent's life with jobmon against the real cluster: three real sbatch jobs registered
with ``jobmon add --watch`` (one detached poller), then ``bin/jobmon-watch --for 20s --json``
armed again and again, as a Monitor tool would, with gaps between the watches in which a job ends
and nobody listens.

The sequence runs once (a module fixture, ~55 s) and each test reads one aspect of it:

    t≈0   submit A (sleep 5), B (sleep 25, then exit 3), C (sleep 45); add each with --watch
    run 1 (20 s): A ends and is printed; B and C go on: the last line is a rearm
    gap 1: B is let go (its gate file) and ends while no watch is armed; wait until its end is
          in history.jsonl (the poller kept polling)
    run 2 (20 s): prints B's end first; C goes on: rearm
    gap 2: C is let go; it ends 3 s later, during run 3
    run 3: prints C's end, then the summary "3 jobs: 2 completed, 1 failed"

B and C sleep for real, and also wait for a gate file the test creates when the watch before has
returned: how fast the cluster starts a job cannot move an end into the wrong run.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import Home, jobmon

from .conftest import FIGURES, MAX_LINE, WATCH, Slurm, _alive

pytestmark = pytest.mark.e2e

FOR = "20s"
RUN_TIMEOUT = 90  # seconds: a --for 20s watch that runs longer than this is a bug
WAIT = 60  # seconds: how long a job's end may take to reach history.jsonl once it ended


@dataclass
class Run:
    """One ``bin/jobmon-watch --for 20s --json`` run, as the agent saw it."""

    argv: list[str]
    started: datetime
    ended: datetime
    seconds: float
    code: int
    lines: list[str]
    err: str

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(ln) for ln in self.lines]

    def terminal(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["kind"] == "state" and e["terminal"]]

    def show(self) -> str:
        return (f"$ {shlex.join(self.argv)}  (exit {self.code}, {self.seconds:.1f} s, from {self.started:%H:%M:%S})\n"
                + "\n".join(self.lines) + (f"\nstderr:\n{self.err}" if self.err.strip() else ""))


@dataclass
class Sequence:
    home: Home
    jobdir: Path
    ids: dict[str, str]  # "A" / "B" / "C" -> slurm job id
    descriptions: dict[str, str]
    env: dict[str, str]  # for every jobmon process: isolated as the `home` fixture would
    poller: int  # the pid `jobmon add --watch` started
    add_errs: list[str]
    runs: list[Run] = field(default_factory=list)
    poller_alive_in_gaps: list[bool] = field(default_factory=list)
    poller_exited: bool = False
    sacct: dict[str, list[str]] = field(default_factory=dict)

    def show(self) -> str:
        watch_log = self.home.registry.with_name("watch.log")
        tail = watch_log.read_text()[-3000:] if watch_log.exists() else "(no watch.log)"
        return ("\n\n".join(r.show() for r in self.runs) + f"\n\nids: {self.ids}\nsacct: {self.sacct}"
                + f"\nhistory: {[(r['id'], r['last_status'], r['finished']) for r in self.home.history()]}"
                + f"\nwatch.log (tail):\n{tail}")


def _env(base: Path, ssh_cache: Path) -> dict[str, str]:
    """What the `home` fixture gives a test, for a module: its own XDG config, the session's ssh
    cache, no jobmon variables from outside."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(base / "xdg"), "XDG_CACHE_HOME": str(ssh_cache)}
    for var in ("JOBMON_CONFIG", "JOBMON_ROOT", "CLAUDE_CODE_SESSION_ID", "CODEX_THREAD_ID", "JOBMON_LOG"):
        env.pop(var, None)
    return env


def _watch(home: Home, env: dict[str, str], cwd: Path) -> Run:
    argv = [str(WATCH), "--for", FOR, "--json", *home.args()]
    started, t0 = datetime.now().astimezone(), time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, cwd=cwd,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{shlex.join(argv)} still ran after {RUN_TIMEOUT} s (--for {FOR}); stdout so far:\n"
                             f"{exc.stdout!r}\nstderr:\n{exc.stderr!r}") from None
    run = Run(argv, started, datetime.now().astimezone(), time.monotonic() - t0, proc.returncode, proc.stdout.splitlines(),
              proc.stderr)
    n = len(list(cwd.glob("run*.txt"))) + 1
    (cwd / f"run{n}.txt").write_text(run.show() + "\n")  # kept beside the session, for a look afterwards
    return run


def _until(what: str, condition: Callable[[], bool], context: Callable[[], str], timeout: float = WAIT) -> None:
    """Bounded polling of a condition; what the session looks like when it fails."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f} s: still not {what}\n{context()}")
        time.sleep(0.2)


def _ended(home: Home, job_id: str) -> bool:
    return any(r.get("id") == job_id for r in home.history())


def _stop_poller(pid: int, root: Path) -> None:
    """The poller our `jobmon add` started, if a failed run left it behind: by its pid, after
    checking that it is that poller."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if b"poll" in cmdline and str(root).encode() in cmdline:
        os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="module")
def agent(slurm: Slurm, ssh_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sequence]:
    base = tmp_path_factory.mktemp("agent")
    root, jobdir, cwd = base / "root", base / "jobs", base / "cwd"
    for d in (root, jobdir, cwd):
        d.mkdir()
    home = Home(root, "s1", root / ".claude" / "agents" / "s1" / "active_jobs.json")
    env = _env(base, ssh_cache)
    fast = base / "fast.yaml"
    fast.write_text("types:\n  slurm:\n    interval: 1\n")
    gate_b, gate_c = jobdir / "gate-b", jobdir / "gate-c"
    scripts = {
        "A": "echo job A; sleep 5; echo job A done",
        "B": f"echo job B; sleep 25; while [ ! -e {shlex.quote(str(gate_b))} ]; do sleep 0.2; done; "
             "echo 'job B: giving up' >&2; exit 3",
        "C": f"echo job C; sleep 45; while [ ! -e {shlex.quote(str(gate_c))} ]; do sleep 0.2; done; "
             "sleep 3; echo job C done",
    }
    descriptions = {name: f"e2e agent: job {name}" for name in scripts}
    ids: dict[str, str] = {}
    pid = 0
    try:
        for name, script in scripts.items():
            ids[name] = slurm.sbatch(script, "--chdir", str(jobdir))
        add_errs = []
        for name, job in ids.items():
            ran = jobmon("add", "--type", "slurm", "--id", job, "--host", slurm.host, "--desc", descriptions[name],
                         "--watch", "--config", str(fast), *home.args(), env=env)
            assert ran.code == 0, ran.err
            add_errs.append(ran.err)
        first = [ln for ln in add_errs[0].splitlines() if "poller started (pid " in ln]
        assert first, f"the first `jobmon add --watch` did not start a poller: {add_errs[0]!r}"
        pid = int(first[0].split("(pid ", 1)[1].split(")", 1)[0])
        seq = Sequence(home, jobdir, ids, descriptions, env, pid, add_errs)

        seq.runs.append(_watch(home, env, cwd))  # run 1: A ends
        gate_b.touch()  # gap 1: B ends with no watch armed
        seq.poller_alive_in_gaps.append(_alive(pid))
        _until(f"job B ({ids['B']}) in history.jsonl", lambda: _ended(home, ids["B"]), seq.show)
        seq.runs.append(_watch(home, env, cwd))  # run 2: prints B's end
        gate_c.touch()  # gap 2: C ends 3 s from now, during run 3
        seq.poller_alive_in_gaps.append(_alive(pid))
        seq.runs.append(_watch(home, env, cwd))
        if len(home.history()) < 3:  # the timing went wrong: a 4th run, at most
            _until("all three jobs in history.jsonl", lambda: len(home.history()) >= 3, seq.show)
            seq.runs.append(_watch(home, env, cwd))
        seq.sacct = slurm.sacct(*ids.values())
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        seq.poller_exited = not _alive(pid)
        yield seq
    finally:
        gate_b.touch()
        gate_c.touch()
        slurm.cancel(*ids.values())
        if pid:
            _stop_poller(pid, root)


def _terminal_by_id(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["kind"] == "state" and e["terminal"]:
            out.setdefault(e["id"], []).append(e)
    return out


# ---------------------------------------------------------------- the agent's sequence


def test_every_stdout_line_is_short_json_and_no_event_is_printed_twice(agent: Sequence) -> None:
    for run in agent.runs:
        assert run.code == 0, agent.show()
        assert run.lines, agent.show()
        for line in run.lines:
            assert len(line) <= MAX_LINE, f"{len(line)} characters: {line}"
            try:
                json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"not JSON: {line!r}\n{agent.show()}") from None
    printed = [e["seq"] for r in agent.runs for e in r.events() if "seq" in e]
    assert len(printed) == len(set(printed)), f"a seq printed twice: {printed}\n{agent.show()}"
    assert printed == sorted(printed), f"events out of order: {printed}"
    # Nothing lost either: every event the poller logged was given to the agent, once.
    assert printed == [e["seq"] for e in agent.home.logged()], agent.show()
    # Only the closing lines carry no seq: the rearm or summary, last of each run.
    for run in agent.runs:
        assert [e["kind"] for e in run.events() if "seq" not in e] == [run.events()[-1]["kind"]], run.show()


def test_each_job_end_is_printed_once_with_the_state_sacct_reports(agent: Sequence) -> None:
    ends = _terminal_by_id([e for r in agent.runs for e in r.events()])
    assert sorted(ends) == sorted(agent.ids.values()), agent.show()
    assert all(len(v) == 1 for v in ends.values()), f"an end printed more than once: {ends}"
    expected = {"A": ("COMPLETED", "0:0", "success"), "B": ("FAILED", "3:0", "failure"),
                "C": ("COMPLETED", "0:0", "success")}
    for name, job in agent.ids.items():
        (end,) = ends[job]
        state, exit_code, elapsed = agent.sacct[job]
        assert (state, exit_code) == expected[name][:2], agent.sacct  # the cluster did what the scripts say
        assert (end["to"], end["outcome"], end["host"], end["description"], end["type"]) == (
            state, expected[name][2], "testcluster", agent.descriptions[name], "slurm"), end
        assert end["detail"].startswith(f"exit {exit_code}, {elapsed}"), end
        assert not end.get("replayed"), end
    b_log = agent.jobdir / f"slurm-{agent.ids['B']}.out"
    assert re.search(re.escape(f"(log: {b_log})") + FIGURES + "$", ends[agent.ids["B"]][0]["detail"]), \
        ends[agent.ids["B"]]
    assert [(r["id"], r["last_status"], r["outcome"]) for r in agent.home.history()] == [
        (agent.ids[n], expected[n][0], expected[n][2]) for n in "ABC"]
    assert agent.home.jobs() == []


def test_each_job_is_printed_by_the_run_after_it_ended(agent: Sequence) -> None:
    assert len(agent.runs) == 3, f"the timing needed a 4th run\n{agent.show()}"
    per_run = [sorted(_terminal_by_id(r.events())) for r in agent.runs]
    # A during run 1; B during gap 1, printed first thing by run 2; C during run 3.
    assert per_run == [[agent.ids["A"]], [agent.ids["B"]], [agent.ids["C"]]], agent.show()
    run2 = agent.runs[1]
    # Run 2 gave B's end first of all: it was seen (and logged) before run 2 began.
    first = run2.events()[0]
    assert (first["kind"], first["id"], first["terminal"]) == ("state", agent.ids["B"], True), run2.show()
    assert datetime.fromisoformat(first["time"]) <= run2.started, (first, run2.started)  # whole seconds


def test_each_run_but_the_last_ends_with_rearm_the_last_with_the_summary(agent: Sequence) -> None:
    *rearmed, last = agent.runs
    assert rearmed, agent.show()
    for run, left in zip(rearmed, (2, 1)):
        final = run.events()[-1]
        assert final["kind"] == "rearm", run.show()
        # still watching N jobs (N running): run <the very command that was run> again
        word = "job" if left == 1 else "jobs"
        assert final["detail"] == f"still watching {left} {word} ({left} running): run {shlex.join(run.argv)} again", final
        assert final["counts"] == {"running": left}, final
        assert 20 <= run.seconds < 30, run.show()  # it ran to its deadline, not much beyond
    summary = last.events()[-1]
    assert summary["kind"] == "summary", last.show()
    assert summary["detail"] == "3 jobs: 2 completed, 1 failed", summary
    assert summary["counts"] == {"completed": 2, "failed": 1}, summary
    assert last.seconds < 20, last.show()  # it ended when the last job did, not at its deadline


def test_the_poller_went_on_polling_through_the_gaps(agent: Sequence) -> None:
    history = {r["id"]: r for r in agent.home.history()}
    run1, run2, run3 = agent.runs[:3]
    b_end = datetime.fromisoformat(history[agent.ids["B"]]["finished"])
    # B's end was found while no watch was armed: after run 1 returned, before run 2 began.
    assert run1.ended.replace(microsecond=0) <= b_end <= run2.started, (run1.ended, b_end, run2.started)
    c_end = datetime.fromisoformat(history[agent.ids["C"]]["finished"])
    assert run3.started.replace(microsecond=0) <= c_end, (run3.started, c_end)
    # One poller, the one `add --watch` started: the others found it, no watch had to start one,
    # it was alive in both gaps, and it went away when no job was left.
    assert all(f"a poller already runs for this registry (pid {agent.poller})" in err for err in agent.add_errs[1:]), \
        agent.add_errs
    assert not [r.err for r in agent.runs if "poller started" in r.err], agent.show()
    assert agent.poller_alive_in_gaps == [True, True]
    assert agent.poller_exited, f"poller {agent.poller} still alive 15 s after the last job ended"


# ---------------------------------------------------------------- other readers


def test_another_reader_gets_every_end_again_then_only_the_summary(agent: Sequence) -> None:
    home = agent.home
    agent_ends = {e["seq"] for r in agent.runs for e in r.terminal()}
    ran = jobmon("events", "--reader", "other", "--json", *home.args(), env=agent.env)
    assert ran.code == 0, ran.err
    lines = ran.lines()
    assert all(len(ln) <= MAX_LINE for ln in lines), lines
    events = ran.events()
    *before, summary = events
    assert (summary["kind"], summary["detail"]) == ("summary", "3 jobs: 2 completed, 1 failed"), ran.out
    assert [e["seq"] for e in before] == [e["seq"] for e in home.logged()], ran.out  # the whole log, in order
    ends = _terminal_by_id(before)
    assert sorted(ends) == sorted(agent.ids.values()) and all(len(v) == 1 for v in ends.values()), ran.out
    assert {v[0]["seq"] for v in ends.values()} == agent_ends  # the same events the agent was given

    again = jobmon("events", "--reader", "other", "--json", *home.args(), env=agent.env)
    assert again.code == 0, again.err
    assert [(e["kind"], e["detail"]) for e in again.events()] == [("summary", "3 jobs: 2 completed, 1 failed")], again.out
    # The agent's own reader was given everything by its watches: nothing is left for it either.
    mine = jobmon("events", "--json", *home.args(), env=agent.env)
    assert mine.code == 0, mine.err
    assert [e["kind"] for e in mine.events()] == ["summary"], mine.out
