"""Notifications to people: the session's events, sent through apprise to a phone, a chat, a mail.

``notify:`` lists targets, each an apprise URL and the event kinds it wants, at the top of a
monitor.yaml, in a cluster or in a job type; the most specific list wins whole. Each target reads
the session's event log with a cursor of its own, in a thread of the process that polls: polling
never waits on a network, a poller killed mid-send loses nothing (the next one goes on from the
cursor), every send has a timeout, and a send that fails is tried once more, then said in one
line on stderr. Secrets come from the environment
(``{{ env.NTFY_TOKEN }}``) when a message is sent; a target is only ever named by the URL as
written, and every substituted value is masked in what apprise says back.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from loguru import logger

from jobmon import template
from jobmon.events import Event, clip, display_name, format_text, one_line
from jobmon.where import Where

if TYPE_CHECKING:
    import jinja2

    from jobmon.eventlog import Cursor, EventLog

# What needs a person: an end that failed, a job that will never start or has stalled, a server
# that stopped answering or never came up.
DEFAULT_ON = ("failure", "never_starts", "stalled", "unhealthy", "not_ready")
# What every config may name: an end by its outcome, and the engine's own key events. The names
# of the job types' key events (slurm's NEVER_STARTS, deploy's READY) are added at load.
ENGINE_KINDS = ("success", "failure", "stalled", "resumed", "unreachable", "recovered", "progress",
                "unhealthy", "healthy", "not_ready")
TIMEOUT = 10.0  # seconds one send may take, connection and answer together
MAX_TIMEOUT = 120.0  # a poller's last wait for its sends is bounded by it
RETRY_AFTER = 5.0  # seconds before the one retry of a failed send
MAX_LINES = 30  # events one message lists; a flood is one message, "+N more" at its end (never an end)
LOOK = 5.0  # seconds between a reader's looks at the event log when nothing woke it
QUICK = 2.0  # seconds a stopped poller gives its sends: its readers' cursors keep the rest
_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@/\s]+@")


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class Target:
    name: str  # where it is set and the URL as written: "monitor.yaml: notify.0 (ntfy://my-topic)"
    url: "jinja2.Template"  # its only variable is `env`
    on: frozenset[str]
    timeout: float
    source: str = ""  # the URL as written, secrets as {{ env.X }}

    @property
    def key(self) -> str:
        """What one reader of the log serves: a URL listed twice (at the top and for a type) with
        the same kinds gets each message once, and its cursor outlives edits elsewhere in the file."""
        return f"{self.source} on={','.join(sorted(self.on))}"


@dataclass(frozen=True)
class Routes:
    """Every ``notify:`` list of the config, by where it was set."""

    top: tuple[Target, ...] | None = None
    clusters: Mapping[str, tuple[Target, ...]] = field(default_factory=dict)
    types: Mapping[str, tuple[Target, ...]] = field(default_factory=dict)
    cluster_types: Mapping[tuple[str, str], tuple[Target, ...]] = field(default_factory=dict)

    def targets(self, type_name: str, clusters: Sequence[str]) -> tuple[Target, ...]:
        """The list in force for a job of this type on a host of these clusters (in config
        order, the last one winning as in every override): a cluster's override of the type,
        the type's own, the cluster's, the top level's."""
        for found in (
            _last(self.cluster_types.get((c, type_name)) for c in clusters),
            self.types.get(type_name),
            _last(self.clusters.get(c) for c in clusters),
            self.top,
        ):
            if found is not None:
                return found
        return ()

    def every(self) -> tuple[Target, ...]:
        """Each configured target once, in config order: what ``jobmon notify test`` tries and
        what the notifier reads the log for."""
        lists = [self.top or (), *self.clusters.values(), *self.types.values(), *self.cluster_types.values()]
        return distinct(t for targets in lists for t in targets)


