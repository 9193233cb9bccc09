"""The stdout funnel: one bounded line per event, text or JSON."""
from __future__ import annotations

import io
import json
import re
from datetime import datetime, timezone

from jobmon.events import Event, Printer, format_json, format_text

T = datetime(2026, 11, 29, 12, 3, 4).astimezone()  # 12:03:04 here, whatever the zone


def test_text_line_reads_like_the_spec() -> None:
    e = Event("state", "slurm", "1234567", "cluster-a", "PTQ Qwen3-8B", "RUNNING", "COMPLETED",
              True, "success", "exit 0:0, 01:02:03", time=T)
    assert format_text(e) == '12:03:04 slurm 1234567@cluster-a "PTQ Qwen3-8B": RUNNING -> COMPLETED (exit 0:0, 01:02:03)'


def test_first_sighting_reads_new_and_local_jobs_have_no_host() -> None:
    e = Event("state", "local", "42", after="RUNNING", time=T)
    assert format_text(e) == "12:03:04 local 42: NEW -> RUNNING"


def test_control_characters_never_split_a_line() -> None:
    e = Event("state", "slurm", "1", "h", "evil\ndesc\r\x1b[31m", "PENDING", "RUNNING", detail="a\nb", time=T)
    line = format_text(e)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == '12:03:04 slurm 1@h "evil desc \\x1b[31m": PENDING -> RUNNING (a b)'


def test_controls_and_bidi_overrides_are_shown_escaped_in_text_and_exact_in_json() -> None:
    # ESC/BEL would retitle or clear the terminal; U+202E would make "DELIAF" display as "FAILED"
    desc = "x\x1b]0;owned\x07\u202eDELIAF\u2066\x9b2J"
    e = Event("state", "slurm", "1", "h", desc, "RUNNING", "COMPLETED\u202e", True, "success",
              detail="ok\u202d", time=T)
    line = format_text(e)
    assert not any(c in line for c in "\x1b\x07\u202e\u2066\x9b\u202d"), line
    assert line == ('12:03:04 slurm 1@h "x\\x1b]0;owned\\x07\\u202eDELIAF\\u2066\\x9b2J": '
                    'RUNNING -> COMPLETED\\u202e (ok\\u202d)')
    raw = format_json(e)
    assert not any(c in raw for c in "\x1b\x07\u202e\u2066\x9b\u202d"), raw
    data = json.loads(raw)
    assert (data["description"], data["to"], data["detail"]) == (desc, "COMPLETED\u202e", "ok\u202d")


def test_lines_are_bounded_in_text_and_json() -> None:
    e = Event("state", "slurm", "1", "h", "d" * 1000, "RUNNING", "FAILED", True, "failure", "x" * 5000, time=T)
    assert len(format_text(e, 400)) <= 400
    line = format_json(e, 400)
    assert len(line) <= 400
    data = json.loads(line)
    assert data["to"] == "FAILED" and data["outcome"] == "failure" and data["detail"].startswith("xxx")


def test_json_has_every_documented_field() -> None:
    e = Event("state", "slurm", "1", "h", "d", "PENDING", "RUNNING", time=T)
    data = json.loads(format_json(e))
    assert set(data) == {"time", "kind", "type", "id", "host", "description", "from", "to",
                         "terminal", "outcome", "detail"}  # and seq, once the event is logged
    assert data["time"] == T.astimezone(timezone.utc).isoformat() and data["time"].endswith("+00:00")  # UTC inside
    assert data["terminal"] is False and data["outcome"] is None


def test_replayed_events_say_so() -> None:
    e = Event("state", "slurm", "1", "h", "", "RUNNING", "COMPLETED", True, "success", replayed=True, time=T)
    assert format_text(e).endswith("RUNNING -> COMPLETED [replayed after a restart]")
    assert json.loads(format_json(e))["replayed"] is True


def test_printer_writes_one_flushed_line_per_event() -> None:
    out = io.StringIO()
    Printer(as_json=True, stream=out).emit(Event("summary", detail="1 job: 1 completed", counts={"success": 1}, time=T))
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["counts"] == {"success": 1}


def test_a_digest_names_every_job_by_new_state_over_as_many_lines_as_it_needs() -> None:
    from jobmon.events import JobRef, render
    from jobmon.idlist import expand

    jobs = tuple(JobRef("slurm", str(1000 + 2 * i), "eos", None, "RUNNING") for i in range(60))
    jobs += tuple(JobRef("slurm", str(5000 + i), "eos", "RUNNING", "PENDING") for i in range(5))
    e = Event("changes", detail="65 changes", counts={"NEW -> RUNNING": 60, "RUNNING -> PENDING": 5}, jobs=jobs, time=T)
    lines = render(e, False, 200)
    assert len(lines) > 1 and all(len(ln) <= 200 for ln in lines)
    assert lines[0].startswith("12:03:04 65 changes (1/") and "60 RUNNING (slurm@eos: 1000, 1002, " in lines[0]
    assert lines[-1].endswith("; 5 PENDING (slurm@eos: 5000-5004)")
    assert "more" not in "".join(lines)
    named = [i for ln in lines for span in re.findall(r"\b\d{4}(?:-\d{4})?\b", ln.split(": ", 1)[1]) for i in expand(span)]
    assert sorted(named) == sorted(j.id for j in jobs)
    parts = [json.loads(ln) for ln in render(e, True, 400)]
    assert all(len(ln) <= 400 for ln in render(e, True, 400)) and len(parts) > 1
    assert parts[0]["part"] == f"1/{len(parts)}" and parts[0]["kind"] == "changes"
    got = [(g["to"], i) for p in parts for g in p["groups"] for span in g["ids"] for i in expand(span)]
    assert sorted(got) == sorted((j.after, j.id) for j in jobs)


def test_a_host_line_names_the_host_and_counts_its_jobs() -> None:
    from jobmon.events import JobRef

    e = Event("event", "slurm", host="eos", after="UNREACHABLE", detail="2 slurm jobs: connection failed (exit 255)",
              jobs=(JobRef("slurm", "1", "eos", None, "UNREACHABLE"), JobRef("slurm", "2", "eos", None, "UNREACHABLE")),
              time=T)
    assert format_text(e) == "12:03:04 host eos: UNREACHABLE (2 slurm jobs: connection failed (exit 255))"
    assert json.loads(format_json(e))["groups"] == [{"to": "UNREACHABLE", "type": "slurm", "host": "eos", "ids": ["1-2"]}]


def test_an_event_goes_through_the_log_unchanged() -> None:
    from jobmon.events import JobRef

    e = Event("changes", detail="2 changes", counts={"NEW -> RUNNING": 2}, time=T, seq=7,
              jobs=(JobRef("nel", "a" * 16, "", None, "RUNNING"), JobRef("nel", "b" * 16, "", "PENDING", "RUNNING")))
    assert Event.from_json(json.loads(json.dumps(e.to_json()))) == e
