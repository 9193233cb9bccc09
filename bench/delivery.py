"""Part 9 of ``make bench``: a mass completion as the model reads it through Claude Code's Monitor.

N jobs on 3 hosts end before the first poll (one in 15 failed, with its cause in its log), and
``bin/jobmon-watch --for 25m`` runs under the Monitor emulator of tests/harness.py (lines
joined for 200 ms, cut at 500 and 3,000 characters, 10 notifications then one every 2 s, the
rest dropped), armed again while its last line says so: this tree and an older one (bench.py
gives main at its BASELINE), side by side. The fake cluster is the tests' (tests/conftest.py).
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import FAKE_SACCT, FAKE_SCONTROL, FAKE_SQUEUE, FAKE_SSH  # noqa: E402
from harness import rearm  # noqa: E402
from jobmon.idlist import expand  # noqa: E402

SINGLE = re.compile(r"^\d\d:\d\d:\d\d slurm (\S+)@\S+: \S+ -> (\S+)(?: \((.*)\))?$")
GROUPED = re.compile(r"^\d\d:\d\d:\d\d slurm@\S+: \d+ COMPLETED(?: \(\d+/\d+\))?: (.*)$")


def _world(tmp: Path, n: int) -> tuple[dict[str, str], list[str], list[str]]:
    """The fake cluster with ``n`` ended jobs registered on 3 hosts: env, argv tail, failed ids."""
    fakebin, state = tmp / "fakebin", tmp / "slurm"
    fakebin.mkdir()
    state.mkdir()
    for name, text in (("ssh", FAKE_SSH), ("sacct", FAKE_SACCT), ("squeue", FAKE_SQUEUE), ("scontrol", FAKE_SCONTROL)):
        (fakebin / name).write_text(text)
        (fakebin / name).chmod(0o755)
    ids = [str(20000 + 3 * i) for i in range(n)]  # none follows another: the longest lists
    failed = ids[7::15]
    jobs = []
    for i, job_id in enumerate(ids):
        if job_id in failed:
            (state / job_id).write_text("FAILED|1:0|00:00:01\n")
            out = state / f"slurm-{job_id}.out"
            out.write_text(f"step 1\nRuntimeError: shard {job_id} is missing\n")
            (state / f"{job_id}.out").write_text(str(out))
        else:
            (state / job_id).write_text("COMPLETED|0:0|00:00:01\n")
        jobs.append({"type": "slurm", "id": job_id, "host": f"c{i % 3}"})
    registry = tmp / "root" / ".claude" / "agents" / "bench" / "active_jobs.json"
    registry.parent.mkdir(parents=True, mode=0o700)
    registry.write_text(json.dumps(jobs))
    registry.chmod(0o600)
    conf = tmp / "fast.yaml"
    conf.write_text("types: {slurm: {interval: 0.2}}\n")
    env = {**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}", "FAKE_SLURM": str(state),
           "PYTHON": sys.executable,  # bin/jobmon of a tree with no .venv of its own
           "FAKE_LOG": str(tmp / "calls.log"), "XDG_CACHE_HOME": str(tmp / "cache"),
           "XDG_CONFIG_HOME": str(tmp / "xdg")}
    for var in ("JOBMON_CONFIG", "JOBMON_ROOT", "CLAUDE_CODE_SESSION_ID", "CODEX_THREAD_ID", "JOBMON_LOG"):
        env.pop(var, None)
    return env, ["--config", str(conf), "--root", str(tmp / "root"), "--session", "bench"], failed


def delivered(tree: Path, n: int) -> dict[str, Any]:
    """What the model read of ``n`` ends through the emulated Monitor, re-arming as told."""
    with tempfile.TemporaryDirectory() as d:
        env, tail, failed = _world(Path(d), n)
        argv = [str(tree / "bin" / "jobmon-watch"), "--for", "25m", *tail]
        runs = rearm(lambda done: argv, runs=10, env=env, cwd=d, timeout_ms=1_800_000)
    ends: dict[str, str] = {}
    last_at, offset = 0.0, 0.0
    for run in runs:
        for note in run.result.notifications:
            for line in note.lines:
                if not line.whole:
                    continue
                got = _ends(line.shown)
                if got:
                    ends.update(got)
                    last_at = offset + note.t
        offset += run.wall
    return {"ends": len(ends), "failed": sum(1 for i in failed if "is missing" in ends.get(i, "")),
            "notifications": sum(len(r.result.notifications) for r in runs),
            "suppressed": sum(r.result.suppressed.lines for r in runs),
            "cut": sum(len(r.result.cut_lines) for r in runs),
            "stopped": any(r.result.stopped for r in runs), "watches": len(runs), "last": last_at,
            "n": n, "n_failed": len(failed)}


def _ends(line: str) -> dict[str, str]:
    """The ends a line tells the model: id -> what it says of it."""
    if (m := SINGLE.match(line)) is not None and m[2] in ("COMPLETED", "FAILED"):
        return {m[1]: m[3] or ""}
    if (m := GROUPED.match(line)) is not None:
        return {i: "COMPLETED" for item in m[1].split(", ") for i in expand(item)}
    return {}


def rows(sizes: tuple[int, ...], base: Path, base_name: str) -> list[str]:
    """The markdown table: this tree and the tree ``base`` (``base_name``) for each size."""
    out = ["| ends (failed) | tree | ends read | failures read with their cause | notifications | lines "
           "suppressed | lines cut | watches | watch start → last end read | this / main, ends read |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sizes:
        ours, theirs = delivered(REPO, n), delivered(base, n)
        for name, r in (("this tree", ours), (base_name, theirs)):
            ratio = f"{ours['ends'] / max(theirs['ends'], 1):.1f}×" if r is ours else ""
            out.append(f"| {n} ({r['n_failed']}) | {name} | {r['ends']} | {r['failed']} of {r['n_failed']} "
                       f"| {r['notifications']} | {r['suppressed']} | {r['cut']}{' (stopped)' if r['stopped'] else ''} "
                       f"| {r['watches']} | {r['last']:.1f} s | {ratio} |")
            print(out[-1], file=sys.stderr)
    return out
