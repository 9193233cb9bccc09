"""End-to-end fixtures: the real SLURM cluster and sshd of ``tests/e2e/cluster``, the real CLI,
the real watcher process.

Whether the cluster answers is decided once per session (``ssh testcluster sinfo``). Without it
every e2e test skips with a one-line reason, unless ``JOBMON_E2E=1``: then a missing cluster (or
a missing nel venv) fails them. Fixtures print nothing on stdout.

The cluster is this machine, so a path under /tmp is the same file for a job, for jobmon and for
the test. This folder is a package (``__init__.py``) so that this file does not shadow
``tests/conftest.py``, which the test modules import as ``conftest``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPTS = REPO / "tests" / "e2e" / "cluster"
WATCH = REPO / "bin" / "jobmon-watch"
NEL_VENV = REPO / ".venv-nel"
REQUIRED = os.environ.get("JOBMON_E2E") == "1"
DEADLINE = 120.0  # seconds a watcher may take to report a short job's end (a few in practice)
MAX_LINE = 400  # README: no stdout line is longer
LOCK = Path(tempfile.gettempdir()) / "jobmon-e2e-tests.lock"


# What an ended slurm job's efficiency metric may add at the end of its detail (none of it is
# certain on this cluster: a job too short for JobAcctGather has no MaxRSS).
FIGURE = r"(?:CPU \d+%|mem \d+% of \S+|MaxRSS \S+|\d+ GPU × \S+ h)"
FIGURES = rf"(?:; {FIGURE}(?:, {FIGURE})*)?"


def wait_until(what: str, probe: Callable[[], Any], timeout: float = DEADLINE, every: float = 0.5,
               context: Callable[[], str] = lambda: "") -> Any:
    """Bounded polling: ``probe()`` until it returns something true, which is returned; past
    ``timeout`` an AssertionError saying what was awaited (and ``context()``)."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s for {what} (last: {got!r})\n{context()}")
        time.sleep(every)


