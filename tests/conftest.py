"""Shared fixtures: fake executables first on PATH, and an isolated jobmon home.

Commands run through ``sh`` (which forks and execs by itself), so they are faked with small
real executables rather than by patching: the code under test runs exactly as in production.
"""
from __future__ import annotations

import http.server
import json
import os
import queue
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

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

# sacct over state files: $FAKE_SLURM/<jobid> holds "STATE|EXITCODE|ELAPSED", <jobid>.rss the
# MaxRSS of its batch step, <jobid>.derived its DerivedExitCode. <jobid>.rows and <jobid>.steps,
# when present, are printed as they are (real captured sacct lines) for the -X and step queries.
FAKE_SACCT = r"""#!/usr/bin/env bash
echo "sacct $*" >> "${FAKE_LOG:-/dev/null}"
if [ -n "${FAKE_SACCT_FAIL:-}" ]; then
  echo "sacct: error: Problem talking to the database: Connection refused" >&2; exit 1
fi
ids=""; format=""; allocations=0
while [ $# -gt 0 ]; do
  case "$1" in -j) ids="$2"; shift 2 ;; --format=*) format="${1#--format=}"; shift ;; -X) allocations=1; shift ;; *) shift ;; esac
done
IFS=, read -ra list <<< "$ids"
for id in "${list[@]}"; do
  f="$FAKE_SLURM/$id"
  if [ "$allocations" = 1 ]; then
    if [ -f "$f.rows" ]; then cat "$f.rows"; continue; fi
    [ -f "$f" ] || continue
    IFS='|' read -r state code elapsed < "$f"
    derived=0:0; [ -f "$f.derived" ] && derived=$(cat "$f.derived")
    printf '%s|%s|%s|%s|%s|%s|%s\n' "$id" "$id" "$state" "$code" "$derived" "$elapsed" "2026-01-01T00:00:00"
  else
    if [ -f "$f.steps" ]; then cat "$f.steps"; continue; fi
    [ -f "$f" ] || continue
    IFS='|' read -r state code elapsed < "$f"
    rss=""; [ -f "$f.rss" ] && rss=$(cat "$f.rss")
    printf '%s|%s|%s|%s|\n%s.batch|%s.batch|%s|%s|%s\n' "$id" "$id" "$state" "$code" "$id" "$id" "$state" "$code" "$rss"
  fi
done
exit 0
"""

# squeue over $FAKE_SLURM/<jobid>.queue ("STATE|NAME|REASON[|NODE]"), printed in the -o format
# asked for (%i %A %T %r %j %N); <jobid>.qrows, when present, as it is. Unknown ids fail as the real one does.
FAKE_SQUEUE = r"""#!/usr/bin/env bash
echo "squeue $*" >> "${FAKE_LOG:-/dev/null}"
if [ -n "${FAKE_SQUEUE_DOWN:-}" ]; then
  echo "slurm_load_jobs error: Unable to contact slurm controller (connect failure)" >&2; exit 1
fi
ids=""; user=""; fmt='%i|%T'
while [ $# -gt 0 ]; do
  case "$1" in -j) ids="$2"; shift 2 ;; -u) user="$2"; shift 2 ;; -o) fmt="$2"; shift 2 ;; *) shift ;; esac
done
row() {  # id state name reason node
  local out="$fmt"
  out="${out//%i/$1}"; out="${out//%A/$1}"; out="${out//%T/$2}"; out="${out//%j/$3}"; out="${out//%r/$4}"; out="${out//%N/$5}"
  printf '%s\n' "$out"
}
found=0
if [ -n "$ids" ]; then
  IFS=, read -ra list <<< "$ids"
  for id in "${list[@]}"; do
    f="$FAKE_SLURM/$id"
    # captured with -o '%i|%A|%T|%r': given whatever the format asks for before %i
    if [ -f "$f.qrows" ]; then sed "s/^/${fmt%%\%i*}/" "$f.qrows"; found=1; continue; fi
    [ -f "$f.queue" ] || continue
    IFS='|' read -r state name reason node < "$f.queue"
    row "$id" "$state" "$name" "${reason:-None}" "$node"; found=1
  done
  [ "$found" = 1 ] || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }
else
  for f in "$FAKE_SLURM"/*.queue; do
    [ -f "$f" ] || continue
    IFS='|' read -r state name reason node < "$f"
    row "$(basename "$f" .queue)" "$state" "$name" "${reason:-None}" "$node"
  done
fi
exit 0
"""

