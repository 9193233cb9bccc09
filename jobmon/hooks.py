"""``jobmon hooks``: tell an agent with no Monitor tool what its jobs did, at the start of each turn.

Claude Code and Codex run a command when a session starts and when the user submits a prompt,
and give what it prints to the model. ``install`` adds jobmon's command to the harness's hooks
file and ``uninstall`` takes exactly that out again; the command itself, ``jobmon hooks run``
(hookrun.py), is ``jobmon events --if-new`` for the session the hook names, bounded to what
the harness shows whole.

What the harnesses document, and this module relies on:

Claude Code, https://code.claude.com/docs/en/hooks: hooks live in ``~/.claude/settings.json`` and
``<project>/.claude/settings.json`` as ``{"hooks": {EVENT: [{"matcher"?, "hooks": [{"type":
"command", "command", "timeout"?}]}]}}`` (UserPromptSubmit has no matcher; SessionStart's may be
left out to match every start). The command gets JSON on stdin (session_id, transcript_path, cwd,
permission_mode, hook_event_name, ...). For UserPromptSubmit and SessionStart, stdout on exit 0
is added to the context; exit 2 blocks (and erases the prompt). Hook output is capped at 10,000
characters: more is saved to a file and the model sees a 2 KB preview.

Codex, https://developers.openai.com/codex/hooks and openai/codex codex-rs/hooks/ (events/
user_prompt_submit.rs, events/session_start.rs, engine/discovery.rs, output_spill.rs): the same
shape in a ``hooks.json`` beside each config layer, ``~/.codex/`` (or ``$CODEX_HOME``) and a
trusted project's ``.codex/``. Older versions run hooks only with ``[features] codex_hooks =
true`` in config.toml; newer ones run them by default and call the key ``hooks`` (``codex_hooks``
is a deprecated alias). A hook runs only once the user has trusted it (/hooks). stdin holds
session_id (the thread id; shell commands get it as $CODEX_THREAD_ID; a subagent's own thread is
agent_id), cwd, hook_event_name, ... Plain stdout is context, but stdout that starts with ``{``
must be valid hook JSON; context over 2,500 tokens (about 10,000 bytes) is spilled to a file
behind a preview; exit 2 blocks.
"""
from __future__ import annotations

import json
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from jobmon.files import FileError, atomic_write, folder_of_yours, owner, read_bytes, reason

EVENTS = ("SessionStart", "UserPromptSubmit")
SCOPES = ("project", "user")
TIMEOUT = 30  # seconds a harness gives the hook: it takes well under one, and must never hold a prompt long
MAX_FILE = 4 << 20  # a settings file larger than this is no settings file: refused, not read
MAX_INPUT = 1 << 20  # the most of the hook's JSON read from stdin
INPUT_WAIT = 2.0  # seconds for stdin to reach its end: a harness writes it at once and closes it

INSTALLED, UNCHANGED, UPDATED, REMOVED, ABSENT = "installed", "unchanged", "updated", "removed", "not installed"
ENABLED = "enabled [features] codex_hooks"
KEPT_OFF = "kept: [features] hooks = false turns Codex hooks off; jobmon's hooks run once you set it to true"
TRUST = " (Codex runs it once you trust it in /hooks)"


@dataclass(frozen=True)
class Harness:
    folder: str  # under the project or the home
    file: str  # the hooks file in that folder
    max_chars: int  # what one hook may print and still reach the model whole, with a margin
    envelope: bool  # print hook JSON: Codex fails stdout that looks like JSON but is not
    flag: bool  # the feature flag in config.toml beside the hooks file


HARNESSES = {
    "claude": Harness(".claude", "settings.json", 9000, envelope=False, flag=False),  # cap: 10,000 characters
    "codex": Harness(".codex", "hooks.json", 8000, envelope=True, flag=True),  # cap: 2,500 tokens, ~10,000 bytes
}


class HooksError(Exception):
    """One line, shown as ``jobmon: <text>``."""


@dataclass(frozen=True)
class Found:
    data: bytes
    mode: int  # kept when the file is rewritten


