"""``jobmon hooks install|uninstall|run`` (jobmon/hooks.py), through the real CLI, on real files.

Every install goes under ``--dest`` (or a fake $HOME): the real home is never touched. The
user's own hooks and keys must survive an install and an uninstall byte for byte; a file that is
not valid JSON or TOML, a link, a FIFO or someone else's folder is refused in one line and left
as it was. The hook itself (``hooks run``) is fed the JSON a harness gives it on stdin.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, Home, Ran, jobmon
from jobmon import hookrun, hooks
from jobmon.eventlog import EventLog
from jobmon.events import Event

NOBODY = 65534
CLAUDE_CMD = f"{shlex.quote(str(REPO / 'bin' / 'jobmon'))} hooks run --agent claude"
CODEX_CMD = f"{shlex.quote(str(REPO / 'bin' / 'jobmon'))} hooks run --agent codex"


def entry(cmd: str) -> dict[str, Any]:
    return {"hooks": [{"type": "command", "command": cmd, "timeout": 30}]}


def ours(cmd: str) -> dict[str, Any]:
    """What an install into an empty folder writes."""
    return {"hooks": {"SessionStart": [entry(cmd)], "UserPromptSubmit": [entry(cmd)]}}


def hooks_cli(action: str, dest: Path, agent: str = "claude", *more: str, env: dict[str, str] | None = None) -> Ran:
    return jobmon("hooks", action, "--agent", agent, "--dest", str(dest), *more, env=env)


def as_text(data: Any) -> str:
    """A settings file as Claude Code itself writes it (JSON.stringify(data, null, 2)): non-ASCII as it is."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# A user's settings: their own UserPromptSubmit and PreToolUse hooks, and other keys around them.
USERS = {
    "model": "opus",
    "permissions": {"allow": ["Bash(git diff:*)"], "deny": []},
    "hooks": {
        "UserPromptSubmit": [{"hooks": [{"type": "command", "command": "~/bin/remind.sh"}]}],
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "guard.py", "timeout": 5}]}],
    },
    "env": {"EDITOR": "vim", "GREETING": "grüß dich"},
}


# ---------------------------------------------------------------- install and uninstall, Claude Code


def test_install_into_an_empty_folder(tmp_path: Path) -> None:
    ran = hooks_cli("install", tmp_path)
    path = tmp_path / ".claude" / "settings.json"
    assert (ran.code, ran.out, ran.err) == (0, "", f"installed: {path}\n")
    assert path.read_text() == as_text(ours(CLAUDE_CMD))
    assert sorted(os.listdir(path.parent)) == ["settings.json"]  # no temp file left


def test_the_users_hooks_and_keys_stay_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(as_text(USERS))
    path.chmod(0o600)
    assert hooks_cli("install", tmp_path).code == 0
    data = json.loads(path.read_text())
    assert list(data) == ["model", "permissions", "hooks", "env"]  # the keys keep their order
    assert {k: v for k, v in data.items() if k != "hooks"} == {k: v for k, v in USERS.items() if k != "hooks"}
    assert data["hooks"] == {
        "UserPromptSubmit": [*USERS["hooks"]["UserPromptSubmit"], entry(CLAUDE_CMD)],  # theirs first, ours after
        "PreToolUse": USERS["hooks"]["PreToolUse"],
        "SessionStart": [entry(CLAUDE_CMD)],
    }
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # its mode kept

    ran = hooks_cli("uninstall", tmp_path)
    assert (ran.code, ran.err) == (0, f"removed: {path}\n")
    assert path.read_text() == as_text(USERS)  # exactly as it was


