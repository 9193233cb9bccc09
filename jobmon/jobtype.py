"""Job types: their typed records, and how one is built from its YAML (validated once).

``config`` finds and merges the YAML layers; this module turns one job type's merged mapping
into a ``JobType`` whose regexes are compiled and whose templates are parsed, or raises the
one-line ``file: key.path: problem`` error through the ``where`` (a ``where.Where``) it is given.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from jobmon.settings import Settings
from jobmon.where import Where

STANDARD_FIELDS = ("type", "id", "host", "user", "file", "description", "submitted")
CATEGORIES = ("missing", "pending", "running", "success", "failure")
# Variables the engine adds, beside a job's fields, to each kind of template.
CHECK_VARS = ("ssh",)
BATCH_VARS = ("ssh", "ids", "jobs", "host", "user", "type")
RESULT_VARS = ("ssh", "state", "previous", "outcome", "groups", "delegate")

# Applied when a type declares no pattern of its own: a host is a hostname or ssh alias (never an
# ssh option), a user a login name.
BUILTIN_PATTERNS = {
    "host": re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,252}"),
    "user": re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}"),
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    required: bool
    pattern: re.Pattern[str] | None
    help: str
    default: str


@dataclass(frozen=True)
class JsonSpec:
    """Where the rows, ids and states are in a check's JSON output (dotted paths, ``*``)."""

    items: str
    id: tuple[str, ...]  # a row belongs to the job whose id equals any of these
    state: str
    fields: Mapping[str, str]


@dataclass(frozen=True)
class Probe:
    command: Any  # jinja2.Template | None: one job
    batch: Any  # jinja2.Template | None: every job of the type on one host
    batch_size: int
    read: Any  # jinja2.Template | None: a local file read from where the last check stopped, no process
    regex: re.Pattern[str]  # the first of regexes
    regexes: tuple[re.Pattern[str], ...]  # each finds states; the earliest match in the output wins
    json: JsonSpec | None
    ok_exit: tuple[int, ...]
    fail_if: re.Pattern[str] | None  # output that means the check failed (not the job)
    default: str | None  # the state of a one-job check whose output has no match (e.g. a log still growing)
    source: Mapping[str, str]  # template texts, for `jobmon render` and `types`


@dataclass(frozen=True)
class Pattern:
    """A named regex with an optional text template (its variables: the regex's groups)."""

    name: str
    regex: re.Pattern[str]
    text: Any  # jinja2.Template | None: None means the matching line itself
    step: float = 0.0  # events: report the `percent` group at each new multiple of step
    traceback: bool = False  # diagnosis: the cause named by the last Python traceback
    path: str = ""  # metrics: values at this path of YAML/JSON output, instead of regex matches
    summary: bool = True  # metrics: also shown in the summary line (scores are; MaxRSS is not)
    each: bool = False  # events: said once per value of the regex's first group, not once in all


@dataclass(frozen=True)
class Delegate:
    """Ask another type about a job whose own check has gone quiet (a log that stopped growing)."""

    type: str
    id: Any  # jinja2.Template (text): from the job's fields and captured key-event groups
    host: Any
    after: float  # seconds without news before asking
    success: str  # our state when the other type says success
    failure: str
    confirm: frozenset[str]  # our states believed only if the other type does not say otherwise


@dataclass(frozen=True)
class Discover:
    command: Any  # jinja2.Template (shell): `user`, `host`, and the type's vars
    regex: re.Pattern[str]  # per line: `id`, optional `description`, `state`
    per_host: bool  # the command names {{ host }}: run once per host


