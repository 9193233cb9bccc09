"""Stress runs behind docs/reliability.md, with figures (`make stress`).

1. Eight processes each `jobmon add` 50 jobs while a watcher runs and the jobs end; a reader
   polls the registry the whole time: every job seen, every terminal event printed once, no
   torn read.
2. A check that prints 1 GB: the watcher's memory stays bounded, the job's state is still read.
3. A launcher log that grows by 1 GB between two polls: one bounded read, bounded memory.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

FAKE_SSH = """#!/usr/bin/env bash
while [ $# -gt 0 ]; do case "$1" in -o|-p|-i|-J|-l|-F|-S) shift 2 ;; --) shift; break ;; -*) shift ;; *) break ;; esac; done
shift; exec bash -c "$*"
"""
FAKE_SACCT = """#!/usr/bin/env bash
ids=""; while [ $# -gt 0 ]; do case "$1" in -j) ids="$2"; shift 2 ;; *) shift ;; esac; done
IFS=, read -ra list <<< "$ids"
for id in "${list[@]}"; do [ -f "$STRESS_DONE" ] || [ "$id" != 1 ] && printf '%s|COMPLETED|0:0|00:00:01\\n' "$id" || printf '%s|RUNNING|0:0|00:00:01\\n' "$id"; done
"""
WRITER = """
import sys
from jobmon import cli
root, first = sys.argv[1], int(sys.argv[2])
for n in range(first, first + 50):
    assert cli.main(["add", "--type", "slurm", "--id", str(n), "--host", f"h{n % 4}", "--root", root, "--session", "s"]) == 0
"""


def writers() -> str:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "bin").mkdir()
        for name, text in (("ssh", FAKE_SSH), ("sacct", FAKE_SACCT)):
            (tmp / "bin" / name).write_text(text)
            (tmp / "bin" / name).chmod(0o755)
        env = {**ENV, "PATH": f"{tmp}/bin:{os.environ['PATH']}", "STRESS_DONE": str(tmp / "done"),
               "XDG_CACHE_HOME": str(tmp / "cache")}
        conf = tmp / "c.yaml"
        conf.write_text("settings: {aggregate_after: 100000}\n")
        root = str(tmp / "root")
        base = [sys.executable, "-m", "jobmon"]
        subprocess.run([*base, "add", "--type", "slurm", "--id", "1", "--host", "h0", "--root", root, "--session", "s"],
                       env=env, check=True, stderr=subprocess.DEVNULL)
        start = time.monotonic()
        watcher = subprocess.Popen([*base, "watch", "--json", "--interval", "0.2", "--config", str(conf), "--root", root,
                                    "--session", "s"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        registry = Path(root) / ".claude" / "agents" / "s" / "active_jobs.json"
        reads, torn, stop = [0], [0], threading.Event()

        def reader() -> None:
            while not stop.is_set():
                try:
                    json.loads(registry.read_text())
                    reads[0] += 1
                except FileNotFoundError:
                    pass
                except ValueError:
                    torn[0] += 1

        t = threading.Thread(target=reader)
        t.start()
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, root, str(1000 + 50 * w)], env=env,
                                  stderr=subprocess.DEVNULL) for w in range(8)]
        ok = sum(p.wait() == 0 for p in procs)
        (tmp / "done").touch()
        out, _ = watcher.communicate(timeout=600)
        elapsed = time.monotonic() - start
        stop.set()
        t.join()
        events = [json.loads(ln) for ln in out.splitlines()]
        finals = [e["id"] for e in events if e["kind"] == "state" and e["terminal"]]
        history = len((registry.parent / "history.jsonl").read_text().splitlines())
    return (f"| 8 writers × 50 `jobmon add` + a watcher | {ok}/8 writers ok; {len(set(finals)) - 1}/400 jobs ended; "
            f"{len(finals) - len(set(finals))} repeated terminal events; {history - 1}/400 in history; "
            f"{torn[0]} torn reads of {reads[0]} | {elapsed:.1f} s |")


def big_output() -> str:
    code = (
        "import resource, time\n"
        "from jobmon import run\n"
        "t = time.monotonic()\n"
        "r = run.run(\"head -c 1000000000 /dev/zero | tr '\\\\0' x; printf '\\\\nS=RUNNING\\\\n'\", 600)\n"
        "print(r.kind, len(r.stdout), r.stdout.endswith('S=RUNNING\\n'), time.monotonic() - t,"
        " resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    kind, kept, tail_ok, seconds, rss = subprocess.run([sys.executable, "-c", code], env=ENV, check=True,
                                                       capture_output=True, text=True).stdout.split()
    return (f"| a check printing 1 GB | {kind}; kept the last {int(kept) / 2**20:.1f} MiB, final line read: {tail_ok}; "
            f"peak RSS {int(rss) / 1024:.0f} MB | {float(seconds):.1f} s |")


def big_log() -> str:
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "launcher.log"
        log.write_text("Entering Experiment cicd with id: cicd_1\n")
        code = (
            "import io, resource, subprocess, sys, time\n"
            "from pathlib import Path\n"
            "from jobmon import config\n"
            "from jobmon.events import Printer\n"
            "from jobmon.registry import Job, Registry\n"
            "from jobmon.watch import Watcher\n"
            "log = Path(sys.argv[1]); reg = Registry(log.parent / 'r' / 'active_jobs.json')\n"
            "with reg.transaction() as e: e.append(Job('launcher', 'big', fields={'file': str(log)}))\n"
            "w = Watcher(config.load(env={}), reg, Printer(stream=io.StringIO()))\n"
            "w.cycle(everything=True)\n"
            "subprocess.run(f\"yes '3-8B_FP8_0/0 calibrating batch of 16 samples' | head -c 1000000000 >> {log}\", shell=True, check=True)\n"
            "with open(log, 'a') as f: f.write('Job 9 finished: SUCCEEDED\\n')\n"
            "t = time.monotonic(); w.cycle(everything=True); took = time.monotonic() - t\n"
            "print(reg.history()[0]['last_status'], took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
        state, seconds, rss = subprocess.run([sys.executable, "-c", code, str(log)], env=ENV, check=True,
                                             capture_output=True, text=True).stdout.split()
    return (f"| a launcher log growing by 1 GB between two polls | final state {state}; peak RSS {int(rss) / 1024:.0f} MB "
            f"| {float(seconds):.2f} s for that poll |")


def main() -> int:
    rows = ["| run | result | time |", "|---|---|---|"]
    for fn in (writers, big_output, big_log):
        rows.append(fn())
        print(rows[-1], file=sys.stderr)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
