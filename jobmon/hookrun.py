"""``jobmon hooks run``: what the installed turn-start hook runs (hooks.py installs it).

It reads the hook's JSON from stdin (the session, the folder), prints the session's events not
yet given to reader ``agent`` (``jobmon events --if-new``, bounded to what the harness shows
whole), and nothing when there are none. It always exits 0: a hook must never block a prompt.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping

from jobmon.hooks import EVENTS, INPUT_WAIT, MAX_INPUT, Harness, HooksError, harness


def run(agent: str, env: Mapping[str, str], fd: int = 0) -> int:
    """What the installed hook runs: the session's new events on stdout, nothing when there are
    none. Always exits 0: exit 2 would block the user's prompt, any other code shows an error,
    and neither helps; a failure prints nothing on stdout and one line on stderr."""
    try:
        found = harness(agent)
        hook = _hook_input(read_input(fd))
        names = ("agent_id", "session_id") if agent == "codex" else ("session_id",)  # a Codex subagent: its thread
        session = next((v for v in map(hook.get, names) if isinstance(v, str) and v), None)
        if session is None:
            _say("no hook input with a session_id on stdin; nothing to tell")
            return 0
        argv = ["events", "--if-new", "--max-chars", str(found.max_chars), "--session", session]
        cwd = hook.get("cwd")
        if not env.get("JOBMON_ROOT") and isinstance(cwd, str) and os.path.isabs(cwd):
            argv += ["--root", cwd]  # where the agent's own jobmon commands run
        code, out, err = _events(argv)
        # What was printed was delivered (the reader's cursor moved past it): it is shown even
        # when the command failed after it, or those events would never reach the agent.
        _emit(found, hook, out)
        if code:
            _say(err.strip().splitlines()[-1] if err.strip() else f"jobmon events exited {code}")
        elif err.strip():
            sys.stderr.write(err)
    except HooksError as exc:
        _say(str(exc))
    except Exception as exc:  # noqa: BLE001 - a hook must not fail the harness: one line, exit 0
        _say(f"{type(exc).__name__}: {exc}")
    return 0


def read_input(fd: int = 0, limit: int = MAX_INPUT, wait: float = INPUT_WAIT) -> bytes | None:
    """The hook's stdin, or None when it is a terminal, too large or never ends (``/dev/zero``,
    a FIFO no one writes): read with a deadline, never past ``limit``."""
    import select
    import time

    deadline = time.monotonic() + wait
    chunks: list[bytes] = []
    size = 0
    try:
        if os.isatty(fd):
            return None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    except (OSError, ValueError):  # stdin closed from the start
        return None


def _hook_input(raw: bytes | None) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _events(argv: list[str]) -> tuple[int, str, str]:
    """``jobmon events`` in this process (no second interpreter to start), its output caught."""
    import contextlib
    import io

    from jobmon import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse refusing a flag
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def _emit(found: Harness, hook: dict[str, Any], text: str) -> None:
    if not text.strip() or sys.stdout is None:
        return
    event = hook.get("hook_event_name")
    if found.envelope and event in EVENTS:
        text = json.dumps({"hookSpecificOutput": {"hookEventName": event, "additionalContext": text.rstrip("\n")}},
                          ensure_ascii=False) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()


def _say(line: str) -> None:
    from jobmon.events import one_line

    print(f"jobmon hooks run: {one_line(line)}", file=sys.stderr)