def unavailable(reason: str) -> None:
    """Skip, or fail when the e2e tests are required (JOBMON_E2E=1)."""
    if REQUIRED:
        pytest.fail(f"JOBMON_E2E=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _cluster_env() -> dict[str, str]:
    """The values of tests/e2e/cluster/env.sh (overridable from the environment, as there)."""
    names = ("JOBMON_E2E_HOST", "JOBMON_E2E_RUN_DIR")
    out = subprocess.run(["bash", "-c", f'. {shlex.quote(str(CLUSTER_SCRIPTS / "env.sh"))} && '
                          + " && ".join(f'printf "%s\\n" "${n}"' for n in names)],
                         capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    return dict(zip(names, out.stdout.splitlines(), strict=True))


# ---------------------------------------------------------------- ordering


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The time-limit job takes 75-90 s: it is submitted at the start of the session and the
    test that reads its end runs last of all, so that every other test overlaps it."""
    last = [i for i in items if "timeout_job" in getattr(i, "fixturenames", ())]
    if last:
        items[:] = [i for i in items if i not in last] + last


@pytest.fixture(scope="session", autouse=True)
def _slow_jobs_first(request: pytest.FixtureRequest) -> None:
    if any("timeout_job" in getattr(i, "fixturenames", ()) for i in request.session.items):
        request.getfixturevalue("timeout_job")


# ---------------------------------------------------------------- the cluster


class Slurm:
    """The e2e cluster seen as a user sees it: ``ssh testcluster <one remote command>``."""

    def __init__(self, host: str, run_dir: Path) -> None:
        self.host = host
        self.run_dir = run_dir
        self.submitted: list[str] = []

    def ssh(self, command: str, *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one remote command (a single argument: the remote shell parses it)."""
        proc = subprocess.run(["ssh", self.host, command], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"ssh {self.host} {command!r}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def sbatch(self, wrap: str, *options: str) -> str:
        """Submit ``wrap`` (quoted here for the remote shell); the job's id."""
        command = shlex.join(["sbatch", "--parsable", "--job-name", "jobmon-e2e", *options, "--wrap", wrap])
        job_id = self.ssh(command).stdout.strip().split(";")[0]
        assert job_id.isdigit(), f"sbatch said {job_id!r}"
        self.submitted.append(job_id)
        return job_id

    def sacct(self, *job_ids: str) -> dict[str, list[str]]:
        """What sacct says about each job: [State, ExitCode, Elapsed]."""
        out = self.ssh(f"sacct -j {','.join(job_ids)} -X -n -P --format=JobID,State,ExitCode,Elapsed").stdout
        return {fields[0]: fields[1:] for fields in (ln.split("|") for ln in out.splitlines() if ln)}

    def limit_and_wait(self, job_id: str) -> str:
        """What jobmon says after an ended job's elapsed time (its efficiency metric): `` of
        <time limit>`` unless UNLIMITED, then ``, waited <Start - Submit>`` unless it never started."""
        from datetime import datetime

        from jobmon.template import hms

        out = self.ssh(f"sacct -j {job_id} -X -n -P --format=TimelimitRaw,Submit,Start").stdout
        limit, submit, start = out.splitlines()[-1].split("|")
        said = f" of {hms(int(limit) * 60)}" if limit.isdigit() else ""
        with contextlib.suppress(ValueError):
            said += f", waited {hms((datetime.fromisoformat(start) - datetime.fromisoformat(submit)).total_seconds())}"
        return said

    def squeue(self, job_id: str) -> str:
        """What the controller says about a job it still knows: "STATE|REASON"."""
        return self.ssh(f"squeue -h -j {job_id} -o '%T|%r'").stdout.strip()

    def wait_for(self, job_id: str, states: set[str], timeout: float = DEADLINE) -> list[str]:
        """Bounded polling of the scheduler until sacct shows one of ``states``."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.sacct(job_id).get(job_id)
            if row and row[0] in states:
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id}: sacct still says {row} after {timeout:.0f} s (wanted {states})")
            time.sleep(0.5)

    def cancel(self, *job_ids: str) -> None:
        if job_ids:
            self.ssh(f"scancel {' '.join(job_ids)}", check=False)

    def stop(self, daemon: str) -> None:
        """Stop one of the cluster's daemons as an outage would: the pid in its pid file (checked
        to be that daemon) and every process below it (sshd's sessions, where ssh ControlMaster
        connections live), by pid, never by name. ``up()`` starts it again."""
        pid = int((self.run_dir / f"{daemon}.pid").read_text().split()[0])
        assert Path(f"/proc/{pid}/comm").read_text().strip() == daemon
        below = _children()
        victims, todo = [], [pid]
        while todo:
            victims.append(todo.pop())
            todo += below.get(victims[-1], [])
        for p in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in victims):
            assert time.monotonic() < deadline, f"{daemon}: pids still alive: {[p for p in victims if _alive(p)]}"
            time.sleep(0.1)

    def up(self) -> None:
        """tests/e2e/cluster/up.sh: starts whatever is stopped, leaves the rest alone."""
        up = subprocess.run([str(CLUSTER_SCRIPTS / "up.sh")], capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
        assert up.returncode == 0, up.stdout + up.stderr

    @contextlib.contextmanager
    def down(self, daemon: str) -> Iterator[None]:
        """The daemon stopped for the block; started again afterwards, whatever happened."""
        try:
            self.stop(daemon)
            yield
        finally:
            self.up()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children() -> dict[int, list[int]]:
    """Every live process's children, from /proc."""
    table: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            table.setdefault(ppid, []).append(int(entry.name))
    return table


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slurm]:
    if shutil.which("ssh") is None:
        unavailable("e2e cluster not reachable: no ssh client on PATH")
    env = _cluster_env()
    host = env["JOBMON_E2E_HOST"]
    try:
        probe = subprocess.run(["ssh", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", host, "sinfo -h -o %a"],
                               capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        why = f"exit {probe.returncode}: {(probe.stderr.strip().splitlines() or [''])[-1]}" if probe.returncode else ""
        if not why and probe.stdout.split() != ["up"]:
            why = f"sinfo says {probe.stdout.strip()!r}"
    except subprocess.TimeoutExpired:
        why = "timed out"
    if why:
        unavailable(f"e2e cluster not reachable (ssh {host} sinfo: {why}); start it with tests/e2e/cluster/up.sh")
    cluster = Slurm(host, Path(env["JOBMON_E2E_RUN_DIR"]))
    with _one_session_at_a_time():
        yield cluster
        # Jobs a failed or interrupted test left behind (sleepers) do not outlive the session.
        alive = cluster.ssh("squeue -h -o %A", check=False).stdout.split()
        cluster.cancel(*[j for j in cluster.submitted if j in alive])


@contextlib.contextmanager
def _one_session_at_a_time(timeout: float = 1200) -> Iterator[None]:
    """The cluster is shared by the whole machine and one test stops its sshd: concurrent e2e
    sessions (two `make test` at once) wait for each other instead of breaking each other."""
    with open(LOCK, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another e2e session held {LOCK} for {timeout:.0f} s", pytrace=False)
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def ssh_cache() -> Iterator[Path]:
    """jobmon's cache folder for the session ($XDG_CACHE_HOME): its ssh ControlMaster sockets
    land here and the masters are closed at the end, not left lingering for minutes."""
    base = Path(tempfile.mkdtemp(prefix="jme2e-"))  # short: a socket path has ~100 bytes
    yield base
    for sock in sorted((base / "jobmon").glob("*")):
        if sock.is_socket():
            subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit", "jobmon-e2e"],
                           capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_cache(ssh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(ssh_cache))


@pytest.fixture
def jobdir(tmp_path: Path) -> Path:
    """Where a job runs (--chdir) and writes slurm-<id>.out."""
    path = tmp_path / "jobs"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def timeout_job(slurm: Slurm, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A job killed by its time limit (--time=1: one minute, and up to 30 s more until the
    controller's next check), submitted when the session starts."""
    where = tmp_path_factory.mktemp("timeout")
    job_id = slurm.sbatch("echo started; sleep 600", "--time=1", "--chdir", str(where))
    return job_id, where / f"slurm-{job_id}.out"


# ---------------------------------------------------------------- the watcher process


class Watch:
    """``bin/jobmon-watch --json --interval 1`` running in the background; its stdout read line
    by line as it comes, each line one JSON event."""

    def __init__(self, args: list[str], stderr_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = [str(WATCH), "--json", "--interval", "1", *args]
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "w")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, env=env)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []  # every event so far
        self.closed = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _why(self, what: str) -> str:
        self._stderr.flush()
        tail = self.stderr_path.read_text()[-2000:]
        shown = "\n".join(json.dumps(e) for e in self.events[-10:])
        return f"{what}\nevents so far:\n{shown}\nwatcher stderr (tail):\n{tail}"

    def _next(self, deadline: float) -> dict[str, Any] | None:
        left = deadline - time.monotonic()
        try:
            line = self._lines.get(timeout=max(left, 0))
        except queue.Empty:
            raise AssertionError(self._why("watcher: deadline passed waiting for an event")) from None
        if line is None:
            self.closed = True
            return None
        line = line.rstrip("\n")
        assert len(line) <= MAX_LINE, f"stdout line of {len(line)} characters: {line}"
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(self._why(f"watcher stdout line is not JSON: {line!r}")) from None
        self.events.append(event)
        return event

    def until(self, pred: Callable[[dict[str, Any]], bool], timeout: float = DEADLINE) -> list[dict[str, Any]]:
        """Events as they come, up to and including the first one ``pred`` accepts."""
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while True:
            event = self._next(deadline)
            if event is None:
                raise AssertionError(self._why(f"watcher exited ({self.proc.wait()}) before the awaited event"))
            got.append(event)
            if pred(event):
                return got

    def finish(self, timeout: float = DEADLINE) -> list[dict[str, Any]]:
        """Every event until the watcher exits by itself (no job left); its exit code is ``code``."""
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while not self.closed:
            event = self._next(deadline)
            if event is not None:
                got.append(event)
        self.code = self.proc.wait(timeout=max(deadline - time.monotonic(), 1))
        return got

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Callable[..., Watch]]:
    """Start watchers; each is stopped (SIGTERM) at the end of the test if still running."""
    started: list[Watch] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Watch:
        w = Watch(list(args), tmp_path / f"watch{len(started)}.stderr", env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def states(events: list[dict[str, Any]], job_id: str | None = None) -> list[str]:
    """The states a job went through, in order, as the watcher reported them."""
    return [e["to"] for e in events if e["kind"] == "state" and (job_id is None or e["id"] == job_id)]

