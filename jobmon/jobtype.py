"""Job types: their typed records, and how one is built from its YAML (validated once).

``config`` finds and merges the YAML layers; this module turns one job type's merged mapping
into a ``JobType`` whose regexes are compiled and whose templates are parsed, or raises the
one-line ``file: key.path: problem`` error through the ``where`` (a ``where.Where``) it is given.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from jobmon.settings import Settings
from jobmon.where import Where

STANDARD_FIELDS = ("type", "id", "host", "user", "file", "description", "submitted")
CATEGORIES = ("missing", "pending", "running", "success", "failure")
# Variables the engine adds, beside a job's fields, to each kind of template.
CHECK_VARS = ("ssh",)
BATCH_VARS = ("ssh", "ids", "jobs", "host", "user", "type", "progress")  # progress: whether the type watches for stalls
RESULT_VARS = ("ssh", "state", "previous", "outcome", "groups", "delegate", "parts_total", "parts_done",
               "parts_failed", "failed_part", "measured")  # measured: an end's metric values, in detail
# A batched action prints "<marker> <id>" before each job's part. It has no progress: that tells
# a check whether to stat logs, and an action rendering it would fail only at a job's end.
ACTION_BATCH_VARS = tuple(v for v in BATCH_VARS if v != "progress") + ("marker",)

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
class Live:
    """Rows in the check's own output that say what the controller holds now (SLURM's squeue
    beside sacct): such a row that is not terminal outweighs a terminal one (a requeued job),
    and answers for a job the check has no row for yet. While its ``fail_if`` matches, no end
    is believed: the controller could not be asked whether the job runs again."""

    regexes: tuple[re.Pattern[str], ...]
    fail_if: re.Pattern[str] | None


@dataclass(frozen=True)
class Action:
    """on_complete / on_failure: a command per job, or one per host for all its ending jobs."""

    template: Any  # jinja2.Template (shell)
    batch: bool
    batch_size: int


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
    live: Live | None = None
    capture: re.Pattern[str] | None = None  # lines whose groups are kept with the job the first time (log paths)
    # A batched check that reads each job's own log from where the last check stopped (a model
    # server's): ``lines`` (id, line) are the job's new lines, its text for key events; ``offset``
    # (id, offset) where its next read starts, given to the next check as the job's ``offset``.
    lines: re.Pattern[str] | None = None
    offset: re.Pattern[str] | None = None


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
    field: str = ""  # events, diagnosis: match this named group of the job's row, not its output text
    # metrics: named Jinja2 expressions over the groups (and the values before), in order: what
    # goes to the history record, structured, and to the text; one that fails is left out.
    values: tuple[tuple[str, Any], ...] = ()
    failure: bool = False  # metrics: also read in on_failure's output (a failed job's efficiency)
    # events: said only once every name here is known (a group an earlier event of the job
    # found, kept in its book, or one found before it in the same output); its text sees them.
    needs: tuple[str, ...] = ()
    say: bool = True  # events: False keeps its groups for the others (an endpoint), says nothing
    # events: values kept with the job, each a template over what its text sees (READY's endpoint,
    # for the health probe); the job's checks and actions see them.
    keep: tuple[tuple[str, Any], ...] = ()

    @property
    def gives(self) -> set[str]:
        """The names a found event leaves the job: its regex's groups and what it keeps."""
        return set(self.regex.groupindex) | {k for k, _ in self.keep}


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
    # Our states not believed once the other type has ended the job for settings.lost_after
    # (nel's PENDING after a TIMEOUT, while no autoresume comes): then the other's verdict stands.
    during: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Health:
    """A batched check's answer from each ready server: a ``regex`` line per job (``id``, curl's
    ``exit`` and the HTTP ``code``). ``unhealthy_after`` failed answers in a row make one
    UNHEALTHY line; the first good one after, one HEALTHY line."""

    regex: re.Pattern[str]
    unhealthy_after: int


@dataclass(frozen=True)
class Progress:
    """What shows that a running job is alive, and how long it may show nothing (``stall_after``
    seconds) before one STALLED line. A batched check prints, in its own output, a ``regex`` line
    per log of a job (``id``; every other group, e.g. size and ``mtime``, is the mark that moves
    when the job writes), the ``clock`` line of the host that read them (``now``, epoch seconds)
    and, for a job about to stall, ``last`` lines (``id``, ``line``): its log's tail. Or the
    check's ``row`` itself has values that move (nel's count of requests done). A read check's
    mark is how far its log has grown, or, while a ``bar`` (``percent``) is open, the bar itself."""

    regex: re.Pattern[str] | None
    clock: re.Pattern[str] | None
    last: re.Pattern[str] | None
    bar: re.Pattern[str] | None
    stall_after: float
    row: tuple[str, ...] = ()


