"""The deploy type: a model server run as a SLURM job, its log read at every poll in the same
call as the scheduler's check. Fed with start-up logs rebuilt from the servers' own strings
(tests/fixtures/deploy/SOURCES.md)."""
from __future__ import annotations

import re


import pytest

from jobmon.registry import Job
from conftest import FIXTURES, Cluster, Home, add, events, make_watcher

LOGS = FIXTURES / "deploy"


def said(out) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(e["kind"], e["to"], e["detail"]) for e in events(out)]


def halves(name: str, at: str) -> tuple[str, str]:
    """A fixture log cut just before the first line holding ``at``: what a poll sees, then the rest."""
    text = (LOGS / name).read_text()
    cut = text.rfind("\n", 0, text.index(at)) + 1
    return text[:cut], text[cut:]


@pytest.mark.parametrize(("log", "loading", "ready"), [
    ("vllm_ready.log", "meta-llama/Llama-3.1-8B-Instruct", "http://gpu07:8000"),
    ("sglang_ready.log", "Load weight begin. avail mem=78.58 GB", "http://gpu07:30000"),
    ("trtllm_ready_legacy.log", "Loading weights", "http://gpu07:8000"),
])
def test_loading_then_ready_with_the_endpoint_each_once(home: Home, cluster: Cluster, log: str, loading: str | None,
                                                        ready: str) -> None:
    text = (LOGS / log).read_text()
    first, rest = halves(log, "Application startup complete.")
    cluster.set("80", "RUNNING")
    cluster.queue("80", "RUNNING", node="gpu[07-08]")  # two nodes: the server listens on the first
    path = cluster.output("80", "")
    add(home, Job("deploy", "80", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)  # learns its log's path
    path.write_text(first)
    w.cycle(everything=True)
    assert said(out) == ([("event", "LOADING", loading)] if loading else [])
    with path.open("a") as f:
        f.write(rest)
    w.cycle(everything=True)
    ((kind, to, detail),) = said(out)
    assert (kind, to) == ("event", "READY")
    assert re.fullmatch(re.escape(ready) + r", 00:00:0\d after it started running", detail), detail
    w.cycle(everything=True)
    assert said(out) == []  # the next poll reads only what came after
    (job,) = home.jobs()
    assert job["jobmon"]["offset"] == len(text.encode())


@pytest.mark.parametrize(("log", "cause"), [
    ("vllm_kv_cache.log", "; KV cache too small: max seq len 131072 needs 16.00 GiB, 9.87 GiB free (at most 80848 fits); "
                          "lower max_model_len or raise gpu_memory_utilization (log: "),
    ("vllm_kv_cache_v0.log", "; KV cache too small: max seq len 131072 > the 92960 tokens it holds; lower max_model_len "
                             "or raise gpu_memory_utilization (log: "),
    ("address_in_use.log", "[Errno 98] error while attempting to bind on address ('0.0.0.0', 8000): address already in use"),
    ("vllm_address_in_use.log", "[Errno 98] Address already in use"),
    ("vllm_cuda_oom.log", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"),
    ("nccl_init.log", "ncclInternalError: Internal check failed."),
    ("pyxis_import.log", "container import failed"),
])
def test_a_deployment_that_never_came_up_says_why_from_its_log(home: Home, cluster: Cluster, log: str,
                                                                cause: str) -> None:
    cluster.set("81", "FAILED", "1:0", "00:02:10")
    cluster.output("81", (LOGS / log).read_text())
    add(home, Job("deploy", "81", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    ((kind, to, _),) = said(out)
    assert (kind, to) == ("state", "FAILED")
    detail = home.logged()[-1]["detail"]  # whole: a printed line is cut at max_line
    assert cause in detail, detail
