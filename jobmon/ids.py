"""Abbreviated ids: a system that resolves any unique prefix (nel 0.2.6 takes ``4aa7`` for
``4aa78841c0de5eed``, and ``4aa7.1`` for its job ``4aa78841c0de5eed.1``) answers with full ids,
so a job registered by a prefix must still find its rows.

An id abbreviates another when its part before the first ``.`` starts the other's, and the rest
is the same. Pure functions, no imports from the engine: the rules and ``jobmon add`` share them.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator


def abbreviates(short: str, full: str) -> bool:
    """``4aa7.1`` abbreviates ``4aa78841c0de5eed.1`` (and itself); never ``4aa78841c0de5eed.10``."""
    head, dot, tail = short.partition(".")
    full_head, full_dot, full_tail = full.partition(".")
    return bool(head) and full_head.startswith(head) and (dot, tail) == (full_dot, full_tail)


def expansions(full: str) -> Iterator[str]:
    """Every id that abbreviates ``full``, shortest first: its head cut short, its rest kept."""
    head, dot, tail = full.partition(".")
    for n in range(1, len(head) + 1):
        yield head[:n] + dot + tail


def short_ones(ids: Iterable[str], when: re.Pattern[str] | None) -> frozenset[str]:
    """The registered ids that may be abbreviations: those ``when`` matches whole (all without it)."""
    return frozenset(i for i in ids if when is None or when.fullmatch(i))


def owners_of(row_ids: Iterable[str], wanted: set[str] | frozenset[str], short: frozenset[str]) -> list[str]:
    """The registered ids a row belongs to, each once: those equal to one of its ids, and the
    ``short`` ones that abbreviate one of them. Looked up by the row id's own expansions (16 for a
    nel id), not by scanning every registered id."""
    out: dict[str, None] = {}
    for row_id in row_ids:
        if row_id in wanted:
            out[row_id] = None
        if short:
            out.update((s, None) for s in expansions(row_id) if s in short)
    return list(out)