DEFAULT_STALL_AFTER = 1800.0


@dataclass(frozen=True)
class Resolve:
    """How ``jobmon add`` turns an id the type's system abbreviates into the full one."""

    command: Any  # jinja2.Template (shell): the job's values and ``ssh``; its output read as the check's
    when: re.Pattern[str] | None  # only ids this matches whole are resolved (and matched to rows by prefix)


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
    delegate: Delegate | None
    discover: Discover | None
    vars: Mapping[str, str]  # the type's own template variables, overridable per cluster
    on_complete: Action | None
    on_failure: Action | None
    sources: tuple[str, ...]
    resolve: Resolve | None = None  # ids may be abbreviations: expanded at add, matched to rows by prefix
    progress: Progress | None = None  # no stall watch without one
    health: Health | None = None  # a ready server's answers (deploy)
    # The key event after which a job is of use (a server's READY): ``--until ready`` waits for
    # it, and a job running ``ready_within`` seconds without it gets one NOT_READY line.
    ready: str | None = None
    ready_within: float = 1800.0

    def reached_ready(self, seen: Iterable[str]) -> bool:
        """Whether a job that has said these key events has reached its type's ready event."""
        return self.ready is not None and self.ready in seen

    def problem(self, values: Mapping[str, str]) -> str | None:
        """Why these job values cannot be registered (one line), or None."""
        for spec in self.fields.values():
            value = values.get(spec.name, "")
            if spec.required and not value:
                hint = f" ({spec.help})" if spec.help else ""
                return f"job type '{self.name}' needs --{spec.name}{hint}"
        return self.invalid(values)

    def checked(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Of a job's values, those this type checks (its fields, host and user), as text."""
        return {k: str(v) for k, v in values.items()
                if (k in self.fields or k in BUILTIN_PATTERNS) and v is not None}

    def invalid(self, values: Mapping[str, str]) -> str | None:
        """Why one of these values may not reach a command (one line), or None: it fails its
        field's pattern, or it starts with "-". Quoting keeps a value one word, but a word that
        starts with "-" is still an option to ssh, tail or sacct, whatever a pattern allows."""
        for name, value in values.items():
            if not value:
                continue
            spec = self.fields.get(name)
            pattern = spec.pattern if spec and spec.pattern else BUILTIN_PATTERNS.get(name)
            hint = f": {spec.help}" if spec and spec.help else ""
            # as it was given: a type's own field comes with --field
            given = f"--{name} {value[:80]!r}" if name in STANDARD_FIELDS else f"--field {name}={value[:80]!r}"
            if pattern is not None and not pattern.fullmatch(value):
                return f"{self.name}: {given} is not valid{hint} (must match {pattern.pattern})"
            if value.startswith("-"):
                return f"{self.name}: {given} is not valid{hint} (it would be read as an option)"
        return None

    def terminal(self, state: str) -> bool:
        return self.category(state) in ("success", "failure")

    def category(self, state: str) -> str:
        for name, members in self.states.items():
            if state in members:
                return name
        return "unknown"


# ---------------------------------------------------------------- building


def row_vars(probe: Probe) -> set[str]:
    """Every name a check's rows may give a job: its regexes' groups (live and captured ones
    too) or its JSON fields."""
    regexes = probe.regexes + (probe.live.regexes if probe.live else ()) + ((probe.capture,) if probe.capture else ())
    return {g for r in regexes for g in r.groupindex} | set(probe.json.fields if probe.json else ())


def _lines(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """A pattern searched in a whole output: ^ and $ match at each line."""
    return re.compile(pattern.pattern, re.MULTILINE)


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


def build_patterns(raw: list[Mapping[str, Any]], key: str, where: Where,
                   given: Iterable[str] = ()) -> tuple[Pattern, ...]:
    """``given``: the type's fields, which a pattern may ``need`` as it needs an earlier event's
    group (an endpoint given at registration or found in the log)."""
    out: list[Pattern] = []
    for i, item in enumerate(raw):
        at = (key, str(i))
        owner = {"step": "events", "each": "events", "traceback": "diagnosis", "path": "metrics", "summary": "metrics",
                 "field": "events or diagnosis", "values": "metrics", "failure": "metrics", "needs": "events",
                 "say": "events", "keep": "events"}
        for option, only in owner.items():
            if option in item and key not in only.split(" or "):
                raise where.error(at + (option,), f"only for {only}")
        special = item.get("traceback") or item.get("path")
        if "regex" not in item and not special:
            raise where.error(at + ("regex",), "missing")
        regex = _regex(item.get("regex", "$^"), where, at + ("regex",), ("percent",) if item.get("step") else ())
        regex = re.compile(regex.pattern, re.MULTILINE)
        reserved = sorted(set(regex.groupindex) & {"line", "match", "keys", "value", "job"})
        if reserved:
            raise where.error(at + ("regex",), f"(?P<{reserved[0]}>…) is a name the text template already has; rename the group")
        name = item.get("name", f"{key}-{i}")
        if name in {p.name for p in out}:
            raise where.error(at + ("name",), f"'{name}' is used twice")
        names = {"keys", "value"} if item.get("path") else set(regex.groupindex) | {"line", "match"}
        if item.get("field") or key == "events":
            names |= {"job"}  # the whole row's groups (a server's node), beside the pattern's own
        if item.get("values") and item.get("path"):
            raise where.error(at + ("values",), "only for a metric with a regex: its groups are what the values use")
        values = _values(item.get("values") or {}, names, where, at + ("values",))
        names |= {n for n, _ in values}
        needs = tuple(item.get("needs", ()))
        names |= set(needs)  # checked once every event is known (below)
        keep = tuple((str(k), _template(v, names, where, at + ("keep", str(k)), shell=False))
                     for k, v in (item.get("keep") or {}).items())
        names |= {k for k, _ in keep}  # the text may say what is kept
        text = _template(item.get("text"), names, where, at + ("text",), shell=False)
        if item.get("step", 1) <= 0:
            raise where.error(at + ("step",), "must be greater than 0")
        if item.get("each") and not regex.groups:
            raise where.error(at + ("each",), "needs a group in the regex: its value tells one occurrence from another")
        out.append(Pattern(name, regex, text, float(item.get("step", 0)), bool(item.get("traceback")),
                           item.get("path", ""), bool(item.get("summary", True)), bool(item.get("each")),
                           item.get("field", ""), values, bool(item.get("failure")), needs,
                           bool(item.get("say", True)), keep))
    _known_needs(out, key, set(given), where)
    return tuple(out)


def _known_needs(patterns: list[Pattern], key: str, given: set[str], where: Where) -> None:
    """What a pattern ``needs`` must come from somewhere: a field, or a group or ``keep`` of an
    event that needs nothing (found first, wherever it is listed) or of one listed before it."""
    known = given.union(*(p.gives for p in patterns if not p.needs and not p.field))
    for i, pattern in enumerate(patterns):
        for j, need in enumerate(pattern.needs):
            if need not in known:
                raise where.error((key, str(i), "needs", str(j)), f"no field, and no other event with a "
                                                                   f"(?P<{need}>…) group or a keep of that name")
        known |= pattern.gives


def _values(raw: Any, names: set[str], where: Where, at: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    from jobmon import template

    if not isinstance(raw, Mapping):
        raise where.error(at, "expected a mapping of names to Jinja2 expressions")
    out: list[tuple[str, Any]] = []
    for name, source in raw.items():
        if not re.fullmatch(r"[A-Za-z_]\w*", str(name)) or name in names:
            raise where.error(at + (str(name),), "must be a new name (letters, digits, _), not a group of the regex")
        if not isinstance(source, str):
            raise where.error(at + (str(name),), "expected a Jinja2 expression (a string)")
        try:
            out.append((str(name), template.compile_expression(source, names | {n for n, _ in out})))
        except template.TemplateError as exc:
            raise where.error(at + (str(name),), str(exc)) from None
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
        fail_if=_lines(_regex(check["fail_if"], where, (key, "fail_if"))) if "fail_if" in check else None,
        default=check.get("default"),
        source={k: check[k] for k in ("command", "batch", "read") if check.get(k)},
        live=_live(check["live"], key, groups, where) if check.get("live") else None,
        capture=_regex(check["capture"], where, (key, "capture"), ("id",)) if check.get("capture") else None,
        lines=_lines(_regex(check["lines"], where, (key, "lines"), ("id", "line"))) if check.get("lines") else None,
        offset=_lines(_regex(check["offset"], where, (key, "offset"), ("id", "offset"))) if check.get("offset") else None,
    )
    for name in ("lines", "offset"):
        if check.get(name) and probe.batch is None:
            raise where.error((key, name), "only for a batched check: a one-job check's whole output is its text")
    if probe.live is not None and probe.batch is None:
        raise where.error((key, "live"), "only for a batched check: its rows come from the batch's output")
    if probe.batch_size < 1:
        raise where.error((key, "batch_size"), "must be at least 1")
    return probe


def _live(raw: Mapping[str, Any], key: str, groups: tuple[str, ...], where: Where) -> Live:
    texts = raw.get("regex")
    if not texts:
        raise where.error((key, "live", "regex"), "missing")
    texts = [texts] if isinstance(texts, str) else texts
    at = (key, "live", "regex")
    regexes = tuple(_regex(t, where, at + ((str(i),) if len(texts) > 1 else ()), groups) for i, t in enumerate(texts))
    fail_if = _lines(_regex(raw["fail_if"], where, (key, "live", "fail_if"))) if raw.get("fail_if") else None
    return Live(regexes, fail_if)


def _action(raw: Any, key: str, result_vars: set[str], type_vars: Mapping[str, str], where: Where) -> Action | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return Action(_template(raw, result_vars, where, (key,), shell=True), False, 1)
    if not raw.get("batch"):
        raise where.error((key, "batch"), "missing: the command run once for all of a host's ending jobs")
    size = int(raw.get("batch_size", 50))
    if size < 1:
        raise where.error((key, "batch_size"), "must be at least 1")
    allowed = set(type_vars) | set(ACTION_BATCH_VARS)
    return Action(_template(raw["batch"], allowed, where, (key, "batch"), shell=True), True, size)


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

    events = build_patterns(body.get("events", []), "events", where, given=set(fields) - {"id"})
    diagnosis = build_patterns(body.get("diagnosis", []), "diagnosis", where) + common
    metrics = build_patterns(body.get("metrics", []), "metrics", where)
    captured = set().union(*(p.gives for p in events))
    result_vars = job_vars | set(RESULT_VARS) | row_vars(probe) | captured
    delegate = None
    if body.get("delegate"):
        d = body["delegate"]
        for needed in ("type", "id", "success", "failure"):
            if needed not in d:
                raise where.error(("delegate", needed), "missing")
        for outcome in ("success", "failure"):
            if d[outcome] not in states["success" if outcome == "success" else "failure"]:
                raise where.error(("delegate", outcome), f"{d[outcome]!r} is not under states.{outcome}")
        names = job_vars | captured | row_vars(probe) | {"open_part"}
        delegate = Delegate(
            d["type"], _template(d["id"], names, where, ("delegate", "id"), shell=False),
            _template(d.get("host", "{{ host }}"), names, where,
                      ("delegate", "host"), shell=False),
            float(d.get("after", 600)), d["success"], d["failure"], frozenset(d.get("confirm", [])))
        for state in d.get("confirm", []):
            if state not in vocabulary:
                raise where.error(("delegate", "confirm"), f"{state!r} is not in states")
        delegate = replace(delegate, during=_during(d.get("during", []), states, delegate.confirm, where))
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
        delegate=delegate,
        discover=discover,
        resolve=_resolve(body["resolve"], job_vars, probe, where) if body.get("resolve") else None,
        vars=type_vars,
        on_complete=_action(body.get("on_complete"), "on_complete", result_vars, type_vars, where),
        on_failure=_action(body.get("on_failure"), "on_failure", result_vars, type_vars, where),
        sources=sources,
        progress=_progress(body, probe, where),
        health=_health(body.get("health"), probe, where),
        **_ready(body, events, where),
    )


def _ready(body: Mapping[str, Any], events: tuple[Pattern, ...], where: Where) -> dict[str, Any]:
    """``ready`` and ``ready_within`` as JobType takes them; none without ``ready``."""
    event = body.get("ready")
    if event is None:
        if "ready_within" in body:
            raise where.error(("ready_within",), "needs `ready`: the key event it waits for")
        return {}
    if event not in {p.name for p in events if not p.each and not p.step}:
        raise where.error(("ready",), f"'{event}' is none of the type's events (said once each)")
    if "ready_within" not in body:
        return {"ready": str(event)}
    if float(body["ready_within"]) <= 0:
        raise where.error(("ready_within",), "must be greater than 0 (seconds)")
    return {"ready": str(event), "ready_within": float(body["ready_within"])}


def _health(raw: Mapping[str, Any] | None, probe: Probe, where: Where) -> Health | None:
    if raw is None:
        return None
    if probe.batch is None:
        raise where.error(("health",), "only for a batched check: its lines come from the batch's output")
    if "regex" not in raw:
        raise where.error(("health", "regex"), "missing: the line a server's answer makes (id, exit, code)")
    after = int(raw.get("unhealthy_after", 3))
    if after < 1:
        raise where.error(("health", "unhealthy_after"), "must be at least 1")
    return Health(_lines(_regex(raw["regex"], where, ("health", "regex"), ("id", "exit", "code"))), after)


def _progress(body: Mapping[str, Any], probe: Probe, where: Where) -> Progress | None:
    """progress: and stall_after: a batched check's lines need an ``id``; a read check has only a bar."""
    raw = body.get("progress")
    if raw is None:
        if body.get("stall_after", 0) != 0:
            raise where.error(("stall_after",), "needs progress: (what shows the job is alive)")
        return None
    after = float(body.get("stall_after", DEFAULT_STALL_AFTER))
    if after < 0:
        raise where.error(("stall_after",), "must be 0 (no stall watch) or more")
    if after == 0:  # a cluster whose logs are costly to stat may turn the probe off
        return None
    if probe.read is not None:
        wrong = next((k for k in ("regex", "clock", "last", "row") if k in raw), None)
        if wrong:
            raise where.error(("progress", wrong), "only for a batched check: a read check's progress is its log's growth")
    else:
        if probe.batch is None:
            raise where.error(("progress",), "only for a batched check or a read check")
        if "bar" in raw:
            raise where.error(("progress", "bar"), "only for a read check")
        if "regex" not in raw and not raw.get("row"):
            raise where.error(("progress", "regex"), "missing: the lines that show a job's progress (or row: groups of the check's row)")
        unknown = sorted(set(raw.get("row", ())) - row_vars(probe))
        if unknown:
            raise where.error(("progress", "row"), f"{unknown[0]} is not a group of the check's rows")
    regex = _lines(_regex(raw["regex"], where, ("progress", "regex"), ("id",))) if "regex" in raw else None
    if regex is not None and not set(regex.groupindex) - {"id"}:
        raise where.error(("progress", "regex"), "no group beside id: nothing to tell progress by")
    return Progress(
        regex=regex,
        clock=_lines(_regex(raw["clock"], where, ("progress", "clock"), ("now",))) if "clock" in raw else None,
        last=_lines(_regex(raw["last"], where, ("progress", "last"), ("id", "line"))) if "last" in raw else None,
        bar=_lines(_regex(raw["bar"], where, ("progress", "bar"), ("percent",))) if "bar" in raw else None,
        stall_after=after,
        row=tuple(raw.get("row", ())),
    )


def _during(listed: Iterable[str], states: Mapping[str, frozenset[str]], confirm: frozenset[str],
            where: Where) -> frozenset[str]:
    """delegate.during: states the job waits in (never an end), and not also confirmed ones:
    confirm believes a state unless the other type says the job goes on, during the opposite."""
    for state in listed:
        category = next((c for c, members in states.items() if state in members), None)
        if category is None:
            raise where.error(("delegate", "during"), f"{state!r} is not in states")
        if category in ("success", "failure"):
            raise where.error(("delegate", "during"), f"{state!r} is under states.{category}: list states a job waits in")
        if state in confirm:  # blame the list set last: that is the edit that made the clash
            here, other = ("during", "confirm") if where.newer(("delegate", "during"), ("delegate", "confirm")) \
                else ("confirm", "during")
            raise where.error(("delegate", here), f"{state!r} is also under delegate.{other}")
    return frozenset(listed)


def _resolve(raw: Mapping[str, Any], job_vars: set[str], probe: Probe, where: Where) -> Resolve:
    """resolve: its command is a one-job template; its output is read as the check reads a batch,
    so the check must say where a row's id is."""
    if not raw.get("command"):
        raise where.error(("resolve", "command"), "missing: the command whose output names the full id")
    if probe.json is None and not all("id" in r.groupindex for r in probe.regexes):
        raise where.error(("resolve",), "the check's output names no ids: give check.json, or a check regex "
                                        "with an (?P<id>…) group")
    when = _regex(raw["when"], where, ("resolve", "when")) if raw.get("when") else None
    command = _template(raw["command"], job_vars | set(CHECK_VARS), where, ("resolve", "command"), shell=True)
    return Resolve(command, when)