# scontrol -o show job ID: one line whose StdOut (and StdErr) come from $FAKE_SLURM/<jobid>.out
# (.err), while the controller "knows" the job; <jobid>.scontrol, when present, as it is.
FAKE_SCONTROL = r"""#!/usr/bin/env bash
echo "scontrol $*" >> "${FAKE_LOG:-/dev/null}"
[ "$1" = -o ] && shift
one() {  # the controller's line for job $1, if it knows it
  [ -f "$FAKE_SLURM/$1.scontrol" ] && { cat "$FAKE_SLURM/$1.scontrol"; return 0; }
  local f="$FAKE_SLURM/$1.out" err
  [ -f "$f" ] || return 1
  err="$(cat "$f")"; [ -f "$FAKE_SLURM/$1.err" ] && err="$(cat "$FAKE_SLURM/$1.err")"
  printf 'JobId=%s JobName=wrap JobState=RUNNING WorkDir=/tmp StdErr=%s StdIn=/dev/null StdOut=%s Power=\n' "$1" "$err" "$(cat "$f")"
}
if [ "$1 $2" = "show job" ] && [ -z "${3:-}" ]; then  # every job the controller knows
  for f in "$FAKE_SLURM"/*.scontrol "$FAKE_SLURM"/*.out; do
    [ -f "$f" ] || continue; id=$(basename "$f"); id=${id%.*}
    case "$f" in *.out) [ -f "$FAKE_SLURM/$id.scontrol" ] && continue ;; esac
    case "$id" in slurm-*) continue ;; esac
    one "$id"
  done | sort -u
  exit 0
fi
[ "$1 $2" = "show job" ] && one "$3" && exit 0
echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1
"""


def ssh_words(cache: Path) -> str:
    """The packaged `ssh` setting as it renders, with the cache folder a test gave it."""
    return ("ssh -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ControlMaster=auto "
            f"-o ControlPath={cache}/jobmon/ssh-%C -o ControlPersist=300")


