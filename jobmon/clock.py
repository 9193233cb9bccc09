"""Time as jobmon keeps it: UTC with its offset in every file (``2026-12-01T21:30:00+00:00``),
local time only when shown. A registry written under ``TZ=UTC`` and read under
``TZ=Asia/Tokyo`` means the same moments.

Files of older versions hold naive times (``2026-12-01T21:30:00``, ``2026-12-01 21:30``),
written in the local time of the machine: they are read as such.
"""
from __future__ import annotations

from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def aware(when: datetime) -> datetime:
    """A naive time is local time, as older versions wrote it."""
    return when if when.tzinfo is not None else when.astimezone()


def stamp(when: datetime) -> str:
    """How a time is stored: UTC, to the second, with its offset."""
    return aware(when).astimezone(timezone.utc).isoformat(timespec="seconds")


def parse(text: str) -> datetime | None:
    """A stored time (new or old form), aware; None for text that is no time (a hand edit)."""
    try:
        return aware(datetime.fromisoformat(text.strip()))
    except (ValueError, TypeError, AttributeError, OverflowError, OSError):
        return None


def local(when: datetime) -> datetime:
    """The local wall-clock time, naive: to compare with what a scheduler prints (sacct's
    Submit is naive local time)."""
    return aware(when).astimezone().replace(tzinfo=None)


def shown(when: datetime, fmt: str = "%H:%M:%S") -> str:
    """A time as a person reads it: local."""
    return aware(when).astimezone().strftime(fmt)


def shown_stored(text: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored time as a person reads it (local); text that is no time, as it is."""
    when = parse(text)
    return text if when is None else shown(when, fmt)