@dataclass(frozen=True)
class Change:
    path: Path
    what: str
    data: bytes | None = None  # the new bytes; None: the file stays as it is
    mode: int = 0o644


# ---------------------------------------------------------------- where, and what command


def harness(agent: str) -> Harness:
    if agent not in HARNESSES:
        raise HooksError(f"--agent {agent!r}: expected one of {', '.join(HARNESSES)}")
    return HARNESSES[agent]


def folder(agent: str, scope: str, dest: Path | None, home: Path, cwd: Path, env: Mapping[str, str]) -> Path:
    """The harness's folder for this scope; ``dest`` replaces the project or home folder."""
    found = harness(agent)
    if scope not in SCOPES:
        raise HooksError(f"--scope {scope!r}: expected one of {', '.join(SCOPES)}")
    if dest is not None:
        return dest.expanduser() / found.folder
    if scope == "project":
        return cwd / found.folder
    if agent == "codex" and env.get("CODEX_HOME"):  # Codex reads its user layer there instead
        return Path(env["CODEX_HOME"]).expanduser()
    return home / found.folder


def launcher() -> str:
    """jobmon as a shell word, absolute: a hook runs with the harness's PATH and folder."""
    import shlex
    import shutil

    import jobmon

    package = Path(jobmon.__file__).resolve().parent
    checkout = package.parent / "bin" / "jobmon"
    if checkout.is_file() and os.access(checkout, os.X_OK):
        return shlex.quote(str(checkout))
    on_path = shutil.which("jobmon")
    if on_path:
        return shlex.quote(os.path.abspath(on_path))
    return shlex.join([sys.executable, str(package / "__main__.py")])


def command(agent: str) -> str:
    return f"{launcher()} hooks run --agent {agent}"


def _ours(handler: Any, agent: str) -> bool:
    """A handler jobmon wrote: its command runs a jobmon launcher with ``hooks run --agent``.
    Matched by what it runs, not by its exact path: a moved checkout's entry is still ours."""
    text = handler.get("command") if isinstance(handler, dict) else None
    return isinstance(text, str) and re.search(rf"jobmon\S*\s+hooks\s+run\s+--agent\s+{agent}(\s|$)", text) is not None


# ---------------------------------------------------------------- install and uninstall


def install(agent: str, scope: str, dest: Path | None, *, home: Path, cwd: Path,
            env: Mapping[str, str]) -> list[tuple[Path, str]]:
    """Add jobmon's hooks (and, for Codex, the feature flag); what happened to each file.
    Every file is read and checked before any is written: a refusal leaves all as they were."""
    where = folder(agent, scope, dest, home, cwd, env)
    found = harness(agent)
    _check_folder(where, create=True)
    changes = [_plan_install(where / found.file, agent, command(agent))]
    if found.flag:
        changes.append(_plan_flag(where / "config.toml"))
    return _apply(changes, agent)


def uninstall(agent: str, scope: str, dest: Path | None, *, home: Path, cwd: Path,
              env: Mapping[str, str]) -> list[tuple[Path, str]]:
    """Take jobmon's hooks out; the user's hooks stay. Codex's feature flag stays too: other
    hooks may need it."""
    where = folder(agent, scope, dest, home, cwd, env)
    path = where / harness(agent).file
    if not _check_folder(where, create=False):
        return [(path, ABSENT)]
    return _apply([_plan_uninstall(path, agent)], agent)


def _apply(changes: list[Change], agent: str) -> list[tuple[Path, str]]:
    for change in changes:
        if change.data is not None:
            try:  # atomically: the harness, reading its settings, sees the old file or the new one
                atomic_write(change.path, change.data, mode=change.mode)
            except FileError as exc:
                raise HooksError(str(exc)) from None
    note = TRUST if agent == "codex" else ""
    return [(c.path, c.what + (note if c.what in (INSTALLED, UPDATED) else "")) for c in changes]


