"""The stdout funnel: one bounded line per event, text or JSON."""
from __future__ import annotations

import io
import json
from datetime import datetime

from jobmon.events import Event, Printer, format_json, format_text

T = datetime(2026, 11, 29, 12, 3, 4)


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
    assert line == '12:03:04 slurm 1@h "evil desc [31m": PENDING -> RUNNING (a b)'


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
                         "terminal", "outcome", "detail"}
    assert data["time"] == "2026-11-29T12:03:04" and data["terminal"] is False and data["outcome"] is None


def test_replayed_events_say_so() -> None:
    e = Event("state", "slurm", "1", "h", "", "RUNNING", "COMPLETED", True, "success", replayed=True, time=T)
    assert format_text(e).endswith("RUNNING -> COMPLETED [replayed after a restart]")
    assert json.loads(format_json(e))["replayed"] is True


def test_printer_writes_one_flushed_line_per_event() -> None:
    out = io.StringIO()
    Printer(as_json=True, stream=out).emit(Event("summary", detail="1 of 1 completed", counts={"success": 1}, time=T))
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["counts"] == {"success": 1}
