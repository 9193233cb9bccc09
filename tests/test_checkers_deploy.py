"""The deploy type: a model server run as a SLURM job, its log read at every poll in the same
call as the scheduler's check. Fed with start-up logs rebuilt from the servers' own strings
(tests/fixtures/deploy/SOURCES.md)."""
from __future__ import annotations

import re


import pytest

from jobmon.registry import Job
from conftest import FIXTURES, Cluster, Home, add, events, jobmon, make_watcher

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
    curl(cluster, "200")  # the probe after READY asks gpu07, which this machine cannot reach
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
    # uvicorn's startup line comes before its bind: no READY before the error
    ("uvicorn_address_in_use_plain.log", "[Errno 98] error while attempting to bind on address ('0.0.0.0', 8000): "
                                         "address already in use"),
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


def test_nim_says_ready_at_uvicorns_bound_url(home: Home, cluster: Cluster) -> None:
    cluster.set("82", "RUNNING")
    cluster.queue("82", "RUNNING", node="gpu07")
    cluster.output("82", (LOGS / "nim_ready.log").read_text())
    add(home, Job("deploy", "82", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)  # learns its log's path
    w.cycle(everything=True)
    ready = [d for _, to, d in said(out) if to == "READY"]
    assert len(ready) == 1 and ready[0].startswith("http://gpu07:8000, "), said(out)


def curl(cluster: Cluster, code: str) -> None:
    """A curl that logs how it was called and answers ``code`` (as ``-w '%{http_code}'`` would)."""
    cluster.fakebin.add("curl", f'#!/bin/sh\necho "curl $*" >>"$FAKE_LOG"\nprintf {code}\n')


def test_trtllm_serve_names_no_url_so_ready_needs_the_endpoint_given_at_add(home: Home, cluster: Cluster) -> None:
    """Current trtllm-serve binds its socket before uvicorn starts, so no "Uvicorn running on":
    its "Application startup complete." is READY only with --field endpoint (0.0.0.0: the node)."""
    text = (LOGS / "trtllm_ready.log").read_text()
    curl(cluster, "200")
    for job_id, fields in (("83", {}), ("84", {"endpoint": "http://0.0.0.0:8000"})):
        cluster.set(job_id, "RUNNING")
        cluster.queue(job_id, "RUNNING", node="gpu07")
        cluster.output(job_id, text)
        add(home, Job("deploy", job_id, host="c", last_status="RUNNING", fields=fields))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    w.cycle(everything=True)
    ready = [(e["id"], e["detail"]) for e in events(out) if e["to"] == "READY"]
    assert [(i, d.split(",")[0]) for i, d in ready] == [("84", "http://gpu07:8000")]
    # the probe starts once READY is said, at the URL READY named
    assert cluster.fakebin.calls("curl") == []
    w.cycle(everything=True)
    assert [c.split()[-1] for c in cluster.fakebin.calls("curl")] == ["http://gpu07:8000/health"]


def test_a_given_endpoint_is_not_probed_before_ready(home: Home, cluster: Cluster) -> None:
    first, rest = halves("vllm_ready.log", "Application startup complete.")
    curl(cluster, "000")
    cluster.set("85", "RUNNING")
    cluster.queue("85", "RUNNING", node="gpu07")
    path = cluster.output("85", first)
    add(home, Job("deploy", "85", host="c", last_status="RUNNING", fields={"endpoint": "http://0.0.0.0:9000"}))
    w, out = make_watcher(home)
    for _ in range(4):  # loading: a server that does not answer yet is no UNHEALTHY server
        w.cycle(everything=True)
    assert cluster.fakebin.calls("curl") == [] and [to for _, to, _ in said(out)] == ["LOADING"]
    with path.open("a") as f:
        f.write(rest)
    w.cycle(everything=True)
    (ready,) = [d for _, to, d in said(out) if to == "READY"]
    assert ready.startswith("http://gpu07:9000, ")  # the given endpoint wins over the log's :8000


def test_a_deployment_running_past_ready_within_says_not_ready_once_with_the_last_line(
        home: Home, cluster: Cluster) -> None:
    from datetime import timedelta

    from jobmon import clock
    from jobmon.rules import Book

    text = (LOGS / "vllm_never_ready.log").read_text()
    text = text[:text.index("slurmstepd: error:")]  # still running: the time limit has not come yet
    cluster.set("86", "RUNNING")
    cluster.queue("86", "RUNNING", node="gpu07")
    path = cluster.output("86", text)
    began = clock.stamp(clock.now() - timedelta(seconds=1900))  # its log's path known: read at the first poll
    add(home, Job("deploy", "86", host="c", last_status="RUNNING",
                  book=Book(running_at=began, captured={"stdout": str(path), "stderr": str(path)})))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    w.cycle(everything=True)
    assert [to for _, to, _ in said(out)] == ["LOADING", "NOT_READY"]
    (line,) = [e["detail"] for e in home.logged() if e["to"] == "NOT_READY"]  # whole: a printed line is cut
    assert re.fullmatch(r"no READY after 0:3[12]:\d\d running; last line: \(EngineCore_DP0 pid=3190\) INFO 05-06 "
                        r"14:22:16 \[shm_broadcast.py:466\] No available shared memory broadcast block found.*", line), line


def test_render_shows_the_first_check_and_the_one_that_reads_the_log_and_probes_health(home: Home) -> None:
    ran = jobmon("render", "--type", "deploy", "--id", "80", "--host", "c", *home.args())
    assert ran.code == 0, ran.err
    titles = [ln for ln in ran.lines() if ln.startswith("# ")]
    assert titles == ["# its first check", "# once it runs, with stderr, stdout, url, workdir kept, after READY"]
    first, later = ran.out.split("# once it runs")
    assert "scontrol -o show job" in first and "curl" not in first and "log|" not in first
    assert "tail -c +$((o + 1))" in later and "echo \"offset|80|$s\"" in later  # its log, from the last offset
    assert "curl -gs -o /dev/null --max-time 5 -w '\"'\"'%{http_code}'\"'\"' '\"'\"'<url>/health'\"'\"'" in later
    assert later.rstrip().endswith("} & wait;'")  # side by side: hung servers cost 5 s in all, not each
    bad = jobmon("render", "--type", "deploy", "--id", "80", "--host", "c", "--field", "endpoint=http://x/$(id)",
                 *home.args())
    assert bad.code == 2 and bad.err.startswith("jobmon: deploy: --field endpoint='http://x/$(id)' is not valid: ")


def test_ready_servers_are_probed_side_by_side_and_each_answer_is_its_own(home: Home, cluster: Cluster) -> None:
    from jobmon.rules import Book

    cluster.fakebin.add("curl", '#!/bin/sh\necho "curl $*" >>"$FAKE_LOG"\n'
                                'case "$*" in *:9001/*) printf 503 ;; *) printf 200 ;; esac\n')
    for job_id, port in (("87", 9000), ("88", 9001)):
        cluster.set(job_id, "RUNNING")
        path = cluster.output(job_id, "")
        add(home, Job("deploy", job_id, host="c", last_status="RUNNING", book=Book(
            seen=("READY",), captured={"url": f"http://gpu07:{port}", "stdout": str(path), "stderr": str(path)})))
    w, out = make_watcher(home)
    for _ in range(3):
        w.cycle(everything=True)
    assert len(cluster.fakebin.calls("curl")) == 6  # both, at each poll, in the one call per host
    assert [(e["id"], e["to"], e["detail"]) for e in events(out)] == [
        ("88", "UNHEALTHY", "3 failed probes in a row: HTTP 503")]


@pytest.mark.parametrize(("requeued", "truncated"), [
    (True, True),    # SLURM truncates a requeued job's output (its default --open-mode)
    (True, False),   # --open-mode=append: the new run's lines come after the old ones
    (False, True),   # the job runs on: a wrapper restarted the server, which wrote its log afresh
], ids=["requeued", "requeued-append", "restarted-in-place"])
def test_a_server_that_comes_up_again_says_loading_and_ready_again_where_it_runs(
        home: Home, cluster: Cluster, requeued: bool, truncated: bool) -> None:
    """A deployment that stops running is no longer ready, and so is one whose log is shorter
    than where the last read stopped: its next run's LOADING and READY (on the node it runs on
    now) are still to come. Past READY the log is not read, only watched for that."""
    text = (LOGS / "vllm_ready.log").read_text()
    curl(cluster, "200")
    cluster.set("89", "RUNNING")
    cluster.queue("89", "RUNNING", node="gpu07")
    path = cluster.output("89", text)
    add(home, Job("deploy", "89", host="c", last_status="RUNNING"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    w.cycle(everything=True)
    assert [to for _, to, _ in said(out)] == ["LOADING", "READY"]
    with path.open("a") as f:  # the same lines again, in the same run: nothing new to say, nothing read
        f.write(text)
    w.cycle(everything=True)
    assert said(out) == []
    expected = [("LOADING", "meta-llama/Llama-3.1-8B-Instruct"), ("READY", "http://gpu07:8000")]
    if requeued:
        cluster.set("89", "REQUEUED")
        cluster.queue("89", "PENDING", reason="BeginTime")
        w.cycle(everything=True)
        assert "READY" not in home.jobs()[0]["jobmon"].get("seen", [])  # pending: no server to send to
        cluster.set("89", "RUNNING")
        cluster.queue("89", "RUNNING", node="gpu09")
        expected = [("PENDING", "BeginTime"), ("RUNNING", ""), expected[0], ("READY", "http://gpu09:8000")]
    old = "" if truncated else path.read_text()
    path.write_text(old + text[: len(text) // 2])
    w.cycle(everything=True)
    path.write_text(old + text)
    w.cycle(everything=True)
    got = [(to, d.split(",")[0]) for _, to, d in said(out)]
    assert got == expected, got