def distinct(targets: Iterable[Target]) -> tuple[Target, ...]:
    """One target per ``key`` (URL and kinds), the first listed naming it: a URL listed at the
    top and for a type is sent each message, and each test, once."""
    out: dict[str, Target] = {}
    for target in targets:
        out.setdefault(target.key, target)
    return tuple(out.values())


def _last(found: Iterable[tuple[Target, ...] | None]) -> tuple[Target, ...] | None:
    last = None
    for targets in found:
        if targets is not None:
            last = targets
    return last


def routes(raw: Mapping[str, Any], origins: Mapping[tuple[str, ...], str], kinds: Iterable[str]) -> Routes:
    """Every ``notify:`` of the merged config, validated now. ``kinds``: the key event names of
    the job types, which a target may also ask for. Raises ConfigError (``file: key: problem``)."""
    known = tuple(dict.fromkeys([*ENGINE_KINDS, *(k.lower() for k in kinds)]))

    def read(value: Any, prefix: tuple[str, ...]) -> tuple[Target, ...] | None:
        return None if value is None else targets(value, Where(origins, prefix), known)

    clusters = raw.get("clusters", {})
    return Routes(
        top=read(raw.get("notify"), ("notify",)),
        clusters={c: t for c, body in clusters.items()
                  if (t := read(body.get("notify"), ("clusters", c, "notify"))) is not None},
        types={n: t for n, body in raw.get("types", {}).items()
               if (t := read(body.get("notify"), ("types", n, "notify"))) is not None},
        cluster_types={(c, n): t for c, body in clusters.items() for n, tbody in body.get("types", {}).items()
                       if (t := read(tbody.get("notify"), ("clusters", c, "types", n, "notify"))) is not None},
    )


def targets(items: Sequence[Mapping[str, Any]], where: Where, known: Sequence[str]) -> tuple[Target, ...]:
    out = []
    for i, item in enumerate(items):
        at = (str(i),)
        item = {"url": item} if isinstance(item, str) else item  # `- ntfy://my-topic`: the default kinds
        source = item.get("url")
        if not source:
            raise where.error(at + ("url",), "missing: an apprise URL such as ntfy://my-topic")
        try:
            url = template.compile_template(source, ("env",), shell=False)
        except template.TemplateError as exc:
            raise where.error(at + ("url",), str(exc)) from None
        on = [kind.lower() for kind in item.get("on", DEFAULT_ON)]  # as the event says it, or as written
        if not on:
            raise where.error(at + ("on",), f"empty: name at least one of {', '.join(known)}")
        for j, kind in enumerate(on):
            if kind not in known:
                near = _near(kind, known)
                hint = f" (did you mean '{near}'?)" if near else f" (known: {', '.join(known)})"
                raise where.error(at + ("on", str(j)), f"unknown event kind '{item['on'][j]}'{hint}")
        timeout = float(item.get("timeout", TIMEOUT))
        if not 0 < timeout <= MAX_TIMEOUT:
            raise where.error(at + ("timeout",), f"must be greater than 0 and at most {MAX_TIMEOUT:g} (seconds)")
        name = f"{where.name(at)} ({shown(source)})"
        out.append(Target(name, url, frozenset(on), timeout, source))
    return tuple(out)


def _near(word: str, words: Sequence[str]) -> str | None:
    import difflib

    near = difflib.get_close_matches(word, list(words), n=1)
    return near[0] if near else None


def shown(url: str) -> str:
    """A URL as a message may name it: as written, a password in it (``user:pw@``) masked."""
    return one_line(_PASSWORD.sub(r"\1***@", url))


# ---------------------------------------------------------------- which events, which message


def kind_of(event: Event) -> str | None:
    """The word a target's ``on`` names this event by: an end's outcome, a key event's name in
    lower case (``never_starts``); None for a move (``PENDING -> RUNNING``) and for the rest."""
    if event.kind == "state":
        return event.outcome if event.terminal else None
    if event.kind == "event":
        if " " in (event.after or ""):  # "12_3 FAILED": a part's end, said only when it failed
            return "failure"
        return display_name(event.after or "").lower() or None
    return None