def test_install_twice_leaves_one_entry_and_the_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    hooks_cli("install", tmp_path)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    ran = hooks_cli("install", tmp_path)
    assert (ran.code, ran.err) == (0, f"unchanged: {path}\n")
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_an_entry_from_a_moved_checkout_is_updated_not_doubled(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    old = "/old/checkout/bin/jobmon hooks run --agent claude"
    mixed = {"hooks": {"UserPromptSubmit": [{"hooks": [{"type": "command", "command": "mine.sh"},
                                                        {"type": "command", "command": old}]}]}}
    path.write_text(as_text(mixed))
    ran = hooks_cli("install", tmp_path)
    assert (ran.code, ran.err) == (0, f"updated: {path}\n")
    assert json.loads(path.read_text())["hooks"] == {
        "UserPromptSubmit": [{"hooks": [{"type": "command", "command": "mine.sh"}]}, entry(CLAUDE_CMD)],
        "SessionStart": [entry(CLAUDE_CMD)],
    }


def test_uninstall_with_nothing_installed_writes_nothing(tmp_path: Path) -> None:
    ran = hooks_cli("uninstall", tmp_path)
    assert (ran.code, ran.err) == (0, f"not installed: {tmp_path / '.claude' / 'settings.json'}\n")
    assert not (tmp_path / ".claude").exists()
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(as_text(USERS))
    before = path.stat().st_mtime_ns
    assert hooks_cli("uninstall", tmp_path).err == f"not installed: {path}\n"
    assert path.stat().st_mtime_ns == before


def test_the_user_scope_goes_to_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ran = jobmon("hooks", "install", "--scope", "user", env={**os.environ, "HOME": str(home)})
    assert ran.code == 0, ran.err
    assert json.loads((home / ".claude" / "settings.json").read_text()) == ours(CLAUDE_CMD)


@pytest.mark.parametrize(("text", "message"), [
    ("{not json\n", "is not valid JSON (line 1, column 2: Expecting property name enclosed in double quotes); "
                    "left as it was"),
    ('["a list"]\n', "holds a JSON list, not an object; left as it was"),
    ('{"hooks": []}\n', 'its "hooks" is not a JSON object; left as it was'),
    ('{"hooks": {"SessionStart": {}}}\n', 'its "hooks"."SessionStart" is not a JSON list; left as it was'),
])
def test_a_file_that_is_not_a_json_object_is_refused_and_kept(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(text)
    for action in ("install", "uninstall"):
        ran = hooks_cli(action, tmp_path)
        assert (ran.code, ran.out, ran.err) == (2, "", f"jobmon: {path}: {message}\n")
        assert path.read_text() == text


def test_a_linked_settings_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    real.write_text(as_text(USERS))
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    for target in (real, Path("/dev/zero")):
        path.unlink(missing_ok=True)
        path.symlink_to(target)
        ran = hooks_cli("install", tmp_path)
        assert ran.code == 2 and ran.out == ""
        assert ran.err == f"jobmon: {path}: is a symbolic link; refused (jobmon writes only a file of yours, never through a link)\n"
        assert path.is_symlink()
    assert real.read_text() == as_text(USERS)


def test_a_fifo_in_place_of_the_settings_file_is_refused_without_hanging(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    os.mkfifo(path)
    ran = jobmon("hooks", "install", "--dest", str(tmp_path), timeout=30)
    assert (ran.code, ran.err) == (2, f"jobmon: {path}: is not a regular file; refused\n")


def test_a_linked_claude_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dotfiles").mkdir()
    (tmp_path / ".claude").symlink_to(tmp_path / "dotfiles")
    ran = hooks_cli("install", tmp_path)
    assert (ran.code, ran.err) == (2, f"jobmon: {tmp_path / '.claude'}: is a symbolic link, not a folder of yours; refused\n")
    assert list((tmp_path / "dotfiles").iterdir()) == []


def test_a_folder_or_file_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to a second uid needs root")
    folder = tmp_path / ".claude"
    folder.mkdir()
    os.chown(folder, NOBODY, NOBODY)
    ran = hooks_cli("install", tmp_path)
    assert (ran.code, ran.out) == (2, "")
    assert ran.err == f"jobmon: {folder}: the folder belongs to nobody (uid {NOBODY}), not to you; refused\n"
    assert list(folder.iterdir()) == []
    os.chown(folder, 0, 0)
    path = folder / "settings.json"
    path.write_text(as_text(USERS))
    os.chown(path, NOBODY, NOBODY)
    ran = hooks_cli("install", tmp_path)
    assert (ran.code, ran.err) == (2, f"jobmon: {path}: belongs to nobody (uid {NOBODY}), not to you; refused\n")
    assert path.read_text() == as_text(USERS)


@pytest.mark.parametrize(("args", "message"), [
    (["--agent", "cursor"], "--agent 'cursor': expected one of claude, codex"),
    (["--scope", "global"], "--scope 'global': expected one of project, user"),
])
def test_a_bad_value_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    ran = jobmon("hooks", "install", "--dest", str(tmp_path), *args)
    assert (ran.code, ran.out, ran.err) == (2, "", f"jobmon: {message}\n")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- install and uninstall, Codex


def test_codex_install_into_an_empty_folder(tmp_path: Path) -> None:
    ran = hooks_cli("install", tmp_path, "codex")
    folder = tmp_path / ".codex"
    assert (ran.code, ran.out) == (0, "")
    assert ran.err == (f"installed (Codex runs it once you trust it in /hooks): {folder / 'hooks.json'}\n"
                       f"enabled [features] codex_hooks: {folder / 'config.toml'}\n")
    assert json.loads((folder / "hooks.json").read_text()) == ours(CODEX_CMD)
    assert (folder / "config.toml").read_text() == "[features]\ncodex_hooks = true\n"
    assert oct((folder / "config.toml").stat().st_mode & 0o777) == "0o600"
    again = hooks_cli("install", tmp_path, "codex")
    assert again.err == f"unchanged: {folder / 'hooks.json'}\nunchanged: {folder / 'config.toml'}\n"


CONFIG = """model = "gpt-5.1-codex"   # mine
approval_policy = "on-request"

[features]
web_search_request = true  # keep me
{flag}
[mcp_servers.docs]
command = "npx"
args = ["-y", "docs-server"]
"""


@pytest.mark.parametrize(("flag", "after"), [
    ("", "codex_hooks = true\n"),  # added as the table's first line
    ("codex_hooks = false  # not yet\n", "codex_hooks = true # not yet\n"),  # that one line rewritten
])
def test_codex_config_gets_the_one_flag_line_and_nothing_else(tmp_path: Path, flag: str, after: str) -> None:
    config = tmp_path / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text(CONFIG.format(flag=flag))
    assert hooks_cli("install", tmp_path, "codex").code == 0
    if flag:
        assert config.read_text() == CONFIG.format(flag=after)
    else:
        assert config.read_text() == CONFIG.format(flag="").replace("[features]\n", "[features]\ncodex_hooks = true\n")


def test_codex_config_without_a_features_table_gets_one_at_its_end(tmp_path: Path) -> None:
    config = tmp_path / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text('model = "o3"\n[profiles.fast]\nmodel = "o4-mini"')  # no newline at its end
    assert hooks_cli("install", tmp_path, "codex").code == 0
    assert config.read_text() == 'model = "o3"\n[profiles.fast]\nmodel = "o4-mini"\n\n[features]\ncodex_hooks = true\n'


@pytest.mark.parametrize("text", ["[features]\nhooks = true\n", "[features]\ncodex_hooks = true\n"])
def test_codex_hooks_already_on_leave_the_config_alone(tmp_path: Path, text: str) -> None:
    config = tmp_path / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text(text)
    ran = hooks_cli("install", tmp_path, "codex")
    assert ran.code == 0 and ran.err.endswith(f"unchanged: {config}\n")
    assert config.read_text() == text


def test_codex_hooks_turned_off_by_the_user_stay_off(tmp_path: Path) -> None:
    config = tmp_path / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text("[features]\nhooks = false\n")
    ran = hooks_cli("install", tmp_path, "codex")
    assert ran.code == 0
    assert ran.err.splitlines()[-1] == f"{hooks.KEPT_OFF}: {config}"
    assert config.read_text() == "[features]\nhooks = false\n"
    assert json.loads((tmp_path / ".codex" / "hooks.json").read_text()) == ours(CODEX_CMD)


@pytest.mark.parametrize(("text", "message"), [
    ("[features\n", "is not valid TOML (Expected ']' at the end of a table declaration (at line 1, column 10)); "
                    "left as it was"),
    ("features = { web_search_request = true }\n",
     "jobmon cannot edit its [features] table; add codex_hooks = true under [features] yourself; left as it was"),
    ("features = 3\n", "its features is not a table; left as it was"),
])
def test_a_codex_config_jobmon_cannot_edit_is_refused_and_nothing_is_written(tmp_path: Path, text: str,
                                                                              message: str) -> None:
    config = tmp_path / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text(text)
    ran = hooks_cli("install", tmp_path, "codex")
    assert (ran.code, ran.out, ran.err) == (2, "", f"jobmon: {config}: {message}\n")
    assert config.read_text() == text
    assert not (tmp_path / ".codex" / "hooks.json").exists()  # all or nothing


def test_codex_files_that_are_links_or_not_json_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / ".codex"
    folder.mkdir()
    (tmp_path / "real.toml").write_text("[features]\n")
    (folder / "config.toml").symlink_to(tmp_path / "real.toml")
    ran = hooks_cli("install", tmp_path, "codex")
    assert ran.code == 2 and "config.toml: is a symbolic link; refused" in ran.err
    (folder / "config.toml").unlink()
    (folder / "hooks.json").write_text("{\"hooks\": \n")
    ran = hooks_cli("install", tmp_path, "codex")
    assert (ran.code, ran.err) == (2, f"jobmon: {folder / 'hooks.json'}: is not valid JSON (line 2, column 1: "
                                      "Expecting value); left as it was\n")
    assert not (folder / "config.toml").exists()
    assert (tmp_path / "real.toml").read_text() == "[features]\n"


def test_codex_uninstall_keeps_the_users_hooks_and_the_flag(tmp_path: Path) -> None:
    folder = tmp_path / ".codex"
    folder.mkdir()
    theirs = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify.sh", "timeout": 5}]}]}}
    (folder / "hooks.json").write_text(as_text(theirs))
    assert hooks_cli("install", tmp_path, "codex").code == 0
    assert json.loads((folder / "hooks.json").read_text())["hooks"]["Stop"] == theirs["hooks"]["Stop"]
    ran = hooks_cli("uninstall", tmp_path, "codex")
    assert (ran.code, ran.err) == (0, f"removed: {folder / 'hooks.json'}\n")
    assert (folder / "hooks.json").read_text() == as_text(theirs)
    assert (folder / "config.toml").read_text() == "[features]\ncodex_hooks = true\n"


def test_codex_user_scope_follows_codex_home(tmp_path: Path) -> None:
    codex_home = tmp_path / "codex-home"
    ran = jobmon("hooks", "install", "--agent", "codex", "--scope", "user",
                 env={**os.environ, "HOME": str(tmp_path / "home"), "CODEX_HOME": str(codex_home)})
    assert ran.code == 0, ran.err
    assert json.loads((codex_home / "hooks.json").read_text()) == ours(CODEX_CMD)
    assert not (tmp_path / "home").exists()


# ---------------------------------------------------------------- the hook itself


def hook_input(home: Home, event: str = "UserPromptSubmit", **more: Any) -> str:
    """What a harness writes on the hook's stdin."""
    return json.dumps({"session_id": home.session, "transcript_path": "/tmp/t.jsonl", "cwd": str(home.root),
                       "permission_mode": "default", "hook_event_name": event, "prompt": "how is training?", **more})


def run_hook(stdin: str | None, agent: str = "claude", env: dict[str, str] | None = None, **kw: Any) -> Ran:
    """``jobmon hooks run`` as a harness runs it: the JSON on stdin, then stdin closed."""
    proc = subprocess.run([sys.executable, "-m", "jobmon", "hooks", "run", "--agent", agent],
                          input=stdin, capture_output=True, text=True, timeout=60, env=env, **kw)
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def logged(home: Home, job: str = "4242") -> None:
    """An event in the session's log, as the poller writes it."""
    EventLog(home.registry.with_name("events.jsonl")).append([Event(
        kind="state", type="slurm", id=job, host="eos", description="sft llama", before="RUNNING",
        after="COMPLETED", terminal=True, outcome="success")])


def test_a_new_event_is_told_once(home: Home) -> None:
    logged(home)
    first = run_hook(hook_input(home))
    assert first.code == 0 and "Traceback" not in first.err
    assert "4242@eos" in first.out and "COMPLETED" in first.out
    second = run_hook(hook_input(home))
    assert (second.code, second.out) == (0, "")


def test_codex_gets_the_events_as_hook_json(home: Home) -> None:
    logged(home)
    ran = run_hook(hook_input(home, "SessionStart", source="resume", model="gpt-5.1-codex"), "codex")
    assert ran.code == 0
    [line] = ran.out.splitlines()
    out = json.loads(line)["hookSpecificOutput"]
    assert out["hookEventName"] == "SessionStart"
    assert "4242@eos" in out["additionalContext"] and not out["additionalContext"].endswith("\n")
    assert run_hook(hook_input(home), "codex").out == ""


def test_a_codex_subagent_is_told_its_own_events(home: Home) -> None:
    """Inside a subagent Codex gives the parent's session_id and the subagent's own thread as
    agent_id: that thread is the $CODEX_THREAD_ID the subagent's jobmon commands ran under."""
    logged(home)
    child = hook_input(home, session_id="parent-thread", agent_id=home.session, agent_type="worker")
    assert "4242@eos" in json.loads(run_hook(child, "codex").out)["hookSpecificOutput"]["additionalContext"]


def test_jobmon_root_wins_over_the_hooks_cwd(home: Home, tmp_path: Path) -> None:
    logged(home)
    elsewhere = hook_input(home, cwd=str(tmp_path / "cwd"))
    assert run_hook(elsewhere).out == ""  # nothing logged for this session there
    ran = run_hook(elsewhere, env={**os.environ, "JOBMON_ROOT": str(home.root)})
    assert "4242@eos" in ran.out


def test_the_installed_command_runs_as_the_harness_runs_it(home: Home) -> None:
    """The command written into settings.json, run by a shell from another folder, as Claude Code
    runs it: the absolute launcher finds jobmon wherever the agent is."""
    logged(home)
    assert hooks_cli("install", home.root).code == 0
    settings = json.loads((home.root / ".claude" / "settings.json").read_text())
    [handler] = settings["hooks"]["UserPromptSubmit"][0]["hooks"]
    proc = subprocess.run(["sh", "-c", handler["command"]], input=hook_input(home), capture_output=True,
                          text=True, timeout=60, cwd="/")
    assert proc.returncode == 0 and "4242@eos" in proc.stdout, proc.stderr


@pytest.mark.parametrize("stdin", ["", "not json", "[1, 2]", '{"session_id": 7}', '{"cwd": "/tmp"}',
                                   '{"session_id": "../../etc"}'])
def test_bad_input_exits_0_with_one_line_and_nothing_on_stdout(home: Home, stdin: str) -> None:
    logged(home)
    ran = run_hook(stdin)
    assert (ran.code, ran.out) == (0, "")
    assert len(ran.err.splitlines()) == 1 and ran.err.startswith("jobmon hooks run: "), ran.err
    assert "4242@eos" in run_hook(hook_input(home)).out  # nothing was taken


def test_endless_stdin_is_cut_off_not_read_whole(home: Home) -> None:
    with open("/dev/zero", "rb") as zero:
        proc = subprocess.run([sys.executable, "-m", "jobmon", "hooks", "run"], stdin=zero, capture_output=True,
                              text=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (0, "")


def test_stdin_that_never_ends_is_given_up_on() -> None:
    read, write = os.pipe()
    try:
        os.write(write, b'{"session_id": "s1"')
        assert hookrun.read_input(read, wait=0.05) is None  # the writer never closed it
    finally:
        os.close(read)
        os.close(write)


def test_a_failing_events_command_still_exits_0(home: Home) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to a second uid needs root")
    folder = home.registry.parent
    folder.mkdir(parents=True)
    os.chown(folder, NOBODY, NOBODY)
    ran = run_hook(hook_input(home))
    assert (ran.code, ran.out) == (0, "")
    assert ran.err == f"jobmon hooks run: jobmon: {folder}: the folder belongs to nobody (uid {NOBODY}), not to you; refused\n"


def test_a_bad_agent_for_the_hook_still_exits_0(home: Home) -> None:
    ran = run_hook(hook_input(home), "cursor")
    assert (ran.code, ran.out) == (0, "")
    assert ran.err == "jobmon hooks run: --agent 'cursor': expected one of claude, codex\n"