def _plan_install(path: Path, agent: str, cmd: str) -> Change:
    found, data = _load(path)
    table = _table(data, path)
    entry = {"hooks": [{"type": "command", "command": cmd, "timeout": TIMEOUT}]}
    new = dict(table)
    for event in EVENTS:
        groups = table.get(event, [])
        if _handlers(groups, agent) != entry["hooks"]:  # not exactly our one entry: put it right
            new[event] = [*_without_ours(groups, agent), entry]
    had = any(_handlers(table.get(event, []), agent) for event in EVENTS)
    return _change(path, found, data, {**data, "hooks": new}, UPDATED if had else INSTALLED)


def _plan_uninstall(path: Path, agent: str) -> Change:
    found, data = _load(path)
    table = _table(data, path)
    new: dict[str, Any] = {}
    for event, groups in table.items():
        kept = _without_ours(groups, agent) if isinstance(groups, list) else groups
        if kept or not groups:  # a list that held only jobmon's entry goes; the user's empty one stays
            new[event] = kept
    if found is None or new == table:
        return Change(path, ABSENT)
    return _change(path, found, data, {**data, "hooks": new}, REMOVED)


def _table(data: dict[str, Any], path: Path) -> dict[str, Any]:
    table = data.get("hooks", {})
    if not isinstance(table, dict):
        raise HooksError(f'{path}: its "hooks" is not a JSON object; left as it was')
    for event in EVENTS:
        if not isinstance(table.get(event, []), list):
            raise HooksError(f'{path}: its "hooks"."{event}" is not a JSON list; left as it was')
    return table


def _handlers(groups: list[Any], agent: str) -> list[Any]:
    return [h for g in groups if isinstance(g, dict) and isinstance(g.get("hooks"), list)
            for h in g["hooks"] if _ours(h, agent)]


def _without_ours(groups: list[Any], agent: str) -> list[Any]:
    """The groups without jobmon's handlers; a group left empty was jobmon's and goes."""
    kept = []
    for group in groups:
        handlers = group.get("hooks") if isinstance(group, dict) else None
        if not isinstance(handlers, list):
            kept.append(group)
            continue
        rest = [h for h in handlers if not _ours(h, agent)]
        if len(rest) == len(handlers):
            kept.append(group)
        elif rest:
            kept.append({**group, "hooks": rest})
    return kept


def _change(path: Path, found: Found | None, old: dict[str, Any], new: dict[str, Any], what: str) -> Change:
    if new == old:  # nothing of ours reorders a key or a list: equal is unchanged
        return Change(path, UNCHANGED)
    text = json.dumps(new, indent=2, ensure_ascii=False)
    newline = found is None or found.data.endswith(b"\n") or not found.data.strip()
    return Change(path, what, (text + ("\n" if newline else "")).encode(), found.mode if found else 0o644)


def _load(path: Path) -> tuple[Found | None, dict[str, Any]]:
    """The JSON object in ``path`` ({} when there is none); anything else is refused whole."""
    found = _read(path)
    if found is None or not found.data.strip():
        return found, {}
    try:
        data = json.loads(found.data.decode("utf-8"))
    except UnicodeDecodeError:
        raise HooksError(f"{path}: is not UTF-8 text; left as it was") from None
    except json.JSONDecodeError as exc:
        raise HooksError(f"{path}: is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                         "left as it was") from None
    if not isinstance(data, dict):
        kind = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(data), "null")
        raise HooksError(f"{path}: holds a JSON {kind}, not an object; left as it was")
    return found, data


# ---------------------------------------------------------------- Codex's feature flag

FEATURES = re.compile(r"^[ \t]*\[[ \t]*features[ \t]*\][ \t]*(#.*)?$", re.M)
TABLE_HEADER = re.compile(r"^[ \t]*\[\[?[^\]\n]*\]\]?[ \t]*(#.*)?$", re.M)  # [x] or [[x]], alone on its line
FLAG = re.compile(r"^([ \t]*)codex_hooks[ \t]*=[ \t]*[A-Za-z]+[ \t]*(#.*)?$", re.M)


