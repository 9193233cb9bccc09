"""jobmon.registry: where the registry lives, what survives a rewrite, corrupt files, locks, history."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import Home, jobmon
from jobmon.registry import (
    Invalid, Job, Owner, Registry, RegistryError, WatchLock, registry_path, session, terminal_session_id,
    with_status,
)
from jobmon.rules import Book

SAFE_SESSION_MESSAGE = "use letters, digits, '-', '_' and '.' only"


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / ".claude" / "agents" / "s1" / "active_jobs.json")


# ---------------------------------------------------------------- where the registry lives


def test_root_option_wins_over_environment_over_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tail = Path(".claude", "agents", "s1", "active_jobs.json")
    assert registry_path("/opt/r", "s1", {"JOBMON_ROOT": "/env/r"}) == Path("/opt/r") / tail
    assert registry_path(None, "s1", {"JOBMON_ROOT": "/env/r"}) == Path("/env/r") / tail
    assert registry_path(None, "s1", {}) == tmp_path / tail


@pytest.mark.parametrize("sid", ["abc-123", "0198f3c2-7a1e-4c3b-9d2f-1e2a3b4c5d6e", "term-1a2b3c4d5e6f", "a..b", "v1.2_x"])
def test_safe_session_ids_are_accepted(sid: str) -> None:
    assert registry_path("/r", sid, {}) == Path("/r/.claude/agents") / sid / "active_jobs.json"


@pytest.mark.parametrize(
    "sid, shown",
    [
        ("", "''"),
        (".", "'.'"),
        ("..", "'..'"),
        ("a/b", "'a/b'"),
        ("../../etc", "'../../etc'"),
        ("/abs", "'/abs'"),
        ("a b", "'a b'"),
        ("a\nb", "'a\\nb'"),
        ("$(id)", "'$(id)'"),
        ("a\\b", "'a\\\\b'"),
        ("münchen", "'münchen'"),
    ],
)
def test_unsafe_session_ids_are_refused_with_one_line(sid: str, shown: str) -> None:
    with pytest.raises(RegistryError) as info:
        registry_path("/r", sid, {})
    assert str(info.value) == f"session id {shown}: {SAFE_SESSION_MESSAGE}"


def test_overlong_session_id_is_refused_with_one_line(home: Home) -> None:
    sid = "a" * 300  # longer than a file name may be
    with pytest.raises(RegistryError) as info:
        registry_path("/r", sid, {})
    assert str(info.value) == f"session id '{'a' * 32}...' is 300 characters long; at most 255"
    ran = jobmon("add", "--root", str(home.root), "--session", sid, "--type", "local", "--id", "5")
    assert (ran.code, ran.err) == (2, f"jobmon: session id '{'a' * 32}...' is 300 characters long; at most 255\n")
    assert registry_path("/r", "a" * 255, {}).parent.name == "a" * 255


def test_cli_refuses_a_session_that_escapes_the_root(home: Home) -> None:
    ran = jobmon("list", "--root", str(home.root), "--session", "../../x")
    assert (ran.code, ran.out, ran.err) == (2, "", f"jobmon: session id '../../x': {SAFE_SESSION_MESSAGE}\n")
    env = {**os.environ, "CLAUDE_CODE_SESSION_ID": "x/../../y"}
    ran = jobmon("add", "--root", str(home.root), "--type", "local", "--id", "5", env=env)
    assert (ran.code, ran.err) == (2, f"jobmon: session id 'x/../../y': {SAFE_SESSION_MESSAGE}\n")
    assert list(home.root.iterdir()) == []  # nothing created anywhere under the root


def test_session_option_then_claude_then_codex() -> None:
    both = {"CLAUDE_CODE_SESSION_ID": "claude-1", "CODEX_THREAD_ID": "codex-1"}
    assert session("mine", both) == Owner("claude-code", "mine")  # the agent is still Claude Code
    assert session(None, both) == Owner("claude-code", "claude-1")
    assert session(None, {"CODEX_THREAD_ID": "codex-1"}) == Owner("codex", "codex-1")
    assert session(None, {"CLAUDE_CODE_SESSION_ID": "", "CODEX_THREAD_ID": "codex-1"}) == Owner("codex", "codex-1")
    assert session("mine", {}) == Owner("manual", "mine")


def test_without_any_id_the_terminal_session_is_used() -> None:
    owner = session(None, {})
    assert owner.agent == "manual"
    assert owner.session_id == session(None, {}).session_id == terminal_session_id()
    assert owner.session_id.startswith("term-")
    assert len(owner.session_id) == len("term-") + 12
    registry_path("/r", owner.session_id, {})  # a valid session id


def test_terminal_session_id_is_shared_by_the_session_and_differs_in_a_new_one() -> None:
    probe = [sys.executable, "-c", "from jobmon.registry import terminal_session_id; print(terminal_session_id())"]
    same = subprocess.run(probe, capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    other = subprocess.run(probe, capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL,
                           start_new_session=True)
    assert same.stdout.strip() == terminal_session_id()
    assert other.stdout.strip().startswith("term-")
    assert other.stdout.strip() != terminal_session_id()


# ---------------------------------------------------------------- round trips


FULL_ENTRY = {
    "type": "slurm", "id": "4242", "host": "eos", "user": "alice", "submitted": "2024-05-01 10:00",
    "description": "PTQ Qwen3-8B", "last_status": "RUNNING",
    "owner": {"agent": "codex", "session_id": "t-1"},
    "file": "/lustre/out/4242.log", "partition": "gpu", "gpus": 8, "lr": 0.0003, "tags": ["a", "b"],
    "nested": {"k": [1, {"z": None}], "empty": {}}, "flag": True, "nothing": None, "text": "München ✓ \"q\"",
    "jobmon": {"errors": 2, "last_error": "exit 1: boom", "missing_since": "2024-05-01T10:05:00"},
}


def test_unknown_fields_survive_a_rewrite(registry: Registry) -> None:
    other = {**FULL_ENTRY, "id": "4243", "jobmon": {}}
    del other["jobmon"]
    _write(registry.path, [FULL_ENTRY, other])
    with registry.transaction() as entries:
        entries[1] = with_status(entries[1], "COMPLETED", Book())
    first, second = json.loads(registry.path.read_text())
    assert first == FULL_ENTRY
    assert second == {**other, "last_status": "COMPLETED"}


def test_owner_and_book_round_trip(registry: Registry) -> None:
    job = Job(type="local", id="77", description="d", owner=Owner("claude-code", "abc"),
              fields={"file": "/tmp/x.exit"},
              book=Book(errors=2, unreachable=True, missing_since="2024-05-01T10:00:00", last_error="exit 255",
                        final={"kind": "done", "state": "COMPLETED"}))
    plain = Job(type="local", id="78")
    with registry.locked():
        registry.write([job, plain])
    assert registry.read() == [job, plain]
    assert "jobmon" not in json.loads(registry.path.read_text())[1]  # an empty book is not written
    assert Job.from_dict(job.to_dict()) == job


def test_ids_given_as_numbers_become_strings(registry: Registry, home: Home) -> None:
    _write(registry.path, [{"type": "slurm", "id": 4242, "host": "eos"}])
    (job,) = registry.jobs()
    assert (job.id, job.label) == ("4242", "4242@eos")
    with registry.transaction() as entries:
        entries.append(Job(type="local", id="1"))
    assert [e["id"] for e in json.loads(registry.path.read_text())] == ["4242", "1"]

    _write(home.registry, [{"type": "slurm", "id": 99, "host": "eos"}])
    ran = jobmon("remove", *home.args(), "--id", "99")
    assert (ran.code, ran.err) == (0, "removed slurm 99@eos\n")
    assert home.jobs() == []


def test_missing_or_blank_file_is_an_empty_registry(registry: Registry) -> None:
    assert registry.read() == []
    registry.path.parent.mkdir(parents=True)
    registry.path.write_text(" \n\t\n")
    assert registry.read() == []
    with registry.transaction() as entries:
        entries.append(Job(type="local", id="1"))
    assert [e["id"] for e in json.loads(registry.path.read_text())] == ["1"]


def test_a_transaction_that_changes_nothing_does_not_rewrite(registry: Registry) -> None:
    _write(registry.path, [FULL_ENTRY])
    inode = registry.path.stat().st_ino
    with registry.transaction():
        pass
    assert registry.path.stat().st_ino == inode
    with registry.transaction() as entries:
        entries.append(Job(type="local", id="1"))
    assert registry.path.stat().st_ino != inode  # replaced by rename, never written in place


def test_a_rewrite_makes_the_file_private_and_leaves_no_temp_file(registry: Registry) -> None:
    _write(registry.path, [])
    registry.path.chmod(0o640)
    with registry.transaction() as entries:
        entries.append(Job(type="local", id="1"))
    assert registry.path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in registry.path.parent.iterdir()) == ["active_jobs.json", "active_jobs.json.lock"]


# ---------------------------------------------------------------- corrupt registries


CORRUPT = [
    pytest.param(b'[{"type": "local", "id": "1"}', "not valid JSON (line 1, column 30: Expecting ',' delimiter); "
                 "left as it is", id="truncated"),
    pytest.param(b'[{"type": "local", "id": "1"},\n {"type": "slu', "not valid JSON (line 2, column 11: "
                 "Unterminated string starting at); left as it is", id="cut-in-a-string"),
    pytest.param(b'{"jobs": []}\n', "expected a JSON array of jobs, found an object; left as it is", id="object"),
    pytest.param(b'"jobs"', "expected a JSON array of jobs, found the string 'jobs'; left as it is", id="string"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "cannot read: 'utf-8' codec can't decode byte 0x89 in "
                 "position 0: invalid start byte", id="binary"),
    pytest.param(b"\x00\x00\x00\x00", "not valid JSON (line 1, column 1: Expecting value); left as it is",
                 id="nul-bytes"),
]


@pytest.mark.parametrize("content, problem", CORRUPT)
def test_corrupt_registry_is_one_line_and_never_overwritten(registry: Registry, content: bytes, problem: str) -> None:
    registry.path.parent.mkdir(parents=True)
    registry.path.write_bytes(content)
    with pytest.raises(RegistryError) as info:
        registry.read()
    assert str(info.value) == f"{registry.path}: {problem}"
    with pytest.raises(RegistryError):
        with registry.transaction() as entries:
            entries.append(Job(type="local", id="1"))
    assert registry.path.read_bytes() == content
    assert sorted(p.name for p in registry.path.parent.iterdir()) == ["active_jobs.json", "active_jobs.json.lock"]


def test_registry_that_is_a_folder(registry: Registry) -> None:
    registry.path.mkdir(parents=True)
    with pytest.raises(RegistryError) as info:
        registry.read()
    assert str(info.value) == f"{registry.path}: cannot read: Is a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_unreadable_registry(registry: Registry) -> None:
    _write(registry.path, [FULL_ENTRY])
    content = registry.path.read_bytes()
    registry.path.chmod(0)
    try:
        with pytest.raises(RegistryError) as info:
            registry.read()
        assert str(info.value) == f"{registry.path}: cannot read: Permission denied"
        with pytest.raises(RegistryError):
            with registry.transaction() as entries:
                entries.clear()
    finally:
        registry.path.chmod(0o644)
    assert registry.path.read_bytes() == content


@pytest.mark.parametrize("content, problem", CORRUPT[:1] + CORRUPT[2:3] + CORRUPT[4:5])
def test_cli_list_on_a_corrupt_registry_exits_3_with_one_line(home: Home, content: bytes, problem: str) -> None:
    home.registry.parent.mkdir(parents=True)
    home.registry.write_bytes(content)
    ran = jobmon("list", *home.args())
    assert (ran.code, ran.out, ran.err) == (3, "", f"jobmon: {home.registry}: {problem}\n")


@pytest.mark.parametrize("command", [["add", "--type", "local", "--id", "5"], ["remove", "--id", "5"]])
def test_cli_writers_leave_a_corrupt_registry_untouched(home: Home, command: list[str]) -> None:
    home.registry.parent.mkdir(parents=True)
    home.registry.write_bytes(b'{"jobs": [{"type": "local", "id": "5"}]}')
    ran = jobmon(*command, *home.args())
    assert ran.code != 0
    assert home.registry.read_bytes() == b'{"jobs": [{"type": "local", "id": "5"}]}'
    assert not home.registry.with_name("history.jsonl").exists()


@pytest.mark.parametrize("command", [["add", "--type", "local", "--id", "5"], ["remove", "--id", "5"]])
def test_cli_writers_on_a_corrupt_registry_exit_3_with_one_line(home: Home, command: list[str]) -> None:
    home.registry.parent.mkdir(parents=True)
    home.registry.write_bytes(b'{"jobs": []}')
    ran = jobmon(*command, *home.args())
    problem = "expected a JSON array of jobs, found an object; left as it is"
    assert (ran.code, ran.err) == (3, f"jobmon: {home.registry}: {problem}\n")


# ---------------------------------------------------------------- invalid entries


JOB_7 = {"type": "local", "id": "7", "host": "", "user": "", "submitted": "2024-05-01 10:00", "description": "",
         "last_status": "", "owner": {"agent": "manual", "session_id": "s1"}}
WITH_INVALID = ["junk", {"type": "local", "note": "no id"}, {"id": "5"}, JOB_7, 42, {"type": "local", "id": ""}]


def test_invalid_entries_are_reported_with_their_index(registry: Registry) -> None:
    _write(registry.path, WITH_INVALID)
    entries = registry.read()
    assert entries[3] == Job.from_dict(JOB_7)
    assert [(e.index, e.data, e.reason) for e in entries if isinstance(e, Invalid)] == [
        (0, "junk", "entry 0 is the string 'junk', not an object"),
        (1, {"type": "local", "note": "no id"}, "entry 1 has no 'id'"),
        (2, {"id": "5"}, "entry 2 has no 'type'"),
        (4, 42, "entry 4 is the number 42, not an object"),
        (5, {"type": "local", "id": ""}, "entry 5 has no 'id'"),
    ]
    assert [j.id for j in registry.jobs()] == ["7"]


def test_invalid_entries_stay_in_place_on_write(registry: Registry) -> None:
    _write(registry.path, WITH_INVALID)
    with registry.transaction() as entries:
        entries[3] = with_status(entries[3], "RUNNING", Book())
        entries.append(Job(type="local", id="8", owner=Owner("manual", "s1")))
    data = json.loads(registry.path.read_text())
    assert data[:6] == [*WITH_INVALID[:3], {**JOB_7, "last_status": "RUNNING"}, *WITH_INVALID[4:]]
    assert data[6]["id"] == "8"


def test_cli_lists_invalid_entries_and_keeps_them_on_add(home: Home) -> None:
    _write(home.registry, WITH_INVALID)
    ran = jobmon("list", *home.args())
    assert ran.code == 0, ran.err
    lines = ran.lines()
    assert [ln for ln in lines if ln.startswith("?")] == [
        "?  entry 0 is the string 'junk', not an object", "?  entry 1 has no 'id'", "?  entry 2 has no 'type'",
        "?  entry 4 is the number 42, not an object", "?  entry 5 has no 'id'",
    ]
    assert lines[3].split() == ["local", "7", "NEW", "2024-05-01", "10:00"]
    ran = jobmon("add", *home.args(), "--type", "local", "--id", "8")
    assert ran.code == 0, ran.err
    data = home.jobs()
    assert data[:6] == WITH_INVALID
    assert (len(data), data[6]["id"]) == (7, "8")


# ---------------------------------------------------------------- concurrent writers

ADDER = """
import sys
from jobmon.cli import main
root, sid, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
for n in range(first, first + 25):
    code = main(["add", "--root", root, "--session", sid, "--type", "local", "--id", str(n)])
    if code:
        sys.exit(code)