@dataclass(frozen=True)
class JobType:
    name: str
    description: str
    fields: Mapping[str, FieldSpec]
    interval: float
    timeout: float
    action_timeout: float
    check: Probe
    upper: bool
    rewrite: tuple[tuple[re.Pattern[str], str], ...]
    states: Mapping[str, frozenset[str]]  # category -> states
    detail: Any  # jinja2.Template | None (text, not shell)
    events: tuple[Pattern, ...]  # key events in a check's output, each said once per job
    diagnosis: tuple[Pattern, ...]  # in order: the first found in a failure's output is its cause
    metrics: tuple[Pattern, ...]  # results found in on_complete's output, e.g. scores
    log: re.Pattern[str] | None  # finds the full log's path (group `path`) in on_failure's output
    fallback: Probe | None  # asked about the jobs the check had no row for
    delegate: Delegate | None
    discover: Discover | None
    vars: Mapping[str, str]  # the type's own template variables, overridable per cluster
    on_complete: Any
    on_failure: Any
    sources: tuple[str, ...]

    def problem(self, values: Mapping[str, str]) -> str | None:
        """Why these job values cannot be registered (one line), or None."""
        for spec in self.fields.values():
            value = values.get(spec.name, "")
            if spec.required and not value:
                hint = f" ({spec.help})" if spec.help else ""
                return f"job type '{self.name}' needs --{spec.name}{hint}"
        for name, value in values.items():
            if not value:
                continue
            spec = self.fields.get(name)
            pattern = spec.pattern if spec and spec.pattern else BUILTIN_PATTERNS.get(name)
            if pattern is not None and not pattern.fullmatch(value):
                hint = f": {spec.help}" if spec and spec.help else ""
                return f"{self.name}: --{name} {value[:80]!r} is not valid{hint} (must match {pattern.pattern})"
        return None

    def terminal(self, state: str) -> bool:
        return self.category(state) in ("success", "failure")

    def category(self, state: str) -> str:
        for name, members in self.states.items():
            if state in members:
                return name
        return "unknown"


# ---------------------------------------------------------------- building


def _regex(text: str, where: Where, rel: tuple[str, ...], groups: Iterable[str] = ()) -> re.Pattern[str]:
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise where.error(rel, f"bad regex: {exc}") from None
    for group in groups:
        if group not in pattern.groupindex:
            raise where.error(rel, f"no (?P<{group}>…) group")
    return pattern


def _template(text: str | None, allowed: Iterable[str], where: Where, rel: tuple[str, ...], *, shell: bool) -> Any:
    if text is None:
        return None
    from jobmon import template

    try:
        return template.compile_template(text, allowed, shell=shell)
    except template.TemplateError as exc:
        raise where.error(rel, str(exc)) from None


def build_patterns(raw: list[Mapping[str, Any]], key: str, where: Where) -> tuple[Pattern, ...]:
    out: list[Pattern] = []
    for i, item in enumerate(raw):
        at = (key, str(i))
        owner = {"step": "events", "each": "events", "traceback": "diagnosis", "path": "metrics", "summary": "metrics"}
        for option, only in owner.items():
            if option in item and only != key:
                raise where.error(at + (option,), f"only for {only}")
        special = item.get("traceback") or item.get("path")
        if "regex" not in item and not special:
            raise where.error(at + ("regex",), "missing")
        regex = _regex(item.get("regex", "$^"), where, at + ("regex",), ("percent",) if item.get("step") else ())
        regex = re.compile(regex.pattern, re.MULTILINE)
        reserved = sorted(set(regex.groupindex) & {"line", "match", "keys", "value"})
        if reserved:
            raise where.error(at + ("regex",), f"(?P<{reserved[0]}>…) is a name the text template already has; rename the group")
        name = item.get("name", f"{key}-{i}")
        if name in {p.name for p in out}:
            raise where.error(at + ("name",), f"'{name}' is used twice")
        names = {"keys", "value"} if item.get("path") else set(regex.groupindex) | {"line", "match"}
        text = _template(item.get("text"), names, where, at + ("text",), shell=False)
        if item.get("step", 1) <= 0:
            raise where.error(at + ("step",), "must be greater than 0")
        if item.get("each") and not regex.groups:
            raise where.error(at + ("each",), "needs a group in the regex: its value tells one occurrence from another")
        out.append(Pattern(name, regex, text, float(item.get("step", 0)), bool(item.get("traceback")),
                           item.get("path", ""), bool(item.get("summary", True)), bool(item.get("each"))))
    return tuple(out)


