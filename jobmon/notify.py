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

    from jobmon.config import Config
    from jobmon.eventlog import Cursor, EventLog

DEFAULT_ON = ("failure", "never_starts", "stalled")
# What every config may name: an end by its outcome, and the engine's own key events. The names
# of the job types' key events (slurm's NEVER_STARTS) are added at load.
ENGINE_KINDS = ("success", "failure", "stalled", "resumed", "unreachable", "recovered", "progress")
TIMEOUT = 10.0  # seconds one send may take, connection and answer together
RETRY_AFTER = 5.0  # seconds before the one retry of a failed send
MAX_LINES = 30  # events one message lists; a flood is one message, "+N more" at its end
_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^@/\s]+@")


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class Target:
    name: str  # where it is set and the URL as written: "monitor.yaml: notify.0 (ntfy://my-topic)"
    url: "jinja2.Template"  # its only variable is `env`
    on: frozenset[str]
    timeout: float


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
        """Each configured target once, in config order: what ``jobmon notify test`` tries."""
        lists = [self.top or (), *self.clusters.values(), *self.types.values(), *self.cluster_types.values()]
        return tuple(t for targets in lists for t in targets)


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
        if timeout <= 0:
            raise where.error(at + ("timeout",), "must be greater than 0")
        name = f"{where.name(at)} ({shown(source)})"
        out.append(Target(name, url, frozenset(on), timeout))
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


def route(events: Iterable[Event], targets_of: Callable[[Event], Sequence[Target]]) -> dict[Target, list[Event]]:
    """Each target and the events it asked for, in order."""
    out: dict[Target, list[Event]] = {}
    for event in (e for logged in events for e in each_job(logged)):
        kind = kind_of(event)
        if kind is None:
            continue
        for target in targets_of(event):
            if kind in target.on:
                out.setdefault(target, []).append(event)
    return out


class Message(NamedTuple):
    title: str
    body: str
    level: str  # apprise's notify type: "failure", "warning", "success" or "info"