"""


def test_concurrent_adds_lose_nothing_and_readers_never_see_half_a_file(home: Home) -> None:
    # 8 processes, each running `jobmon add` 25 times through the CLI's entry point (one interpreter
    # per process, not per add, to keep the test fast: every add still takes the lock and renames).
    procs = [
        subprocess.Popen([sys.executable, "-c", ADDER, str(home.root), home.session, str(25 * i)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(8)
    ]
    reads, sizes = 0, set()
    try:
        while any(p.poll() is None for p in procs):
            try:
                text = home.registry.read_text()
            except FileNotFoundError:
                continue
            data = json.loads(text)  # raises on a partial file
            assert isinstance(data, list)
            reads += 1
            sizes.add(len(data))
    finally:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    ids = [job["id"] for job in home.jobs()]
    assert sorted(ids, key=int) == [str(n) for n in range(200)]
    assert reads > 0 and len(sizes) > 1  # the reader really ran while the file grew
    assert sorted(p.name for p in home.registry.parent.iterdir()) == ["active_jobs.json", "active_jobs.json.lock"]


# ---------------------------------------------------------------- history


def test_append_history_appends_json_lines(registry: Registry) -> None:
    registry.append_history([])
    assert not registry.history_path.exists()
    registry.append_history([{"id": "1", "state": "COMPLETED"}])
    registry.append_history([{"id": "2", "text": "München"}, {"id": "3", "nested": {"a": [1]}}])
    lines = registry.history_path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(ln) for ln in lines] == [
        {"id": "1", "state": "COMPLETED"}, {"id": "2", "text": "München"}, {"id": "3", "nested": {"a": [1]}},
    ]
    assert registry.history() == [json.loads(ln) for ln in lines]


def test_history_skips_a_damaged_line(registry: Registry) -> None:
    registry.append_history([{"id": "1"}])
    with open(registry.history_path, "a") as out:
        out.write('{"id": "2", "cut\n')  # damaged by hand
    registry.append_history([{"id": "3"}])
    assert registry.history() == [{"id": "1"}, {"id": "3"}]


def test_remove_moves_the_job_to_history(home: Home) -> None:
    for n in ("5", "6"):
        assert jobmon("add", *home.args(), "--type", "local", "--id", n, "--desc", f"job {n}").code == 0
    before = datetime.now(timezone.utc).replace(microsecond=0)
    ran = jobmon("remove", *home.args(), "--id", "5")
    after = datetime.now(timezone.utc)
    assert (ran.code, ran.out, ran.err) == (0, "", "removed local 5\n")
    assert [j["id"] for j in home.jobs()] == ["6"]
    (record,) = home.history()
    removed = record.pop("removed")
    assert before <= datetime.fromisoformat(removed) <= after
    assert (record["type"], record["id"], record["description"]) == ("local", "5", "job 5")
    assert record["owner"] == {"agent": "manual", "session_id": home.session}


def test_remove_of_an_unknown_job_exits_1_with_one_line(home: Home) -> None:
    assert jobmon("add", *home.args(), "--type", "local", "--id", "5").code == 0
    content = home.registry.read_bytes()
    for args in (["--id", "99"], ["--id", "5", "--type", "slurm"], ["--id", "5", "--host", "eos"]):
        ran = jobmon("remove", *home.args(), *args)
        assert (ran.code, ran.out, ran.err) == (1, "", f"jobmon: no job {args[1]} in {home.registry}\n")
    assert home.registry.read_bytes() == content
    assert home.history() == []


# ---------------------------------------------------------------- the watcher's lock

HOLDER = """
import sys
from pathlib import Path
from jobmon.registry import Registry, WatchLock
lock = WatchLock(Registry(Path(sys.argv[1])))
print(lock.acquire(), flush=True)
sys.stdin.read()
"""


def test_watch_lock_in_one_process(registry: Registry) -> None:
    first, second = WatchLock(registry), WatchLock(registry)
    assert first.acquire() is None
    assert second.acquire() == os.getpid()  # a lock is per open file: the second one is refused
    first.release()
    assert second.acquire() is None
    second.release()


def test_watch_lock_held_by_another_process_then_taken_over_when_it_dies(registry: Registry) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(registry.path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "None\n"
        lock = WatchLock(registry)
        assert lock.acquire() == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdin.close()
        holder.stdout.close()
    assert lock.acquire() is None  # the kernel freed it; the stale pid is replaced by ours
    assert registry.watch_lock_path.read_text() == f"{os.getpid()}\n"
    lock.release()


def test_hand_edited_values_of_the_wrong_kind_are_refused_or_reset(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "active_jobs.json")
    reg.path.write_text(json.dumps([
        {"type": "slurm", "id": True},
        {"type": "slurm", "id": "1", "host": "h", "jobmon": {"errors": "x", "missing_since": "yesterday", "seen": ["a"]}},
    ]))
    bad, good = reg.read()
    assert isinstance(bad, Invalid) and bad.reason == "entry 0 'id' is a boolean, not a string"
    assert good.book.errors == 0 and good.book.missing_since is None and good.book.seen == ("a",)


def test_a_damaged_last_history_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "active_jobs.json")
    reg.history_path.write_text('{"id": "1"}\n{"id": "2", "trunc')
    reg.append_history([{"id": "3"}])
    assert [r["id"] for r in reg.history()] == ["1", "3"]


def test_a_new_registry_is_private_whatever_the_umask(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "active_jobs.json")
    old = os.umask(0o022)
    try:
        with reg.locked():
            reg.write([])
        reg.append_history([{"id": "1"}])
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {
        "active_jobs.json": "0o600", "active_jobs.json.lock": "0o600", "history.jsonl": "0o600"}


# ---------------------------------------------------------------- links and hostile files (issue 12)

LINK = "is a symbolic link; refused (jobmon never follows links to its own files)"


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    return victim


def test_a_watch_lock_linked_to_a_victim_is_refused_and_the_victim_untouched(home: Home, tmp_path: Path) -> None:
    assert jobmon("add", "--type", "local", "--id", "1", *home.args()).code == 0
    victim = _victim(tmp_path)
    lock = home.registry.with_name("watch.lock")
    lock.symlink_to(victim)
    ran = jobmon("watch", "--once", *home.args())
    assert ran.code == 3 and "Traceback" not in ran.err
    assert [ln.split(" ", 1)[1] for ln in ran.lines()] == [f"jobmon-watch: fatal: {lock}: {LINK}"]
    assert victim.read_text() == "precious\n"


def test_a_history_linked_to_a_victim_is_never_appended_to_by_remove(home: Home, tmp_path: Path) -> None:
    assert jobmon("add", "--type", "local", "--id", "1", *home.args()).code == 0
    victim = _victim(tmp_path)
    history = home.registry.with_name("history.jsonl")
    history.symlink_to(victim)
    ran = jobmon("remove", "--id", "1", *home.args())
    assert (ran.code, ran.out, ran.err) == (3, "", f"jobmon: {history}: {LINK}\n")
    assert victim.read_text() == "precious\n"
    assert [j["id"] for j in home.jobs()] == ["1"]  # not in history: so still registered, never lost


def test_a_registry_lock_linked_to_a_missing_path_is_never_created_by_add(home: Home, tmp_path: Path) -> None:
    home.registry.parent.mkdir(parents=True)
    lock = home.registry.with_name("active_jobs.json.lock")
    planted = tmp_path / "planted-by-someone"
    lock.symlink_to(planted)
    ran = jobmon("add", "--type", "local", "--id", "1", *home.args())
    assert (ran.code, ran.out, ran.err) == (3, "", f"jobmon: {lock}: {LINK}\n")
    assert not planted.exists() and not home.registry.exists()


def test_a_registry_linked_elsewhere_is_refused_by_every_reader(home: Home, tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    home.registry.parent.mkdir(parents=True)
    home.registry.symlink_to(victim)
    for command in (["list"], ["add", "--type", "local", "--id", "1"]):
        ran = jobmon(*command, *home.args())
        assert (ran.code, ran.out, ran.err) == (3, "", f"jobmon: {home.registry}: {LINK}\n")
    assert victim.read_text() == "precious\n"


def test_a_registry_nested_100000_deep_is_one_line_exit_3_and_untouched(home: Home) -> None:
    home.registry.parent.mkdir(parents=True)
    content = b"[" * 100000 + b"]" * 100000
    home.registry.write_bytes(content)
    for command in (["list"], ["add", "--type", "local", "--id", "1"], ["status"]):
        ran = jobmon(*command, *home.args())
        assert (ran.code, ran.out, ran.err) == (
            3, "", f"jobmon: {home.registry}: not valid JSON (nested too deeply); left as it is\n")
    assert home.registry.read_bytes() == content


def test_a_history_line_nested_too_deep_is_skipped_like_a_damaged_one(registry: Registry) -> None:
    registry.append_history([{"id": "1"}])
    with open(registry.history_path, "a") as out:
        out.write("[" * 100000 + "]" * 100000 + "\n")
    registry.append_history([{"id": "3"}])
    assert registry.history() == [{"id": "1"}, {"id": "3"}]


def test_a_watch_log_linked_to_a_victim_is_refused_by_add_watch(home: Home, tmp_path: Path) -> None:
    assert jobmon("add", "--type", "local", "--id", "1", *home.args()).code == 0
    victim = _victim(tmp_path)
    log = home.registry.with_name("watch.log")
    log.symlink_to(victim)
    ran = jobmon("add", "--type", "local", "--id", "2", "--watch", *home.args())
    assert (ran.code, ran.out) == (3, "")
    assert ran.err.splitlines()[-1] == f"jobmon: {log}: {LINK}"
    assert victim.read_text() == "precious\n"