def _probe(check: Mapping[str, Any], key: str, job_vars: set[str], type_vars: Mapping[str, str], where: Where) -> Probe:
    """A check (or fallback): how to ask, and how to read the answer."""
    ways = [k for k in ("command", "batch", "read") if check.get(k)]
    if not ways:
        raise where.error((key, "command"), "missing: give command, batch or read")
    if "read" in ways and len(ways) > 1:
        raise where.error((key, "read"), "a check reads a file or runs a command, not both")
    if "regex" not in check and "json" not in check:
        raise where.error((key, "regex"), "missing: the regex (or json) that finds the state")
    if "regex" in check and "json" in check:
        raise where.error((key, "json"), "give regex or json, not both")
    json_spec = None
    if "json" in check:
        raw = check["json"]
        for needed in ("id", "state"):
            if not raw.get(needed):
                raise where.error((key, "json", needed), "missing")
        json_spec = JsonSpec(raw.get("items", "*"), tuple(raw["id"]), raw["state"], dict(raw.get("fields", {})))
    groups = ("state", "id") if check.get("batch") and "regex" in check else ("state",) if "regex" in check else ()
    texts = check.get("regex", "$^")
    texts = [texts] if isinstance(texts, str) else texts
    if not texts or not all(isinstance(t, str) for t in texts):
        raise where.error((key, "regex"), "expected a string or a list of strings")
    regexes = tuple(_regex(t, where, (key, "regex") + ((str(i),) if len(texts) > 1 else ()), groups)
                    for i, t in enumerate(texts))
    probe = Probe(
        command=_template(check.get("command"), job_vars | set(CHECK_VARS), where, (key, "command"), shell=True),
        batch=_template(check.get("batch"), set(type_vars) | set(BATCH_VARS), where, (key, "batch"), shell=True),
        batch_size=int(check.get("batch_size", 500)),
        read=_template(check.get("read"), job_vars, where, (key, "read"), shell=False),
        regex=regexes[0],
        regexes=regexes,
        json=json_spec,
        ok_exit=tuple(check.get("ok_exit", [0])),
        fail_if=_regex(check["fail_if"], where, (key, "fail_if")) if "fail_if" in check else None,
        default=check.get("default"),
        source={k: check[k] for k in ("command", "batch", "read") if check.get(k)},
    )
    if probe.batch_size < 1:
        raise where.error((key, "batch_size"), "must be at least 1")
    return probe


