"""Id lists as ranges, and lines that carry a whole list."""
from __future__ import annotations

import pytest

from jobmon.idlist import expand, fill, layout, spans


@pytest.mark.parametrize("ids, said", [
    ([str(i) for i in range(5000, 5050)], ["5000-5049"]),
    (["5000", "5001", "5003", "5005", "5006"], ["5000-5001", "5003", "5005-5006"]),
    ([f"1234_{i}" for i in range(100)], ["1234_[0-99]"]),
    (["1234_0", "1234_1", "1234_2", "1234_5", "1234_7", "1234_8"], ["1234_[0-2,5,7-8]"]),
    (["1234_3"], ["1234_3"]),
    (["4aa7.0", "4aa7.1", "4aa7.2"], ["4aa7.[0-2]"]),
    (["99+0", "99+1"], ["99+[0-1]"]),
    (["train-7"], ["train-7"]),
    (["007", "008"], ["007", "008"]),  # a range would lose the zeros
    (["abc", "5", "abc"], ["5", "abc"]),  # each once; a word stays as it is
    (["12", "10", "11"], ["10-12"]),
])
def test_ids_become_ranges_that_expand_back(ids: list[str], said: list[str]) -> None:
    assert spans(ids) == said
    assert sorted(i for item in said for i in expand(item)) == sorted(set(ids))


def test_a_bracket_too_wide_is_split_and_every_task_kept() -> None:
    tasks = [f"777_{i}" for i in range(0, 400, 2)]  # no two consecutive
    items = spans(tasks, width=60)
    assert len(items) > 1 and all(len(item) <= 60 for item in items)
    assert [i for item in items for i in expand(item)] == tasks


def test_lines_carry_every_item_whole_and_say_their_part() -> None:
    items = [str(i) for i in range(1000, 1400, 2)]
    lines = fill(lambda part: f"12:00:00 slurm@c: 200 COMPLETED{part}", [("", items, "")], 120)
    assert len(lines) > 1 and all(len(line) <= 120 for line in lines)
    assert lines[0].startswith(f"12:00:00 slurm@c: 200 COMPLETED (1/{len(lines)}): 1000, 1002")
    assert [i for line in lines for i in line.split(": ", 2)[2].split(", ")] == items
    assert fill(lambda part: f"h{part}", [("", ["1-3"], "")], 100) == ["h: 1-3"]


def test_sections_repeat_their_opening_words_on_the_line_they_go_on_in() -> None:
    sections = [("12 RUNNING (slurm@c: ", [str(i) for i in range(1, 60, 2)], ")"), ("3 PENDING (slurm@d: ", ["7-9"], ")")]
    laid = layout(lambda part: f"12:00:00 33 changes{part}", sections, 100)
    texts = [text for text, _ in laid]
    assert all(len(t) <= 100 for t in texts) and all("12 RUNNING (slurm@c: " in t for t in texts[:-1])
    assert texts[-1].endswith("; 3 PENDING (slurm@d: 7-9)")
    assert [i for _, items in laid for i in items] == [*sections[0][1], "7-9"]
