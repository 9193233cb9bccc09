"""checkers.d/nel.yaml on the real captured outputs of nel 0.2.6 (tests/fixtures/nel/).

The parsing tests feed the byte-exact ``nel status … --json`` captures to the rules; the
watcher tests run the packaged type against a fake ``nel`` first on PATH that prints those
same captures (stdout and stderr), so the check command, fail_if, on_complete and on_failure
run exactly as in production.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from jobmon import config, rules
from jobmon.registry import Job
from conftest import FIXTURES, Cluster, FakeBin, Home, add, events, jobmon, make_watcher, summary

NEL = FIXTURES / "nel"

# Invocations of the captures, and the state nel shows for each (fixtures/nel/README.md).
LOCAL_MIXED = {
    "3f9c2a1b7d4e8f60": "RUNNING",    # .0 running, .1 pending
    "b7e41d09c2a35f18": "SUCCESS",
    "5d2a8e7f1c9b0346": "FAILED",
    "e1c07b5a93d24f8e": "KILLED",     # data.killed (nel kill)
    "9a4f3e2d1c0b8a76": "KILLED",     # interrupted, exit 143
    "c4d5e6f708192a3b": "PENDING",    # output_dir missing
    "ffffffffffffffff": "NOT_FOUND",  # not in nel's DB
}
SLURM_MIXED = {
    "7e8f9a0b1c2d3e4f": "RUNNING",    # .0 RUNNING 412001, .1 PENDING 412002
    "0a1b2c3d4e5f6071": "SUCCESS",
    "1b2c3d4e5f607182": "KILLED",     # sacct "CANCELLED by 1000"
    "2c3d4e5f60718293": "FAILED",
    "3d4e5f6071829304": "PENDING",    # sacct TIMEOUT: nel waits for an autoresume
    "4e5f607182930415": "FAILED",     # sacct OUT_OF_MEMORY
    "5f60718293041526": "FAILED",     # absent from sacct
    "8293041526374859": "RUNNING",    # autoresumed as 412020
    "6071829304152637": "FAILED",     # host unreachable: nel says failed (stderr says why)
}

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"

# A fake nel 0.2.6: `status … --json` prints the capture named by $FAKE_NEL_STATUS (a fixture
# name, or an absolute path) on stdout and
# its .stderr.txt on stderr; `info ID --copy-artifacts DIR` copies the results.yml fixture to
# DIR/<job>/artifacts/ (where nel puts it); `info ID --copy-logs DIR` writes a client log with a
# CUDA OOM traceback under DIR/<job>/logs/, or copies there the file $FAKE_NEL_LOGS names (as
# slurm-$FAKE_NEL_SLURM_JOB.log, as nel's sbatch names it); `ls runs --since 1d` prints that capture. Every call
# is logged to $FAKE_LOG, with the environment the check sets for nel on a second line.
FAKE_NEL = r"""#!/usr/bin/env bash
echo "nel $*" >> "${FAKE_LOG:-/dev/null}"
echo "nel-env NEMO_EVALUATOR_DISABLE_COLOR=${NEMO_EVALUATOR_DISABLE_COLOR:-} LOG_LEVEL=${LOG_LEVEL:-}" >> "${FAKE_LOG:-/dev/null}"
F=%(fixtures)s
case "$1" in
  status)
    name="${FAKE_NEL_STATUS:?which capture}"
    case "$name" in /*) ;; *) name="$F/$name" ;; esac
    cat "$name"
    # FAKE_NEL_UNREACHABLE=<inv>: only a call that asks about that invocation meets the dead
    # cluster (and prints the capture's ssh errors), as the real nel does.
    if [ -z "${FAKE_NEL_UNREACHABLE:-}" ] || [[ " $* " == *" $FAKE_NEL_UNREACHABLE "* ]]; then
      [ -f "${name%%.*}.stderr.txt" ] && cat "${name%%.*}.stderr.txt" >&2
    fi
    exit "${FAKE_NEL_EXIT:-0}" ;;
  info)
    echo "nemo_evaluator_launcher: 0.2.6"
    id="$2"; job="$id"
    case "$id" in *.*) ;; *) job="$id.0" ;; esac
    case "$3" in
      --copy-artifacts)
        mkdir -p "$4/$job/artifacts"
        cp "$F/results_mmlu_pro.synthesized.yml" "$4/$job/artifacts/results.yml" ;;
      --copy-logs)
        mkdir -p "$4/$job/logs"
        if [ -n "${FAKE_NEL_LOGS:-}" ]; then
          cp "$FAKE_NEL_LOGS" "$4/$job/logs/slurm-${FAKE_NEL_SLURM_JOB:?}.log"; exit 0
        fi
        cat > "$4/$job/logs/client_stdout.log" <<'EOF'
Loading model
Traceback (most recent call last):
  File "/opt/eval/run.py", line 12, in <module>
    main()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB
EOF
        ;;
    esac ;;
  ls)
    [ "$*" = "ls runs --since 1d" ] || { echo "unexpected: nel $*" >&2; exit 2; }
    cat "$F/ls_runs_since_1d.txt"; cat "$F/ls_runs_since_1d.stderr.txt" >&2 ;;
  *) echo "unexpected: nel $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def nel(fakebin: FakeBin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    fakebin.add("nel", FAKE_NEL % {"fixtures": str(NEL)})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # on_failure copies logs there
    for var in ("NEMO_EVALUATOR_DISABLE_COLOR", "LOG_LEVEL", "FAKE_NEL_EXIT", "FAKE_NEL_LOGS", "FAKE_NEL_SLURM_JOB"):
        monkeypatch.delenv(var, raising=False)
    return fakebin


def capture(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """What the fake nel prints for `nel status`."""
    assert (NEL / name).is_file()  # an absolute path stays itself
    monkeypatch.setenv("FAKE_NEL_STATUS", name)


def nel_type() -> config.JobType:
    return config.load(env={}).types["nel"]








def status_calls(fakebin: FakeBin) -> list[str]:
    return fakebin.calls("nel status")


# ---------------------------------------------------------------- the rules on the captures


def test_every_local_invocation_gets_the_state_nel_shows() -> None:
    text = (NEL / "status_json_local_mixed.json").read_text()
    rows = rules.parse_batch(text, nel_type(), LOCAL_MIXED)
    assert {i: r.state for i, r in rows.items()} == LOCAL_MIXED
    jtype = nel_type()
    assert {i: jtype.category(r.state) for i, r in rows.items()} == {
        "3f9c2a1b7d4e8f60": "running", "b7e41d09c2a35f18": "success", "5d2a8e7f1c9b0346": "failure",
        "e1c07b5a93d24f8e": "failure", "9a4f3e2d1c0b8a76": "failure", "c4d5e6f708192a3b": "pending",
        "ffffffffffffffff": "missing"}
    # the 2-job invocation is running because its .0 is: the row and its groups are .0's
    assert rows["3f9c2a1b7d4e8f60"].groups["job"] == "3f9c2a1b7d4e8f60.0"
    assert rows["b7e41d09c2a35f18"].groups == {
        "job": "b7e41d09c2a35f18.0", "slurm_job": "", "slurm_host": "", "error": "", "state": "success", "requests": "12032",
        "output_dir": "/tmp/nel-scratch/runs/local/20261129_011620-b7e41d09c2a35f18/mmlu_pro.0"}


def test_every_slurm_invocation_gets_the_state_nel_shows() -> None:
    text = (NEL / "status_json_slurm_mixed.json").read_text()
    rows = rules.parse_batch(text, nel_type(), SLURM_MIXED)
    assert {i: r.state for i, r in rows.items()} == SLURM_MIXED
    assert {i: r.groups["slurm_job"] for i, r in rows.items()} == {
        "7e8f9a0b1c2d3e4f": "412001", "0a1b2c3d4e5f6071": "412010", "1b2c3d4e5f607182": "412011",
        "2c3d4e5f60718293": "412012", "3d4e5f6071829304": "412013", "4e5f607182930415": "412014",
        "5f60718293041526": "412015", "8293041526374859": "412016", "6071829304152637": "412017"}


def test_a_job_is_registered_by_its_job_id() -> None:
    jtype = nel_type()
    # asked for by job id: nel answers with the job rows only
    rows = rules.parse_batch((NEL / "status_json_job_ids.json").read_text(), jtype,
                             ["3f9c2a1b7d4e8f60.0", "3f9c2a1b7d4e8f60.1"])
    assert {i: r.state for i, r in rows.items()} == {"3f9c2a1b7d4e8f60.0": "RUNNING", "3f9c2a1b7d4e8f60.1": "PENDING"}
    # a job id also finds its row in a batch that asked for whole invocations
    rows = rules.parse_batch((NEL / "status_json_local_mixed.json").read_text(), jtype,
                             ["3f9c2a1b7d4e8f60.1", "b7e41d09c2a35f18.0", "5d2a8e7f1c9b0346.0"])
    assert {i: r.state for i, r in rows.items()} == {
        "3f9c2a1b7d4e8f60.1": "PENDING", "b7e41d09c2a35f18.0": "SUCCESS", "5d2a8e7f1c9b0346.0": "FAILED"}
    slurm = rules.parse_batch((NEL / "status_json_slurm_mixed.json").read_text(), jtype, ["7e8f9a0b1c2d3e4f.1"])
    assert slurm["7e8f9a0b1c2d3e4f.1"].state == "PENDING"
    assert slurm["7e8f9a0b1c2d3e4f.1"].groups["slurm_job"] == "412002"


def test_an_unknown_executor_is_an_error_with_nels_reason() -> None:
    jtype = nel_type()
    rows = rules.parse_batch((NEL / "status_json_error_executor.json").read_text(), jtype,
                             ["b7e41d09c2a35f18", "ab12cd34ef567890", "ab12cd34ef567890.0"])
    assert {i: (r.state, jtype.category(r.state)) for i, r in rows.items()} == {
        "b7e41d09c2a35f18": ("SUCCESS", "success"), "ab12cd34ef567890": ("ERROR", "failure"),
        "ab12cd34ef567890.0": ("ERROR", "failure")}
    assert rows["ab12cd34ef567890"].groups["error"] == (
        "Executor gitlab not found. Available executors: ['lepton', 'local', 'slurm']")


def test_unknown_ids_are_the_missing_category() -> None:
    jtype = nel_type()
    rows = rules.parse_batch((NEL / "status_json_unknown_id.json").read_text(), jtype,
                             ["ffffffffffffffff", "ffffffffffffffff.0"])
    assert {i: (r.state, jtype.category(r.state)) for i, r in rows.items()} == {
        "ffffffffffffffff": ("NOT_FOUND", "missing"), "ffffffffffffffff.0": ("NOT_FOUND", "missing")}


def test_an_invocation_and_one_of_its_jobs_both_registered_both_get_rows() -> None:
    # What `nel status 3f9c2a1b7d4e8f60 3f9c2a1b7d4e8f60.0 --json` prints: the invocation's
    # rows, then the job's row again (both real captures).
    rows = json.loads((NEL / "status_json_invocation_2jobs.json").read_text())
    rows += json.loads((NEL / "status_json_job_ids.json").read_text())[:1]
    got = rules.parse_batch(json.dumps(rows), nel_type(), ["3f9c2a1b7d4e8f60", "3f9c2a1b7d4e8f60.0"])
    assert {i: r.state for i, r in got.items()} == {"3f9c2a1b7d4e8f60": "RUNNING", "3f9c2a1b7d4e8f60.0": "RUNNING"}


# ---------------------------------------------------------------- the watcher against a fake nel


def test_one_nel_status_call_for_every_registered_invocation(home: Home, nel: FakeBin,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, "status_json_local_mixed.json")
    ids = ["3f9c2a1b7d4e8f60", "c4d5e6f708192a3b", "e1c07b5a93d24f8e", "ffffffffffffffff"]
    add(home, *(Job("nel", i) for i in ids))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    assert status_calls(nel) == [f"nel status {' '.join(ids)} --json"]
    assert nel.calls("nel-env")[0] == "nel-env NEMO_EVALUATOR_DISABLE_COLOR=1 LOG_LEVEL=WARNING"
    got = [(e["kind"], e["id"], e["from"], e["to"], e["outcome"]) for e in events(out)]
    assert got == [
        ("state", "3f9c2a1b7d4e8f60", None, "RUNNING", None),
        ("state", "c4d5e6f708192a3b", None, "PENDING", None),
        ("state", "e1c07b5a93d24f8e", None, "KILLED", "failure"),
    ]
    # the killed one went to history (after its logs were fetched); the unknown one is "not yet"
    assert [c for c in nel.calls("nel info")] == [
        f"nel info e1c07b5a93d24f8e --copy-logs {home.root.parent / 'cache' / 'jobmon' / 'nel' / 'e1c07b5a93d24f8e'}"]
    assert {j["id"]: j["last_status"] for j in home.jobs()} == {
        "3f9c2a1b7d4e8f60": "RUNNING", "c4d5e6f708192a3b": "PENDING", "ffffffffffffffff": ""}
    assert [r["id"] for r in home.history()] == ["e1c07b5a93d24f8e"]


def test_an_unknown_id_is_not_yet_never_an_event(home: Home, nel: FakeBin, monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, "status_json_unknown_id.json")
    add(home, Job("nel", "ffffffffffffffff"), Job("nel", "ffffffffffffffff.0"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    watcher.cycle(everything=True)
    assert events(out) == []
    assert len(status_calls(nel)) == 2
    for job in home.jobs():
        assert job["last_status"] == ""
        assert "missing_since" in job["jobmon"] and "errors" not in job["jobmon"]


def test_an_unreachable_cluster_is_a_failed_check_not_a_failed_job(home: Home, nel: FakeBin,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # nel says "failed" (exit 0); only its stderr says the ssh master connection failed.
    capture(monkeypatch, "status_json_slurm_unreachable.json")
    add(home, Job("nel", "6071829304152637", last_status="RUNNING"))
    watcher, out = make_watcher(home)
    why = "check says: ssh: Could not resolve hostname downhost: Name or service not known"
    for n in (1, 2):
        watcher.cycle(everything=True)
        assert events(out) == []
        (job,) = home.jobs()
        assert (job["last_status"], job["jobmon"]["errors"], job["jobmon"]["last_error"]) == ("RUNNING", n, why)
    for _ in range(4):
        watcher.cycle(everything=True)
    got = [(e["kind"], e["host"], e["to"], e["terminal"], e["outcome"], e["detail"], e["groups"]) for e in events(out)]
    assert got == [("event", "", "UNREACHABLE", False, None, f"1 nel job: {why}",  # once, after unreachable_after
                    [{"type": "nel", "ids": ["6071829304152637"], "host": "", "to": "UNREACHABLE"}])]
    (job,) = home.jobs()
    assert (job["last_status"], job["jobmon"]["errors"], job["jobmon"]["unreachable"]) == ("RUNNING", 6, True)
    assert home.history() == [] and nel.calls("nel info") == []  # no on_failure: nothing failed
    assert len(status_calls(nel)) == 6


def test_one_unreachable_cluster_does_not_hide_the_other_invocations(home: Home, nel: FakeBin,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, "status_json_slurm_mixed.json")
    monkeypatch.setenv("FAKE_NEL_UNREACHABLE", "6071829304152637")
    add(home, Job("nel", "7e8f9a0b1c2d3e4f"), Job("nel", "6071829304152637", last_status="RUNNING"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    assert [(e["id"], e["to"]) for e in events(out)] == [("7e8f9a0b1c2d3e4f", "RUNNING")]
    assert {j["id"]: j["last_status"] for j in home.jobs()} == {
        "7e8f9a0b1c2d3e4f": "RUNNING", "6071829304152637": "RUNNING"}
    assert {j["id"]: j.get("jobmon", {}).get("errors", 0) for j in home.jobs()} == {
        "7e8f9a0b1c2d3e4f": 0, "6071829304152637": 1}
    assert len(status_calls(nel)) == 3  # the batch, then each invocation alone


def test_output_that_is_not_json_is_a_failed_check(home: Home, nel: FakeBin, monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. an nel that ignored --json and printed its table
    capture(monkeypatch, "status_table_invocation_2jobs.txt")
    add(home, Job("nel", "3f9c2a1b7d4e8f60", last_status="PENDING"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    assert events(out) == []
    (job,) = home.jobs()
    assert job["last_status"] == "PENDING" and job["jobmon"]["errors"] == 1
    assert job["jobmon"]["last_error"].startswith("output is not JSON (")


def test_a_failing_nel_is_a_failed_check(home: Home, nel: FakeBin, monkeypatch: pytest.MonkeyPatch) -> None:
    # `nel status 3` (an ambiguous prefix): exit 1 and a traceback
    capture(monkeypatch, "status_table_ambiguous_prefix.txt")
    monkeypatch.setenv("FAKE_NEL_EXIT", "1")
    add(home, Job("nel", "3f9c2a1b7d4e8f60", last_status="RUNNING"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    assert events(out) == []
    (job,) = home.jobs()
    assert job["last_status"] == "RUNNING" and job["jobmon"]["errors"] == 1


def test_success_carries_the_score_into_the_event_history_and_summary(home: Home, nel: FakeBin,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, "status_json_local_mixed.json")
    add(home, Job("nel", "b7e41d09c2a35f18", description="mmlu_pro llama", last_status="RUNNING"))
    watcher, out = make_watcher(home)
    active = watcher.cycle(everything=True)
    got = [(e["kind"], e["id"], e["from"], e["to"], e["terminal"], e["outcome"], e["detail"]) for e in events(out)]
    assert got == [("state", "b7e41d09c2a35f18", "RUNNING", "SUCCESS", True, "success", "mmlu_pro: 42.3%")]
    (info,) = nel.calls("nel info")
    assert info.startswith("nel info b7e41d09c2a35f18 --copy-artifacts /")
    assert active == [] and home.jobs() == []
    (record,) = home.history()
    assert (record["last_status"], record["outcome"], record["metrics"]) == ("SUCCESS", "success", ["mmlu_pro: 42.3%"])
    assert summary(home).text() == "1 job: 1 completed (mmlu_pro: 42.3%)"
    assert summary(home).counts == {"completed": 1}


def test_a_slurm_success_names_its_slurm_job_and_its_score(home: Home, nel: FakeBin, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # nel asked about the one invocation only: its row of the real capture, and no ssh trouble
    rows = json.loads((NEL / "status_json_slurm_mixed.json").read_text())
    one = tmp_path / "status_json_one.json"
    one.write_text(json.dumps([r for r in rows if r["invocation"] == "0a1b2c3d4e5f6071"], indent=2))
    capture(monkeypatch, str(one))
    add(home, Job("nel", "0a1b2c3d4e5f6071", last_status="RUNNING"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    got = [(e["from"], e["to"], e["outcome"], e["detail"]) for e in events(out)]
    assert got == [("RUNNING", "SUCCESS", "success", "slurm job 412010; mmlu_pro: 42.3%")]
    assert status_calls(nel) == ["nel status 0a1b2c3d4e5f6071 --json"]


def test_failure_carries_the_diagnosis_and_the_log(home: Home, nel: FakeBin, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, "status_json_local_mixed.json")
    add(home, Job("nel", "5d2a8e7f1c9b0346", last_status="RUNNING"))
    # text lines: pytest's long tmp path would not fit a 400-character JSON line beside the cause
    watcher, out = make_watcher(home, as_json=False)
    assert watcher.cycle(everything=True) == []
    logs = tmp_path / "cache" / "jobmon" / "nel" / "5d2a8e7f1c9b0346"
    log = logs / "5d2a8e7f1c9b0346.0" / "logs" / "client_stdout.log"
    assert nel.calls("nel info") == [f"nel info 5d2a8e7f1c9b0346 --copy-logs {logs}"]
    assert [ln[9:] for ln in out.getvalue().splitlines()] == [
        f"nel 5d2a8e7f1c9b0346: RUNNING -> FAILED ({OOM} (log: {log}))"]
    (record,) = home.history()
    assert (record["last_status"], record["outcome"]) == ("FAILED", "failure")
    assert record["detail"] == f"{OOM} (log: {log})"
    assert record["action_output"].startswith(f"log: {log}\nLoading model\nTraceback")
    assert summary(home).text() == "1 job: 1 failed"


# ---------------------------------------------------------------- the CLI


def test_status_through_the_cli(home: Home, nel: FakeBin, monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, "status_json_local_mixed.json")
    for inv in ("b7e41d09c2a35f18", "3f9c2a1b7d4e8f60"):
        assert jobmon("add", "--type", "nel", "--id", inv, *home.args()).code == 0
    ran = jobmon("status", *home.args())
    assert ran.code == 0, ran.err
    assert [ln[9:] for ln in ran.lines()] == [
        "nel 3f9c2a1b7d4e8f60: NEW -> RUNNING",
        "nel b7e41d09c2a35f18: NEW -> SUCCESS (mmlu_pro: 42.3%)",
        "2 jobs: 1 completed (mmlu_pro: 42.3%), 1 running",
    ]
    assert status_calls(nel) == ["nel status b7e41d09c2a35f18 3f9c2a1b7d4e8f60 --json"]


def test_render_prints_the_nel_status_command(home: Home) -> None:
    ran = jobmon("render", "--type", "nel", "--id", "3f9c2a1b7d4e8f60", *home.args())
    assert ran.code == 0, ran.err
    assert ran.out == "NEMO_EVALUATOR_DISABLE_COLOR=1 LOG_LEVEL=WARNING nel status 3f9c2a1b7d4e8f60 --json\n"
    ran = jobmon("render", "--type", "nel", "--id", "3f9c2a1b7d4e8f60.1", *home.args())
    assert ran.out == "NEMO_EVALUATOR_DISABLE_COLOR=1 LOG_LEVEL=WARNING nel status 3f9c2a1b7d4e8f60.1 --json\n"


@pytest.mark.parametrize("bad", ["xyz;rm", "3f9c2a1b7d4e8f60;rm -rf ~", "3f9", "3F9C2A1B7D4E8F60", "-h",
                                 "3f9c2a1b7d4e8f601", "3f9c.x", "3f9c."])
def test_add_refuses_an_id_that_is_not_an_invocation(home: Home, nel: FakeBin, bad: str) -> None:
    ran = jobmon("add", "--type", "nel", f"--id={bad}", *home.args())
    assert ran.code == 2
    assert ran.err.startswith(f"jobmon: nel: --id {bad!r} is not valid: an invocation id (16 hex digits, "
                              "or a unique prefix of 4 or more)")
    assert home.jobs() == [] and status_calls(nel) == []  # refused before nel is asked


def test_discover_lists_the_runs_of_the_last_day(home: Home, nel: FakeBin) -> None:
    assert jobmon("add", "--type", "nel", "--id", "3f9c2a1b7d4e8f60", *home.args()).code == 0
    ran = jobmon("discover", "--type", "nel", "--json", *home.args())
    assert ran.code == 0, ran.err
    found = ran.events()
    assert nel.calls("nel ls") == ["nel ls runs --since 1d"]
    assert [(c["id"], c["registered"]) for c in found][:3] == [
        ("3f9c2a1b7d4e8f60", True), ("c4d5e6f708192a3b", False), ("ab12cd34ef567890", False)]
    assert len(found) == 15  # 15 rows in the capture, the registered one listed once
    new = {c["id"]: c for c in found if not c["registered"]}
    assert (new["7e8f9a0b1c2d3e4f"]["description"], new["7e8f9a0b1c2d3e4f"]["executor"]) == (
        "gpqa_diamond,mmlu_pro", "slurm")


def test_a_failed_that_slurm_says_still_runs_is_a_failed_check(home: Home, nel: FakeBin, cluster: Cluster,
                                                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # nel 0.2.6 says "failed" when sacct is silent (slurmdbd down): squeue still knows better.
    rows = [{"invocation": "2c3d4e5f60718293", "job_id": "2c3d4e5f60718293.0", "status": "failed",
             "progress": "unknown", "data": {"slurm_job_id": "412012", "hostname": "login01", "username": "u"}}]
    capture_file = tmp_path / "failed_but_running.json"
    capture_file.write_text(json.dumps(rows))
    capture(monkeypatch, str(capture_file))
    cluster.queue("412012", "RUNNING")  # sacct has no row, squeue answers
    add(home, Job("nel", "2c3d4e5f60718293", last_status="RUNNING"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    assert events(out) == []
    (job,) = home.jobs()
    assert job["last_status"] == "RUNNING"
    assert job["jobmon"]["last_error"] == "says FAILED while slurm 412012@login01 is RUNNING"
    assert cluster.fakebin.calls("squeue") == ["squeue -h -j 412012 -o squeue|%i|%A|%T|%r|%N"]
    # SLURM agrees the job ended (sacct says FAILED, squeue no longer holds it): then nel's FAILED stands
    cluster.set("412012", "FAILED", "1:0", "00:10:00")
    cluster.forget("412012.queue")
    watcher.cycle(everything=True)
    assert [(e["to"], e["outcome"]) for e in events(out) if e["kind"] == "state"] == [("FAILED", "failure")]


# ---------------------------------------------------------------- ids nel abbreviates (a prefix)

TIMEOUT_INV = "4aa78841c0de5eed"  # status_json_slurm_timeout.json: its Slurm job 439 ended TIMEOUT


def rows_of(*names: str) -> list[dict]:  # type: ignore[type-arg]
    return [row for name in names for row in json.loads((NEL / name).read_text())]


def test_a_registered_prefix_finds_the_rows_nel_answers_with_full_ids() -> None:
    # What `nel status 4aa7 3f9c 3f9c.1 dead --json` prints: the real answers to each id, one
    # after the other (nel 0.2.6's get_status appends each id's rows in order).
    text = json.dumps(rows_of("status_json_prefix.json", "status_json_invocation_2jobs.json")
                      + rows_of("status_json_job_ids.json")[1:] + rows_of("status_json_unknown_prefix.json"))
    ids = ["4aa7", "3f9c", "3f9c.1", "dead", "3f9c2a1b7d4e8f60.0"]
    rows = rules.parse_batch(text, nel_type(), ids)
    assert {i: r.state for i, r in rows.items()} == {
        "4aa7": "PENDING", "3f9c": "RUNNING", "3f9c.1": "PENDING", "dead": "NOT_FOUND", "3f9c2a1b7d4e8f60.0": "RUNNING"}
    assert rows["4aa7"].groups["slurm_job"] == "439" and rows["3f9c.1"].groups["job"] == "3f9c2a1b7d4e8f60.1"
    # prefixes are the nel type's (its `resolve`): a type without one matches ids exactly
    exact = rules.parse_batch(text, replace(nel_type(), resolve=None), ids)
    assert {i: r.state for i, r in exact.items()} == {"dead": "NOT_FOUND", "3f9c2a1b7d4e8f60.0": "RUNNING"}


def test_a_prefix_kept_as_given_is_watched_like_the_full_id(home: Home, nel: FakeBin, cluster: Cluster,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, "status_json_prefix.json")
    cluster.set("439", "RUNNING")  # the SLURM side of nel's PENDING: asked, and no verdict
    add(home, Job("nel", "4aa7"), Job("nel", "b7e41d09c2a35f18"))
    watcher, out = make_watcher(home)
    watcher.cycle(everything=True)
    assert status_calls(nel) == ["nel status 4aa7 b7e41d09c2a35f18 --json"]
    assert [(e["id"], e["to"], e["detail"]) for e in events(out)] == [("4aa7", "PENDING", "slurm job 439")]
    (job,) = [j for j in home.jobs() if j["id"] == "4aa7"]
    assert job["last_status"] == "PENDING" and "missing_since" not in job.get("jobmon", {})


def test_add_registers_the_full_id_nel_resolves_a_prefix_to(home: Home, nel: FakeBin,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, "status_json_prefix.json")
    ran = jobmon("add", "--type", "nel", "--id", "4aa7", *home.args())
    assert ran.code == 0, ran.err
    assert ran.err.splitlines()[0] == f"jobmon: nel 4aa7 resolved to {TIMEOUT_INV}"
    assert [j["id"] for j in home.jobs()] == [TIMEOUT_INV]
    assert status_calls(nel) == ["nel status 4aa7 --json"]
    assert nel.calls("nel-env") == ["nel-env NEMO_EVALUATOR_DISABLE_COLOR=1 LOG_LEVEL=WARNING"]


def test_add_resolves_a_job_of_an_invocation_by_its_prefix(home: Home, nel: FakeBin,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, "status_json_prefix_job.json")
    ran = jobmon("add", "--type", "nel", "--id", "4aa78841.0", *home.args())
    assert ran.code == 0, ran.err
    assert [j["id"] for j in home.jobs()] == [f"{TIMEOUT_INV}.0"]
    assert status_calls(nel) == ["nel status 4aa78841.0 --json"]


def test_add_asks_nel_nothing_about_a_full_id(home: Home, nel: FakeBin) -> None:
    ran = jobmon("add", "--type", "nel", "--id", TIMEOUT_INV, *home.args())
    assert ran.code == 0, ran.err
    assert [j["id"] for j in home.jobs()] == [TIMEOUT_INV] and status_calls(nel) == []
    assert not ran.err.startswith("jobmon:")


@pytest.mark.parametrize(("status", "exit_code", "why"), [
    # `nel status 4aa7` with two invocations starting 4aa7: a traceback, exit 1 (real capture)
    ("status_json_ambiguous_prefix.json", "1",
     "resolving it failed: exit 1: ValueError: Ambiguous invocation ID '4aa7': matches "
     "['4aa78841c0de5eed', '4aa7f00d5eed0001']"),
    # nel knows no such invocation: it says not_found, naming the id it was asked about
    ("status_json_unknown_prefix.json", "0", "nel knows no job it abbreviates"),
    ("status_table_invocation_2jobs.txt", "0", "resolving it failed: output is not JSON (Expecting value at line 1)"),
])
def test_add_keeps_a_prefix_nel_cannot_resolve_and_says_so(home: Home, nel: FakeBin, monkeypatch: pytest.MonkeyPatch,
                                                           status: str, exit_code: str, why: str) -> None:
    capture(monkeypatch, status)
    monkeypatch.setenv("FAKE_NEL_EXIT", exit_code)
    ran = jobmon("add", "--type", "nel", "--id", "4aa7", *home.args())
    assert ran.code == 0, ran.err
    said = [ln for ln in ran.err.splitlines() if ln.startswith("jobmon:")]
    assert said == [f"jobmon: nel 4aa7 kept as given: {why}"]
    assert [j["id"] for j in home.jobs()] == ["4aa7"]


def test_add_keeps_a_prefix_when_nel_is_not_installed(home: Home, fakebin: FakeBin,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = f"{fakebin.path}{os.pathsep}/usr/bin{os.pathsep}/bin"
    assert shutil.which("nel", path=path) is None
    monkeypatch.setenv("PATH", path)
    ran = jobmon("add", "--type", "nel", "--id", "4aa7.1", *home.args())
    assert ran.code == 0, ran.err
    said = [ln for ln in ran.err.splitlines() if ln.startswith("jobmon:")]
    assert len(said) == 1 and said[0].startswith("jobmon: nel 4aa7.1 kept as given: resolving it failed: "
                                                 "command not found: ")
    assert [j["id"] for j in home.jobs()] == ["4aa7.1"]


# ---------------------------------------------------------------- nel's PENDING after a TIMEOUT

TIMEOUT_LOG = NEL / "slurm_timeout_439.log"  # the real job's output: sbatch --time=1, sleep 600


class Clock:
    """The watcher's clock for delegate.during waits, moved on by the test instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def timeout_capture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, status: str = "pending",
                    slurm_job: str = "439") -> None:
    """The real capture of nel 0.2.6 after job 439's TIMEOUT, its row's status or Slurm job
    changed: nel's autoresume started the job again (``running``); ``nel resume`` submitted it as
    a new Slurm job, which it writes into the row's data."""
    rows = rows_of("status_json_slurm_timeout.json")
    rows[0]["status"] = status
    rows[0]["data"]["slurm_job_id"] = slurm_job
    path = tmp_path / f"status_{status}_{slurm_job}.json"
    path.write_text(json.dumps(rows, indent=2))
    capture(monkeypatch, str(path))


def timeout_job(home: Home, cluster: Cluster, monkeypatch: pytest.MonkeyPatch,
                cfg: config.Config | None = None) -> tuple:  # type: ignore[type-arg]
    """nel's job 4aa78841c0de5eed.0 behind Slurm job 439, which ended TIMEOUT; the watcher and its clock."""
    cluster.set("439", "TIMEOUT", "0:0", "00:01:00")
    monkeypatch.setenv("FAKE_NEL_LOGS", str(TIMEOUT_LOG))  # what `nel info --copy-logs` fetches
    monkeypatch.setenv("FAKE_NEL_SLURM_JOB", "439")
    add(home, Job("nel", TIMEOUT_INV, description="mmlu_pro", last_status="PENDING"))
    watcher, out = make_watcher(home, cfg)
    clock = Clock()
    watcher._waits.clock = clock
    return watcher, out, clock


def asked_about(cluster: Cluster, slurm_job: str) -> int:
    """How many of sacct's state checks named the job."""
    return sum(1 for c in cluster.check_calls() if slurm_job in c.replace(",", " ").split())


def test_a_pending_whose_slurm_job_timed_out_ends_as_it_after_lost_after(home: Home, nel: FakeBin, cluster: Cluster,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    capture(monkeypatch, "status_json_slurm_timeout.json")
    watcher, out, clock = timeout_job(home, cluster, monkeypatch)
    for step in (0, 599):  # 599 s after SLURM was first seen saying TIMEOUT: an autoresume may still come
        clock.now += step
        watcher.cycle(everything=True)
        assert events(out) == []
        assert [j["last_status"] for j in home.jobs()] == ["PENDING"]
    assert asked_about(cluster, "439") == 2  # SLURM asked at each check of nel's PENDING
    clock.now += 1
    watcher.cycle(everything=True)
    said = events(out)
    got = [(e["kind"], e["from"], e["to"], e["terminal"], e["outcome"]) for e in said]
    assert got == [("event", "PENDING", "not-resumed", False, None), ("state", "PENDING", "FAILED", True, "failure")]
    assert said[0]["detail"] == "slurm job 439 ended TIMEOUT; nel still says PENDING (no autoresume for 10 min)"
    # explained by nel's own on_failure: the job's logs, its Slurm log among them, diagnosed
    logs = home.root.parent / "cache" / "jobmon" / "nel" / TIMEOUT_INV
    assert nel.calls("nel info") == [f"nel info {TIMEOUT_INV} --copy-logs {logs}"]
    cause = "slurm job 439; JOB 439 ON vm CANCELLED AT 2026-12-01T18:38:42 DUE TO TIME LIMIT"
    assert said[1]["detail"].startswith(f"{cause} (log: ")  # the line is cut to 400 characters in the middle
    assert home.jobs() == []
    (record,) = home.history()
    assert (record["id"], record["last_status"], record["outcome"]) == (TIMEOUT_INV, "FAILED", "failure")
    assert record["detail"] == f"{cause} (log: {logs / f'{TIMEOUT_INV}.0' / 'logs' / 'slurm-439.log'})"


def test_the_wait_starts_again_when_the_job_runs_again(home: Home, nel: FakeBin, cluster: Cluster, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    watcher, out, clock = timeout_job(home, cluster, monkeypatch)
    timeline = [  # seconds since SLURM first said TIMEOUT, what nel says, what jobmon says
        (0, "pending", []),
        (300, "running", ["RUNNING"]),  # the autoresumed job started (nel's row still names 439)
        (700, "pending", ["PENDING"]),  # pending again: the wait starts now, not at 0
        (1299, "pending", []),
        (1300, "pending", ["not-resumed", "FAILED"]),
    ]
    for at, status, states in timeline:
        clock.now = 1000.0 + at
        timeout_capture(monkeypatch, tmp_path, status)
        watcher.cycle(everything=True)
        assert [e["to"] for e in events(out)] == states, at


def test_the_wait_starts_again_for_a_job_resumed_as_a_new_slurm_job(home: Home, nel: FakeBin, cluster: Cluster,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # `nel resume` writes the new Slurm job's id into nel's record; that one ended TIMEOUT too
    watcher, out, clock = timeout_job(home, cluster, monkeypatch)
    cluster.set("512", "TIMEOUT", "0:0", "00:01:00")
    for at, slurm_job, states in [(0, "439", []), (500, "512", []), (1099, "512", []),
                                  (1100, "512", ["not-resumed", "FAILED"])]:
        clock.now = 1000.0 + at
        timeout_capture(monkeypatch, tmp_path, slurm_job=slurm_job)
        watcher.cycle(everything=True)
        got = events(out)
        assert [e["to"] for e in got] == states, at
    assert got[0]["detail"] == "slurm job 512 ended TIMEOUT; nel still says PENDING (no autoresume for 10 min)"


@pytest.mark.parametrize("slurm_state", ["PENDING", "RUNNING", None])  # None: SLURM has no row for it
def test_a_pending_whose_slurm_job_has_not_ended_waits_for_ever(home: Home, nel: FakeBin, cluster: Cluster,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 slurm_state: str | None) -> None:
    capture(monkeypatch, "status_json_slurm_timeout.json")
    watcher, out, clock = timeout_job(home, cluster, monkeypatch)
    cluster.forget("439")
    if slurm_state:
        cluster.set("439", slurm_state)
    for _ in range(3):
        clock.now += 100_000
        watcher.cycle(everything=True)
    assert events(out) == []
    assert [j["last_status"] for j in home.jobs()] == ["PENDING"]


def test_the_wait_is_lost_after_of_the_slurm_jobs_cluster(home: Home, nel: FakeBin, cluster: Cluster, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    layer = tmp_path / "fast.yaml"
    layer.write_text("clusters:\n  test:\n    hosts: [testcluster]\n    settings: {lost_after: 60}\n")
    capture(monkeypatch, "status_json_slurm_timeout.json")
    watcher, out, clock = timeout_job(home, cluster, monkeypatch, config.load(str(layer), env={}))
    watcher.cycle(everything=True)
    clock.now += 59
    watcher.cycle(everything=True)
    assert events(out) == []
    clock.now += 1
    watcher.cycle(everything=True)
    assert [e["detail"] for e in events(out)][0] == (
        "slurm job 439 ended TIMEOUT; nel still says PENDING (no autoresume for 60 s)")


# ---------------------------------------------------------------- stalls: the count of requests done

def test_a_running_evaluation_whose_request_count_stops_is_stalled_then_resumed(home: Home, nel: FakeBin, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from jobmon import clock

    now = [clock.now()]
    monkeypatch.setattr(clock, "now", lambda: now[0])  # nel status runs here: this machine's clock
    capture(monkeypatch, "status_json_invocation_2jobs.json")  # .0 RUNNING with 137 requests done, .1 PENDING
    add(home, Job("nel", "3f9c2a1b7d4e8f60"))
    w, out = make_watcher(home)
    w.cycle(everything=True)
    assert [(e["kind"], e["to"]) for e in events(out)] == [("state", "RUNNING")]
    for _ in range(2):  # nel says 137 for 2000 s
        now[0] += timedelta(seconds=1000)
        w.cycle(everything=True)
    assert [(e["to"], e["detail"]) for e in events(out)] == [("STALLED", "no progress for 0:33:20")]
    moved = tmp_path / "status.json"  # the same capture, 13 requests later
    moved.write_text((NEL / "status_json_invocation_2jobs.json").read_text().replace('"progress": 137', '"progress": 150'))
    monkeypatch.setenv("FAKE_NEL_STATUS", str(moved))
    now[0] += timedelta(seconds=30)
    w.cycle(everything=True)
    assert [(e["to"], e["detail"]) for e in events(out)] == [("RESUMED", "moving again after 0:33:50 without progress")]


def test_a_count_nel_does_not_know_is_never_a_stall() -> None:
    jtype = nel_type()
    assert rules.row_mark(rules.Row("RUNNING", {"requests": ""}), jtype, 0.0) == rules.Mark("", 0.0)  # null
    assert rules.row_mark(rules.Row("RUNNING", {"requests": "unknown"}), jtype, 0.0) == rules.Mark("", 0.0)
    assert rules.row_mark(rules.Row("RUNNING", {"requests": "137"}), jtype, 5.0) == rules.Mark("137", 5.0)
