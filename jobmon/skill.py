"""``jobmon skill install``: put the packaged agent skill where Claude Code or Codex finds it.

The skill is ``skills/monitor/SKILL.md`` (the agentskills.io format). It is copied, never
linked, so an installed copy keeps working when the checkout moves. Next to the copy, a sidecar
``.jobmon-installed`` records the sha256 of the bytes jobmon wrote: a copy that still has that
hash is an older shipped version, safe to update; any other difference is the user's own edit,
kept unless ``force``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from jobmon.files import FileError, atomic_write

NAME = "monitor"
SIDECAR = ".jobmon-installed"
# Where each agent looks for skills, under the project or the user's home.
AGENT_DIRS = {"claude": ".claude/skills", "codex": ".agents/skills"}
SCOPES = ("project", "user")

INSTALLED, UNCHANGED, KEPT, UPDATED = "installed", "unchanged", "kept: locally edited, use --force", "updated"


class SkillError(Exception):
    """One line, shown as ``jobmon: <text>``."""


def shipped() -> Path:
    """The packaged SKILL.md: at the repository root in a checkout, in jobmon/defaults in a wheel."""
    from jobmon import config  # lazily: `jobmon skill` needs none of the config machinery otherwise

    return config.packaged_dir() / "skills" / NAME / "SKILL.md"


def target(agent: str, scope: str, dest: Path | None, home: Path, cwd: Path) -> Path:
    """Where the skill goes for this agent and scope; ``dest`` replaces the project or home folder."""
    if agent not in AGENT_DIRS:
        raise SkillError(f"--agent {agent!r}: expected one of {', '.join(AGENT_DIRS)}")
    if scope not in SCOPES:
        raise SkillError(f"--scope {scope!r}: expected one of {', '.join(SCOPES)}")
    base = dest.expanduser() if dest is not None else (cwd if scope == "project" else home)
    return base / AGENT_DIRS[agent] / NAME / "SKILL.md"


def install(agent: str, scope: str, dest: Path | None, force: bool, home: Path, cwd: Path) -> tuple[Path, str]:
    """Copy the shipped skill to its target; return the path and what happened.

    Idempotent: identical bytes are left alone ("unchanged"). A differing copy is replaced only
    when it is one jobmon wrote (its hash is the sidecar's) or when ``force`` is given.
    """
    path = target(agent, scope, dest, home, cwd)
    source = shipped()
    try:
        new = source.read_bytes()
    except OSError as exc:
        raise SkillError(f"the packaged skill is missing: {source}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise SkillError(f"{path}: is a folder, expected a file")
    old = _read(path)
    sidecar = path.with_name(SIDECAR)
    if old == new:
        # Also heals a sidecar lost between the two writes of an earlier run.
        if _read(sidecar) != _digest(new).encode():
            _write(sidecar, _digest(new).encode())
        return path, UNCHANGED
    if old is not None and not force and _read(sidecar) != _digest(old).encode():
        return path, KEPT
    # The skill first, then its hash: a crash in between leaves a copy that reads as
    # "unchanged" next time (and gets its sidecar then), never one that reads as edited.
    _write(path, new)
    _write(sidecar, _digest(new).encode())
    return path, INSTALLED if old is None else UPDATED


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SkillError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _write(path: Path, data: bytes) -> None:
    """Atomically: a reader (the agent loading its skills) sees the old file or the new one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, mode=0o644)  # a skill is an ordinary readable file
    except OSError as exc:
        raise SkillError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except FileError as exc:  # atomic_write's own one line names the file
        raise SkillError(str(exc)) from None
