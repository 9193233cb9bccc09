"""``jobmon demo``: two short local jobs, one that succeeds and one that fails, watched to the end.

Needs no cluster: the jobs are processes on this machine, followed by the ``local`` job type
from checkers.d/ exactly as a real job type is.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

JOBS = (
    ("demo: calibrate and export", "echo calibrating; sleep 3; echo 'exported to /tmp/demo-model'"),
    ("demo: evaluate", "echo loading model; sleep 5; echo 'Traceback (most recent call last):'; "
                       "echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB'; exit 3"),
)


def main(args: argparse.Namespace) -> int:
    from jobmon import cli, run

    root = Path(args.root or tempfile.mkdtemp(prefix="jobmon-demo-"))
    session = args.session or "demo"
    common = ["--root", str(root), "--session", session] + (["--json"] if args.json else [])
    if args.config:
        common += ["--config", args.config]
    work = root / "demo-jobs"
    work.mkdir(parents=True, exist_ok=True)
    for n, (desc, script) in enumerate(JOBS):
        log, code = work / f"job{n}.log", work / f"job{n}.exit"
        # The wrapper's pid is the job: it writes the exit code before it ends, so a gone pid
        # with no exit file really means the code was never recorded.
        wrapper = f"( {script} ) > {_q(log)} 2>&1; echo $? > {_q(code)}"
        pid = run.spawn(["bash", "-c", wrapper], str(work / "spawn.log"))
        status = cli.main(["add", "--type", "local", "--id", str(pid), "--file", str(code),
                           "--field", f"log={log}", "--desc", desc, *common])
        if status:
            return status
    print(f"demo: registry {root}/.claude/agents/{session}/active_jobs.json", file=sys.stderr)
    return cli.main(["watch", "--interval", str(args.interval), *common])


def _q(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
