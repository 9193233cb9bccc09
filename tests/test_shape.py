"""A backlog shaped for a reader's harness: failures alone, successes together as id ranges with
their figures, notifications within their size, and the cursor only past what was written."""
from __future__ import annotations

import json
import re
from datetime import datetime

from jobmon.events import Event
from jobmon.idlist import expand
from jobmon.shape import given, lines, notifications, width

T = datetime(2026, 12, 1, 12, 3, 4)


def end(seq: int, job_id: str, host: str = "c", ok: bool = True, **kw: object) -> Event:
    return Event("state", kw.pop("type", "slurm"), job_id, host, before="RUNNING",  # type: ignore[arg-type]
                 after="COMPLETED" if ok else "FAILED", terminal=True, outcome="success" if ok else "failure",
                 detail="exit 0:0" if ok else f"exit 1:0; RuntimeError: boom in {job_id} (log: /logs/{job_id}.out)",
                 time=T, seq=seq, **kw)  # type: ignore[arg-type]


def mass(n: int = 150, hosts: int = 3, failing: int = 10) -> list[Event]:
    out = []
    for i in range(n):
        out.append(end(i + 1, str(5000 + i), f"c{i % hosts}", ok=i % (n // failing) != 7))
    return out


def ids_in(text: str) -> list[str]:
    return [i for span in re.findall(r"\b\d{4}(?:-\d{4})?\b", text.split(": ", 1)[1]) for i in expand(span)]


def test_failures_stand_alone_and_successes_are_one_line_per_type_host_and_state() -> None:
    events = mass()
    shaped = lines(events, as_json=False, max_line=400, group_after=5)
    failed = [e for e in events if e.outcome == "failure"]
    alone = [ln for ln in shaped if "FAILED" in ln.text]
    assert [ln.text[9:] for ln in alone] == [f"slurm {e.id}@{e.host}: RUNNING -> FAILED ({e.detail})" for e in failed]
    grouped = [ln.text for ln in shaped if "COMPLETED" in ln.text]
    assert [t.split(": ")[0][9:] for t in grouped] == ["slurm@c0", "slurm@c1", "slurm@c2"]
    assert sorted(i for t in grouped for i in ids_in(t)) == sorted(e.id for e in events if e.outcome == "success")
    assert "more" not in "".join(ln.text for ln in shaped)


def test_a_few_successes_keep_their_own_lines() -> None:
    events = [end(i, str(i)) for i in range(1, 6)]
    assert [ln.text[9:] for ln in lines(events, as_json=False, max_line=400, group_after=5)] == [
        f"slurm {i}@c: RUNNING -> COMPLETED (exit 0:0)" for i in range(1, 6)]
    assert len(lines([*events, end(6, "6")], as_json=False, max_line=400, group_after=5)) == 1


def test_key_figures_stay_with_their_ids_in_text_and_json() -> None:
    events = [end(i, f"4aa7.{i}", host="", type="nel", figures=(f"mmlu_pro: 4{i}.0%",)) for i in range(8)]
    (text,) = lines(events, as_json=False, max_line=400, group_after=5)
    assert text.text[9:].startswith("nel: 8 COMPLETED: 4aa7.0 (mmlu_pro: 40.0%), 4aa7.1 (mmlu_pro: 41.0%)")
    data = json.loads(lines(events, as_json=True, max_line=400, group_after=5)[0].text)
    assert (data["kind"], data["count"], data["outcome"]) == ("ends", 8, "success")
    assert data["figures"]["4aa7.3"] == "mmlu_pro: 43.0%"


def test_two_thousand_ends_fit_lines_and_notifications_and_name_every_id() -> None:
    events = [end(i + 1, str(10000 + 2 * i), f"c{i % 3}", ok=i % 20 != 3) for i in range(2000)]
    for as_json in (False, True):
        shaped = lines(events, as_json=as_json, max_line=400, group_after=5)
        assert all(width(ln.text) <= 400 for ln in shaped)
        groups = notifications(shaped, 3000)
        assert all(sum(width(ln.text) + 1 for ln in g) <= 3000 for g in groups)
        told = sorted(s for ln in shaped for s in ln.seqs)
        assert told == list(range(1, 2001))  # each event told by exactly one line
    named = []
    for ln in lines(events, as_json=True, max_line=400, group_after=5):
        data = json.loads(ln.text)
        named += [i for span in data.get("ids", [data.get("id")]) for i in expand(span)]
    assert sorted(named) == sorted(e.id for e in events)


def test_the_cursor_moves_only_past_a_run_of_written_events() -> None:
    assert given([1, 2, 3, 4], {1, 2, 4}) == 2
    assert given([1, 2, 3], {2, 3}) is None
    assert given([7, 8], {7, 8}) == 8
