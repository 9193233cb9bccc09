"""Shared fixtures: fake executables first on PATH, and an isolated jobmon home.

Commands run through ``sh`` (which forks and execs by itself), so they are faked with small
real executables rather than by patching: the code under test runs exactly as in production.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Like OpenSSH: options first, then the host, then the remote words joined by spaces and handed
# to the remote user's shell with -c. Every call is logged, one line each, to $FAKE_LOG.
FAKE_SSH = r"""#!/usr/bin/env bash
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-p|-i|-J|-l|-F|-S|-E|-c|-m|-b|-O) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
host="$1"; shift
echo "ssh $host $*" >> "${FAKE_LOG:-/dev/null}"
if [ -n "${FAKE_SSH_EXIT:-}" ] || [ "$host" = "${FAKE_SSH_DOWN:-}" ]; then
  echo "ssh: connect to host $host port 22: Connection refused" >&2; exit "${FAKE_SSH_EXIT:-255}"
fi
exec bash -c "$*"
"""

# sacct over state files: $FAKE_SLURM/<jobid> holds "STATE|EXITCODE|ELAPSED", <jobid>.rss
# the MaxRSS of its batch step.
FAKE_SACCT = r"""#!/usr/bin/env bash
echo "sacct $*" >> "${FAKE_LOG:-/dev/null}"
if [ -n "${FAKE_SACCT_FAIL:-}" ]; then
  echo "sacct: error: Problem talking to the database: Connection refused" >&2; exit 1
fi
ids=""; format=""
while [ $# -gt 0 ]; do
  case "$1" in -j) ids="$2"; shift 2 ;; --format=*) format="${1#--format=}"; shift ;; *) shift ;; esac
done
IFS=, read -ra list <<< "$ids"
for id in "${list[@]}"; do
  f="$FAKE_SLURM/$id"
  if [ "$format" = MaxRSS ]; then
    [ -f "$f" ] && { echo; [ -f "$f.rss" ] && cat "$f.rss"; echo 0; }
  else
    [ -f "$f" ] && printf '%s|%s\n' "$id" "$(cat "$f")"
  fi
done
exit 0
"""

# squeue over $FAKE_SLURM/<jobid>.queue ("STATE|NAME"); unknown ids fail as the real one does.
FAKE_SQUEUE = r"""#!/usr/bin/env bash
echo "squeue $*" >> "${FAKE_LOG:-/dev/null}"
ids=""; user=""
while [ $# -gt 0 ]; do
  case "$1" in -j) ids="$2"; shift 2 ;; -u) user="$2"; shift 2 ;; *) shift ;; esac
done
found=0
if [ -n "$ids" ]; then
  IFS=, read -ra list <<< "$ids"
  for id in "${list[@]}"; do
    f="$FAKE_SLURM/$id.queue"
    [ -f "$f" ] && { printf '%s|%s\n' "$id" "$(cut -d'|' -f1 "$f")"; found=1; }
  done
  [ "$found" = 1 ] || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }
