"""skills/monitor/SKILL.md and ``jobmon skill install`` (jobmon/skill.py).

The skill is what a coding agent reads, so its commands are run, not just read: every line of
every ```sh block runs with bash, in order, in an isolated home, against a fake SLURM and a fake
nel where every job has already ended. Each command must exit 0 without a traceback, and each
watch must end by itself.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobmon import skill
from conftest import FIXTURES, REPO, Cluster, FakeBin

SKILL = REPO / "skills" / "monitor" / "SKILL.md"
TEXT = SKILL.read_text(encoding="utf-8")

# agentskills.io: the two required keys, and the optional ones a SKILL.md may carry.
REQUIRED = {"name", "description"}
OPTIONAL = {"license", "compatibility", "metadata", "allowed-tools"}


def front_matter() -> tuple[dict[str, Any], str]:
    """The YAML between the first two ``---`` lines, and the Markdown body after them."""
    lines = TEXT.splitlines()
    assert lines[0] == "---", "SKILL.md must start with a --- line"
    end = lines.index("---", 1)
    meta = yaml.safe_load("\n".join(lines[1:end]))
    assert isinstance(meta, dict), "the front matter must be a YAML mapping"
    return meta, "\n".join(lines[end + 1:])


def sh_commands() -> list[str]:
    """Every command line of every ```sh block, in order; comments and blank lines skipped."""
    blocks = re.findall(r"^```sh\n(.*?)^```", TEXT, re.S | re.M)
    return [ln.strip() for block in blocks for ln in block.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


# ---------------------------------------------------------------- the front matter


def test_front_matter_follows_the_agentskills_format() -> None:
    meta, body = front_matter()
    assert REQUIRED <= set(meta), f"missing: {sorted(REQUIRED - set(meta))}"
    assert set(meta) <= REQUIRED | OPTIONAL, f"unknown keys: {sorted(set(meta) - REQUIRED - OPTIONAL)}"
    name = meta["name"]
    assert isinstance(name, str) and re.fullmatch(r"[a-z0-9-]{1,64}", name)
    assert not name.startswith("-") and not name.endswith("-") and "--" not in name
    assert name == SKILL.parent.name
    if "compatibility" in meta:
        assert isinstance(meta["compatibility"], str) and 1 <= len(meta["compatibility"]) <= 500
    assert body.strip(), "the body holds the instructions"


def test_description_says_what_and_when() -> None:
    description = front_matter()[0]["description"]
    assert isinstance(description, str) and 1 <= len(description) <= 1024
    assert "Use right after submitting a job" in description
    for trigger in ("check job status", "is my job done", "monitor my evaluation", "sbatch", "nel run",
                    "quantization launcher", "deployment"):
        assert trigger in description, trigger


def test_every_sh_block_line_is_a_jobmon_command() -> None:
    commands = sh_commands()
    assert len(commands) >= 10
    for command in commands:
        assert shlex.split(command)[0] in {"jobmon", "jobmon-watch", "bin/jobmon-watch"}, command
        assert "<" not in command and ">" not in command, f"a placeholder or redirection: {command}"


def test_every_job_type_is_registered_with_watch() -> None:
    adds = [c for c in sh_commands() if c.startswith("jobmon add ")]
    assert sorted(option(c, "--type") or "" for c in adds) == ["launcher", "local", "nel", "slurm"]
    assert all(c.endswith(" --watch") for c in adds)


# ---------------------------------------------------------------- install


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    out = {name: tmp_path / name for name in ("home", "cwd", "dest")}
    for path in out.values():
        path.mkdir()
    return out


def install(places: dict[str, Path], agent: str = "claude", scope: str = "project", *, dest: bool = False,
            force: bool = False) -> tuple[Path, str]:
    return skill.install(agent, scope, places["dest"] if dest else None, force, home=places["home"], cwd=places["cwd"])


@pytest.mark.parametrize(("agent", "scope", "dest", "base", "where"), [
    ("claude", "project", False, "cwd", ".claude/skills"),
    ("claude", "user", False, "home", ".claude/skills"),
    ("codex", "project", False, "cwd", ".agents/skills"),
    ("codex", "user", False, "home", ".agents/skills"),
    ("claude", "project", True, "dest", ".claude/skills"),
    ("claude", "user", True, "dest", ".claude/skills"),
    ("codex", "project", True, "dest", ".agents/skills"),
    ("codex", "user", True, "dest", ".agents/skills"),
])
def test_each_agent_and_scope_lands_in_its_folder(places: dict[str, Path], agent: str, scope: str, dest: bool,
                                                  base: str, where: str) -> None:
    path, what = install(places, agent, scope, dest=dest)
    assert (path, what) == (places[base] / where / "monitor" / "SKILL.md", "installed")
    assert path.read_bytes() == SKILL.read_bytes()
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in path.parent.iterdir()) == [".jobmon-installed", "SKILL.md"]  # no temp file left


def test_a_second_run_changes_nothing(places: dict[str, Path]) -> None:
    path, _ = install(places)
    before = path.stat().st_mtime_ns
    assert install(places) == (path, "unchanged")
    assert path.stat().st_mtime_ns == before


def test_a_locally_edited_copy_is_kept_unless_forced(places: dict[str, Path]) -> None:
    path, _ = install(places)
    path.write_text(TEXT + "\n- Always answer in French.\n")
    assert install(places) == (path, "kept: locally edited, use --force")
    assert path.read_text().endswith("in French.\n")
    assert install(places, force=True) == (path, "updated")
    assert path.read_bytes() == SKILL.read_bytes()
    assert install(places) == (path, "unchanged")


def test_a_copy_written_by_hand_is_kept(places: dict[str, Path]) -> None:
    """No sidecar: jobmon did not write it, so it is the user's."""
    path = places["cwd"] / ".claude" / "skills" / "monitor" / "SKILL.md"
    path.parent.mkdir(parents=True)
    path.write_text("---\nname: monitor\ndescription: mine\n---\n")
    assert install(places) == (path, "kept: locally edited, use --force")
    assert path.read_text().endswith("mine\n---\n")


def test_an_older_shipped_copy_is_updated(places: dict[str, Path]) -> None:
    """The copy still has the hash jobmon recorded when it wrote it: an older version, unedited."""
    path, _ = install(places)
    older = TEXT.replace("--for 25m", "--for 20m").encode()
    path.write_bytes(older)
    path.with_name(".jobmon-installed").write_text(hashlib.sha256(older).hexdigest())
    assert install(places) == (path, "updated")
    assert path.read_bytes() == SKILL.read_bytes()
    assert path.with_name(".jobmon-installed").read_text() == hashlib.sha256(SKILL.read_bytes()).hexdigest()


def test_an_older_shipped_copy_edited_since_is_kept(places: dict[str, Path]) -> None:
    path, _ = install(places)
    older = TEXT.replace("--for 25m", "--for 20m").encode()
    path.with_name(".jobmon-installed").write_text(hashlib.sha256(older).hexdigest())
    path.write_bytes(older + b"\n- my own rule\n")
    assert install(places) == (path, "kept: locally edited, use --force")


def test_an_identical_copy_gets_its_sidecar_back(places: dict[str, Path]) -> None:
    """A run killed between writing the skill and writing its hash: the next run repairs it."""
    path, _ = install(places)
    path.with_name(".jobmon-installed").unlink()
    assert install(places) == (path, "unchanged")
    path.write_text(TEXT.replace("--for 25m", "--for 20m"))
    path.with_name(".jobmon-installed").unlink()
    assert install(places)[1] == "kept: locally edited, use --force"


@pytest.mark.parametrize(("agent", "scope", "message"), [
    ("cursor", "project", "--agent 'cursor': expected one of claude, codex"),
    ("claude", "global", "--scope 'global': expected one of project, user"),
])
def test_a_bad_value_is_one_line(places: dict[str, Path], agent: str, scope: str, message: str) -> None:
    with pytest.raises(skill.SkillError) as err:
        install(places, agent, scope)
    assert str(err.value) == message
    assert not any(places["cwd"].iterdir())


def test_a_folder_where_the_file_goes_is_refused(places: dict[str, Path]) -> None:
    path = places["cwd"] / ".claude" / "skills" / "monitor" / "SKILL.md"
    path.mkdir(parents=True)
    with pytest.raises(skill.SkillError, match=r"SKILL.md: is a folder, expected a file$"):
        install(places)


def test_the_wheel_carries_the_skill_where_install_looks() -> None:
    import tomllib

    wheel = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    force_include = wheel["force-include"]
    assert force_include["skills"] == "jobmon/defaults/skills"
    assert force_include["monitor.yaml"] == "jobmon/defaults/monitor.yaml"  # packaged_dir() keys on it
    assert skill.shipped() == SKILL  # in a checkout, packaged_dir() is the repository root


# ---------------------------------------------------------------- the commands run

# A fake nel 0.2.6 where every invocation has ended well: `status … --json` prints one SUCCESS
# job per id asked (the shape of tests/fixtures/nel/status_json_*.json), `info --copy-artifacts`
# puts the results.yml fixture where nel does, `ls runs --since 1d` prints that capture.
FAKE_NEL = r"""#!/usr/bin/env bash
echo "nel $*" >> "${FAKE_LOG:-/dev/null}"
F=@FIXTURES@
case "$1" in
  status)
    shift; sep=""; printf '['
    for id in "$@"; do
      case "$id" in --*) continue ;; esac
      inv="${id%%.*}"; job="$id"; [ "$job" = "$inv" ] && job="$inv.0"
      printf '%s\n  {"invocation": "%s", "job_id": "%s", "status": "success",' "$sep" "$inv" "$job"
      printf ' "progress": {"progress": 12032}, "data": {"output_dir": "/tmp/nel-runs/%s"}}' "$job"
      sep=","
    done
    printf '\n]\n' ;;
  info)
    echo "nemo_evaluator_launcher: 0.2.6"
    job="$2"; case "$job" in *.*) ;; *) job="$job.0" ;; esac
    if [ "$3" = --copy-artifacts ]; then
      mkdir -p "$4/$job/artifacts" && cp "$F/results_mmlu_pro.synthesized.yml" "$4/$job/artifacts/results.yml"
    fi ;;
  ls) cat "$F/ls_runs_since_1d.txt"; cat "$F/ls_runs_since_1d.stderr.txt" >&2 ;;
  *) echo "unexpected: nel $*" >&2; exit 2 ;;
esac
"""

# What the files the skill names hold: a launcher log that ends in success, an exit code of 0.
# The slurm --file lives on the cluster and is read only for a failed job, so it needs none.
FILES = {
    "~/launch-qwen3.log": (FIXTURES / "launcher" / "success.log").read_bytes(),
    "~/train.exit": b"0\n",
}

# Every type polls each second, so a job registered after the first poll does not wait 30 s.
FAST = "types:\n" + "".join(f"  {t}: {{interval: 1}}\n" for t in ("slurm", "nel", "launcher", "local"))

WATCH_TIMEOUT = 120  # seconds; a watch whose jobs all end at the first poll needs a few


def option(command: str, name: str) -> str | None:
    words = shlex.split(command)
    return words[words.index(name) + 1] if name in words else None


def slurm_ids(command: str) -> list[str]:
    """The SLURM job ids a command names: a slurm job it adds, or the ids `discover --add` takes."""
    words = shlex.split(command)
    if option(command, "--type") == "slurm":
        return [option(command, "--id") or ""]
    if words[:2] == ["jobmon", "discover"] and "--add" in words:
        rest = words[words.index("--add") + 1:]
        return rest[:next((i for i, w in enumerate(rest) if w.startswith("-")), len(rest))]
    return []


def wrapper(folder: Path, name: str) -> None:
    exe = folder / name
    exe.write_text(f'#!/usr/bin/env bash\nexec {shlex.quote(str(REPO / "bin" / name))} "$@"\n')
    exe.chmod(0o755)


def marked(marker: str) -> list[int]:
    """Our processes still alive: those whose environment carries this test's marker."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop_leftovers(marker: str, wait: float) -> list[int]:
    """Wait for the detached pollers to end by themselves; stop, by pid, any still running."""
    deadline = time.monotonic() + wait
    while (left := marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return left


@pytest.fixture
def skill_env(tmp_path: Path, cluster: Cluster, fakebin: FakeBin) -> Any:
    """An isolated agent: its own HOME, jobmon root, session, config; fakes first on PATH."""
    home, root, checkout = tmp_path / "home", tmp_path / "root", tmp_path / "checkout"
    for path in (home, root, checkout / "bin"):
        path.mkdir(parents=True)
    # The watch is run as `bin/jobmon-watch` from the checkout and as `jobmon-watch` from PATH.
    for name in ("jobmon", "jobmon-watch"):
        wrapper(checkout / "bin", name)
    fakebin.add("nel", FAKE_NEL.replace("@FIXTURES@", shlex.quote(str(FIXTURES / "nel"))))
    fast = tmp_path / "fast.yaml"
    fast.write_text(FAST)
    marker = f"JOBMON_SKILLTEST={tmp_path}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("CODEX_THREAD_ID", "JOBMON_LOG", "JOBMON_CONFIG", "PYTHONPATH")}
    env.update({
        "HOME": str(home), "JOBMON_ROOT": str(root), "CLAUDE_CODE_SESSION_ID": "skilltest",
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "JOBMON_CONFIG": str(fast), "USER": "skilltest",
        "PATH": f"{checkout / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "JOBMON_SKILLTEST": str(tmp_path),
    })
    yield env, checkout, home, root
    stop_leftovers(marker, wait=0)


def test_every_command_in_the_skill_runs(skill_env: Any, cluster: Cluster) -> None:
    env, checkout, home, root = skill_env
    commands = sh_commands()
    for command in commands:
        for job_id in slurm_ids(command):
            assert job_id.isdigit(), command
            cluster.set(job_id, "COMPLETED", "0:0", "00:42:00")
            if "--add" in command:  # `discover` found it with `squeue -u`: the queue lists it
                cluster.queue(job_id, "RUNNING", "sft-llama3")
        if option(command, "--type") == "local":
            pid = option(command, "--id")
            assert not Path(f"/proc/{pid}").exists(), f"pid {pid} (the skill's example) runs here: no watch would end"
        path = option(command, "--file")
        if path is not None and option(command, "--type") != "slurm":
            assert path in FILES, f"{command}: say what {path} holds in FILES"
    for name, data in FILES.items():
        target = home / name.removeprefix("~/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    failures = []
    for command in commands:
        try:
            proc = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True,
                                  timeout=WATCH_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:  # its output comes as bytes, whatever text= says
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
            failures.append(f"$ {command}\n  did not end within {WATCH_TIMEOUT} s\n  stdout: {(out or '').strip()}")
            continue
        if proc.returncode != 0 or "Traceback" in proc.stdout + proc.stderr:
            failures.append(f"$ {command}\n  exit {proc.returncode}\n  stdout: {proc.stdout.strip()}\n"
                            f"  stderr: {proc.stderr.strip()}")
        if "--add" in command:  # found in the queue, it then ends: squeue no longer holds it
            for job_id in slurm_ids(command):
                cluster.forget(f"{job_id}.queue")
    left = stop_leftovers(f"JOBMON_SKILLTEST={env['JOBMON_SKILLTEST']}", wait=30)
    if left:
        failures.append(f"pollers still running 30 s after the last command, every job having ended: pids {left}")
    for log in root.rglob("*.log"):
        if "Traceback" in log.read_text(errors="replace"):
            failures.append(f"{log}: a traceback:\n{log.read_text(errors='replace')[-2000:]}")
    assert not failures, f"{len(failures)} problems running the {len(commands)} commands:\n\n" + "\n\n".join(failures)

    # `jobmon skill install --agent codex --scope user`, in the isolated home
    assert (home / ".agents" / "skills" / "monitor" / "SKILL.md").read_bytes() == SKILL.read_bytes()
