"""checkers.d/launcher.yaml on real NeMo-Run launcher logs (tests/fixtures/launcher/).

The logs are raw bytes as the launcher wrote them: ANSI colours and OSC-8 links, rich wrapping
(``Launched app:`` with its URL on the next line), tqdm bars as one physical line of ``\\r``
updates. Each test writes a log into a file in growing slices, the way the launcher appends to
it, and runs one watcher cycle after each slice; the events must not depend on where a slice
ends.
"""
from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path


from jobmon import config, rules
from jobmon.registry import Job, Registry
from jobmon.watch import Watcher
from conftest import Cluster, FIXTURES, Home, add, events, make_watcher

LOGS = FIXTURES / "launcher"
HOST = "login01"

OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.64 GiB. GPU 0 has a total capacity of "
       "79.19 GiB of which 2.87 GiB is free. Including non-PyTorch memory, this process has 76.31 GiB mem…")
IMAGE = "nvcr.io/nvidia/tensorrt-llm/release:1.3.0rc8"








def launcher_job(log: Path, job_id: str = "run1") -> Job:
    return Job("launcher", job_id, host=HOST, fields={"file": str(log)})


def fixture(name: str) -> bytes:
    return (LOGS / name).read_bytes()


def slices(data: bytes, n: int) -> list[int]:
    """Where n equal growing slices of the log end."""
    return [len(data) * (i + 1) // n for i in range(n)]


def after(data: bytes, needle: bytes, nth: int = 1) -> int:
    """The offset just past the end of the (physical) line holding the nth ``needle``."""
    at = -1
    for _ in range(nth):
        at = data.index(needle, at + 1)
    return data.index(b"\n", at) + 1


def feed(watcher: Watcher, out: io.StringIO, log: Path, data: bytes, cuts: list[int]) -> list[tuple]:
    """Write the log up to each cut, a cycle after each: (slice number, kind, from, to, detail)."""
    got = []
    for n, cut in enumerate(cuts, 1):
        log.write_bytes(data[:cut])
        watcher.cycle(everything=True)
        got += [(n, e["kind"], e["from"], e["to"], e["detail"]) for e in events(out)]
    return got


def book(home: Home) -> dict:
    (job,) = home.jobs()
    return job.get("jobmon", {})


def age_the_log(home: Home, seconds: float) -> None:
    """As if the log had last grown ``seconds`` ago (instead of waiting that long)."""
    reg = Registry(home.registry)
    old = (datetime.now() - timedelta(seconds=seconds)).strftime(rules.TIME_FORMAT)
    with reg.transaction() as entries:
        (job,) = entries
        entries[0] = Job.from_dict({**job.to_dict(), "jobmon": {**job.book.to_dict(), "grew_at": old}})


# ---------------------------------------------------------------- success


SUCCESS_IN_7 = [
    (1, "state", None, "STARTING", ""),
    (2, "event", "STARTING", "experiment", "cicd_1795922583001207361"),
    # slice 3 ends inside the wrapped URL line: nothing yet
    (4, "event", "STARTING", "slurm-job[4817233]", "4817233"),
    (4, "event", "STARTING", "container-import", IMAGE),
    (4, "event", "STARTING", "container-ready", IMAGE),
    (4, "state", "STARTING", "LAUNCHED", "slurm job 4817233"),
    (5, "event", "LAUNCHED", "calibration[3-8B_FP8_0/0]@50", "50% of 3-8B_FP8_0/0"),
    (6, "event", "LAUNCHED", "calibration[3-8B_FP8_0/0]@100", "100% of 3-8B_FP8_0/0"),
    (6, "event", "LAUNCHED", "export", "/scratchspace/exported_model"),
    (6, "state", "LAUNCHED", "SUCCEEDED", "slurm job 4817233"),
]


def test_success_log_in_seven_slices(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    data = fixture("success.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    cuts = slices(data, 7)
    assert after(data, b"Launched app") < cuts[2] < after(data, b"slurm_tunnel")  # slice 3 ends mid-URL
    assert feed(watcher, out, log, data, cuts) == SUCCESS_IN_7
    assert home.jobs() == []
    (record,) = home.history()
    assert (record["id"], record["last_status"], record["outcome"], record["detail"]) == (
        "run1", "SUCCEEDED", "success", "slurm job 4817233")


def test_calibration_is_reported_at_most_every_25_percent_in_order(home: Home, tmp_path: Path) -> None:
    # slices that end inside the one physical line of the calibration bar (64 \r updates)
    log = tmp_path / "launcher.log"
    data = fixture("success.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    start, end = data.index(b"0%|          | 0/64"), after(data, b"64/64")
    cuts = [after(data, b"slurm_tunnel")] + [start + (end - start) * i // 12 for i in range(1, 13)] + [len(data)]
    got = [e for e in feed(watcher, out, log, data, cuts) if e[3].startswith("calibration")]
    steps = [int(e[3].rsplit("@", 1)[1]) for e in got]
    assert steps == sorted(set(steps)) and all(s % 25 == 0 for s in steps)
    assert steps == [0, 25, 50, 75, 100]
    for (_, _, _, _, detail), step in zip(got, steps):
        percent = int(detail.split("%")[0])
        assert step <= percent < step + 25 and detail.endswith("% of 3-8B_FP8_0/0")


def test_slices_ending_inside_the_wrapped_launched_app_line(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    data = fixture("success.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    launched, url_end = after(data, b"Launched app"), after(data, b"slurm_tunnel")
    mid_url = data.index(b"4817233", launched) + 3  # "…/nemo_run/481" written, "7233" not yet
    mid_escape = data.index(b"\x1b[95m", launched) + 2  # inside the colour code before the id
    cuts = [launched - 40, launched, mid_escape, mid_url, url_end - 1, url_end, len(data)]
    got = feed(watcher, out, log, data, cuts)
    assert got == [
        (1, "event", None, "experiment", "cicd_1795922583001207361"),  # key events first, then the state
        (1, "state", None, "STARTING", ""),
        (6, "event", "STARTING", "slurm-job[4817233]", "4817233"),
        (6, "state", "STARTING", "LAUNCHED", "slurm job 4817233"),
        (7, "event", "LAUNCHED", "container-import", IMAGE),
        (7, "event", "LAUNCHED", "container-ready", IMAGE),
        (7, "event", "LAUNCHED", "calibration[3-8B_FP8_0/0]@100", "100% of 3-8B_FP8_0/0"),
        (7, "event", "LAUNCHED", "export", "/scratchspace/exported_model"),
        (7, "state", "LAUNCHED", "SUCCEEDED", "slurm job 4817233"),
    ]


def test_a_single_jobs_success_is_never_hidden_in_a_digest(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    log.write_bytes(fixture("success.log"))
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    finals = [(e["id"], e["to"]) for e in events(out) if e["kind"] == "state" and e["terminal"]]
    assert finals == [("run1", "SUCCEEDED")]


# ---------------------------------------------------------------- failures


def test_failed_oom_log_names_the_cuda_oom_not_the_wrapper(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    data = fixture("failed_oom.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    got = feed(watcher, out, log, data, slices(data, 7))
    assert got[:-1] == [
        (1, "state", None, "STARTING", ""),
        (2, "event", "STARTING", "experiment", "cicd_1795922512156067114"),
        (3, "event", "STARTING", "slurm-job[4817305]", "4817305"),
        (3, "state", "STARTING", "LAUNCHED", "slurm job 4817305"),
        (4, "event", "LAUNCHED", "container-import", IMAGE),
        (4, "event", "LAUNCHED", "container-ready", IMAGE),
        (4, "event", "LAUNCHED", "calibration[2B_NVFP4_0/0]@0", "0% of 2B_NVFP4_0/0"),
    ]
    (n, kind, before, to, detail) = got[-1]
    assert (n, kind, before, to) == (6, "state", "LAUNCHED", "FAILED")
    # the 400-character JSON line clips the detail; the history record has all of it
    assert detail.startswith("slurm job 4817305; torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.64 GiB.")
    assert "AssertionError" not in detail and "UserWarning" not in detail and "batch size" not in detail
    (record,) = home.history()
    assert (record["last_status"], record["outcome"]) == ("FAILED", "failure")
    assert record["detail"] == f"slurm job 4817305; {OOM} (log: {log})"


def test_failed_oom_text_line_ends_with_the_log(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    log.write_bytes(fixture("failed_oom.log"))
    add(home, launcher_job(log))
    watcher, out = make_watcher(home, as_json=False)
    watcher.cycle(everything=True)
    (final,) = [ln for ln in out.getvalue().splitlines() if "-> FAILED" in ln]
    assert final[9:] == f"launcher run1@{HOST}: NEW -> FAILED (slurm job 4817305; {OOM} (log: {log}))"


def test_failed_oom_json_event_keeps_the_log_path(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "l.log"
    log.write_bytes(fixture("failed_oom.log"))
    add(home, launcher_job(log, "r"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    (final,) = [e for e in events(out) if e["kind"] == "state"]
    assert final["detail"].endswith(f"(log: {log})")


def test_failed_pyxis_log_is_the_disk_quota(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    data = fixture("failed_pyxis.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    assert feed(watcher, out, log, data, slices(data, 7)) == [
        (1, "state", None, "STARTING", ""),
        (3, "event", "STARTING", "experiment", "cicd_1795922373524679867"),
        (4, "event", "STARTING", "slurm-job[4817412]", "4817412"),
        (4, "state", "STARTING", "LAUNCHED", "slurm job 4817412"),
        (5, "event", "LAUNCHED", "container-import", IMAGE),  # and never container-ready
        (6, "state", "LAUNCHED", "FAILED", f"slurm job 4817412; disk full or over quota: Disk quota exceeded (log: {log})"),
    ]


def test_timeout_log_is_the_time_limit(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    data = fixture("timeout.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    assert feed(watcher, out, log, data, slices(data, 7)) == [
        (1, "state", None, "STARTING", ""),
        (2, "event", "STARTING", "experiment", "cicd_1795922533183558314"),
        (3, "event", "STARTING", "slurm-job[4817520]", "4817520"),
        (3, "state", "STARTING", "LAUNCHED", "slurm job 4817520"),
        (4, "event", "LAUNCHED", "container-import", IMAGE),
        (4, "event", "LAUNCHED", "container-ready", IMAGE),
        (4, "event", "LAUNCHED", "calibration[INT4_AWQ_0/0]@0", "0% of INT4_AWQ_0/0"),
        (5, "event", "LAUNCHED", "calibration[INT4_AWQ_0/0]@25", "25% of INT4_AWQ_0/0"),
        (6, "event", "LAUNCHED", "calibration[INT4_AWQ_0/0]@50", "50% of INT4_AWQ_0/0"),
        (7, "state", "LAUNCHED", "FAILED", "slurm job 4817520; STEP 4817520.0 ON gpu-a017 CANCELLED AT "
                                           f"2026-11-29T03:52:25 DUE TO TIME LIMIT (log: {log})"),
    ]


def test_unexpected_error_log_is_an_error_with_the_sbatch_cause(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    data = fixture("unexpected_error.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    assert feed(watcher, out, log, data, slices(data, 7)) == [
        (1, "state", None, "STARTING", ""),
        (4, "event", "STARTING", "experiment", "cicd_1795922580714516708"),
        (7, "state", "STARTING", "ERROR", "sbatch: error: Batch job submission failed: Invalid account or "
                                         f"account/partition combination specified (log: {log})"),
    ]
    (record,) = home.history()
    assert (record["last_status"], record["outcome"]) == ("ERROR", "failure")


# ---------------------------------------------------------------- two Slurm jobs, no final line


def test_wrapped_launch_is_done_only_when_both_slurm_jobs_are(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    data = fixture("wrapped_launch.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    first_done = after(data, b"finished: SUCCEEDED")
    got = feed(watcher, out, log, data, [after(data, b"slurm_tunnel", 2), first_done])
    assert got == [
        (1, "event", None, "experiment", "cicd_1795922620486590175"),
        (1, "event", None, "slurm-job[4817602]", "4817602"),  # each Slurm job of the pipeline is said
        (1, "event", None, "slurm-job[4817603]", "4817603"),
        (1, "state", None, "LAUNCHED", "slurm job 4817603"),
        (2, "event", "LAUNCHED", "calibration[P8_NVFP4_0/0]@100", "100% of P8_NVFP4_0/0"),
        (2, "event", "LAUNCHED", "export", "/scratchspace/exported_model_fp8"),
    ]
    # "Job 4817602 finished: SUCCEEDED" is in, 4817603 still runs: not terminal
    assert home.jobs()[0]["last_status"] == "LAUNCHED"
    assert book(home)["parts"] == {"4817602": "SUCCEEDED", "4817603": "LAUNCHED"}
    got = feed(watcher, out, log, data, [after(data, b"finished: SUCCEEDED", 2) - 1, len(data)])
    assert got == [
        (1, "event", "LAUNCHED", "calibration[P8_NVFP4_1/0]@100", "100% of P8_NVFP4_1/0"),
        (2, "state", "LAUNCHED", "SUCCEEDED", "slurm job 4817603"),
    ]
    (record,) = home.history()
    assert record["last_status"] == "SUCCEEDED"


def test_no_final_line_stays_launched_then_slurm_is_asked(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    data = fixture("no_final_line.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    got = feed(watcher, out, log, data, slices(data, 7) + [len(data)] * 3)
    assert got == [
        (1, "state", None, "STARTING", ""),
        (3, "event", "STARTING", "experiment", "cicd_1795922549016267773"),
        (5, "event", "STARTING", "slurm-job[4817561]", "4817561"),
        (5, "state", "STARTING", "LAUNCHED", "slurm job 4817561"),
        (6, "event", "LAUNCHED", "container-import", IMAGE),
        (6, "event", "LAUNCHED", "container-ready", IMAGE),
        (6, "event", "LAUNCHED", "calibration[3-8B_FP8_0/0]@0", "0% of 3-8B_FP8_0/0"),
        (7, "event", "LAUNCHED", "calibration[3-8B_FP8_0/0]@50", "50% of 3-8B_FP8_0/0"),
    ]
    assert home.jobs()[0]["last_status"] == "LAUNCHED"
    assert book(home)["offset"] == data.rindex(b"\r") + 1  # the unterminated bar update is not read yet
    assert cluster.ssh_calls() == []  # the log is fresh: SLURM is not asked
    # quiet for less than delegate.after (600 s): still not asked
    age_the_log(home, 500)
    watcher.cycle(everything=True)
    assert events(out) == [] and cluster.ssh_calls() == []
    # quiet for longer, the Slurm job still running: asked, nothing changes
    cluster.set("4817561", "RUNNING")
    age_the_log(home, 700)
    watcher.cycle(everything=True)
    assert events(out) == []
    assert cluster.check_calls() == ["sacct -j 4817561 -X -n -P --format=JobID,JobIDRaw,State,ExitCode,DerivedExitCode,Elapsed,Submit"]
    assert [c.split()[1] for c in cluster.ssh_calls()] == [HOST]
    assert home.jobs()[0]["last_status"] == "LAUNCHED"
    # SLURM says it completed: the launcher job ends as the delegate says
    cluster.set("4817561", "COMPLETED")
    watcher.cycle(everything=True)
    (final,) = events(out)
    assert (final["kind"], final["from"], final["to"], final["terminal"], final["outcome"]) == (
        "state", "LAUNCHED", "SUCCEEDED", True, "success")
    assert final["detail"] == f"slurm 4817561@{HOST} says COMPLETED"  # no MaxRSS: sacct gave none
    assert home.jobs() == [] and home.history()[0]["last_status"] == "SUCCEEDED"


def test_no_final_line_and_slurm_says_failed(home: Home, cluster: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    log.write_bytes(fixture("no_final_line.log"))
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    events(out)
    cluster.set("4817561", "TIMEOUT", "0:0", "00:30:00")
    slurm_out = cluster.output("4817561", "slurmstepd: error: *** JOB 4817561 ON gpu-a017 CANCELLED AT "
                                          "2026-11-29T03:52:25 DUE TO TIME LIMIT ***\n")
    age_the_log(home, 700)
    watcher.cycle(everything=True)
    (final,) = events(out)
    assert (final["to"], final["outcome"]) == ("FAILED", "failure")
    # SLURM gave the verdict, so the slurm type's on_failure reads that job's own output
    # (the 400-character line shortens the middle of a long detail: history keeps all of it)
    assert final["detail"].startswith(f"slurm 4817561@{HOST} says TIMEOUT; JOB 4817561 ON gpu-a017 CANCELLED AT "
                                      f"2026-11-29T03:52:25 DUE TO TIME LIMIT (l")
    assert final["detail"].endswith(f"{slurm_out.name})")
    assert home.history()[0]["detail"] == (f"slurm 4817561@{HOST} says TIMEOUT; JOB 4817561 ON gpu-a017 CANCELLED "
                                           f"AT 2026-11-29T03:52:25 DUE TO TIME LIMIT (log: {slurm_out})")


def test_a_quiet_two_job_log_asks_slurm_about_the_job_still_running(home: Home, cluster: Cluster,
                                                                     tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    data = fixture("wrapped_launch.log")
    log.write_bytes(data[:after(data, b"finished: SUCCEEDED")])  # the launcher dies here
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    events(out)
    cluster.set("4817602", "COMPLETED")
    cluster.set("4817603", "RUNNING")
    age_the_log(home, 700)
    watcher.cycle(everything=True)
    assert cluster.check_calls() == ["sacct -j 4817603 -X -n -P --format=JobID,JobIDRaw,State,ExitCode,DerivedExitCode,Elapsed,Submit"]
    assert events(out) == []
    assert home.jobs()[0]["last_status"] == "LAUNCHED"


# ---------------------------------------------------------------- the file itself


def test_a_missing_log_is_not_yet(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    watcher.cycle(everything=True)
    assert events(out) == []
    (job,) = home.jobs()
    assert job["last_status"] == "" and "missing_since" in job["jobmon"]
    assert "errors" not in job["jobmon"] and "offset" not in job["jobmon"]
    log.write_bytes(fixture("success.log")[:after(fixture("success.log"), b"Entering Experiment")])
    watcher.cycle(everything=True)
    assert [(e["kind"], e["to"]) for e in events(out)] == [("event", "experiment"), ("state", "STARTING")]
    assert "missing_since" not in book(home)


def test_a_rotated_log_that_shrank_is_read_again_from_the_start(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    success, pyxis = fixture("success.log"), fixture("failed_pyxis.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    first = after(success, b"Quantized model exported")
    got = feed(watcher, out, log, success, [after(success, b"slurm_tunnel"), first])
    assert [e[3] for e in got] == ["experiment", "slurm-job[4817233]", "LAUNCHED", "container-import", "container-ready",
                                   "calibration[3-8B_FP8_0/0]@100", "export"]
    assert book(home)["offset"] == first
    # a new run writes a new, shorter log in its place: its final line lies before the old offset
    assert len(pyxis) < first
    log.write_bytes(pyxis)
    watcher.cycle(everything=True)
    got = [(e["kind"], e["from"], e["to"], e["detail"]) for e in events(out)]
    assert got == [("event", "LAUNCHED", "slurm-job[4817412]", "4817412"),  # the new run's Slurm job
                   ("state", "LAUNCHED", "FAILED",
                    f"slurm job 4817412; disk full or over quota: Disk quota exceeded (log: {log})")]
    (record,) = home.history()
    assert record["last_status"] == "FAILED"


def test_a_truncated_log_forgets_the_old_parts(home: Home, tmp_path: Path) -> None:
    # The same launcher log truncated and written again (a relaunch with `>`).
    log = tmp_path / "launcher.log"
    data = fixture("success.log")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    feed(watcher, out, log, data, [after(data, b"Enable KV cache quantization")])
    assert book(home)["parts"] == {"4817233": "LAUNCHED"}
    head = after(data, b"Entering Experiment")
    got = feed(watcher, out, log, data, [head, len(data)])
    assert got == [
        (1, "state", "LAUNCHED", "STARTING", ""),  # read from the start: no Slurm job launched yet
        (2, "event", "STARTING", "calibration[3-8B_FP8_0/0]@100", "100% of 3-8B_FP8_0/0"),
        (2, "event", "STARTING", "export", "/scratchspace/exported_model"),
        (2, "state", "STARTING", "SUCCEEDED", "slurm job 4817233"),
    ]


def test_twenty_megabytes_at_once_cost_one_bounded_read(home: Home, tmp_path: Path) -> None:
    log = tmp_path / "launcher.log"
    data = fixture("success.log")
    add(home, launcher_job(log))
    cfg = config.load(env={})
    limit = cfg.settings.max_read
    watcher, out = make_watcher(home, cfg)
    # the head names the experiment and the Slurm job; the import starts just before the last
    # max_read bytes and ends just inside them; the tail exports, with no final line yet
    head = data[:after(data, b"slurm_tunnel")]
    imported = data.index(b"3-8B_FP8_0/0 pyxis: importing")
    importing = data[imported:after(data, b"pyxis: importing")]
    ready = data[after(data, b"pyxis: importing"):after(data, b"pyxis: imported")]
    tail = data[data.rindex(b"\n", 0, data.index(b"Quantized model exported")) + 1:data.index(b"<REPORT>PASS")]
    tail = tail[:tail.rindex(b"\n") + 1]
    filler = b"3-8B_FP8_0/0 " + b"." * 66 + b"\n"
    before_window = 20_000_000 - limit
    body = head + filler * ((before_window - len(head) - len(importing)) // len(filler))
    body += b"#" * (before_window - len(body) - len(importing) - 1) + b"\n" + importing
    assert len(body) == before_window  # the import line ends where the last max_read bytes begin
    after_ready = filler * ((limit - len(ready) - len(tail)) // len(filler))
    body += ready + after_ready + b"\n" * (limit - len(ready) - len(after_ready) - len(tail)) + tail
    assert len(body) == 20_000_000
    log.write_bytes(body)
    watcher.cycle(everything=True)
    got = [(e["kind"], e["from"], e["to"], e["detail"]) for e in events(out)]
    assert got == [
        ("event", None, "container-ready", IMAGE),
        ("event", None, "export", "/scratchspace/exported_model"),
        ("state", None, "STARTING", ""),  # the Launched app line was in the skipped head
    ]
    assert book(home)["offset"] == len(body)
    assert set(book(home)["seen"]) == {"container-ready", "export"}  # no experiment, no slurm-job, no import
    # the next read starts where this one ended
    with log.open("ab") as f:
        f.write(data[data.index(b"<REPORT>PASS") - len(b"3-8B_FP8_0/0 "):])
    watcher.cycle(everything=True)
    got = [(e["kind"], e["from"], e["to"], e["detail"]) for e in events(out)]
    assert got == [("state", "STARTING", "SUCCEEDED", "slurm job 4817233")]


def test_the_skip_warning_says_how_much_was_read(home: Home, tmp_path: Path) -> None:
    from loguru import logger

    conf = tmp_path / "small.yaml"
    conf.write_text("settings:\n  max_read: 65536\n")
    log = tmp_path / "launcher.log"
    log.write_bytes(b"x" * 99 + b"\n" + b"." * 200_000 + b"\n")
    add(home, launcher_job(log))
    watcher, _ = make_watcher(home, config.load(cli_config=str(conf), env={}))
    said: list[str] = []
    sink = logger.add(lambda m: said.append(m.record["message"]), level="WARNING")
    try:
        watcher.cycle(everything=True)
    finally:
        logger.remove(sink)
    size = log.stat().st_size
    assert said == [f"{log}: {size - 65536} bytes arrived at once; read only the last 65536"]


def test_a_final_line_that_runs_into_a_task_line_is_still_read() -> None:
    from jobmon import rules

    launcher = config.load(env={}).types["launcher"]
    row, parts = rules.parse_log("3-8B_FP8_0/0 calibrating batch of 16 samJob 9 finished: SUCCEEDED\n", launcher, {})
    assert (row.state, parts) == ("SUCCEEDED", {"9": "SUCCEEDED"})


# ---------------------------------------------------------------- stalls

def test_a_calibration_bar_that_stops_is_stalled_though_other_lines_come(home: Home, cluster: Cluster, tmp_path: Path,
                                                                          monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from jobmon import clock

    now = [clock.now()]
    monkeypatch.setattr(clock, "now", lambda: now[0])  # this machine's clock: the log is read here
    log = tmp_path / "launcher.log"
    data = fixture("no_final_line.log")  # a real log whose calibration bar stands at 50 %
    cut = data.rindex(b"\r") + 1
    log.write_bytes(data[:cut])
    cluster.set("4817561", "RUNNING")  # asked once the log is quiet (delegate.after): still running
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    assert home.jobs()[0]["last_status"] == "LAUNCHED"
    events(out)
    for _ in range(2):  # another rank keeps writing; the bar does not move for 2000 s
        now[0] += timedelta(seconds=1000)
        with log.open("ab") as f:
            f.write(b"[rank3]: NCCL INFO Channel 00/0 : 3[3] -> 0[0] via P2P/IPC\n")
        watcher.cycle(everything=True)
    (stalled,) = [e for e in events(out) if e["to"] in (rules.STALLED, rules.RESUMED)]
    bar = rules.clean(data[:cut].decode()).splitlines()[-1].strip()
    assert (stalled["kind"], stalled["to"], stalled["terminal"]) == ("event", "STALLED", False)
    assert stalled["detail"] == f"no progress for 0:33:20; the bar stands at: {bar}"
    now[0] += timedelta(seconds=60)
    with log.open("ab") as f:  # the bar moves on
        f.write(bar.replace("37/64", "38/64").encode() + b"\r")
    watcher.cycle(everything=True)
    assert [(e["to"], e["detail"]) for e in events(out) if e["kind"] == "event" and not e["to"].startswith("calibration")] == [
        ("RESUMED", "moving again after 0:34:20 without progress")]
    assert home.jobs()[0]["last_status"] == "LAUNCHED"


def test_a_log_that_keeps_growing_is_never_stalled(home: Home, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from jobmon import clock

    now = [clock.now()]
    monkeypatch.setattr(clock, "now", lambda: now[0])
    log = tmp_path / "launcher.log"
    log.write_bytes(b"Launched app: slurm_tunnel://nemo_run/77\n")
    add(home, launcher_job(log))
    watcher, out = make_watcher(home)
    for n in range(5):
        now[0] += timedelta(seconds=1000)
        with log.open("ab") as f:
            f.write(b"step %d\n" % n)
        watcher.cycle(everything=True)
    assert [e["to"] for e in events(out) if e["to"] in (rules.STALLED, rules.RESUMED)] == []