else
  for f in "$FAKE_SLURM"/*.queue; do
    [ -f "$f" ] || continue
    id=$(basename "$f" .queue); printf '%s|%s\n' "$id" "$(cat "$f")"
  done
fi
exit 0
"""

# scontrol show job: StdOut from $FAKE_SLURM/<jobid>.out when the controller "knows" the job.
FAKE_SCONTROL = r"""#!/usr/bin/env bash
echo "scontrol $*" >> "${FAKE_LOG:-/dev/null}"
f="$FAKE_SLURM/$3.out"
if [ "$1 $2" = "show job" ] && [ -f "$f" ]; then
  printf 'JobId=%s JobName=wrap\n   StdOut=%s\n' "$3" "$(cat "$f")"; exit 0
fi
echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1
"""


def ssh_words(cache: Path) -> str:
    """The packaged `ssh` setting as it renders, with the cache folder a test gave it."""
    return ("ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ControlMaster=auto "
            f"-o ControlPath={cache}/jobmon/ssh-%C -o ControlPersist=300")


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own $XDG_CACHE_HOME: ssh sockets never land in the real home."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


class FakeBin:
    def __init__(self, path: Path, log: Path) -> None:
        self.path = path
        self.log = log

    def add(self, name: str, script: str) -> Path:
        exe = self.path / name
        exe.write_text(script)
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return exe

    def calls(self, prefix: str = "") -> list[str]:
        if not self.log.exists():
            return []
        return [ln for ln in self.log.read_text().splitlines() if ln.startswith(prefix)]


@pytest.fixture
def fakebin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    path = tmp_path / "fakebin"
    path.mkdir()
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    return FakeBin(path, log)


class Cluster:
    """A fake SLURM reached through a fake ssh: set states, read how it was asked."""

    def __init__(self, fakebin: FakeBin, state_dir: Path) -> None:
        self.fakebin = fakebin
        self.dir = state_dir

    def set(self, job_id: str, state: str, exit_code: str = "0:0", elapsed: str = "00:00:01") -> None:
        (self.dir / job_id).write_text(f"{state}|{exit_code}|{elapsed}\n")

    def forget(self, job_id: str) -> None:
        (self.dir / job_id).unlink(missing_ok=True)

    def queue(self, job_id: str, state: str, name: str = "wrap") -> None:
        """What squeue says (before sacct has a row, or while the controller knows the job)."""
        (self.dir / f"{job_id}.queue").write_text(f"{state}|{name}\n")

    def output(self, job_id: str, text: str, rss: str | None = None) -> Path:
        """The job's output file, as scontrol shows it; and its MaxRSS."""
        out = self.dir / f"slurm-{job_id}.out"
        out.write_text(text)
        (self.dir / f"{job_id}.out").write_text(str(out))
        if rss is not None:
            (self.dir / f"{job_id}.rss").write_text(rss + "\n")
        return out

    def ssh_calls(self) -> list[str]:
        return self.fakebin.calls("ssh ")

    def sacct_calls(self) -> list[str]:
        return self.fakebin.calls("sacct ")

    def check_calls(self) -> list[str]:
        """The state checks only (not on_complete's MaxRSS query)."""
        return [c for c in self.sacct_calls() if " -X " in c]


@pytest.fixture
def cluster(fakebin: FakeBin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    state = tmp_path / "slurm"
    state.mkdir()
    monkeypatch.setenv("FAKE_SLURM", str(state))
    fakebin.add("ssh", FAKE_SSH)
    fakebin.add("sacct", FAKE_SACCT)
    fakebin.add("squeue", FAKE_SQUEUE)
    fakebin.add("scontrol", FAKE_SCONTROL)
    return Cluster(fakebin, state)


class Home(NamedTuple):
    """An isolated jobmon: its own root, session, XDG config and working directory."""

    root: Path
    session: str
    registry: Path

    def args(self) -> list[str]:
        return ["--root", str(self.root), "--session", self.session]

    def jobs(self) -> list[dict[str, Any]]:
        return json.loads(self.registry.read_text()) if self.registry.exists() else []

    def history(self) -> list[dict[str, Any]]:
        path = self.registry.with_name("history.jsonl")
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []

    def logged(self) -> list[dict[str, Any]]:
        """The session's event log, every event in it."""
        path = self.registry.with_name("events.jsonl")
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    root = tmp_path / "root"
    root.mkdir()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for var in ("JOBMON_CONFIG", "JOBMON_ROOT", "CLAUDE_CODE_SESSION_ID", "CODEX_THREAD_ID", "JOBMON_LOG"):
        monkeypatch.delenv(var, raising=False)
    return Home(root, "s1", root / ".claude" / "agents" / "s1" / "active_jobs.json")


class Ran(NamedTuple):
    code: int
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.out.splitlines()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(ln) for ln in self.out.splitlines()]


def jobmon(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> Ran:
    """Run the real CLI in a child process, as a user or an agent would."""
    proc = subprocess.run(
        [sys.executable, "-m", "jobmon", *args], capture_output=True, text=True,
        timeout=timeout, env=env, stdin=subprocess.DEVNULL,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


# ---------------------------------------------------------------- a watcher in-process


def make_watcher(home: Home, cfg: Any = None, *, as_json: bool = True) -> tuple[Any, Any]:
    """A Watcher over the home's registry and event log; what it logs is also printed into a
    buffer that ``events`` drains."""
    import io

    from jobmon import config
    from jobmon.eventlog import EventLog
    from jobmon.events import Printer
    from jobmon.registry import Registry
    from jobmon.watch import Watcher

    out = io.StringIO()
    cfg = cfg or config.load(env={})
    printer = Printer(as_json=as_json, stream=out)
    registry = Registry(home.registry)
    return Watcher(cfg, registry, EventLog(registry.events_path), interval=0.01,
                   echo=lambda logged: [printer.emit(e) for e in logged]), out


def summary(home: Home, cfg: Any = None) -> Any:
    """The session summary, as a watch's last line gives it."""
    from jobmon import config, report
    from jobmon.registry import Registry

    registry = Registry(home.registry)
    return report.session(cfg or config.load(env={}), registry.read(), registry.history())


def events(out: Any) -> list[dict[str, Any]]:
    """The JSON events printed since the last call."""
    lines = out.getvalue().splitlines()
    out.seek(0)
    out.truncate()
    return [json.loads(ln) for ln in lines]


def add(home: Home, *jobs: Any) -> None:
    """Put jobs straight into the registry, as an agent writing it would."""
    from jobmon.registry import Registry

    with Registry(home.registry).transaction() as entries:
        entries.extend(jobs)
