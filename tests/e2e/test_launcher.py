"""The launcher type follows a log while a real SLURM job writes it, to its final line."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import FIXTURES, Home, jobmon

from .conftest import Slurm, states

pytestmark = pytest.mark.e2e

WRITER = Path(__file__).with_name("write_log.py")
LOG = FIXTURES / "launcher" / "success.log"  # a real launcher run (Qwen3-8B FP8, Slurm job 4817233)
IMAGE = "nvcr.io/nvidia/tensorrt-llm/release:1.3.0rc8"


def test_a_launcher_log_written_by_a_job_is_followed_to_its_final_line(slurm: Slurm, home: Home, jobdir: Path,
                                                                       watch) -> None:
    log = jobdir / "launch-qwen3.log"
    # The job writes the captured log in 8 parts, half a second apart (tqdm's \r updates too).
    job = slurm.sbatch(shlex.join(["python3", str(WRITER), str(LOG), str(log), "8", "0.5"]), "--chdir", str(jobdir))
    ran = jobmon("add", "--type", "launcher", "--id", "qwen3-8b-fp8", "--file", str(log), "--host", slurm.host,
                 "--desc", "e2e: launcher log", *home.args())
    assert ran.code == 0, ran.err
    w = watch(*home.args())
    events = w.finish()
    assert w.code == 0
    *followed, summary = events
    assert summary["detail"] == "1 job: 1 completed"
    assert {(e["type"], e["id"], e["host"]) for e in followed} == {("launcher", "qwen3-8b-fp8", slurm.host)}

    # key events: each once, in the log's order; calibration progress only ever goes up, by 25 %.
    # An event's name may carry what it is kept under (slurm-job[4817233], calibration[…]@50).
    key = [(e["to"], e["detail"]) for e in followed if e["kind"] == "event"]
    names = [re.sub(r"(\[[^\]]*\])?(@\d+)?$", "", name) for name, _ in key]
    assert list(dict.fromkeys(names)) == ["experiment", "slurm-job", "container-import", "container-ready",
                                          "calibration", "export"], key
    said = {name: text for name, (_, text) in zip(names, key, strict=True) if name != "calibration"}
    assert len(said) == len(key) - names.count("calibration"), key
    assert said == {"experiment": "cicd_1795922583001207361", "slurm-job": "4817233", "container-import": IMAGE,
                    "container-ready": IMAGE, "export": "/scratchspace/exported_model"}
    progress = [(int(name.rsplit("@", 1)[1]), text) for name, text in key if name.startswith("calibration")]
    buckets = [b for b, _ in progress]
    assert buckets == sorted(set(buckets)) and buckets[-1] == 100 and all(b % 25 == 0 for b in buckets), key
    assert [text for _, text in progress] == [f"{b}% of 3-8B_FP8_0/0" for b in buckets]

    # the states: STARTING (no final line yet) and LAUNCHED may be seen, depending on when the
    # reads fall; SUCCEEDED from "Job 4817233 finished: SUCCEEDED" always, last
    seen = states(followed)
    assert seen == [s for s in ("STARTING", "LAUNCHED", "SUCCEEDED") if s in seen] and seen[-1] == "SUCCEEDED"
    final = followed[-1]
    assert (final["kind"], final["terminal"], final["outcome"], final["detail"]) == (
        "state", True, "success", "slurm job 4817233")

    # the writer itself ran to its end on the cluster, and wrote the whole log
    assert slurm.wait_for(job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})[0] == "COMPLETED"
    assert log.read_bytes() == LOG.read_bytes()
