"""What jobmon trusts: never a package planted in the current folder (issue 12, section 2).

``python -m`` puts the current folder first on ``sys.path``: a ``./jobmon/`` there, in a folder
others can write to, would run as you. The entry points in bin/ and the detached poller that
``add --watch`` starts run jobmon by its file instead. (Which config files are trusted:
tests/test_config.py, at its end; the session folder's files: tests/test_files.py.)
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, Home

JOBMON = REPO / "bin" / "jobmon"
WATCH = REPO / "bin" / "jobmon-watch"


def plant(folder: Path, marker: Path) -> Path:
    """A ``jobmon`` package in ``folder`` that leaves ``marker`` when imported."""
    package = folder / "jobmon"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    (package / "__main__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return folder


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def gone(pid: int, limit: float = 60) -> bool:
    """A bounded wait for a detached process to end (not a timing assert)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def finished(tmp_path: Path) -> list[str]:
    """The arguments of a local job that has already ended well (a pid no process has)."""
    done = tmp_path / "exit"
    done.write_text("0\n")
    return ["--type", "local", "--id", "999999999", "--file", str(done)]


def test_bin_entry_points_never_import_from_the_current_folder(home: Home, tmp_path: Path,
                                                               finished: list[str]) -> None:
    marker = tmp_path / "marker"
    cwd = plant(tmp_path / "shared", marker)
    add = run([JOBMON, "add", *finished, *home.args()], cwd)
    assert add.returncode == 0, add.stderr
    watch = run([WATCH, "--once", *home.args()], cwd)
    assert watch.returncode == 0, watch.stderr
    assert watch.stdout.splitlines()[-1].endswith("1 job: 1 completed")
    assert not marker.exists()


def test_the_poller_add_watch_starts_never_imports_from_the_current_folder(home: Home, tmp_path: Path,
                                                                           finished: list[str]) -> None:
    script = Path(sys.executable).with_name("jobmon")  # the installed console script: not -m itself
    if not script.exists():
        pytest.skip(f"no installed jobmon script beside {sys.executable}")
    marker = tmp_path / "marker"
    cwd = plant(tmp_path / "shared", marker)
    for argv in ([script, "add", *finished, "--watch", *home.args()],
                 [JOBMON, "add", "--type", "local", "--id", "999999998", "--watch", *home.args()]):
        ran = run(argv, cwd)
        assert ran.returncode == 0, ran.stderr
        started = ran.stderr.splitlines()[-1]
        assert started.startswith("jobmon: poller started (pid "), started
        assert gone(int(started.split("(pid ")[1].split(")")[0])), "the poller did not end"
        assert not marker.exists()
    log = home.registry.with_name("watch.log").read_text()
    assert "Traceback" not in log and "jobmon" not in os.listdir(home.registry.parent)
    assert sorted(r["id"] for r in home.history()) == ["999999998", "999999999"]
