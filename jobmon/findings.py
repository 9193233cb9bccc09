"""Pure functions over a job's own words: key events, the root cause of a failure, results.

Patterns come from the job type (and monitor.yaml's shared diagnosis); text goes in, one-line
findings come out.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

from jobmon.config import Pattern


def walk(data: Any, path: str) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every value at a dotted path. ``*`` takes each item of a list or mapping; the keys it
    took come back with the value (list items as their index)."""
    parts = [p for p in path.split(".") if p]

    def go(node: Any, rest: list[str], keys: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        if not rest:
            yield keys, node
            return
        head, tail = rest[0], rest[1:]
        if head == "*":
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for key, child in items:
                yield from go(child, tail, keys + (str(key),))
        elif isinstance(node, dict) and head in node:
            yield from go(node[head], tail, keys)
        elif isinstance(node, list) and head.isdigit() and int(head) < len(node):
            yield from go(node[int(head)], tail, keys)

    return go(data, parts, ())

def line_at(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start:] if end < 0 else text[start:end]


def _say(pattern: Pattern, match: re.Match[str], text: str, **extra: Any) -> str:
    """The pattern's text, or what it matched (write ``.*`` to take the rest of the line)."""
    line = line_at(text, match.start()).strip()
    if pattern.text is None:
        return " ".join(match.group(0).split())
    values = {k: v or "" for k, v in match.groupdict().items()}
    return " ".join(pattern.text.render(line=line, match=match.group(0), **values, **extra).split())


def key_events(text: str, patterns: Iterable[Pattern], seen: Iterable[str], known: Mapping[str, str] | None = None,
               job: Mapping[str, Any] | None = None) -> list[tuple[str, str, dict[str, str]]]:
    """Key events in new output: (name, what to say, named groups), each name said once, in
    output order. ``known``: what the job's earlier events found, for a pattern that ``needs`` it;
    ``job``: its fields, its row's groups (where it runs) and ``running_for``, which every text may use.

    A pattern with ``step`` follows progress: its ``percent`` group is reported each time it
    reaches a new multiple of ``step`` (the highest one in this text only), named ``name@N``,
    or ``name[task]@N`` per value of a ``task`` group (e.g. each task of a pipeline).
    """
    done = set(seen)
    job_values = dict(job or {})  # what every text sees as ``job``
    found: list[tuple[int, str, str, dict[str, str]]] = []
    for pattern in patterns:
        if pattern.field:
            continue  # said from the job's row (``field_events``), not from its output
        if pattern.step:
            best: dict[str, tuple[int, re.Match[str]]] = {}
            for match in pattern.regex.finditer(text):
                try:
                    bucket = int(float(match.group("percent")) // pattern.step * pattern.step)
                except (TypeError, ValueError):
                    continue
                part = match.groupdict().get("task") or ""
                key = f"{pattern.name}[{part}]" if part else pattern.name
                if f"{key}@{bucket}" not in done and (part not in best or bucket > best[part][0]):
                    best[part] = (bucket, match)
            for part, (bucket, match) in best.items():
                key = f"{pattern.name}[{part}]" if part else pattern.name
                found.append((match.start(), f"{key}@{bucket}", *_event(pattern, match, text, job_values)))
            continue
        if pattern.each:  # once per distinct value, e.g. each Slurm job a pipeline launches
            for match in pattern.regex.finditer(text):
                key = f"{pattern.name}[{(match.group(1) or '').strip()}]"
                if key not in done:
                    done.add(key)
                    found.append((match.start(), key, *_event(pattern, match, text, job_values)))
            continue
        if pattern.name in done:
            continue
        if pattern.needs:
            continue  # after the others: what they find before it is known to it
        match = pattern.regex.search(text)
        if match:
            found.append((match.start(), pattern.name, *_event(pattern, match, text, job_values)))
    for pattern in patterns:
        if pattern.needs and pattern.name not in done:
            found += _when_known(pattern, text, found, known or {}, job_values)
    return [(name, said, groups) for _, name, said, groups in sorted(found, key=lambda f: f[0])]


def _when_known(pattern: Pattern, text: str, found: list[tuple[int, str, str, dict[str, str]]],
                known: Mapping[str, str], job: dict[str, Any]) -> list[tuple[int, str, str, dict[str, str]]]:
    """A pattern that ``needs`` names, at its first match where they are all known: kept from
    the job's earlier events, or found earlier in this output (a server's URL line, then its
    startup line; or uvicorn's startup line first, its URL only once the port is bound)."""
    for match in pattern.regex.finditer(text):
        values = dict(known)
        for start, _, _, groups in sorted(found, key=lambda f: f[0]):
            if start <= match.start():
                values.update(groups)
        values.update(_groups(match))
        if all(values.get(n) for n in pattern.needs):
            extra = {n: values[n] for n in pattern.needs if n not in match.groupdict()}
            return [(match.start(), pattern.name, *_event(pattern, match, text, job, extra))]
    return []


def _event(pattern: Pattern, match: re.Match[str], text: str, job: dict[str, Any],
           extra: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """What a found event says, and the values it leaves the job: its groups, and what its
    ``keep`` templates make of them (READY's endpoint, its 0.0.0.0 made the node)."""
    groups = _groups(match)
    kept: dict[str, str] = {}
    if pattern.keep:
        values = {k: v or "" for k, v in match.groupdict().items()}
        values.update(extra or {}, line=line_at(text, match.start()).strip(), match=match.group(0), job=job)
        kept = {name: " ".join(t.render(**values).split()) for name, t in pattern.keep}
    return _say(pattern, match, text, job=job, **(extra or {}), **kept), {**groups, **kept}


def field_events(groups: Mapping[str, str], patterns: Iterable[Pattern], seen: Iterable[str]
                 ) -> list[tuple[str, str, dict[str, str]]]:
    """Key events in what a check's row says of the job (a pending reason that means it will
    never start), each name said once."""
    done = set(seen)
    found = []
    for pattern in patterns:
        said = _field(pattern, groups) if pattern.field and pattern.name not in done else None
        if said is not None:
            found.append((pattern.name, said, {}))
    return found


def _field(pattern: Pattern, groups: Mapping[str, str]) -> str | None:
    """What a pattern with ``field`` says of a row's groups, or None."""
    value = groups.get(pattern.field, "")
    match = pattern.regex.search(value) if value else None
    if match is None:
        return None
    return _say(pattern, match, value, job=dict(groups))


def _groups(match: re.Match[str]) -> dict[str, str]:
    return {k: v.strip() for k, v in match.groupdict().items() if v}


def diagnose(text: str, patterns: Iterable[Pattern], groups: Mapping[str, str] | None = None) -> str | None:
    """The root cause in one line: the first pattern, in declared order, that finds something
    in the text; of its matches the last one, nearest the failure (a log may say it twice,
    wrapped first). Then, if the text names no cause, what the patterns with ``field`` find in
    the job's row (a signal in its exit code): the scheduler's word over a random last line."""
    patterns = tuple(patterns)
    for pattern in patterns:
        if pattern.field:
            continue
        if pattern.traceback:
            cause = last_exception(text)
            if cause:
                return cause
            continue
        match = None
        for match in pattern.regex.finditer(text):
            pass
        if match:
            return _say(pattern, match, text)
    for pattern in patterns:
        said = _field(pattern, groups) if pattern.field and groups else None
        if said is not None:
            return said
    return None


_TRACEBACK = "Traceback (most recent call last):"
_CHAINED = ("The above exception was the direct cause of the following exception:",
            "During handling of the above exception, another exception occurred:")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning)\b(?::.*)?$|^[A-Za-z_][\w.]*: .+$")


def last_exception(text: str) -> str | None:
    """The exception line of the last Python traceback in the text; for a chain of tracebacks,
    the innermost exception that has a message (the cause, not the wrapper)."""
    lines = text.splitlines()
    chains: list[list[str]] = []
    linked = False
    prefix = ""
    n = 0
    while n < len(lines):
        line = lines[n]
        stripped = (line[len(prefix):] if prefix and line.startswith(prefix) else line).strip()
        if any(c in stripped for c in _CHAINED):
            linked = True
        elif _TRACEBACK in lines[n]:
            # Whatever stands before the header (indent, a task's log prefix) stands before
            # every line of that traceback too.
            head = lines[n][: lines[n].index(_TRACEBACK)]
            prefix = head if head.strip() else ""  # a log prefix, also before the chain's own lines
            exc = None
            m = n + 1
            while m < len(lines):
                line = lines[m]
                body = line[len(head):] if line.startswith(head) else line.lstrip()
                if body and not body[0].isspace() and not body.startswith(_TRACEBACK):
                    if _EXCEPTION.match(body.strip()):
                        exc = body.strip()
                    break
                m += 1
            if exc:
                if linked and chains:
                    chains[-1].append(exc)
                else:
                    chains.append([exc])
            linked = False
            n = m
            continue
        elif stripped:
            linked = False  # any other text between two tracebacks breaks the chain
        n += 1
    if not chains:
        return None
    chain = chains[-1]
    return next((e for e in chain if ": " in e), chain[0])


def log_path(text: str, pattern: re.Pattern[str] | None) -> str | None:
    """The full log's paths (a job's StdOut and StdErr), as the type's ``log`` regex finds them
    in on_failure's output."""
    paths = dict.fromkeys(m.group("path").strip() for m in pattern.finditer(text)) if pattern is not None else {}
    return ", ".join(paths) or None


class Found(NamedTuple):
    """One result of an end action's output: what to say, whether the summary line shows it,
    and the values its formulas computed (for the history record)."""

    text: str
    summary: bool
    values: dict[str, Any]


def metrics(text: str, patterns: Iterable[Pattern]) -> list[Found]:
    """Every result found in an on_complete (or on_failure) output, e.g. ``MMLU-Pro: 42.3%``.

    A pattern with ``path`` reads the output as YAML (JSON is YAML) documents and says its
    ``text`` for each value at the path (``keys``: what the path's ``*`` took; ``value``); a
    pattern with ``regex`` says its text for every match, after computing its ``values``. A
    text that renders empty says nothing, though the values it computed are kept.
    """
    out: list[Found] = []
    docs: list[Any] | None = None
    for pattern in patterns:
        if pattern.path:
            if docs is None:
                docs = _yaml_docs(text)
            for doc in docs:
                for keys, value in walk(doc, pattern.path):
                    said = pattern.text.render(keys=keys, value=value) if pattern.text else f"{'.'.join(keys)}: {value}"
                    out.append(Found(" ".join(said.split()), pattern.summary, {}))
            continue
        for match in pattern.regex.finditer(text):
            values = measure(pattern, {k: (v or "").strip() for k, v in match.groupdict().items()})
            said = _say(pattern, match, text, **{k: values.get(k) for k, _ in pattern.values})
            kept = {k: v for k, v in values.items() if _scalar(v)}  # a history record is JSON
            if said or kept:
                out.append(Found(said, pattern.summary, kept))
    return out


def _scalar(value: Any) -> bool:
    import math

    return isinstance(value, (str, bool, int)) or isinstance(value, float) and math.isfinite(value)


def measure(pattern: Pattern, groups: Mapping[str, str]) -> dict[str, Any]:
    """A metric's ``values``, each expression over the groups and the values before it; one
    that cannot be computed from what the scheduler said (a job that never started has no
    Start, a cluster without GPUs no gres/gpu) is left out, and so is what depends on it."""
    import jinja2

    known: dict[str, Any] = {}
    for name, expression in pattern.values:
        try:
            value = expression(**groups, **{n: known.get(n) for n, _ in pattern.values})
        except (jinja2.UndefinedError, ValueError, TypeError, ArithmeticError, KeyError, OverflowError):
            continue
        if value is not None and not isinstance(value, jinja2.Undefined):
            known[name] = value
    return known


def _yaml_docs(text: str) -> list[Any]:
    import yaml

    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except (yaml.YAMLError, RecursionError):  # an action's output is not trusted
        return []
