"""Nothing outlives jobmon: kill -9 a poller in the middle of a hung check, N times over, and
count the check processes left behind (docs/reliability.md quotes "orphans left: 0" for 30).

Each run registers one slurm job behind an ssh that hangs (``sleep 300`` under a unique name),
starts ``jobmon watch`` (or ``jobmon poll``, every other run), waits until the check has called
ssh, kills the poller with SIGKILL and waits up to ``--within`` seconds for the hung processes
to go. The check's own timeout is the packaged 60 s: what ends them is jobmon's death.

    python bench/orphans.py [--runs 30] [--within 10]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import pids_with as marked, wait_for  # noqa: E402  (the tests count and wait the same way)




def one(command: str, within: float) -> int:
    """One kill -9 during a hung check: how many of its processes are left after ``within`` s."""
    name = f"jobmon-orphan-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "bin").mkdir()
        called = tmp / "called"
        ssh = tmp / "bin" / "ssh"
        ssh.write_text(f"#!/usr/bin/env bash\ntouch {called}\nexec -a {name} sleep 300\n")
        ssh.chmod(0o755)
        env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{tmp}/bin:{os.environ['PATH']}",
               "XDG_CACHE_HOME": str(tmp / "cache"), "XDG_CONFIG_HOME": str(tmp / "xdg")}
        common = ["--root", str(tmp / "root"), "--session", "s"]
        base = [sys.executable, "-m", "jobmon"]
        subprocess.run([*base, "add", "--type", "slurm", "--id", "1", "--host", "h", *common], env=env, check=True,
                       stderr=subprocess.DEVNULL, cwd=tmp)
        proc = subprocess.Popen([*base, command, *common], env=env, cwd=tmp, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait_for(called.exists, 60):
                raise SystemExit(f"{command}: the check never called ssh")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        wait_for(lambda: not marked(name), within)
        left = marked(name)
        for pid in left:  # counted; not left running after the bench either
            os.kill(pid, signal.SIGKILL)
        return len(left)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--within", type=float, default=10.0, help="seconds a run waits for the processes to go")
    args = parser.parse_args()
    start = time.monotonic()
    left = sum(one("watch" if n % 2 == 0 else "poll", args.within) for n in range(args.runs))
    print(f"kill -9 during a hung check, {args.runs} runs (watch and poll in turn), "
          f"{time.monotonic() - start:.1f} s: orphans left: {left}")


if __name__ == "__main__":
    main()