def compose(events: Sequence[Event], max_line: int = 400) -> Message:
    """One message for one cycle's events of one target: a flood is one message, not fifty."""
    lines = [format_text(e, max_line) for e in events[:MAX_LINES]]
    if len(events) > MAX_LINES:
        lines.append(f"+{len(events) - MAX_LINES} more")
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
    return url, tuple(sorted({v for v in env._jobmon_given if v}, key=len, reverse=True))


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
    """One reader of the event log per target, each in a thread of its own with a cursor of its
    own (``readers/notify-<hash>.seq``): what the poller logged is sent from there, so a hung
    server holds up only its own messages, and a poller killed mid-send leaves its cursor behind
    for the next one to go on from. Only the process holding a target's reader lock sends to it
    (the poller, or a ``jobmon status`` with no poller beside it); the others leave it be."""

    def __init__(self, targets: Sequence[Target], targets_of: Callable[[Event], Sequence[Target]],
                 log: "EventLog", environ: Mapping[str, str], *, max_line: int = 400,
                 retry_after: float = RETRY_AFTER) -> None:
        self.targets = tuple(targets)
        self.targets_of = targets_of
        self.log = log
        self.environ = environ
        self.max_line = max_line
        self.retry_after = retry_after
        self._wake = {t: threading.Event() for t in self.targets}
        # The last seq each reader has seen; None before its first look, -1 while another process sends.
        self._reached: dict[Target, int | None] = {t: None for t in self.targets}
        self._moved = threading.Condition()
        self._started = False
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Before this process logs its first event: a target new to the session starts from
        here (not from the whole log); one with a cursor goes on from it."""
        if self._started:
            return
        self._started = True
        origin = self.log.last_seq()
        for target in self.targets:
            self._threads.append(threading.Thread(target=self._serve_safely, args=(target, origin), name="notify",
                                                  daemon=True))
            self._threads[-1].start()

    def tell(self, events: Sequence[Event]) -> None:
        """These were just logged: the readers look at once instead of at their next look."""
        self.start()
        for wake in self._wake.values():
            wake.set()

    def _serve_safely(self, target: Target, origin: int) -> None:
        try:
            self._serve(target, origin)
        except Exception as exc:  # telling people must never stop the polling
            logger.opt(exception=exc).debug("notify failed")
            logger.error("notify {}: {}: {}", target.name, type(exc).__name__, one_line(str(exc)))
            self._reach(target, -1)

    def _serve(self, target: Target, origin: int) -> None:
        from jobmon.eventlog import Cursor

        cursor = Cursor(self.log.path.parent, reader_name(target))
        try:
            self._read(target, origin, cursor)
        finally:
            cursor.release()

    def _read(self, target: Target, origin: int, cursor: "Cursor") -> None:
        wake = self._wake[target]
        where = None
        while not self._closing.is_set():
            wake.clear()
            if not cursor.held() and not cursor.claim(0, ask=False):
                self._reach(target, -1)  # another process sends to this target; it reads the same log
                wake.wait(LOOK)
                continue
            if not cursor.path.exists():  # written now: a poller killed during its first send leaves it
                cursor.set(origin)
            seq = cursor.get()
            events, where = self.log.read_from(seq, where)
            if events:
                chosen = route(events, self.targets_of).get(target)
                if chosen:
                    self._deliver(target, compose(chosen, self.max_line))
                seq = events[-1].seq
                cursor.set(seq)  # a kill before this line sends the message again, never loses it
            self._reach(target, seq)
            wake.wait(LOOK)

    def _reach(self, target: Target, seq: int) -> None:
        with self._moved:
            self._reached[target] = seq
            self._moved.notify_all()

    def _deliver(self, target: Target, message: Message) -> None:
        first = send(target, message, self.environ)
        if first.ok:
            return
        threading.Event().wait(self.retry_after)
        again = send(target, message, self.environ)
        if again.ok:
            logger.info("notify {}: sent on the retry ({} the first time)", target.name, first.why)
        else:
            logger.warning("notify {}: not sent, tried twice: {}: {}", target.name, again.why, message.title)

    def drain(self) -> None:
        """Before the process ends: wait until each target this process sends to has been sent
        what was logged, as long as two messages may take (the one in flight and the rest);
        then leave the rest to the next poller, with one line."""
        if not self._started:
            return
        goal = self.log.last_seq()
        for wake in self._wake.values():
            wake.set()
        import time

        deadline = time.monotonic() + max((2 * (2 * t.timeout + self.retry_after) + 1 for t in self.targets), default=0)
        with self._moved:
            self._moved.wait_for(lambda: all(s is not None and (s < 0 or s >= goal) for s in self._reached.values()),
                                 max(deadline - time.monotonic(), 0))
            late = [t for t, s in self._reached.items() if s is None or 0 <= s < goal]
        for target in late:
            logger.warning("notify {}: not sent yet as jobmon ends; the next poller sends it", target.name)

    def close(self) -> None:
        """Let go of every target (a reader in the middle of a send finishes it on its own)."""
        self._closing.set()
        for wake in self._wake.values():
            wake.set()
        for thread in self._threads:
            thread.join(1.0)


LOOK = 5.0  # seconds between a reader's looks at the log when nothing woke it


def reader_name(target: Target) -> str:
    """A target's cursor, named for where it is set and its URL as written (never a secret)."""
    import hashlib

    return "notify-" + hashlib.sha256(target.name.encode()).hexdigest()[:16]


def test(all_targets: Sequence[Target], environ: Mapping[str, str], text: str) -> list[tuple[Target, Sent]]:
    """One message to every target at once (a hung one does not hold the others up)."""
    from concurrent.futures import ThreadPoolExecutor

    message = Message("jobmon: test", text, "info")
    with ThreadPoolExecutor(max(len(all_targets), 1)) as pool:
        return list(zip(all_targets, pool.map(lambda t: send(t, message, environ), all_targets)))


def notifier(config: "Config", log: "EventLog") -> Notifier | None:
    """The notifier of a process that polls, or None when the config names no target."""
    import os

    every = tuple(dict.fromkeys(config.notify.every()))
    if not every:
        return None
    return Notifier(every, lambda e: config.notify_targets(e.type, e.host), log, os.environ,
                    max_line=config.settings.max_line)
