"""jobmon's own files on a shared login node: private whatever the umask, someone else's folder
refused, a full disk said in one line with nothing half-written (issue 12, sections 2 and 3).

The disk-full cases run on a small tmpfs the test mounts; the second-user cases as uid 65534
(``setpriv``). Both need root and skip with the reason otherwise.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Home, Ran, folder_in_tmp, jobmon
from jobmon.registry import Registry

NOBODY = 65534


# ---------------------------------------------------------------- a small disk, a second user


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, mounted for the test and unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    ran = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if ran.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {ran.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(disk: Path) -> None:
    """Take every free block of ``disk``."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder a second user can enter (pytest's tmp_path sits under a 0700 one)."""
    yield from folder_in_tmp(0o755)


def second_user(folder: Path) -> dict[str, str]:
    """The environment of uid 65534 running jobmon; skips when no second uid can run it."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("a second uid needs root and setpriv")
    home = folder / "nobody-home"
    home.mkdir(exist_ok=True)
    os.chown(home, NOBODY, NOBODY)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_CACHE_HOME": str(home / "cache")}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    probe = as_nobody(["-c", "import jobmon.cli"], folder, env)
    if probe.code:
        pytest.skip(f"uid {NOBODY} cannot run jobmon's python here: {probe.err.strip()[-200:]}")
    return env


def as_nobody(argv: list[str], cwd: Path, env: dict[str, str]) -> Ran:
    proc = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, *argv],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def jobmon_as_nobody(*args: str, cwd: Path, env: dict[str, str]) -> Ran:
    return as_nobody(["-m", "jobmon", *args], cwd, env)


# ---------------------------------------------------------------- disk full


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_leaves_no_temp_file(tiny_disk: Path) -> None:
    from jobmon.files import atomic_write

    path = tiny_disk / "reg.json"
    path.write_bytes(b"old\n")
    fill(tiny_disk)
    with pytest.raises(Exception) as info:
        atomic_write(path, b"new\n" * 5000, mode=0o600)
    assert str(info.value) == f"{path}: cannot write: No space left on device; left as it was"
    assert path.read_bytes() == b"old\n"
    assert sorted(os.listdir(tiny_disk)) == ["filler", "reg.json"]


def test_history_on_a_nearly_full_disk_gets_every_record_or_none(tiny_disk: Path) -> None:
    registry = Registry(tiny_disk / "s" / "active_jobs.json")
    registry.append_history([{"id": "0"}])  # its page has room for about 4 of the 10 records below
    before = registry.history_path.read_bytes()
    fill(tiny_disk)
    records = [{"id": str(n), "output": "y" * 1000} for n in range(1, 11)]
    with pytest.raises(Exception) as info:
        registry.append_history(records)
    assert str(info.value) == f"{registry.history_path}: cannot write: No space left on device; nothing was added"
    assert registry.history_path.read_bytes() == before  # no half record, no 4 of 10


def test_the_event_log_on_a_nearly_full_disk_gets_every_event_or_none(tiny_disk: Path) -> None:
    from jobmon.eventlog import EventLog
    from jobmon.events import Event

    log = EventLog(tiny_disk / "s" / "events.jsonl")
    log.append([Event(kind="summary", detail="first")])
    before = log.path.read_bytes()
    fill(tiny_disk)
    with pytest.raises(Exception) as info:
        log.append([Event(kind="summary", detail="z" * 300) for _ in range(40)])
    assert str(info.value) == f"{log.path}: cannot write: No space left on device; nothing was added"
    assert log.path.read_bytes() == before
    assert log.last_seq() == 1


def test_add_on_a_full_disk_is_one_enospc_line_and_never_says_registered(tiny_disk: Path) -> None:
    args = ["--root", str(tiny_disk), "--session", "s1"]
    assert jobmon("add", "--type", "local", "--id", "1", *args).code == 0
    registry = tiny_disk / ".claude" / "agents" / "s1" / "active_jobs.json"
    content = registry.read_bytes()
    fill(tiny_disk)
    ran = jobmon("add", "--type", "local", "--id", "2", "--desc", "d" * 2000, *args)
    assert (ran.code, ran.out) == (3, "")
    assert ran.err == f"jobmon: {registry}: cannot write: No space left on device; left as it was\n"
    assert registry.read_bytes() == content
    assert sorted(p.name for p in registry.parent.iterdir()) == ["active_jobs.json", "active_jobs.json.lock"]


# ---------------------------------------------------------------- privacy


def modes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): oct(p.stat().st_mode & 0o777) for p in sorted(folder.rglob("*"))}


def test_the_session_folder_and_its_files_are_private_whatever_the_umask(home: Home, tmp_path: Path) -> None:
    ended = tmp_path / "exit"
    ended.write_text("0\n")
    old = os.umask(0o022)
    try:
        assert jobmon("add", "--type", "local", "--id", "999999999", "--file", str(ended), *home.args()).code == 0
        ran = jobmon("watch", "--once", *home.args())
        assert ran.code == 0, ran.err
    finally:
        os.umask(old)
    folder = home.registry.parent
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert modes(folder) == {
        "active_jobs.json": "0o600", "active_jobs.json.lock": "0o600", "events.jsonl": "0o600",
        "events.jsonl.lock": "0o600", "events.seq": "0o600", "history.jsonl": "0o600", "readers": "0o700", "readers/agent.lock": "0o600",
        "readers/agent.seq": "0o600", "watch.lock": "0o600"}


def test_an_old_session_folder_too_open_is_tightened(home: Home) -> None:
    folder = home.registry.parent
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    home.registry.write_text("[]\n")
    home.registry.chmod(0o644)
    assert jobmon("add", "--type", "local", "--id", "1", *home.args()).code == 0
    assert (oct(folder.stat().st_mode & 0o777), oct(home.registry.stat().st_mode & 0o777)) == ("0o700", "0o600")


def test_another_user_cannot_list_your_jobs_nor_read_your_history(shared: Path) -> None:
    env = second_user(shared)
    root = shared / "project"
    root.mkdir()
    old = os.umask(0o022)
    try:
        args = ["--root", str(root), "--session", "s1"]
        assert jobmon("add", "--type", "local", "--id", "7", "--desc", "token=s3cret", *args).code == 0
        assert jobmon("remove", "--id", "7", *args).code == 0
    finally:
        os.umask(old)
    folder = root / ".claude" / "agents" / "s1"
    ran = jobmon_as_nobody("list", *args, cwd=shared, env=env)
    assert (ran.code, ran.out) == (3, "")
    assert ran.err == f"jobmon: {folder / 'active_jobs.json'}: cannot read: Permission denied\n"
    peek = as_nobody(["-c", f"print(open({str(folder / 'history.jsonl')!r}).read())"], shared, env)
    assert peek.code == 1 and "Permission denied" in peek.err and "s3cret" not in peek.out


def test_the_cache_folder_is_private_and_someone_elses_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobmon import plan

    cache = tmp_path / "xdg-cache"
    (cache / "jobmon").mkdir(parents=True)
    (cache / "jobmon").chmod(0o755)  # made by an older jobmon, or by hand
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert plan.cache_dir() == str(cache / "jobmon")
    assert oct((cache / "jobmon").stat().st_mode & 0o777) == "0o700"
    if os.geteuid() != 0:
        return
    other = tmp_path / "other-cache"
    (other / "jobmon").mkdir(parents=True)
    os.chown(other / "jobmon", NOBODY, NOBODY)
    monkeypatch.setenv("XDG_CACHE_HOME", str(other))
    with pytest.raises(Exception) as info:
        plan.cache_dir()
    assert str(info.value) == f"{other / 'jobmon'}: the folder belongs to nobody (uid {NOBODY}), not to you; refused"


def test_nel_copies_failed_logs_into_a_private_folder(tmp_path: Path, fakebin, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from jobmon import config, plan, rules
    from jobmon.registry import Job
    from test_checkers_nel import FAKE_NEL, NEL

    fakebin.add("nel", FAKE_NEL % {"fixtures": str(NEL)})
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    jtype = config.load(env={}).types["nel"]
    job = Job(type="nel", id="5d2a8e7f1c9b0346")
    change = rules.Change("state", "RUNNING", "FAILED", True, "failure", {})
    command = jtype.on_failure.template.render(**plan.result_values(job, jtype, change))
    ran = subprocess.run(["sh", "-c", f"umask 022; {command}"], capture_output=True, text=True, timeout=30)
    assert "CUDA out of memory" in ran.stdout
    copied = cache / "jobmon" / "nel"
    assert modes(cache / "jobmon") == {
        "nel": "0o700", "nel/5d2a8e7f1c9b0346": "0o700", "nel/5d2a8e7f1c9b0346/5d2a8e7f1c9b0346.0": "0o700",
        "nel/5d2a8e7f1c9b0346/5d2a8e7f1c9b0346.0/logs": "0o700",
        "nel/5d2a8e7f1c9b0346/5d2a8e7f1c9b0346.0/logs/client_stdout.log": "0o600"}
    assert oct((cache / "jobmon").stat().st_mode & 0o777) == "0o700" and copied.is_dir()


# ---------------------------------------------------------------- a folder you cannot use


def test_a_session_folder_of_another_user_is_refused_in_one_line(home: Home) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to a second uid needs root")
    folder = home.registry.parent
    folder.mkdir(parents=True)
    os.chown(folder, NOBODY, NOBODY)
    add = jobmon("add", "--type", "local", "--id", "1", *home.args())
    assert (add.code, add.out) == (3, "")
    assert add.err == f"jobmon: {folder}: the folder belongs to nobody (uid {NOBODY}), not to you; refused\n"
    watch = jobmon("watch", *home.args(), timeout=30)
    assert watch.code == 3 and "Traceback" not in watch.err
    assert [ln.split(" ", 1)[1] for ln in watch.lines()] == [
        f"jobmon-watch: fatal: {folder}: the folder belongs to nobody (uid {NOBODY}), not to you; refused"]
    assert list(folder.iterdir()) == []


def test_a_read_only_registry_folder_is_one_line_for_add_and_watch(shared: Path) -> None:
    env = second_user(shared)
    root = shared / "project"
    folder = root / ".claude" / "agents" / "s1"
    folder.mkdir(parents=True)
    (folder / "active_jobs.json").write_text(json.dumps([{"type": "local", "id": "1"}]))
    for path in (root, root / ".claude", root / ".claude" / "agents", folder, folder / "active_jobs.json"):
        os.chown(path, NOBODY, NOBODY)
    folder.chmod(0o500)
    args = ["--root", str(root), "--session", "s1"]
    add = jobmon_as_nobody("add", "--type", "local", "--id", "2", *args, cwd=shared, env=env)
    assert (add.code, add.out) == (3, "")
    assert add.err == f"jobmon: {folder / 'active_jobs.json.lock'}: cannot open: Permission denied\n"
    watch = jobmon_as_nobody("watch", *args, cwd=shared, env=env)
    assert watch.code == 3 and "Traceback" not in watch.err
    assert [ln.split(" ", 1)[1] for ln in watch.lines()] == [
        f"jobmon-watch: fatal: {folder / 'readers'}: cannot make the folder: Permission denied"]
    assert sorted(os.listdir(folder)) == ["active_jobs.json"]