def build(name: str, body: Mapping[str, Any], settings: Settings, where: Where, origins: Mapping,
              common: tuple[Pattern, ...] = ()) -> JobType:
    fields = {"id": FieldSpec("id", True, None, "", "")}
    for fname, spec in body.get("fields", {}).items():
        pattern = _regex(spec["pattern"], where, ("fields", fname, "pattern")) if "pattern" in spec else None
        fields[fname] = FieldSpec(
            fname, bool(spec.get("required", fname == "id")), pattern, spec.get("help", ""), spec.get("default", "")
        )
    type_vars = {k: str(v) for k, v in body.get("vars", {}).items()}
    clash = sorted(set(type_vars) & (set(fields) | set(STANDARD_FIELDS) | set(RESULT_VARS) | set(BATCH_VARS)))
    if clash:
        raise where.error(("vars", clash[0]), "is already a field or an engine variable")
    job_vars = set(STANDARD_FIELDS) | set(fields) | set(type_vars)

    check = body.get("check")
    if not check:
        raise where.error(("check",), "missing: a job type needs a check (command, batch or read, and regex or json)")
    probe = _probe(check, "check", job_vars, type_vars, where)
    fallback = _probe(body["fallback"], "fallback", job_vars, type_vars, where) if body.get("fallback") else None

    states_raw = body.get("states", {})
    states: dict[str, frozenset[str]] = {}
    for cat in CATEGORIES:
        states[cat] = frozenset(states_raw.get(cat, []))
    if not states["success"] and not states["failure"]:
        raise where.error(("states",), "no terminal state: list at least one state under success or failure")
    for a_i, a in enumerate(CATEGORIES):
        for b in CATEGORIES[a_i + 1 :]:
            both = states[a] & states[b]
            if both:  # blame the list set last: that is the edit that made the clash
                here, other = (a, b) if where.newer(("states", a), ("states", b)) else (b, a)
                raise where.error(("states", here), f"{sorted(both)[0]} is already under states.{other}")
    vocabulary = frozenset().union(*states.values())
    if probe.default is not None and probe.default not in vocabulary:
        raise where.error(("check", "default"), f"{probe.default!r} is not in states")
    normalize = body.get("normalize", {})
    rewrite = []
    for pat, to in normalize.get("rewrite", {}).items():
        compiled = _regex(pat, where, ("normalize", "rewrite", pat))
        if to not in vocabulary:
            raise where.error(("normalize", "rewrite", pat), f"rewrites to {to!r}, which is not in states")
        rewrite.append((compiled, to))

    events = build_patterns(body.get("events", []), "events", where)
    diagnosis = build_patterns(body.get("diagnosis", []), "diagnosis", where) + common
    metrics = build_patterns(body.get("metrics", []), "metrics", where)
    captured = {g for p in events for g in p.regex.groupindex}
    result_vars = (job_vars | set(RESULT_VARS) | {g for r in probe.regexes for g in r.groupindex} | captured
                   | set(probe.json.fields if probe.json else ()))
    delegate = None
    if body.get("delegate"):
        d = body["delegate"]
        for needed in ("type", "id", "success", "failure"):
            if needed not in d:
                raise where.error(("delegate", needed), "missing")
        for outcome in ("success", "failure"):
            if d[outcome] not in states["success" if outcome == "success" else "failure"]:
                raise where.error(("delegate", outcome), f"{d[outcome]!r} is not under states.{outcome}")
        row_vars = {g for r in probe.regexes for g in r.groupindex} | set(probe.json.fields if probe.json else ())
        delegate = Delegate(
            d["type"], _template(d["id"], job_vars | captured | row_vars | {"open_part"}, where, ("delegate", "id"), shell=False),
            _template(d.get("host", "{{ host }}"), job_vars | captured | row_vars | {"open_part"}, where,
                      ("delegate", "host"), shell=False),
            float(d.get("after", 600)), d["success"], d["failure"], frozenset(d.get("confirm", [])))
        for state in d.get("confirm", []):
            if state not in vocabulary:
                raise where.error(("delegate", "confirm"), f"{state!r} is not in states")
    discover = None
    if body.get("discover"):
        d = body["discover"]
        if not d.get("command") or not d.get("regex"):
            raise where.error(("discover", "command" if not d.get("command") else "regex"), "missing")
        discover = Discover(
            _template(d["command"], {"user", "host", "ssh"} | set(type_vars), where, ("discover", "command"), shell=True),
            _regex(d["regex"], where, ("discover", "regex"), ("id",)),
            re.search(r"{{-?\s*host\b", d["command"]) is not None)
    detail = _template(body.get("detail"), result_vars, where, ("detail",), shell=False)
    for key in ("interval", "timeout", "action_timeout"):
        if key in body and body[key] <= 0:
            raise where.error((key,), "must be greater than 0")
    sources = tuple(dict.fromkeys(v for k, v in origins.items() if k[:2] == ("types", name)))
    return JobType(
        name=name,
        description=body.get("description", ""),
        fields=fields,
        interval=float(body.get("interval", settings.interval)),
        timeout=float(body.get("timeout", settings.timeout)),
        action_timeout=float(body.get("action_timeout", settings.action_timeout)),
        check=probe,
        upper=bool(normalize.get("upper", False)),
        rewrite=tuple(rewrite),
        states=states,
        detail=detail,
        events=events,
        diagnosis=diagnosis,
        metrics=metrics,
        log=_regex(body["log"], where, ("log",), ("path",)) if "log" in body else None,
        fallback=fallback,
        delegate=delegate,
        discover=discover,
        vars=type_vars,
        on_complete=_template(body.get("on_complete"), result_vars, where, ("on_complete",), shell=True),
        on_failure=_template(body.get("on_failure"), result_vars, where, ("on_failure",), shell=True),
        sources=sources,
    )
