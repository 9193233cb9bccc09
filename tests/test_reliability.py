"""What must hold when many agents write the registry, the watcher dies, clusters fail and
values are hostile. The stress figures come from bench/stress.py; these tests prove the rules."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from conftest import REPO, Cluster, Home, jobmon, make_watcher
from conftest import pids_with, still_running

WRITER = """
import sys
from jobmon import cli
root, session, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
for n in range(first, first + 50):
    code = cli.main(["add", "--type", "slurm", "--id", str(n), "--host", f"h{n % 4}", "--root", root, "--session", session])
    assert code == 0, code
"""


def watch(home: Home, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "jobmon", "watch", "--json", "--interval", "0.2", *extra,
                             *home.args()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def test_eight_writers_and_a_watcher_lose_nothing_and_repeat_nothing(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    conf = tmp_path / "many.yaml"
    conf.write_text("settings: {aggregate_after: 1000}\n")  # one line per event, to count them
    for n in range(1000, 1400):
        cluster.set(str(n), "COMPLETED")
    cluster.set("1", "RUNNING")  # keeps the watcher alive until every writer is done
    assert jobmon("add", "--type", "slurm", "--id", "1", "--host", "h0", *home.args()).code == 0
    watcher = watch(home, "--config", str(conf))
    torn: list[str] = []
    stop = threading.Event()

    def read_all_the_time() -> None:
        while not stop.is_set():
            try:
                text = home.registry.read_text()
            except FileNotFoundError:
                continue
            try:
                assert isinstance(json.loads(text), list)
            except (ValueError, AssertionError):
                torn.append(text[:200])

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(home.root), home.session, str(1000 + 50 * w)],
                                env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL)
               for w in range(8)]
    assert [w.wait(timeout=300) for w in writers] == [0] * 8
    cluster.set("1", "COMPLETED")
    out, err = watcher.communicate(timeout=300)
    stop.set()
    reader.join()
    assert watcher.returncode == 0, err[-2000:]
    assert torn == []
    events = [json.loads(ln) for ln in out.splitlines()]
    finals = [e["id"] for e in events if e["kind"] == "state" and e["terminal"]]
    assert sorted(finals, key=int) == ["1"] + [str(n) for n in range(1000, 1400)]  # each exactly once
    assert len(home.history()) == 401 and home.jobs() == []


def test_killed_during_a_check_nothing_is_lost(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    cluster.fakebin.add("sacct", f"""#!/usr/bin/env bash
echo started > {tmp_path}/in-check
while [ ! -e {gate} ]; do sleep 0.05; done
printf '7|7|COMPLETED|0:0|0:0|00:00:09|2026-01-01T00:00:00\\n'
""")
    assert jobmon("add", "--type", "slurm", "--id", "7", "--host", "h", *home.args()).code == 0
    first = watch(home)
    _wait_for(lambda: (tmp_path / "in-check").exists())
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert home.jobs()[0]["last_status"] == ""  # nothing half-written
    gate.touch()
    second = watch(home)
    out, _ = second.communicate(timeout=60)
    finals = [json.loads(ln) for ln in out.splitlines() if json.loads(ln)["terminal"]]
    assert [(e["id"], e["to"], e.get("replayed", False)) for e in finals] == [("7", "COMPLETED", False)]


def test_killed_after_claiming_a_final_state_it_is_replayed_and_marked(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    # on_complete hangs: the final state is claimed in the registry, not yet printed nor in history
    conf = tmp_path / "hang.yaml"
    conf.write_text(f"types:\n  slurm:\n    on_complete: \"test -e {tmp_path}/go || (touch {tmp_path}/in-action; sleep 300)\"\n")
    cluster.set("8", "COMPLETED", "0:0", "00:00:05")
    assert jobmon("add", "--type", "slurm", "--id", "8", "--host", "h", *home.args()).code == 0
    first = watch(home, "--config", str(conf))
    _wait_for(lambda: (tmp_path / "in-action").exists())
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    (job,) = home.jobs()
    assert job["jobmon"]["final"]["to"] == "COMPLETED" and home.history() == []
    assert job["jobmon"]["final"]["at"].endswith("+00:00")  # UTC, with its offset
    assert job["jobmon"]["final"]["pid"] == first.pid  # whose claim: replayed below, now that it is gone
    (tmp_path / "go").touch()
    out, _ = watch(home, "--config", str(conf)).communicate(timeout=60)
    events = [json.loads(ln) for ln in out.splitlines()]
    assert [(e["id"], e["to"], e.get("replayed")) for e in events if e["kind"] == "state"] == [("8", "COMPLETED", True)]
    assert [r["id"] for r in home.history()] == ["8"] and home.jobs() == []


def test_a_stale_lock_of_a_dead_watcher_is_taken_over(home: Home, cluster: Cluster) -> None:
    cluster.set("9", "RUNNING")
    assert jobmon("add", "--type", "slurm", "--id", "9", "--host", "h", *home.args()).code == 0
    first = watch(home)
    assert json.loads(first.stdout.readline())["to"] == "RUNNING"
    second = jobmon("watch", "--once", *home.args())
    assert second.code == 0 and f"a poller already runs for this registry (pid {first.pid})" in second.err
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    cluster.set("9", "COMPLETED")
    third = jobmon("watch", "--once", "--json", *home.args())
    assert third.code == 0, third.err
    assert [(e["kind"], e["to"]) for e in third.events()] == [("state", "COMPLETED"), ("summary", None)]


# ---------------------------------------------------------------- stops, kills and hung checks


@pytest.fixture
def hung(cluster: Cluster, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An ssh that hangs (a dead network): (its processes' marker, the file it touches when called)."""
    name = f"jobmon-hung-{uuid.uuid4().hex}"
    called = tmp_path / "in-check"
    cluster.fakebin.add("ssh", f"#!/usr/bin/env bash\ntouch {called}\nexec -a {name} sleep 300\n")
    yield name, called
    for pid in pids_with(name):  # only if a test failed: never leave them behind
        os.kill(pid, signal.SIGKILL)