def each_job(event: Event) -> list[Event]:
    """A digest as the events it folded. Its jobs do not say whether each moved or had a key
    event, but ends never fold and no state is named like a key event, so a job's ``to`` is
    taken for an event's name: a target that wants STALLED hears of six stalls at once."""
    if event.kind != "changes":
        return [event]
    return [Event(kind="event", type=j.type, id=j.id, host=j.host, before=j.before, after=j.after, time=event.time)
            for j in event.jobs]


def route(events: Iterable[Event], targets_of: Callable[[Event], Sequence[Target]]) -> dict[str, list[Event]]:
    """The events each target (by its ``key``) asked for, in order; each once."""
    out: dict[str, list[Event]] = {}
    for event in (e for logged in events for e in each_job(logged)):
        kind = kind_of(event)
        if kind is None:
            continue
        for key in dict.fromkeys(t.key for t in targets_of(event) if kind in t.on):
            out.setdefault(key, []).append(event)
    return out


class Message(NamedTuple):
    title: str
    body: str
    level: str  # apprise's notify type: "failure", "warning", "success" or "info"


def compose(events: Sequence[Event], max_line: int = 400) -> Message:
    """One message for the events of one target read at once: a flood is one message, not
    fifty. Ends come first and are never folded into "+N more": each names its job."""
    ends = [e for e in events if e.terminal or kind_of(e) == "failure"]
    rest = [e for e in events if not (e.terminal or kind_of(e) == "failure")]
    room = max(MAX_LINES - len(ends), 0)
    lines = [format_text(e, max_line) for e in ends + rest[:room]]
    if len(rest) > room:
        lines.append(f"+{len(rest) - room} more")
    levels = {_level(kind_of(e) or "") for e in events}
    level = next((lv for lv in ("failure", "warning", "success") if lv in levels), "info")  # the worst
    if len(events) == 1:
        e = events[0]
        who = (f"{e.id}@{e.host}" if e.host else e.id) if e.id else f"host {e.host}"
        title = " ".join(w for w in ("jobmon:", display_name(e.after or ""), e.type, who) if w)
    else:
        counts: dict[str, int] = {}
        for e in events:
            name = display_name(e.after or "")
            counts[name] = counts.get(name, 0) + 1
        title = f"jobmon: {len(events)} events: " + ", ".join(f"{n} {name}" for name, n in counts.items())
    return Message(clip(title, 200), "\n".join(lines), level)


def _level(kind: str) -> str:
    """How a phone should show it: an end as what it was, good news as news, the rest as a warning."""
    if kind in ("failure", "success"):
        return kind
    return "info" if kind in ("resumed", "recovered", "progress") else "warning"


# ---------------------------------------------------------------- sending (the I/O edge)


class Sent(NamedTuple):
    ok: bool
    why: str  # what apprise said went wrong, secrets masked ("" when sent)


