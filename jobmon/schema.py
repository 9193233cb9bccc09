"""A tiny declarative schema for the YAML layers: key names and value kinds, nothing more.

Each file is checked on its own as it is read, so an unknown or mistyped key is reported in the
file that holds it, with the nearest valid key suggested.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Mapping, NamedTuple


class Problem(NamedTuple):
    path: tuple[str, ...]
    message: str


class Kind(NamedTuple):
    """A leaf: ``name`` is what the error calls it, ``types`` what Python types pass."""

    name: str
    types: tuple[type, ...]


STR = Kind("a string", (str,))
NUM = Kind("a number", (int, float))
INT = Kind("a whole number", (int,))
BOOL = Kind("true or false", (bool,))
STRS = Kind("a string or a list of strings", (str, list))


class ListOf(NamedTuple):
    item: Any  # a Kind or a mapping schema


class MapOf(NamedTuple):
    """Any key (data, such as a field name or a regex); each value of shape ``value``."""

    value: Any


class Either(NamedTuple):
    """A leaf of kind ``leaf``, or a mapping of shape ``mapping`` (an action: a command for one
    job, or a batch for many)."""

    leaf: Kind
    mapping: Any


Schema = Mapping[str, Any]  # key -> Kind | ListOf | MapOf | Either | Schema


def check(value: Any, schema: Any, path: tuple[str, ...] = ()) -> list[Problem]:
    if isinstance(schema, Either):
        if isinstance(value, dict):
            return check(value, schema.mapping, path)
        if isinstance(value, schema.leaf.types):
            return []
        keys = ", ".join(schema.mapping)
        return [Problem(path, f"expected {schema.leaf.name} or a mapping ({keys}), found {describe(value)}")]
    if isinstance(schema, Kind):
        ok = isinstance(value, schema.types) and not (
            isinstance(value, bool) and bool not in schema.types
        )
        if ok and isinstance(value, float) and not math.isfinite(value):
            # YAML's .nan and .inf: a timeout of nan times out at once, an interval of inf never polls
            return [Problem(path, f"expected a finite number, found {describe(value)}")]
        return [] if ok else [Problem(path, f"expected {schema.name}, found {describe(value)}")]
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return [Problem(path, f"expected a list, found {describe(value)}")]
        out: list[Problem] = []
        for i, item in enumerate(value):
            out += check(item, schema.item, path + (str(i),))
        return out
    if not isinstance(value, dict):
        return [Problem(path, f"expected a mapping, found {describe(value)}")]
    out = []
    for key, item in value.items():
        key = str(key)
        if isinstance(schema, MapOf):
            out += check(item, schema.value, path + (key,))
        elif key in schema:
            out += check(item, schema[key], path + (key,))
        else:
            near = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (valid: {', '.join(schema)})"
            out.append(Problem(path + (key,), f"unknown key{hint}"))
    return out


def describe(value: Any, *, json: bool = False) -> str:
    """A YAML value (or, with ``json``, a JSON value) as an error message names it."""
    if value is None:
        return "null" if json else "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "an array" if json else "a list"
    return "an object" if json else "a mapping"


FIELD = {"required": BOOL, "pattern": STR, "help": STR, "default": STR}

# A named pattern: key events (with `step` for progress), diagnosis (`traceback: true` for the
# last Python traceback), metrics (`path` into YAML/JSON output instead of `regex`; `values`:
# named formulas over the regex's groups; `failure`: also read in on_failure's output).
PATTERN = {"name": STR, "regex": STR, "text": STR, "step": NUM, "each": BOOL, "traceback": BOOL, "path": STR,
           "summary": BOOL, "field": STR, "values": MapOf(STR), "failure": BOOL, "needs": ListOf(STR), "say": BOOL, "keep": MapOf(STR)}

# on_complete / on_failure: one job's command, or one command for all of a host's ending jobs.
ACTION = Either(STR, {"batch": STR, "batch_size": INT})

# Where people are told (jobmon/notify.py): an apprise URL alone (the default kinds), or with
# the kinds it wants and how long one send may take.
NOTIFY = ListOf(Either(STR, {"url": STR, "on": ListOf(STR), "timeout": NUM}))

PROBE = {
    "command": STR,
    "batch": STR,
    "batch_size": INT,
    "read": STR,
    "regex": STRS,
    "json": {"items": STR, "id": ListOf(STR), "state": STR, "fields": MapOf(STR)},
    "default": STR,
    "ok_exit": ListOf(INT),
    "fail_if": STR,
    "live": {"regex": STRS, "fail_if": STR},
    "capture": STR,
    "lines": STR,
    "offset": STR,
}

JOB_TYPE: Schema = {
    "extends": STR,
    "health": {"regex": STR, "unhealthy_after": INT},
    "ready": STR,
    "ready_within": NUM,
    "description": STR,
    "fields": MapOf(FIELD),
    "interval": NUM,
    "timeout": NUM,
    "check": PROBE,
    "normalize": {"upper": BOOL, "rewrite": MapOf(STR)},
    "vars": MapOf(STR),
    "delegate": {"type": STR, "id": STR, "host": STR, "after": NUM, "success": STR, "failure": STR,
                 "confirm": ListOf(STR), "during": ListOf(STR)},
    "discover": {"command": STR, "regex": STR},
    # ids the type's system abbreviates: `jobmon add` runs `command` and reads the full id out of
    # its output as the check reads a batch; `when` limits it to ids that may be short
    "resolve": {"command": STR, "when": STR},
    "metrics": ListOf(PATTERN),
    "log": STR,
    "states": {
        "missing": ListOf(STR),
        "pending": ListOf(STR),
        "running": ListOf(STR),
        "success": ListOf(STR),
        "failure": ListOf(STR),
    },
    "detail": STR,
    "events": ListOf(PATTERN),
    "diagnosis": ListOf(PATTERN),
    "on_complete": ACTION,
    "on_failure": ACTION,
    "action_timeout": NUM,
    "notify": NOTIFY,
    # what shows a running job is alive (its logs' sizes and mtimes, a tqdm bar), and how long it
    # may show nothing before one STALLED line
    "progress": {"regex": STR, "clock": STR, "last": STR, "bar": STR, "row": ListOf(STR)},
    "stall_after": NUM,
}

SETTINGS: Schema = {
    "interval": NUM,
    "timeout": NUM,
    "action_timeout": NUM,
    "max_parallel": INT,
    "max_parallel_total": INT,
    "unreachable_after": INT,
    "lost_after": NUM,
    "aggregate_after": INT,
    "max_line": INT,
    "ssh": ListOf(STR),
    "max_read": INT,
    "hosts": ListOf(STR),
}

DELIVERY: Schema = {
    "line": INT,
    "notification": INT,
    "join": NUM,
    "gap": NUM,
    "burst": INT,
    "refill": NUM,
}

CLUSTER: Schema = {
    "hosts": ListOf(STR),
    "settings": SETTINGS,
    "types": MapOf(JOB_TYPE),
    "notify": NOTIFY,
}

MONITOR: Schema = {
    "settings": SETTINGS,
    "delivery": DELIVERY,
    "diagnosis": ListOf(PATTERN),
    "types": MapOf(JOB_TYPE),
    "clusters": MapOf(CLUSTER),
    "notify": NOTIFY,
}

CHECKERS = MapOf(JOB_TYPE)
