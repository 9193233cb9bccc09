"""Which rows of a batched check belong to which registered job: pure functions over groups.

A scheduler answers about more ids than were asked for. SLURM's ``sacct -j 12`` for an array
gives ``12_0 … 12_5`` and a pending record ``12_[2-5%2]``; for a heterogeneous job ``88``,
``88+0`` and ``88+1``; for a raw task id ``14``, the row ``12_1`` whose JobIDRaw is 14; for an
id the scheduler reused, the old job and the new one. A check's regex names what a row is with
these groups, and this module decides:

- ``id``: the row's own id; ``raw``: another id the row answers to (SLURM's JobIDRaw);
- ``of``: the job the row is a part of (an array or het job id); the row is then one part of
  that job, and a part id written ``prefix[2-5,7%2]`` stands for every id of the range;
- ``submit``: when the row's job was submitted; of rows with the same id, the one that matches
  the registration wins.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from jobmon import clock
from typing import Iterable, Mapping, NamedTuple, Sequence

NAMING = ("id", "raw", "of")  # groups that say which job a row is; any other group is data about it
TOLERANCE = timedelta(minutes=10)  # a registration may come late, and clocks differ a little
_RANGE = re.compile(r"^(?P<head>[^\[]*)\[(?P<body>[^\]]*)\](?P<tail>.*)$")
MAX_EXPANDED = 100_000  # an array's pending record never stands for more parts than this


class Owned(NamedTuple):
    """What one batched output says about one registered job."""

    own: tuple[Mapping[str, str], ...]  # rows that are the job itself
    parts: Mapping[str, Mapping[str, str]]  # part id -> its row, for an array or het job


def expand(part_id: str) -> list[str]:
    """``12_[2-5,7%2]`` -> ``12_2 … 12_5, 12_7`` (``%2`` is a throttle, not an id); any other
    id stands for itself. A range that cannot be read stands for itself too."""
    match = _RANGE.match(part_id)
    if not match:
        return [part_id]
    body = match["body"].split("%", 1)[0]
    out: list[str] = []
    for piece in body.split(","):
        low, _, high = piece.partition("-")
        step = 1
        if ":" in high:
            high, _, by = high.partition(":")
            step = int(by) if by.isdigit() and int(by) > 0 else 1
        if not low.isdigit() or (high and not high.isdigit()):
            return [part_id]
        stop = int(high) if high else int(low)
        if stop - int(low) > MAX_EXPANDED or len(out) > MAX_EXPANDED:
            return [part_id]
        out += [f"{match['head']}{n}{match['tail']}" for n in range(int(low), stop + 1, step)]
    return out or [part_id]


def _when(text: str) -> datetime | None:
    """A row's Submit (naive: the cluster's local time) or a registration time (UTC with its
    offset; naive local in older registries), as naive local time: the two compare."""
    when = clock.parse(text)
    return None if when is None else clock.local(when)


def pick(rows: Sequence[Mapping[str, str]], submitted: str) -> list[Mapping[str, str]]:
    """Rows of one id that more than one job had (ids wrap; a database was reset): the rows of
    the job submitted last before the registration (give or take ``TOLERANCE``); without a
    registration time, of the newest job."""
    times = {r.get("submit", "") for r in rows}
    if len(times) < 2:
        return list(rows)
    registered = _when(submitted)
    dated = [(t, r) for r in rows if (t := _when(r.get("submit", ""))) is not None]
    if not dated:
        return list(rows)
    fits = [t for t, _ in dated if registered is None or t <= registered + TOLERANCE]
    best = max(fits) if fits else min(t for t, _ in dated)
    return [r for t, r in dated if t == best]


def assign(rows: Iterable[Mapping[str, str]], jobs: Mapping[str, str]) -> dict[str, Owned]:
    """Rows -> the registered jobs they belong to. ``jobs`` maps each registered id to its
    registration time ("" if unknown).

    A job with parts (rows whose ``of`` is the job) is its parts: the row that merely answers
    to its id as JobIDRaw (the array task that kept the array's id) is one of them already.
    """
    own: dict[str, list[Mapping[str, str]]] = {}
    parts: dict[str, dict[str, Mapping[str, str]]] = {}
    explicit: dict[str, set[str]] = {}
    for row in rows:
        row_id, raw, of = row.get("id", ""), row.get("raw", ""), row.get("of", "")
        ids = expand(row_id)
        if of and of != row_id and of in jobs:
            mine = parts.setdefault(of, {})
            for part in ids:
                # A task's own row beats the pending record's range, which sacct keeps stale
                # (12_[2-5%2] while 12_2 already runs).
                if len(ids) == 1 or part not in explicit.get(of, set()):
                    mine[part] = row
            if len(ids) == 1:
                explicit.setdefault(of, set()).add(ids[0])
        # A task still in its array's pending record (12_3 in 12_[2-5%2]) is that record's row.
        for name in dict.fromkeys(ids + [raw]):
            if name in jobs:
                own.setdefault(name, []).append(row)
    out: dict[str, Owned] = {}
    for job_id in jobs:
        if job_id in parts:
            out[job_id] = Owned((), parts[job_id])
        elif job_id in own:
            out[job_id] = Owned(tuple(pick(own[job_id], jobs[job_id])), {})
    return out
