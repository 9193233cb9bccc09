"""Hostile values against the real sshd: refused at the door, or passed through two shells as
one literal word. No marker file may appear, on this side or on the cluster's."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Home, jobmon

from .conftest import Slurm

pytestmark = pytest.mark.e2e


@pytest.fixture
def marks() -> Iterator[Path]:
    """Where a command that escaped its quotes would leave a file; short, so ids stay short."""
    path = Path(tempfile.mkdtemp(prefix="jme2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def no_markers(slurm: Slurm, marks: Path) -> None:
    assert sorted(p.name for p in marks.iterdir()) == []
    assert slurm.ssh(f"ls -A {marks}").stdout == ""  # the cluster's side (the same machine here)


def test_a_hostile_id_or_host_is_refused_at_registration(slurm: Slurm, home: Home, marks: Path) -> None:
    good = slurm.host
    for job_id, host, named in [
        (f"1;touch {marks}/X", good, "--id"),
        ("1", f"{good};touch {marks}/Y", "--host"),
        (f"1;touch {marks}/X", f"{good};touch {marks}/Y", "--"),
        ("1", f"-oProxyCommand=touch {marks}/Z", "--host"),
        (f"1 {marks}/W", good, "--id"),
    ]:
        # --opt=value: a value that starts with "-" is still the option's value
        ran = jobmon("add", "--type", "slurm", f"--id={job_id}", f"--host={host}", *home.args())
        assert ran.code == 2, (job_id, host, ran)
        assert f": {named}" in ran.err and "is not valid" in ran.err, ran.err
        rendered = jobmon("render", "--type", "slurm", f"--id={job_id}", f"--host={host}", *home.args())
        assert (rendered.code, rendered.out) == (2, "")
    assert home.jobs() == []
    no_markers(slurm, marks)


# A job type for this test only: any id at all, printed back by the cluster's shell. The check
# crosses ssh (two shells); the detail carries what came back as JSON, so it survives one_line.
ECHO_TYPE = r"""
settings:
  aggregate_after: 100      # one line per job, no digest
types:
  echoid:
    description: prints its id on the cluster (e2e quoting test)
    fields:
      id: {pattern: '(?s).{1,200}', help: anything}
      host: {required: true}
    check:
      command: >-
        {{ ssh }} {{ host }} {% remote %}printf 'STATE=%s\n' {{ id }}{% endremote %}
      regex: '(?s)\A(?P<state>STATE)=(?P<echo>.*)\Z'
    states:
      success: [STATE]
    detail: "{{ echo | tojson }}"
"""


def test_ids_reach_the_remote_shell_as_one_literal_word(slurm: Slurm, home: Home, marks: Path, tmp_path: Path,
                                                       watch) -> None:
    conf = tmp_path / "echoid.yaml"
    conf.write_text(ECHO_TYPE)
    m = marks
    ids = [
        f"$(touch {m}/m1)",
        f"`touch {m}/m2`",
        f"; touch {m}/m3",
        "' \"",
        f"'; touch {m}/m4; echo '",
        f'"; touch {m}/m5; echo "',
        f"line one\nline two; touch {m}/m6",
        f"&& touch {m}/m7 | touch {m}/m8",
        f"> {m}/m9 & touch {m}/m10",
        "$HOME ${PATH} ~root * ? [a] \\ \\n %s %n {a,b} !! #",
        f"a\ttab; touch {m}/m12 \\",
    ]
    # quoting keeps a value one word, but a word that starts with "-" is still an option: refused
    option = f"-oProxyCommand=touch {m}/m11"
    ran = jobmon("add", "--type", "echoid", f"--id={option}", "--host", slurm.host, "--config", str(conf), *home.args())
    assert (ran.code, ran.err) == (2, f"jobmon: echoid: --id {option!r} is not valid: anything "
                                      "(it would be read as an option)\n")
    for job_id in ids:
        ran = jobmon("add", "--type", "echoid", f"--id={job_id}", "--host", slurm.host, "--config", str(conf),
                     *home.args())
        assert ran.code == 0, (job_id, ran.err)
    w = watch("--config", str(conf), *home.args())
    events = w.finish()
    assert w.code == 0
    *finals, summary = events
    assert summary["detail"] == f"{len(ids)} jobs: {len(ids)} completed"
    assert [(e["kind"], e["to"], e["outcome"], e["host"]) for e in finals] == [
        ("state", "STATE", "success", slurm.host)] * len(ids)
    # what the cluster printed is each id, byte for byte (short ids: no line had to be clipped)
    assert sorted(json.loads(e["detail"]) for e in finals) == sorted(ids)
    assert sorted((r["id"], json.loads(r["detail"])) for r in home.history()) == sorted((i, i) for i in ids)
    no_markers(slurm, marks)