class _Env:
    """The environment as ``{{ env.X }}`` sees it, remembering every value it gave (to mask)
    and the first name it did not have (to say so). Not a Mapping: Jinja2 tries attributes
    first, and ``env.items`` must be the variable, not a method."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._jobmon_environ = environ
        self._jobmon_given: list[str] = []
        self._jobmon_missing: str | None = None

    def __getitem__(self, key: str) -> str:
        if key not in self._jobmon_environ:
            self._jobmon_missing = self._jobmon_missing or key
            raise KeyError(key)
        self._jobmon_given.append(self._jobmon_environ[key])
        return self._jobmon_environ[key]


def render(target: Target, environ: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """The URL to send to, and the secrets in it (what the environment gave). Raises ValueError
    naming a variable that is not set."""
    import jinja2

    env = _Env(environ)
    try:
        url = template.render(target.url, {"env": env})
    except jinja2.UndefinedError as exc:
        missing = env._jobmon_missing
        raise ValueError(f"environment variable {missing} is not set" if missing else str(exc)) from None
    return url, _secrets(env._jobmon_given)


def _secrets(given: Iterable[str]) -> tuple[str, ...]:
    """Each value the environment gave, as written and as a URL may carry it (``| urlencode``),
    longest first. A value under four characters is no secret worth blanking every digit for."""
    from urllib.parse import quote, quote_plus

    forms = {form for v in given if len(v) >= 4 for form in (v, quote(v, safe=""), quote(v), quote_plus(v))}
    return tuple(sorted(forms, key=len, reverse=True))


def masked(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def send(target: Target, message: Message, environ: Mapping[str, str]) -> Sent:
    """One attempt, bounded by the target's timeout. Never raises."""
    secrets: tuple[str, ...] = ()
    try:
        url, secrets = render(target, environ)
        return _deliver(url, target.timeout, message, secrets)
    except Exception as exc:  # a plugin that raises is a failed send, said as one
        return Sent(False, masked(one_line(str(exc) or type(exc).__name__), secrets)[:200])


def _deliver(url: str, timeout: float, message: Message, secrets: Sequence[str]) -> Sent:
    import apprise

    _quiet_apprise()
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else url
        return Sent(False, masked(f"not a URL apprise can send to (scheme {scheme!r})", secrets)[:200])
    # The target's timeout, not apprise's 4 s: a slow mail server may be given more. The sockets
    # give up too, or a hung server would hold apprise's worker thread past the call.
    plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout
    notifier = apprise.Apprise()
    notifier.add(plugin)
    result = notifier.notify(body=message.body, title=message.title, notify_type=message.level, timeout=timeout)
    if result:
        return Sent(True, "")
    said = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
    why = said[-1] if said else f"apprise says {result.status.name}"
    if result.status.name == "TIMEOUT":
        why = f"no answer within {timeout:g} s"
    return Sent(False, masked(one_line(why), secrets)[:200])


def _quiet_apprise() -> None:
    """apprise's own log lines name the URLs it sends to: they never reach stderr. What a send
    says comes back in its result, masked."""
    log = logging.getLogger("apprise")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    log.propagate = False


