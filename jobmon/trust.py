"""Which config files jobmon loads without being told to: git's ``safe.directory``, for jobmon.

A config declares commands, so a ``./monitor.yaml`` or a ``$JOBMON_CONFIG`` that someone else
could have written would run their commands as you. Such a file (or a folder layer, or its
``checkers.d``) is skipped, with one line saying which and why, when it is not owned by you or
root, or is writable by group or others. The packaged defaults and your XDG config are yours;
a ``--config`` named on the command line is trusted as well: you chose it, as git trusts a
repository you name with ``--git-dir``.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from jobmon.files import owner


def refusal(path: Path) -> str | None:
    """Why ``path`` must not be loaded unasked, or None. A link counts as its owner's too: a
    link someone else planted to a file of yours is still theirs to point elsewhere."""
    try:
        link, target = os.lstat(path), os.stat(path)
    except OSError:
        return None  # no such layer; one that cannot be read says so when it is read
    for st in (link, target):
        if st.st_uid not in (os.geteuid(), 0):
            return f"not owned by you or root but by {owner(st.st_uid)}"
    if target.st_mode & 0o022:
        return f"writable by group/others (mode {stat.S_IMODE(target.st_mode):04o}); chmod go-w to use it"
    return None
