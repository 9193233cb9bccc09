"""jobmon.run: the one module that runs processes.

Commands run for real (bash, coreutils, fake executables first on PATH); nothing inside ``sh``
or ``jobmon.run`` is patched. Processes are found by a unique marker in /proc/*/cmdline.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import pids_with, still_running, wait_for
from jobmon import run
from jobmon.run import Result

# A process named after a unique marker: without arguments it starts a copy of itself ("child")
# and waits until that copy is up; each records its pid in PIDS, then sleeps with the marker
# still in its command line (exec -a), so every process of the tree can be found in /proc.
MARKER_SCRIPT = r"""#!/usr/bin/env bash
echo $$ >> "{pids}"
if [ "$1" != child ]; then
  "$0" child &
  while [ "$(wc -l < "{pids}")" -lt 2 ]; do sleep 0.01; done
fi
exec -a "$(basename "$0")-sleeping" sleep 300
"""


@pytest.fixture
def marker(fakebin, tmp_path: Path) -> tuple[str, Path, Path]:
    """(marker, the executable, the file its processes write their pids to)."""
    name = f"jobmon-test-{uuid.uuid4().hex}"
    pids = tmp_path / "pids"
    pids.touch()
    exe = fakebin.add(name, MARKER_SCRIPT.format(pids=pids))
    yield name, exe, pids
    for pid in pids_with(name):  # only if a test failed: never leave them behind
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize(
    "command, kind, code",
    [
        ("exit 0", run.OK, 0),
        ("exit 1", run.NONZERO, 1),
        ("exit 3", run.NONZERO, 3),
        ("exit 127", run.NOT_FOUND, 127),
        ("jobmon-no-such-command-anywhere", run.NOT_FOUND, 127),
        ("exit 255", run.TRANSIENT, 255),
        ("kill -KILL $$", run.SIGNALLED, -9),
    ],
)
def test_exit_codes_are_classified(command: str, kind: str, code: int) -> None:
    result = run.run(command, 10)
    assert (result.kind, result.exit_code) == (kind, code)
    assert result.ok is (kind == run.OK)


def test_output_and_exit_code_come_back_as_data_not_an_exception() -> None:
    result = run.run("echo out; echo err >&2; exit 7", 10)
    assert result == Result("echo out; echo err >&2; exit 7", run.NONZERO, 7, "out\n", "err\n", result.duration)


def test_missing_command_reports_the_shell_message() -> None:
    result = run.run("jobmon-no-such-command-anywhere --flag", 10)
    assert result.kind == run.NOT_FOUND
    assert result.stderr.splitlines()[-1].endswith("jobmon-no-such-command-anywhere: command not found")
    assert result.why().startswith("command not found: ")


def test_without_bash_on_path_the_result_is_not_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: sh cannot find bash
    result = run.run("true", 10)
    assert (result.kind, result.exit_code, result.stdout) == (run.NOT_FOUND, None, "")


def test_custom_ok_codes() -> None:
    assert run.run("grep -q jobmon-absent /dev/null", 10, ok_codes=(0, 1))[1:3] == (run.OK, 1)
    assert run.run("exit 0", 10, ok_codes=(1,))[1:3] == (run.NONZERO, 0)
    # ok_codes win over the special meanings of 127 and 255
    assert run.run("exit 255", 10, ok_codes=(0, 255)).kind == run.OK


def test_classify_precedence() -> None:
    assert run.classify(0, True) == run.TIMEOUT  # a timeout wins over any exit code
    assert run.classify(None, False) == run.SIGNALLED
    assert run.classify(-15, False) == run.SIGNALLED
    assert run.classify(127, False) == run.NOT_FOUND
    assert run.classify(255, False) == run.TRANSIENT
    assert run.classify(2, False, (0, 2)) == run.OK


def test_env_is_passed_to_the_command() -> None:
    result = run.run('echo "$JOBMON_TEST_VALUE"', 10, env={"JOBMON_TEST_VALUE": "v1", "PATH": os.environ["PATH"]})
    assert result.stdout == "v1\n"


# ---------------------------------------------------------------- stdin, stdout


def test_stdin_is_closed_even_when_ours_is_an_open_pipe() -> None:
    # Make our own fd 0 a pipe nobody writes to: a command that inherited it would wait forever.
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    os.dup2(read_end, 0)
    try:
        result = run.run("cat; echo cat-done", 5)
        probe = run.run("read -r line; echo read=$?", 5)
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)
    assert (result.kind, result.stdout) == (run.OK, "cat-done\n")
    assert probe.stdout == "read=1\n"  # end of input at once


def test_stdout_is_not_a_terminal() -> None:
    result = run.run("[ -t 1 ] && echo tty || echo not-a-tty; [ -t 2 ] && echo tty2 || echo not-a-tty2", 10)
    assert result.stdout == "not-a-tty\nnot-a-tty2\n"


def test_output_is_complete_every_time() -> None:
    # The reader threads must have handed over everything before the result is built.
    for _ in range(40):
        result = run.run("echo line1; echo line2; echo err >&2", 10)
        assert (result.stdout, result.stderr) == ("line1\nline2\n", "err\n")


def test_invalid_utf8_is_replaced() -> None:
    result = run.run(r"printf 'ok \xff\xfe end\n'; printf 'bad \xc3\x28\n' >&2", 10)
    assert result.kind == run.OK
    assert result.stdout == "ok \ufffd\ufffd end\n"
    assert result.stderr == "bad \ufffd(\n"


# ---------------------------------------------------------------- process groups


def test_timeout_kills_the_whole_process_group(marker) -> None:
    name, exe, pids = marker
    result = run.run(str(exe), 3)
    assert result.kind == run.TIMEOUT
    assert result.duration < 30  # far less than the 300 s the processes would sleep
    assert len(pids.read_text().split()) == 2  # the child was up before the kill
    assert still_running(name) == []


def test_timeout_kills_a_background_child_of_bash(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    result = run.run(f"sleep 300 & echo $! > {pidfile}; sleep 300", 2)
    assert result.kind == run.TIMEOUT
    child = int(pidfile.read_text())
    dead = _dead_or_zombie(child)
    if not dead:  # never leave it behind, even when the test fails
        os.kill(child, 9)
    assert dead


def _dead_or_zombie(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_children_left_by_a_finished_command_are_killed_and_its_output_kept(marker) -> None:
    # Intended: a check must not leave orphans (a stray `ssh ... &` would pile up every cycle).
    # The child keeps the stdout pipe open; the command's own output must still come back.
    name, exe, pids = marker
    result = run.run(f"{exe} child & while [ ! -s {pids} ]; do sleep 0.01; done; echo started", 10)
    assert (result.kind, result.stdout) == (run.OK, "started\n")
    assert len(pids.read_text().split()) == 1
    assert still_running(name) == []


def test_a_command_that_ended_in_time_is_no_timeout_while_a_child_holds_its_output(marker) -> None:
    # bash is done in milliseconds; the child it left keeps the pipes open past the timeout.
    name, exe, pids = marker
    result = run.run(f"{exe} child & while [ ! -s {pids} ]; do sleep 0.01; done; echo started", 1)
    assert (result.kind, result.exit_code, result.stdout) == (run.OK, 0, "started\n")
    assert still_running(name) == []


# ---------------------------------------------------------------- bounded output


def test_output_keeps_the_last_mebibyte() -> None:
    result = run.run(r"head -c 20000000 /dev/zero | tr '\0' x; echo END-OF-OUTPUT", 60)
    assert result.kind == run.OK
    assert len(result.stdout) == run.OUTPUT_LIMIT
    assert result.stdout.endswith("xxxxEND-OF-OUTPUT\n")


def test_stderr_keeps_the_last_mebibyte_too() -> None:
    result = run.run(r"head -c 5000000 /dev/zero | tr '\0' y >&2; echo >&2; echo LAST-ERROR >&2; exit 4", 60)
    assert len(result.stderr) == run.OUTPUT_LIMIT
    assert result.stderr.endswith("yyyy\nLAST-ERROR\n")
    assert result.why() == "exit 4: LAST-ERROR"


def test_memory_stays_bounded_for_huge_output() -> None:
    # In a fresh interpreter, so that no earlier test's peak hides the growth.
    script = (
        "import resource\n"
        "from jobmon import run\n"
        "run.run('true', 10)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "r = run.run(\"head -c 60000000 /dev/zero | tr '\\\\0' x; echo END\", 120)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(r.kind, len(r.stdout), r.stdout.endswith('xEND\\n'), after - before)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    kind, length, tail_ok, grown_kib = proc.stdout.split()
    assert (kind, int(length), tail_ok) == (run.OK, run.OUTPUT_LIMIT, "True")
    assert int(grown_kib) < 24 * 1024  # 60 MB of output; keeping it would grow by more than that


# ---------------------------------------------------------------- why()


def test_why_of_a_timeout() -> None:
    result = Result("sacct", run.TIMEOUT, -9, "", "starting\nstill waiting for the database\n\n", 30.2)
    assert result.why() == "timed out after 30s: still waiting for the database"
    assert Result("sacct", run.TIMEOUT, -9, "", "", 60.0).why() == "timed out after 60s"


def test_why_of_a_real_timeout() -> None:
    result = run.run("echo 'waiting for the lock' >&2; sleep 300", 1)
    assert result.kind == run.TIMEOUT
    assert result.why().startswith("timed out after ")
    assert result.why().endswith("s: waiting for the lock")


def test_why_of_a_transient_failure_through_ssh(cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_EXIT", "255")
    result = run.run("ssh -o BatchMode=yes login1 sacct -j 1", 10)
    assert result.kind == run.TRANSIENT
    assert result.why() == "connection failed (exit 255): ssh: connect to host login1 port 22: Connection refused"
    assert cluster.ssh_calls() == ["ssh login1 sacct -j 1"]


def test_why_of_a_nonzero_exit_is_stderrs_last_line() -> None:
    result = run.run("echo first >&2; echo '  sacct: error: Invalid job id  ' >&2; echo >&2; exit 1", 10)
    assert result.why() == "exit 1: sacct: error: Invalid job id"
    assert result.why().count("\n") == 0
    assert run.run("exit 2", 10).why() == "exit 2"


def test_why_cuts_a_long_line_to_200_characters() -> None:
    result = run.run("printf 'z%.0s' $(seq 300) >&2; exit 5", 10)
    assert result.why() == "exit 5: " + "z" * 200


def test_why_of_a_signal() -> None:
    assert run.run("kill -KILL $$", 10).why() == "killed by a signal"


# ---------------------------------------------------------------- spawn


def test_spawn_starts_a_detached_process_in_its_own_session(tmp_path: Path) -> None:
    log = tmp_path / "spawned.log"
    log.write_text("earlier line\n")
    ready = tmp_path / "ready"
    script = (
        "import os, sys\n"
        "print('pid', os.getpid(), 'sid', os.getsid(0), 'pgid', os.getpgrp(), 'stdin', os.readlink('/proc/self/fd/0'))\n"
        "print('to stderr', file=sys.stderr)\n"
        "sys.stdout.flush(); sys.stderr.flush()\n"
        f"open({str(ready)!r}, 'w').close()\n"
    )
    pid = run.spawn([sys.executable, "-c", script], str(log))
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # already reaped by subprocess' own bookkeeping
            pass
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line"  # appended, not truncated
    assert lines[1] == f"pid {pid} sid {pid} pgid {pid} stdin /dev/null"
    assert lines[2] == "to stderr"
    assert os.getsid(0) != pid


def test_spawn_returns_while_the_process_runs_on(marker) -> None:
    name, exe, pids = marker
    pid = run.spawn([str(exe), "child"], os.devnull)
    try:
        assert wait_for(lambda: pids.read_text().split() == [str(pid)])
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert (int(stat[2]), int(stat[3])) == (pid, pid)  # process group and session of its own
    finally:
        os.kill(pid, 9)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # already reaped by subprocess' own bookkeeping
            pass
    assert still_running(name) == []