def _start(home: Home, command: str, *extra: str) -> subprocess.Popen[str]:
    assert jobmon("add", "--type", "slurm", "--id", "5", "--host", "h", *home.args()).code == 0
    return subprocess.Popen([sys.executable, "-m", "jobmon", command, *extra, *home.args()], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command, sig, code", [
    ("watch", signal.SIGINT, 0), ("watch", signal.SIGHUP, 0), ("poll", signal.SIGTERM, 0), ("status", signal.SIGINT, 130)])
def test_a_stop_during_a_hung_check_kills_the_check_and_ends_at_once(home: Home, hung, command: str, sig: int,
                                                                     code: int) -> None:  # type: ignore[no-untyped-def]
    name, called = hung
    proc = _start(home, command)
    _wait_for(called.exists)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)  # the check's own timeout is 60 s: a guard, not a measurement
    assert (proc.returncode, "Traceback" not in err) == (code, True), err[-2000:]
    assert still_running(name) == []
    if command == "watch":
        assert out.splitlines()[-1][9:].startswith("watch stopped: still watching 1 job")
    assert "errors" not in home.jobs()[0].get("jobmon", {})  # a check cut short is not a failed check


@pytest.mark.parametrize("command", ["watch", "poll"])
def test_nothing_outlives_a_killed_poller(home: Home, hung, command: str) -> None:  # type: ignore[no-untyped-def]
    name, called = hung
    proc = _start(home, command)
    _wait_for(called.exists)
    proc.kill()
    proc.communicate(timeout=10)
    assert still_running(name) == []  # at once: the check's own timeout is 60 s


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout, which bounds each command")
def test_a_check_ends_at_its_timeout_even_when_jobmon_cannot_act(home: Home, hung, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, called = hung
    conf = tmp_path / "short.yaml"
    conf.write_text("types: {slurm: {timeout: 1}}\n")
    proc = _start(home, "watch", "--config", str(conf))
    _wait_for(called.exists)
    proc.send_signal(signal.SIGSTOP)  # frozen: its own timer cannot fire, nor can its parent die
    try:
        assert still_running(name, within=20) == []
    finally:
        proc.kill()
        proc.send_signal(signal.SIGCONT)
        proc.communicate(timeout=10)


def test_a_claim_belongs_to_the_process_that_made_it(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    # `status` claims an end and runs on_failure; a watcher started meanwhile leaves the claim to it.
    conf = tmp_path / "slow.yaml"
    conf.write_text(f"types:\n  slurm:\n    on_failure: \"touch {tmp_path}/in-action; "
                    f"while [ ! -e {tmp_path}/go ]; do sleep 0.05; done; echo diagnosed\"\n")
    cluster.set("6", "FAILED", "1:0", "00:00:02")
    assert jobmon("add", "--type", "slurm", "--id", "6", "--host", "h", *home.args()).code == 0
    status = subprocess.Popen([sys.executable, "-m", "jobmon", "status", "--json", "--config", str(conf), *home.args()],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    _wait_for((tmp_path / "in-action").exists)
    meanwhile = jobmon("watch", "--once", "--json", "--config", str(conf), *home.args())
    assert meanwhile.code == 0, meanwhile.err
    assert [e["kind"] for e in meanwhile.events()] == ["summary"]  # no replay: its claimant runs
    (tmp_path / "go").touch()
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0, err
    ends = [e for e in home.logged() if e["kind"] == "state" and e["terminal"]]
    assert [(e["id"], e["detail"], e.get("replayed", False)) for e in ends] == [("6", "exit 1:0, 00:00:02; diagnosed", False)]
    assert [r["id"] for r in home.history()] == ["6"] and home.jobs() == []


def _wait_for(condition, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition a background process makes true: bounded, not a sleep to pass."""
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


# ---------------------------------------------------------------- hostile values, end to end

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PERMISSIVE = """
types:
  probe:
    description: a test type that lets any value reach the shell, locally and through ssh
    fields:
      id: {pattern: '(?s).{1,400}'}
      host: {required: true}
      user: {}
      file: {}
    interval: 1
    check:
      command: >-
        {{ ssh }} {{ host }} {% remote %}printf 'S=RUNNING|%s|%s|%s|%s\\n' {{ id }} {{ user }} {{ file }} {{ description }}{% endremote %};
        printf 'L=%s|%s\\n' {{ id }} {{ file }} > /dev/null
      regex: 'S=(?P<state>[A-Z]+)'
    states: {running: [RUNNING], success: [DONE]}
"""


def _hostile(marker: Path) -> st.SearchStrategy[str]:
    m = str(marker)
    pieces = [f"$(touch {m})", f"`touch {m}`", f";touch {m}", f"|touch {m}", f"&&touch {m}", f"\ntouch {m}\n",
              f"' ; touch {m} ; '", f'" ; touch {m} ; "', f"$((1))>{m}", f"<{m}", "*", "~", "\\", "\\'", "$HOME",
              "é漢字🙂", "\t", " ", "-oProxyCommand=touch", "%s%n", "{{ id }}", "{% raw %}"]
    fragment = st.one_of(st.sampled_from(pieces), st.text(min_size=0, max_size=12).filter(lambda t: "\x00" not in t))
    return st.lists(fragment, min_size=1, max_size=6).map("".join).filter(lambda t: "\x00" not in t)


MARKER_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / f"jobmon-hostile-{os.getpid()}"


@settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_values_never_run_and_every_refusal_is_one_line(data, cluster: Cluster, tmp_path_factory, capsys) -> None:  # type: ignore[no-untyped-def]
    from jobmon import cli

    MARKER_DIR.mkdir(exist_ok=True)
    marker = MARKER_DIR / "pwned"
    values = {k: data.draw(_hostile(marker), label=k) for k in ("id", "host", "user", "file", "desc")}
    values["host"] = data.draw(st.one_of(st.just("cluster-a"), _hostile(marker)), label="host")
    root = tmp_path_factory.mktemp("root")
    conf = root / "probe.yaml"
    conf.write_text(PERMISSIVE)
    common = ["--root", str(root), "--session", "s", "--config", str(conf)]
    capsys.readouterr()
    for type_name in ("probe", "slurm"):
        code = cli.main(["add", "--type", type_name, f"--id={values['id']}", f"--host={values['host']}",
                         f"--user={values['user']}", f"--file={values['file']}", f"--desc={values['desc']}", *common])
        err = capsys.readouterr().err
        if code != 0:
            assert code == 2
            (line,) = [ln for ln in err.split("\n") if ln]  # one line, whatever the value held
            assert line.startswith("jobmon: ")
    assert cli.main(["status", "--json", *common]) == 0
    for line in capsys.readouterr().out.splitlines():
        assert json.loads(line)["kind"] in ("state", "summary", "error", "event")
    assert not marker.exists(), values
    registry = root / ".claude" / "agents" / "s" / "active_jobs.json"
    if registry.exists():
        for job in json.loads(registry.read_text()):
            if job["type"] == "probe":  # what the far side printed is the value itself
                assert job["last_status"] == "RUNNING"


# ---------------------------------------------------------------- bad input files


def test_bad_launcher_files_are_one_line_each_and_the_others_keep_being_watched(
        home: Home, cluster: Cluster, tmp_path: Path) -> None:
    from jobmon import config
    from jobmon.registry import Job, Registry

    binary = tmp_path / "binary.log"
    binary.write_bytes(bytes(range(256)) * 64 + b"\n\xff\xfe Job 77 finished: SUCCEEDED\n")
    folder = tmp_path / "a-folder.log"
    folder.mkdir()
    missing = tmp_path / "never-written.log"
    cluster.set("80", "RUNNING")
    jobs = [Job("launcher", "bin", fields={"file": str(binary)}), Job("launcher", "dir", fields={"file": str(folder)}),
            Job("launcher", "gone", fields={"file": str(missing)}), Job("slurm", "80", host="c")]
    with Registry(home.registry).transaction() as entries:
        entries.extend(jobs)
    conf = tmp_path / "quick.yaml"
    conf.write_text("settings: {unreachable_after: 1, lost_after: 0.001}\n")
    watcher, out = make_watcher(home, config.load(cli_config=str(conf), env={}))
    before = {p: p.read_bytes() for p in (binary,)}
    watcher.cycle(everything=True)
    watcher.cycle(everything=True)
    lines = list(map(json.loads, out.getvalue().splitlines()))
    got = {(e["id"], e["to"]): e["detail"] for e in lines}
    assert got[("bin", "SUCCEEDED")] == "slurm job 77"  # binary noise around a real final line
    (host,) = [e for e in lines if e["to"] == "UNREACHABLE"]  # the host's line names the job
    assert (host["detail"], [i for g in host["groups"] for i in g["ids"]]) == (f"1 launcher job: {folder}: not a regular file", ["dir"])
    assert ("gone", "LOST") in got
    lost = next(r for r in Registry(home.registry).history() if r["id"] == "gone")
    assert lost["detail"].startswith(f"{missing}: no such file for 0:00:0")
    assert ("80", "RUNNING") in got  # the others keep being watched
    assert {p: p.read_bytes() for p in (binary,)} == before  # read, never written