def slurm_check(cache: Path, host: str, ids: list[str]) -> str:
    """The packaged slurm check's batch command as it renders for ``ids`` on ``host``: one ssh
    call running sacct, squeue and (for jobs whose log paths are not captured yet) scontrol,
    then the cluster's clock for the progress probe (no job runs yet: nothing to stat)."""
    csv = ",".join(ids)
    words = ids[0] if len(ids) == 1 else "'\"'\"'" + " ".join(ids) + "'\"'\"'"  # awk -v ids=..., as quoted
    return (
        f"{ssh_words(cache)} -- {host} "
        f"'a=$(sacct -j {csv} -X -n -P --format=JobID,JobIDRaw,State,ExitCode,DerivedExitCode,Elapsed,Submit 2>&1)"
        " || a=\"sacct failed: $a\"; printf '\"'\"'%s\\n'\"'\"' \"$a\"; "
        f"q=$(squeue -h -j {csv} -o '\"'\"'squeue|%i|%A|%T|%r|%N'\"'\"' 2>&1) || case $q in "
        "*'\"'\"'Invalid job id specified'\"'\"'*) q= ;; *) q=\"squeue failed: $q\" ;; esac; "
        "printf '\"'\"'%s\\n'\"'\"' \"$q\";  "
        f"scontrol -o show job 2>/dev/null | awk -v ids={words} "
        "'\"'\"' BEGIN { n = split(ids, w, \" \"); for (i = 1; i <= n; i++) want[w[i]] = 1 } "
        "{ j = a = t = h = o = \"\";\n"
        "  for (i = 1; i <= 6 && i <= NF; i++) { k = $i; sub(/=.*/, \"\", k); v = substr($i, length(k) + 2);\n"
        "    if (k == \"JobId\") j = v; else if (k == \"ArrayJobId\") a = v; else if (k == \"ArrayTaskId\") t = v;\n"
        "    else if (k == \"HetJobId\") h = v; else if (k == \"HetJobOffset\") o = v }\n"
        "  if (j in want) x = j; else if ((a \"_\" t) in want) x = a \"_\" t; else if (a in want) x = a;\n"
        "  else if ((h \"+\" o) in want) x = h \"+\" o; else if (h in want) x = h; else next;\n"
        "  print \"scontrol|\" x \"|\" $0 }'\"'\"';\n"
        " printf '\"'\"'clock|%s\\n'\"'\"' \"$(date +%s)\";'")


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

    def queue(self, job_id: str, state: str, name: str = "wrap", reason: str = "None", node: str = "") -> None:
        """What squeue says (before sacct has a row, or while the controller knows the job)."""
        (self.dir / f"{job_id}.queue").write_text(f"{state}|{name}|{reason}|{node}\n")

    def output(self, job_id: str, text: str, rss: str | None = None) -> Path:
        """The job's output file, as scontrol shows it; and its MaxRSS."""
        out = self.dir / f"slurm-{job_id}.out"
        out.write_text(text)
        (self.dir / f"{job_id}.out").write_text(str(out))
        if rss is not None:
            (self.dir / f"{job_id}.rss").write_text(rss + "\n")
        return out

    def replay(self, job_id: str, shape: str, moment: str) -> None:
        """Make the fake controller and accounting answer for ``job_id`` with what the real
        cluster printed (tests/fixtures/slurm/shapes/<shape>/<moment>.*)."""
        src = FIXTURES / "slurm" / "shapes" / shape
        base = self.dir / job_id
        for suffix, name in ((".rows", f"{moment}.sacct.txt"), (".qrows", f"{moment}.squeue.txt"),
                             (".scontrol", f"{moment}.scontrol.txt"), (".steps", "end.steps.txt")):
            text = (src / name).read_text() if (src / name).exists() else ""
            text = "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("#"))
            target = Path(str(base) + suffix)
            if text.strip():
                target.write_text(text)
            else:
                target.unlink(missing_ok=True)

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


# ---------------------------------------------------------------- processes (bench/orphans.py uses these too)


def pids_with(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker`` (zombies have an empty one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            pass
    return found


def wait_for(condition, within: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    """Whether ``condition()`` came true within ``within`` seconds (a guard, not a measure)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def still_running(marker: str, within: float = 10.0) -> list[int]:
    """Poll a bounded while for SIGKILLed processes to be gone; return any that remain."""
    deadline = time.monotonic() + within
    pids = pids_with(marker)
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = pids_with(marker)
    return pids


def folder_in_tmp(mode: int) -> Iterator[Path]:
    """A folder a second user can reach (pytest's tmp_path sits under a 0700 one), removed after:
    0o755 for a user's own, 0o777 for a shared project folder."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="jobmon-test-", dir="/tmp"))
    folder.chmod(mode)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


# ---------------------------------------------------------------- a notification target


class Server:
    """A real HTTP server in a thread: every request that arrived, answered with ``answer`` (or
    each in turn, the last one then), or held until ``release`` is set (``hang``)."""

    def __init__(self, answer: int | tuple[int, ...] = 200, *, hang: bool = False) -> None:
        answers = answer if isinstance(answer, tuple) else (answer,)
        self.arrived: queue.Queue[dict[str, Any]] = queue.Queue()
        self.count = 0
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.count += 1
                outer.arrived.put({"path": self.path, **json.loads(body)})
                if hang:
                    outer.release.wait(60)
                self.send_response(answers[min(outer.count, len(answers)) - 1])
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str = "", scheme: str = "json") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{path}"

    def next(self, within: float = 30) -> dict[str, Any]:
        return self.arrived.get(timeout=within)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[Any]:
    made: list[Server] = []

    def make(answer: int | tuple[int, ...] = 200, *, hang: bool = False) -> Server:
        made.append(Server(answer, hang=hang))
        return made[-1]
    yield make
    for server in made:
        server.close()
