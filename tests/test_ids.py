"""jobmon/ids.py: which ids abbreviate which, and which registered ids own a row."""
from __future__ import annotations

import re

import pytest

from jobmon.ids import abbreviates, expansions, owners_of, short_ones

FULL = "4aa78841c0de5eed"


@pytest.mark.parametrize(("short", "full", "expected"), [
    ("4aa7", FULL, True),
    (FULL, FULL, True),                      # an id abbreviates itself
    ("4aa7.1", f"{FULL}.1", True),           # the job index is kept as it is
    ("4aa7.1", f"{FULL}.10", False),         # never read as a prefix of another index
    ("4aa7", f"{FULL}.0", False),            # an invocation is not one of its jobs
    ("4aa7.0", FULL, False),
    ("4ab7", FULL, False),
    ("", FULL, False),
    (".0", f"{FULL}.0", False),              # no head: abbreviates nothing
])
def test_abbreviates(short: str, full: str, expected: bool) -> None:
    assert abbreviates(short, full) is expected


def test_expansions_are_every_abbreviation_shortest_first() -> None:
    got = list(expansions("4aa78841.3"))
    assert got[:3] == ["4.3", "4a.3", "4aa.3"] and got[-1] == "4aa78841.3" and len(got) == 8
    assert all(abbreviates(e, "4aa78841.3") for e in got)


def test_short_ones_are_the_ids_when_matches_whole() -> None:
    when = re.compile(r"[0-9a-f]{4,15}(\.[0-9]+)?")
    assert short_ones({"4aa7", "4aa7.0", FULL, f"{FULL}.0", "4a"}, when) == {"4aa7", "4aa7.0"}
    assert short_ones({"4aa7", FULL}, None) == {"4aa7", FULL}


def test_a_row_belongs_to_its_exact_id_and_to_the_short_ids_abbreviating_it_each_once() -> None:
    wanted = {FULL, "4aa7", "4aa78", f"{FULL}.0", "4aa7.0", "4aa7.1", "b7e4"}
    short = frozenset({"4aa7", "4aa78", "4aa7.0", "4aa7.1", "b7e4"})
    assert owners_of([FULL, f"{FULL}.0"], wanted, short) == [FULL, "4aa7", "4aa78", f"{FULL}.0", "4aa7.0"]
    # a registered id that is not short (slurm's 123 beside 1234) never takes a longer id's row
    assert owners_of(["1234"], {"123", "1234"}, frozenset()) == ["1234"]
    assert owners_of(["ffff"], wanted, short) == []