class Notifier:
    """One reader of the event log per target (per ``Target.key``), each in a thread of its own
    with a cursor of its own (``readers/notify-<hash>.seq``): what the poller logged is sent from
    there, so a hung server holds up only its own messages, and a poller killed mid-send leaves
    its cursor behind for the next one to go on from. Only the process holding a reader's lock
    sends for it (the poller, or a ``jobmon status`` with no poller beside it); another process
    only watches that cursor move."""

    def __init__(self, targets: Sequence[Target], targets_of: Callable[[Event], Sequence[Target]],
                 log: "EventLog", environ: Mapping[str, str], *, max_line: int = 400,
                 retry_after: float = RETRY_AFTER) -> None:
        self.readers = {t.key: t for t in distinct(targets)}
        self.targets_of = targets_of
        self.log = log
        self.environ = environ
        self.max_line = max_line
        self.retry_after = retry_after
        self._wake = {key: threading.Event() for key in self.readers}
        # How far each reader's cursor stands (whoever moves it); None before its first look.
        self._reached: dict[str, int | None] = {key: None for key in self.readers}
        self._moved = threading.Condition()
        self._started = False
        self._draining = threading.Event()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Before this process logs its first event: a target new to the session starts from
        here (not from the whole log); one with a cursor goes on from it."""
        if self._started:
            return
        self._started = True
        origin = self.log.last_seq()
        for key in self.readers:
            self._threads.append(threading.Thread(target=self._serve, args=(key, origin), name="notify", daemon=True))
            self._threads[-1].start()

    def wake(self) -> None:
        """Something was logged: the readers look at once instead of at their next look."""
        for wake in self._wake.values():
            wake.set()

    def _serve(self, key: str, origin: int) -> None:
        from jobmon.eventlog import Cursor

        target = self.readers[key]
        cursor = Cursor(self.log.path.parent, reader_name(target))
        try:
            self._read(target, origin, cursor)
        except Exception as exc:  # telling people must never stop the polling
            logger.opt(exception=exc).debug("notify failed")
            logger.error("notify {}: {}: {}", target.name, type(exc).__name__, one_line(str(exc)))
        finally:
            cursor.release()

    def _read(self, target: Target, origin: int, cursor: "Cursor") -> None:
        wake = self._wake[target.key]
        where = None
        while not self._closing.is_set():
            wake.clear()
            if not cursor.held() and not cursor.claim(0, ask=False):
                # Another process sends for it, from the same log: its cursor says how far.
                self._reach(target, cursor.get())
                wake.wait(0.2 if self._draining.is_set() else LOOK)
                continue
            if not cursor.path.exists():  # written now: a poller killed during its first send leaves it
                cursor.set(origin)
            seq = cursor.get()
            events, where = self.log.read_from(seq, where)
            if events:
                chosen = route(events, self.targets_of).get(target.key)
                if chosen:
                    self._deliver(target, compose(chosen, self.max_line))
                seq = events[-1].seq
                cursor.set(seq)  # a kill before this line sends the message again, never loses it
            self._reach(target, seq)
            wake.wait(LOOK)

    def _reach(self, target: Target, seq: int) -> None:
        with self._moved:
            self._reached[target.key] = seq
            self._moved.notify_all()

    def _deliver(self, target: Target, message: Message) -> None:
        first = send(target, message, self.environ)
        if first.ok:
            return
        self._closing.wait(self.retry_after)
        again = send(target, message, self.environ)
        if again.ok:
            logger.info("notify {}: sent on the retry ({} the first time)", target.name, first.why)
        else:
            logger.warning("notify {}: not sent, tried twice: {}: {}", target.name, again.why, message.title)

    @property
    def one_send(self) -> float:
        """Seconds the slowest target's single attempt may take: what ``jobmon status`` waits."""
        return max(t.timeout for t in self.readers.values()) + 1

    def drain(self, within: float | None = None) -> None:
        """Before the process ends: wait until every reader's cursor (moved here or by the process
        holding it) has passed what is logged now, as long as two messages may take (the one in
        flight and the rest) or ``within`` seconds; then leave the rest to the next poller, with
        one line."""
        if not self._started:
            return
        import time

        goal = self.log.last_seq()
        self._draining.set()
        self.wake()
        if within is None:
            within = max(2 * (2 * t.timeout + self.retry_after) + 1 for t in self.readers.values())
        deadline = time.monotonic() + within
        with self._moved:
            self._moved.wait_for(lambda: all(s is not None and s >= goal for s in self._reached.values()),
                                 max(deadline - time.monotonic(), 0))
            late = [key for key, s in self._reached.items() if s is None or s < goal]
        self._draining.clear()
        for key in late:
            logger.warning("notify {}: not sent yet as jobmon ends; the next poller sends it", self.readers[key].name)

    def close(self) -> None:
        """Let go of every reader (one in the middle of a send finishes it on its own)."""
        self._closing.set()
        self.wake()
        for thread in self._threads:
            thread.join(1.0)


def reader_name(target: Target) -> str:
    """A reader's cursor, named for its URL as written (never a secret) and its kinds."""
    import hashlib

    return "notify-" + hashlib.sha256(target.key.encode()).hexdigest()[:16]


def test(all_targets: Sequence[Target], environ: Mapping[str, str], text: str) -> list[tuple[Target, Sent]]:
    """One message to every target at once (a hung one does not hold the others up)."""
    from concurrent.futures import ThreadPoolExecutor

    message = Message("jobmon: test", text, "info")
    with ThreadPoolExecutor(max(len(all_targets), 1)) as pool:
        return list(zip(all_targets, pool.map(lambda t: send(t, message, environ), all_targets)))