def _plan_flag(path: Path) -> Change:
    """``codex_hooks = true`` in the ``[features]`` table. No TOML writer: only that one line is
    added or rewritten, every other byte stays; the result is parsed again and must differ from
    the original in that key alone."""
    found = _read(path)
    text, doc = _toml(found.data if found else b"", path)
    features = doc.get("features", {})
    if not isinstance(features, dict):
        raise HooksError(f"{path}: its features is not a table; left as it was")
    if features.get("hooks") is False:  # the user turned hooks off with the current key: theirs to undo
        return Change(path, KEPT_OFF)
    if features.get("hooks") is True or features.get("codex_hooks") is True:
        return Change(path, UNCHANGED)
    new = _flag_text(text, "codex_hooks" in features)
    if new is None or not _same_but_flag(new, {**doc, "features": {**features, "codex_hooks": True}}):
        raise HooksError(f"{path}: jobmon cannot edit its [features] table; add codex_hooks = true under "
                         "[features] yourself; left as it was")
    return Change(path, ENABLED, new.encode(), found.mode if found else 0o600)  # config.toml may hold secrets


def _toml(raw: bytes, path: Path) -> tuple[str, dict[str, Any]]:
    import tomllib

    try:
        text = raw.decode("utf-8")
        return text, tomllib.loads(text)
    except UnicodeDecodeError:
        raise HooksError(f"{path}: is not UTF-8 text; left as it was") from None
    except tomllib.TOMLDecodeError as exc:
        raise HooksError(f"{path}: is not valid TOML ({exc}); left as it was") from None


def _same_but_flag(text: str, want: dict[str, Any]) -> bool:
    """Whether the edited text parses to the original with the flag set, and to nothing else
    (an edit next to dotted keys would not even parse)."""
    try:
        return _toml(text.encode(), Path("config.toml"))[1] == want
    except HooksError:
        return False


def _flag_text(text: str, present: bool) -> str | None:
    """The text with the flag set, or None when [features] is not a plain ``[features]`` table
    (an inline table, dotted keys) that one line can change."""
    header = FEATURES.search(text)
    if header is None:
        if present:
            return None
        if not text.strip():
            return f"{text}[features]\ncodex_hooks = true\n"
        gap = "\n" if text.endswith("\n") else "\n\n"  # a blank line before the new table
        return f"{text}{gap}[features]\ncodex_hooks = true\n"
    start = header.end()
    nxt = TABLE_HEADER.search(text, start)
    end = nxt.start() if nxt else len(text)
    if not present:
        return f"{text[:start]}\ncodex_hooks = true{text[start:]}"
    line = FLAG.search(text, start, end)
    if line is None:
        return None
    comment = f" {line.group(2)}" if line.group(2) else ""
    return f"{text[:line.start()]}{line.group(1)}codex_hooks = true{comment}{text[line.end():]}"


# ---------------------------------------------------------------- files


def _check_folder(path: Path, *, create: bool) -> bool:
    """Whether the folder is there (made when ``create``); a link or someone else's is refused.
    It is never chmodded: ``.claude/`` is the user's, often committed, folder."""
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise HooksError(f"{path}: cannot make the folder: {reason(exc)}") from None
    try:
        folder_of_yours(path, st)
    except FileError as exc:
        raise HooksError(str(exc)) from None
    return True


def _read(path: Path) -> Found | None:
    """A file of ours, or None: a link, a FIFO, a device or someone else's file is refused
    before it is opened, and read_bytes opens it without following links or blocking."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HooksError(f"{path}: cannot read: {reason(exc)}") from None
    if stat.S_ISLNK(st.st_mode):
        raise HooksError(f"{path}: is a symbolic link; refused (jobmon writes only a file of yours, "
                         "never through a link)")
    if stat.S_ISDIR(st.st_mode):
        raise HooksError(f"{path}: is a folder, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise HooksError(f"{path}: is not a regular file; refused")
    if st.st_uid != os.geteuid():
        raise HooksError(f"{path}: belongs to {owner(st.st_uid)}, not to you; refused")
    if st.st_size > MAX_FILE:
        raise HooksError(f"{path}: is {st.st_size} bytes, too large for a settings file; refused")
    try:
        data = read_bytes(path)
    except FileError as exc:
        raise HooksError(str(exc)) from None
    return None if data is None else Found(data, stat.S_IMODE(st.st_mode))
