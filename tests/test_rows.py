"""jobmon/rows.py: which rows of a batched check belong to which job, on real SLURM ids."""
from __future__ import annotations

from jobmon import rows


def test_a_pending_record_stands_for_each_task_of_its_range() -> None:
    assert rows.expand("12_[2-5%2]") == ["12_2", "12_3", "12_4", "12_5"]
    assert rows.expand("12_[1,3,7-8]") == ["12_1", "12_3", "12_7", "12_8"]
    assert rows.expand("12_[0-10:5]") == ["12_0", "12_5", "12_10"]
    assert rows.expand("12_4") == ["12_4"]
    assert rows.expand("12_[x-y]") == ["12_[x-y]"]  # unreadable: stands for itself
    assert rows.expand("12_[0-99999999999]") == ["12_[0-99999999999]"]  # never expanded without bound


def row(id_: str, raw: str, of: str, state: str = "RUNNING", submit: str = "") -> dict[str, str]:
    return {"id": id_, "raw": raw, "of": of, "state": state, "submit": submit}


def test_an_array_id_gets_its_tasks_and_a_task_id_and_a_raw_id_their_task() -> None:
    found = rows.assign([row("454_0", "456", "454", "COMPLETED"), row("454_1", "457", "454"),
                         row("454_[2-3%2]", "454", "454", "PENDING")],
                        {"454": "", "454_1": "", "457": "", "454_3": ""})
    assert sorted(found["454"].parts) == ["454_0", "454_1", "454_2", "454_3"]
    assert found["454"].own == ()  # the pending record's raw id 454 is a part, not the array itself
    assert [r["id"] for r in found["454_1"].own] == ["454_1"]
    assert [r["id"] for r in found["457"].own] == ["454_1"]
    assert [r["id"] for r in found["454_3"].own] == ["454_[2-3%2]"]  # still in the pending record


def test_a_tasks_own_row_beats_the_stale_pending_range() -> None:
    # sacct keeps 454_[2-5%2] while 454_2 already runs (tests/fixtures/slurm/shapes/array/mid.sacct.txt)
    found = rows.assign([row("454_2", "460", "454"), row("454_[2-5%2]", "454", "454", "PENDING")], {"454": ""})
    assert {p: r["state"] for p, r in found["454"].parts.items()} == {
        "454_2": "RUNNING", "454_3": "PENDING", "454_4": "PENDING", "454_5": "PENDING"}


def test_a_het_job_gets_its_components_and_a_plain_job_itself() -> None:
    found = rows.assign([row("470+0", "470", "470"), row("470+1", "471", "470"), row("17", "17", "17")],
                        {"470": "", "17": "", "470+1": ""})
    assert sorted(found["470"].parts) == ["470+0", "470+1"]
    assert found["17"].parts == {} and len(found["17"].own) == 1
    assert [r["raw"] for r in found["470+1"].own] == ["471"]


def test_of_a_reused_id_the_job_submitted_last_before_the_registration_wins() -> None:
    old, new, later = (row("61", "61", "61", "FAILED", "2026-11-20T10:00:00"),
                       row("61", "61", "61", "COMPLETED", "2026-12-01T18:50:02"),
                       row("61", "61", "61", "PENDING", "2026-12-03T09:00:00"))
    assert rows.pick([old, new, later], "2026-12-01 18:50") == [new]  # within the tolerance of a minute's rounding
    assert rows.pick([old, new], "2026-11-25 12:00") == [old]
    assert rows.pick([old, new], "") == [new]  # no registration time: the newest job
    assert rows.pick([later], "2026-12-01 18:50") == [later]  # one job: nothing to choose
