"""Lists of job ids as a person reads them, and lines that carry a whole list.

150 ends must reach a reader whose lines are cut at 500 characters, so ids that follow each other
are said as ranges: ``5000-5049``, array tasks ``1234_[0-99]`` (SLURM's own form), nel's jobs
``4aa7.[0-3]``. A list too long for one line goes on in the next line, each line whole: never
"+N more", which would leave jobs unnamed. Pure functions over strings.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence, Tuple, TypeVar

_TAIL = re.compile(r"^(.*?)(\d+)$")
_BRACKET = re.compile(r"^(.*)\[([0-9,\-]+)\]$")
_RANGE = re.compile(r"^(\d+)-(\d+)$")


def spans(ids: Iterable[str], width: int = 200) -> list[str]:
    """``ids`` as few items as can say them, each at most ``width`` characters (where an id
    allows): runs of numbers become ranges, tasks of one array one bracket. Order: by first
    appearance of each prefix, numbers ascending; an id with no number (or a leading zero,
    which a range would lose) stays as it is."""
    order: list[str] = []
    numbers: dict[str, set[int]] = {}
    plain: list[str] = []
    for job_id in dict.fromkeys(ids):
        match = _TAIL.match(job_id)
        if match is None or (len(match.group(2)) > 1 and match.group(2).startswith("0")):
            plain.append(job_id)
            continue
        prefix = match.group(1)
        if prefix not in numbers:
            order.append(prefix)
            numbers[prefix] = set()
        numbers[prefix].add(int(match.group(2)))
    items: list[str] = []
    for prefix in order:
        runs = _runs(sorted(numbers[prefix]))
        if prefix and not prefix[-1].isalnum() and len(numbers[prefix]) > 1:  # 1234_ 4aa7. 99+
            items += _brackets(prefix, runs, width)
        else:
            items += [prefix + run for run in runs]
    return items + plain


def _runs(numbers: Sequence[int]) -> list[str]:
    """``[1, 2, 3, 7]`` -> ``["1-3", "7"]``."""
    out: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(f"{start}-{prev}" if prev > start else str(start))
        if n is not None:
            start = prev = n
    return out


def _brackets(prefix: str, runs: list[str], width: int) -> list[str]:
    """``1234_[0-3,5]``, split into several brackets where one would pass ``width``."""
    out: list[str] = []
    current: list[str] = []
    for run in runs:
        if current and len(prefix) + len(",".join([*current, run])) + 2 > width:
            out.append(_bracket(prefix, current))
            current = []
        current.append(run)
    out.append(_bracket(prefix, current))
    return out


def _bracket(prefix: str, runs: list[str]) -> str:
    if len(runs) == 1 and "-" not in runs[0]:
        return prefix + runs[0]
    return f"{prefix}[{','.join(runs)}]"


def expand(item: str) -> list[str]:
    """The ids an item of ``spans`` names (what a reader does with ``5000-5002``)."""
    bracket = _BRACKET.match(item)
    if bracket is not None:
        prefix, inner = bracket.groups()
        return [prefix + n for part in inner.split(",") for n in _numbers(part)]
    match = _TAIL.match(item.split("-", 1)[0]) if "-" in item else None
    if match is not None and _RANGE.match(match.group(2) + "-" + item.split("-", 1)[1]):
        return [match.group(1) + n for n in _numbers(match.group(2) + "-" + item.split("-", 1)[1])]
    return [item]


def _numbers(part: str) -> list[str]:
    run = _RANGE.match(part)
    if run is None:
        return [part]
    return [str(n) for n in range(int(run.group(1)), int(run.group(2)) + 1)]


T = TypeVar("T")


def packed(items: Sequence[T], fits: Callable[[list[T]], bool]) -> list[list[T]]:
    """``items`` in order, in as few runs as ``fits`` allows (a JSON line's ids): an item joins the
    current run while the run still fits with it, else starts the next; a run of one always stands."""
    out: list[list[T]] = [[]]
    for item in items:
        if out[-1] and not fits([*out[-1], item]):
            out.append([])
        out[-1].append(item)
    return out


Section = Tuple[str, Sequence[str], str]  # (opening words, items, closing words)


def fill(head: Callable[[str], str], sections: Sequence[Section], width: int, sep: str = ", ") -> list[str]:
    """Lines of at most ``width`` characters that carry every item of every section whole, in
    order (see ``layout``)."""
    return [text for text, _ in layout(head, sections, width, sep)]


def layout(head: Callable[[str], str], sections: Sequence[Section], width: int,
           sep: str = ", ") -> list[tuple[str, list[str]]]:
    """Each line and the items it carries. A line is ``head(part)``, ``: ``, then its sections
    (``"; "`` between them), each as its opening words, its items and its closing words,
    repeated on the next line where a section goes on. ``part`` is ``""`` for a single line and
    ``" (2/3)"`` for the second of three. An item longer than a line is cut (no scheduler gives
    an id of 300 characters)."""
    room = width - len(head(" (99/99)")) - 2
    lines: list[list[tuple[str, list[str], str]]] = [[]]
    used = 0
    for opening, items, closing in sections:
        frame = len(opening) + len(closing)
        current: list[str] | None = None
        for item in items:
            item = item if len(item) + frame <= room else item[: max(room - frame - 1, 1)] + "…"
            extra = len(item) + (len(sep) if current else frame + (2 if lines[-1] and current is None else 0))
            if used + extra > room and (current or lines[-1]):
                lines.append([])
                used, current = 0, None
                extra = len(item) + frame
            if current is None:
                current = []
                lines[-1].append((opening, current, closing))
            current.append(item)
            used += extra
    total = len(lines)
    return [(f"{head(f' ({i}/{total})' if total > 1 else '')}: "
             + "; ".join(f"{o}{sep.join(items)}{c}" for o, items, c in line),
             [item for _, items, _ in line for item in items]) for i, line in enumerate(lines, 1)]
