"""A model deployment on the real cluster: a stdlib HTTP server that logs vLLM's start-up lines
runs as a SLURM job; jobmon says LOADING, then READY with http://<node>:<port> (the node from
squeue, not the 0.0.0.0 it logs); UNHEALTHY when /health fails, HEALTHY when it answers again
(curl from the login node, in the same ssh call); then CANCELLED after scancel."""
from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from conftest import FIXTURES, Home, jobmon

from .conftest import Slurm, states

pytestmark = pytest.mark.e2e

SERVE = FIXTURES / "deploy" / "server" / "serve.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_deployment_is_loading_ready_unhealthy_healthy_then_cancelled(slurm: Slurm, home: Home, jobdir: Path,
                                                                      tmp_path: Path, watch) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    conf = tmp_path / "deploy.yaml"
    conf.write_text("types:\n  deploy:\n    interval: 1\n")
    job = slurm.sbatch(f"exec python3 {SERVE} {port} {tmp_path / 'sick'}", "--chdir", str(jobdir))
    ran = jobmon("add", "--type", "deploy", "--id", job, "--host", slurm.host, "--config", str(conf), *home.args())
    assert ran.code == 0, ran.err
    w = watch("--config", str(conf), *home.args())
    got = w.until(lambda e: e["kind"] == "event" and e["to"] == "READY")
    node = slurm.ssh(f"squeue -h -j {job} -o %N").stdout.strip()
    (loading, ready) = [(e["to"], e["detail"]) for e in got if e["kind"] == "event"]
    assert loading == ("LOADING", "tiny-llama")
    assert ready[0] == "READY" and re.fullmatch(
        rf"http://{node}:{port}, 00:00:\d\d after it started running", ready[1]), ready  # the server loads for 3 s
    assert states(got, job)[-1] == "RUNNING"
    sick = tmp_path / "sick"
    sick.touch()  # /health answers 503 from now on
    unhealthy = w.until(lambda e: e["kind"] == "event" and e["to"] in ("UNHEALTHY", "HEALTHY"))[-1]
    assert (unhealthy["to"], unhealthy["detail"]) == ("UNHEALTHY", "3 failed probes in a row: HTTP 503")
    sick.unlink()
    healthy = w.until(lambda e: e["kind"] == "event" and e["to"] == "HEALTHY")[-1]
    assert healthy["detail"].startswith("answers again (HTTP 200) after ") and not healthy["terminal"]
    slurm.ssh(f"scancel {job}")
    rest = w.finish()
    assert [e["to"] for e in rest if e["kind"] == "state"] == ["CANCELLED"]
