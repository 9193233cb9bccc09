"""``jobmon``: register jobs, check them, watch them. One small function per command.

Exit codes: 0 done; 1 the operation failed (no such job, the watcher died); 2 bad usage, bad
config or a value jobmon refuses; 3 the registry cannot be read (it is left untouched).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Callable, Sequence

from jobmon import clock

if TYPE_CHECKING:
    from jobmon.config import Config
    from jobmon.registry import Registry

OK, FAILED, USAGE, REGISTRY = 0, 1, 2, 3


class Failure(Exception):
    """Ends a command with one line on stderr and an exit code."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- shared pieces


def _setup_logging(verbose: int) -> None:
    from loguru import logger

    level = os.environ.get("JOBMON_LOG") or ("DEBUG" if verbose > 1 else "INFO" if verbose else "WARNING")
    logger.remove()
    logger.add(sys.stderr, level=level.upper(), format="{time:HH:mm:ss} {level} {message}")


def _config(args: argparse.Namespace) -> "Config":
    from jobmon import config

    _setup_logging(args.verbose)  # before the config is read: a skipped file is said in one line

    try:
        return config.load(args.config)
    except config.ConfigError as exc:
        raise Failure(str(exc), USAGE) from None


def _registry(args: argparse.Namespace) -> "Registry":
    from jobmon import registry

    owner = registry.session(args.session, os.environ)
    try:
        return registry.Registry(registry.registry_path(args.root, owner.session_id, os.environ))
    except registry.RegistryError as exc:
        raise Failure(str(exc), USAGE) from None


def _printer(args: argparse.Namespace, config: "Config | None" = None):  # type: ignore[no-untyped-def]
    from jobmon.events import Printer

    return Printer(as_json=args.json, max_line=config.settings.max_line if config else 400,
                   stream=sys.stdout or _ClosedStdout())


class _ClosedStdout:
    """stdout when it was closed before jobmon started (``>&-``: Python makes it None): nobody
    reads, as when a reader went away, so every write is a broken pipe."""

    def write(self, _text: str) -> int:
        raise BrokenPipeError("stdout is closed")

    def flush(self) -> None:
        pass


def _match(job, args: argparse.Namespace) -> bool:  # type: ignore[no-untyped-def]
    return (job.id == args.id and (args.type is None or job.type == args.type)
            and (args.host is None or job.host == args.host))


# ---------------------------------------------------------------- commands


def cmd_add(args: argparse.Namespace) -> int:
    config = _config(args)
    if not args.type:
        raise Failure("--type is required (see `jobmon types`)", USAGE)
    fields = {"file": args.file or "", **dict(_pairs(args.field))}
    job = _new_job(config, args, args.type, args.id, args.host or "", args.user or "", args.desc, fields)
    registry = _registry(args)
    _register(registry, [_resolved(config, job)], update_description=args.desc is not None)
    if args.watch:
        _detached(args, config, registry)
    return OK


def _resolved(config: "Config", job):  # type: ignore[no-untyped-def]
    """The job under the full id its system answers with, for a type whose ids may be
    abbreviated (nel takes any unique prefix); as given when the system cannot tell."""
    from dataclasses import replace

    from jobmon import resolve

    found = resolve.resolve(config, job)
    if found.note is not None:
        print(f"jobmon: {found.note}", file=sys.stderr)
    return replace(job, id=found.id)


def _new_job(config: "Config", args: argparse.Namespace, type_name: str, job_id: str, host: str, user: str,
             desc: str | None, fields: dict[str, str]):  # type: ignore[no-untyped-def]
    """A job checked against its type (fields, patterns), or a Failure naming what is wrong."""
    from jobmon import registry as reg

    if type_name not in config.types:
        from jobmon.config import _unknown_type

        raise Failure(f"--type: {_unknown_type(type_name, config.types)}; see `jobmon types`", USAGE)
    jtype, _ = config.resolve(type_name, host)
    undeclared = [k for k in fields if k not in jtype.fields and k != "file"]
    if undeclared:
        raise Failure(f"--field {undeclared[0]}: job type '{type_name}' has no such field "
                      f"(fields: {', '.join(jtype.fields)})", USAGE)
    problem = jtype.problem({"id": job_id, "host": host, "user": user, **fields})
    if problem:
        raise Failure(problem, USAGE)
    return reg.Job(type=type_name, id=job_id, host=host, user=user,
                   submitted=clock.stamp(clock.now()), description=desc or "",
                   owner=reg.session(args.session, os.environ), fields={k: v for k, v in fields.items() if v})


def _register(registry: "Registry", jobs: list, *, update_description: bool = False) -> None:  # type: ignore[type-arg]
    """Add jobs under the lock; one already there stays (its description updated if asked).
    Said once the registry is written: a full disk must not leave a "registered" behind."""
    from dataclasses import replace

    from jobmon.registry import Job

    said = []
    with registry.transaction() as entries:
        index = {e.key: i for i, e in enumerate(entries) if isinstance(e, Job)}
        for job in jobs:
            if job.key in index:
                if update_description:
                    entries[index[job.key]] = replace(entries[index[job.key]], description=job.description)
                said.append(f"jobmon: {job.type} {job.label} is already registered")
            else:
                entries.append(job)
                index[job.key] = len(entries) - 1
                said.append(f"registered {job.type} {job.label} in {registry.path}")
    for line in said:
        print(line, file=sys.stderr)


def _pairs(items: Sequence[str] | None) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Failure(f"--field {item!r}: expected NAME=VALUE", USAGE)
        out.append((key, value))
    return out


def _detached(args: argparse.Namespace, config: "Config", registry: "Registry", *, quiet: bool = False) -> int | None:
    """Make sure a detached poller runs while jobs remain (``add --watch``, ``watch --detach``,
    ``jobmon-watch --for``, ``jobmon events``): its pid, or None when no job is left. Says which
    on stderr; a follower, which asks every second, only when it starts one (``quiet``)."""
    from jobmon import poller

    started: list[int] = []

    def start(lock):  # type: ignore[no-untyped-def]
        started.append(poller.detach(lock, registry, _poll_options(args)))
        return started[-1]

    pid = poller.ensure(registry, poller.jobs_left(config, registry), start)
    if started:
        print(f"jobmon: poller started (pid {pid}), its log in {registry.path.with_name('watch.log')}", file=sys.stderr)
    elif pid is not None and not quiet:
        print(_poller_runs(pid), file=sys.stderr)
    return pid


def _poll_options(args: argparse.Namespace) -> list[str]:
    """What a detached poller inherits of this command's options."""
    out = ["--config", args.config] if args.config else []
    if getattr(args, "interval", None) is not None:
        out += ["--interval", repr(args.interval)]
    return out + ["-v"] * args.verbose


def _poller_runs(pid: int) -> str:
    who = f"pid {pid}" if pid > 0 else "pid not written yet: it is starting"
    return f"jobmon: a poller already runs for this registry ({who})"


def cmd_list(args: argparse.Namespace) -> int:
    from jobmon.events import json_line, one_line
    from jobmon.registry import Invalid

    registry = _registry(args)
    entries = registry.read()
    if args.json:
        for e in entries:
            print(json_line(e.data if isinstance(e, Invalid) else e.to_dict()))
        return OK
    for e in entries:
        if isinstance(e, Invalid):
            print(one_line(f"?  {e.reason}"))
        else:
            desc = f' "{e.description}"' if e.description else ""
            print(one_line(f"{e.type:<10} {e.label:<28} {e.last_status or 'NEW':<12} {clock.shown_stored(e.submitted)}{desc}"))
    if not entries:
        print(f"no jobs in {registry.path}", file=sys.stderr)
    return OK




def cmd_status(args: argparse.Namespace) -> int:
    import contextlib

    from jobmon import report
    from jobmon.events import Event, OutputClosed
    from jobmon.registry import Job

    registry = _registry(args)
    config = None  # an empty session needs none: its summary comes from history alone
    entries = registry.read()
    if entries:
        config = _config(args)
    printer = _printer(args, config)
    stopped = False
    if any(isinstance(e, Job) for e in entries):
        watcher = _watcher(args, config, registry)

        def show(events: list[Event]) -> None:  # stdout gone: the cycle still ends its jobs (history)
            with contextlib.suppress(OutputClosed):
                for event in events:
                    printer.emit(event)

        watcher.echo = show
        restore = _stop_on_signals(watcher.stop.set)
        try:
            watcher.cycle(everything=True)
        finally:
            restore()
            if watcher.notifier is not None:  # what this check found is told, as a poller's would be
                watcher.notifier.drain(watcher.notifier.one_send)
        stopped = watcher.stop.is_set()
        entries = registry.read()
    summary = report.session(config, entries, registry.history())
    printer.emit(Event(kind="summary", detail=summary.text(), counts=summary.counts))
    return 130 if stopped else OK  # stopped: not every job was checked


def _stop_on_signals(*stops: Callable[[], None]) -> Callable[[], None]:
    """SIGTERM, Ctrl-C and SIGHUP (the terminal closed) all stop: ``stops`` are called, then every
    running check's process group is killed, so no hung check holds the process up. Returns what
    puts the earlier handlers back (``cli.main`` may run inside another program)."""
    import signal

    from jobmon import run

    def stop(signum: int, _frame: object) -> None:
        for fn in stops:
            fn()
        run.kill_all()

    earlier = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}

    def restore() -> None:
        for signum, handler in earlier.items():
            signal.signal(signum, handler)
    return restore


def _watcher(args: argparse.Namespace, config: "Config", registry: "Registry"):  # type: ignore[no-untyped-def]
    from jobmon.watch import Watcher

    log = _log(registry)
    return Watcher(config, registry, log, interval=getattr(args, "interval", None), notifier=config.notifier(log))


def _log(registry: "Registry"):  # type: ignore[no-untyped-def]
    from jobmon.eventlog import EventLog

    return EventLog(registry.events_path)


def _cursor(args: argparse.Namespace, registry: "Registry"):  # type: ignore[no-untyped-def]
    from jobmon.eventlog import Cursor, ReaderError

    try:
        return Cursor(registry.path.parent, args.reader)
    except ReaderError as exc:
        raise Failure(str(exc), USAGE) from None


def _durations(args: argparse.Namespace) -> None:
    """Seconds given on the command line: finite and greater than 0 (``--interval nan`` would
    poll once and then never again)."""
    import math

    interval = getattr(args, "interval", None)
    if interval is not None and not (math.isfinite(interval) and interval > 0):
        raise Failure(f"--interval {interval}: must be a number of seconds greater than 0", USAGE)


def parse_duration(text: str, option: str = "--for") -> float:
    """``90s``, ``25m``, ``1h``, ``2d`` (or plain seconds) -> seconds."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or not 0 < float(match.group(1)) < 1e9:  # 400 digits read as inf
        raise Failure(f"{option} {text!r}: expected a duration such as 90s, 25m or 1h", USAGE)
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def cmd_watch(args: argparse.Namespace) -> int:
    import contextlib
    import shlex
    import threading
    import time

    from jobmon import follower, poller
    from jobmon.events import Event, OutputClosed
    from jobmon.pace import Pacer

    registry = _registry(args)
    deadline = None if args.for_ is None else time.monotonic() + parse_duration(args.for_)
    config = _config(args)
    if args.detach:
        pid = _detached(args, config, registry)
        print(pid if pid is not None else "no jobs to watch")
        return OK
    printer = _printer(args, config)
    cursor = _cursor(args, registry)
    watcher = _watcher(args, config, registry)
    polls: list[threading.Thread] = []
    if deadline is not None or args.until:  # never polls itself: polling outlives this watch
        def ensure() -> int | None:
            return _detached(args, config, registry, quiet=True)
    else:
        def ensure() -> int | None:
            return poller.ensure(registry, poller.jobs_left(config, registry), poller.in_thread(watcher, polls))
    prog = [os.environ["JOBMON_PROG"]] if os.environ.get("JOBMON_PROG") else ["jobmon", "watch"]
    shaped = _shaped(args)
    follow = follower.Follower(config, registry, watcher.log, cursor, printer, poller.at_most(ensure),
                               rearm=shlex.join([*prog, *args.argv_tail]),
                               poller_here=lambda: any(t.is_alive() for t in polls), until_ready=args.until == "ready",
                               shaped=shaped, pacer=Pacer(config.delivery) if shaped else None)

    _stop_on_signals(follow.stop.set, watcher.stop.set)
    try:  # from here on, every end of the watch is a line on stdout too
        if args.once:
            return _once(registry, watcher, follow)
        if not cursor.claim():  # said on stdout: it is the only line this watch will give
            printer.emit(Event(kind="error", detail=f"jobmon-watch: reader {cursor.name}: another watch serves it "
                                                    "and did not let go; give this one --reader NAME"))
            return FAILED
        follow.run(deadline)
        return OK
    except OutputClosed:
        _quiet_stdout()
        return OK
    except Exception as exc:  # the last words an agent's Monitor will see
        from loguru import logger

        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        logger.opt(exception=exc).debug("watch failed")  # the traceback with -vv; one line always
        logger.error("watch failed: {}", message)
        with contextlib.suppress(Exception):  # what the poller logged first (its own fatal line)
            follow.catch_up()
        printer.emit(Event(kind="error", detail=f"jobmon-watch: fatal: {message}"))
        from jobmon.files import FileError

        return REGISTRY if isinstance(exc, FileError) else FAILED
    finally:
        cursor.release()
        watcher.stop.set()
        for thread in polls:  # a cycle under way finishes: its claims and history are written
            thread.join()


def _once(registry: "Registry", watcher, follow) -> int:  # type: ignore[no-untyped-def]
    """``watch --once``: one check of every job (unless a poller runs: it checks), what is new
    for the reader (unless a watch serves it: it prints them), then the summary."""
    from jobmon import poller
    from jobmon.registry import WatchLock

    lock = WatchLock(registry)
    holder = lock.acquire()
    if holder is None:
        poller.Poller(watcher, lock).run(once=True)
    else:
        print(f"{_poller_runs(holder)}; it checks the jobs", file=sys.stderr)
    follow.print_new()
    follow.summary_line()
    return OK


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail on a closed pipe."""
    if sys.stdout is None:  # closed from the start: nothing to flush, and fd 1 may be another file now
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def cmd_poll(args: argparse.Namespace) -> int:
    """The poller alone, in the foreground, printing nothing: what ``watch --detach`` starts."""
    from jobmon import poller
    from jobmon.registry import WatchLock

    registry = _registry(args)
    config = _config(args)
    watcher = _watcher(args, config, registry)
    lock = WatchLock(registry)
    if args.lock_fd is not None:
        lock.adopt(args.lock_fd)
    else:
        holder = lock.acquire()
        if holder is not None:
            print(_poller_runs(holder), file=sys.stderr)
            return OK

    _stop_on_signals(watcher.stop.set)
    return OK if poller.serve(watcher, lock) else FAILED


def _shaped(args: argparse.Namespace) -> bool:
    """Whether what is printed is shaped for a harness (ends together as id ranges, paced):
    not on a terminal, where a person reads every line, nor with --raw."""
    stdout = sys.stdout
    return not getattr(args, "raw", False) and not (stdout is not None and stdout.isatty())


def _one_shot(args: argparse.Namespace, config: "Config", registry: "Registry"):  # type: ignore[no-untyped-def]
    """A follower for a command that prints what is new and exits (events, wait)."""
    from jobmon import follower

    return follower.Follower(config, registry, _log(registry), _cursor(args, registry), _printer(args, config),
                             lambda: None, rearm=_again(args), shaped=_shaped(args))


def _again(args: argparse.Namespace) -> str:
    """The command line that asks again, for a line that says the rest waits."""
    import shlex

    return shlex.join(["jobmon", args.command, *args.argv_tail])


def _max_chars(args: argparse.Namespace) -> int | None:
    if args.max_chars < 0:
        raise Failure(f"--max-chars {args.max_chars}: must be 0 (no bound) or more", USAGE)
    return args.max_chars or None


def cmd_events(args: argparse.Namespace) -> int:
    """The events not yet given to the reader, then the session summary: for an agent with no
    Monitor tool, between turns. ``--if-new``: nothing at all when nothing is new (a hook)."""
    registry = _registry(args)
    config = _config(args)
    follow = _one_shot(args, config, registry)
    bound = _max_chars(args)
    _detached(args, config, registry, quiet=True)  # nothing is left unwatched between two turns
    if args.all:
        follow.printer.write([line.text for line in _all_lines(follow)])
    elif args.if_new and not follow.has_new():
        return OK
    elif not follow.print_new(max_chars=bound):
        if args.if_new:  # a watch tells this reader: a hook adds nothing
            return OK
    elif follow.untold:
        follow.rest_line()
    follow.summary_line()
    return OK


def _all_lines(follow):  # type: ignore[no-untyped-def]
    from jobmon import shape

    return shape.lines(follow.log.since(0), as_json=follow.printer.as_json, max_line=follow.printer.max_line,
                       group_after=follow.config.settings.aggregate_after if follow.shaped else None)


def cmd_wait(args: argparse.Namespace) -> int:
    """Until the reader has undelivered events (or, with --until, until every job ended or is
    ready), at most --for: print them shaped, then the summary once no job is left, and exit 0.
    For a harness told when a command exits (Claude Code's run_in_background) and for scripts."""
    import time

    from jobmon import poller

    registry = _registry(args)
    config = _config(args)
    deadline = time.monotonic() + parse_duration(args.for_)
    follow = _one_shot(args, config, registry)
    follow.ensure_poller = poller.at_most(lambda: _detached(args, config, registry, quiet=True))
    follow.until_ready = args.until == "ready"
    if not follow.cursor.claim(wait=0.0, ask=False):
        raise Failure(f"reader {follow.cursor.name} is served by a running watch, which prints its events "
                      "(give --reader NAME for another reader)")
    _stop_on_signals(follow.stop.set)
    try:
        follow.wait(deadline, until=args.until, max_chars=_max_chars(args))
    finally:
        follow.cursor.release()
    return OK


def cmd_remove(args: argparse.Namespace) -> int:
    from jobmon.registry import Job

    registry = _registry(args)
    removed = []
    with registry.transaction() as entries:
        keep = []
        for e in entries:
            (removed if isinstance(e, Job) and _match(e, args) else keep).append(e)
        entries[:] = keep
        now = clock.stamp(clock.now())
        # History first, under the lock: if it cannot be written (a full disk), the registry is
        # not either, and the job stays registered instead of being lost from both.
        registry.append_history([{**j.to_dict(), "removed": now} for j in removed])
    if not removed:
        raise Failure(f"no job {args.id} in {registry.path}", FAILED)
    for job in removed:
        print(f"removed {job.type} {job.label}", file=sys.stderr)
    return OK


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from jobmon import report
    from jobmon.events import json_line, one_line

    since = clock.now() - timedelta(seconds=parse_duration(args.since, "--since")) if args.since else None
    jobs = report.ended(_registry(args).history(), since)
    if args.json:
        for item in report.as_json(jobs):
            print(json_line(item))
    else:
        for line in report.table(jobs):
            print(one_line(line))
    return OK


def cmd_types(args: argparse.Namespace) -> int:
    config = _config(args)
    for name, jtype in config.types.items():
        if args.json:
            print(json.dumps({"type": name, "description": jtype.description, "files": list(jtype.sources),
                              "fields": {f: s.required for f, s in jtype.fields.items()},
                              "terminal": sorted(jtype.states["success"] | jtype.states["failure"])}))
            continue
        need = ", ".join(f if s.required else f"[{f}]" for f, s in jtype.fields.items())
        print(f"{name}: {jtype.description}")
        print(f"  fields: {need}; every {jtype.interval:g}s; from {', '.join(jtype.sources)}")
    for cluster in config.clusters:
        print(f"cluster {cluster.name}: hosts {', '.join(cluster.hosts)}")
    return OK


def cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    print(f"config OK: {len(config.types)} job types, {len(config.clusters)} clusters, "
          f"from {', '.join(config.files)}")
    return OK


def cmd_render(args: argparse.Namespace) -> int:
    from jobmon import plan
    from jobmon.registry import Job

    config = _config(args)
    jobs = [j for j in _registry(args).read() if isinstance(j, Job) and _match(j, args)]
    if not jobs:
        if args.type is None:
            raise Failure(f"no registered job {args.id}: give --type (and --host) to render a new one", FAILED)
        job = _new_job(config, args, args.type, args.id, args.host or "", args.user or "", None,
                       {"file": args.file or "", **dict(_pairs(args.field))})
        later, said = plan.as_running(job, config.resolve(job.type, job.host)[0])
        lines, then = _render([job], config), _render([later], config)
        if then != lines:  # what a check asks once the job runs (its logs, a server's health)
            lines = ["# its first check", *lines, f"# once it runs, {said}", *then]
    else:
        lines = _render(jobs, config)
    print("\n".join(lines))
    return OK


def _render(jobs: list, config: "Config") -> list[str]:  # type: ignore[type-arg]
    from jobmon import plan

    out = []
    for group in plan.plan(jobs, config):
        try:
            command = plan.command(group)
        except plan.Refused as exc:  # a registered job another agent wrote
            raise Failure(str(exc), USAGE) from None
        if group.jtype.check.read is not None:
            out.append(f"# {group.jtype.name} reads this file from where its last check stopped; it runs no command")
        out.append(command)
    return out


def cmd_discover(args: argparse.Namespace) -> int:
    from jobmon import discover, plan
    from jobmon.events import one_line
    from jobmon.registry import Job

    config = _config(args)
    for name in args.type or []:
        if name not in config.types:
            from jobmon.config import _unknown_type

            raise Failure(f"--type: {_unknown_type(name, config.types)}", USAGE)
    for host in args.host or []:  # what the command line names is refused as a usage error
        for name in args.type or list(config.types):
            try:
                plan.vetted(config.resolve(name, host)[0], {"host": host})
            except plan.Refused as exc:
                raise Failure(f"--host: {exc}", USAGE) from None
    registry = _registry(args)
    jobs = [e for e in registry.read() if isinstance(e, Job)]
    found, problems = discover.discover(config, jobs, types=args.type or [], hosts=args.host or [], user=args.user)
    for p in problems:
        print(one_line(f"jobmon: discover {p.type}{' on ' + p.host if p.host else ''}: {p.why}"), file=sys.stderr)
    for c in found:
        if args.json:
            print(json.dumps({"type": c.type, "id": c.id, "host": c.host, "state": c.state,
                              "description": c.description, "registered": c.registered, **c.fields}))
        else:
            who = f"{c.id}@{c.host}" if c.host else c.id
            desc = f' "{c.description}"' if c.description else ""
            print(one_line(f"{'registered' if c.registered else 'new':<10} {c.type:<9} {who:<28} {c.state:<10}{desc}"))
    if args.add is None:
        return FAILED if problems else OK
    new: list[Job] = []
    skipped: list[str] = []
    for c in found:
        if c.registered or (args.add and c.id not in args.add):
            continue
        fields = {k: v for k, v in c.fields.items() if k in config.types[c.type].fields}
        try:
            new.append(_new_job(config, args, c.type, c.id, c.host, args.user or "", c.description, fields))
        except Failure as exc:  # one row the type refuses must not keep the others from being watched
            skipped.append(f"skipped {c.type} {c.id}{'@' + c.host if c.host else ''}: {exc}")
    skipped += [f"no candidate {i} (see the list above)" for i in sorted(set(args.add) - {c.id for c in found})]
    _register(registry, new)
    for why in skipped:  # after the registered ones: the last lines say what is left to do
        print(f"jobmon: --add: {why}", file=sys.stderr)
    return FAILED if problems or skipped else OK


def cmd_notify(args: argparse.Namespace) -> int:
    """``notify test``: one message to every ``notify:`` target, one line each on how it went."""
    import getpass
    import socket

    from jobmon import notify
    from jobmon.events import json_line

    config = _config(args)
    targets = config.notify.every()
    if not targets:
        raise Failure("notify test: the config names no notify: target (see the README, Notifications)")
    where = f"{getpass.getuser()}@{socket.gethostname()}"
    results = notify.test(targets, os.environ, f"jobmon test message from {where}: notifications reach you")
    for target, sent in results:
        if args.json:
            print(json_line({"target": target.name, "sent": sent.ok, "why": sent.why}))
        else:
            print(f"{target.name}: {'sent' if sent.ok else 'not sent: ' + sent.why}")
    return OK if all(sent.ok for _, sent in results) else FAILED


def cmd_skill(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jobmon import skill

    try:
        path, what = skill.install(args.agent, args.scope, Path(args.dest) if args.dest else None,
                                   args.force, home=Path.home(), cwd=Path.cwd())
    except skill.SkillError as exc:
        raise Failure(str(exc), USAGE) from None
    print(f"{what}: {path}", file=sys.stderr)
    return OK


def cmd_hooks(args: argparse.Namespace) -> int:
    """``hooks install|uninstall``: jobmon's turn-start hooks in the agent's settings; ``hooks
    run``: what those hooks run (always exits 0: a hook must never block the user's prompt)."""
    from pathlib import Path

    from jobmon import hooks

    if args.action == "run":
        from jobmon import hookrun

        return hookrun.run(args.agent, os.environ)
    act = hooks.install if args.action == "install" else hooks.uninstall
    try:
        done = act(args.agent, args.scope, Path(args.dest) if args.dest else None,
                   home=Path.home(), cwd=Path.cwd(), env=os.environ)
    except hooks.HooksError as exc:
        raise Failure(str(exc), USAGE) from None
    for path, what in done:
        print(f"{what}: {path}", file=sys.stderr)
    return OK


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from jobmon import demo

    root = Path(args.root or tempfile.mkdtemp(prefix="jobmon-demo-"))
    session = args.session or "demo"
    common = ["--root", str(root), "--session", session] + (["--json"] if args.json else [])
    if args.config:
        common += ["--config", args.config]
    for job in demo.start(root / "demo-jobs"):
        status = main(["add", "--type", "local", "--id", str(job.pid), "--file", str(job.exit_file),
                       "--field", f"log={job.log}", "--desc", job.description, *common])
        if status:
            return status
    print(f"demo: registry {root}/.claude/agents/{session}/active_jobs.json", file=sys.stderr)
    return main(["watch", "--interval", str(args.interval), *common])


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--session", help="session id (default: $CLAUDE_CODE_SESSION_ID, $CODEX_THREAD_ID, this terminal)")
    common.add_argument("--root", help="folder holding .claude/agents/ (default: $JOBMON_ROOT, else .)")
    common.add_argument("--config", help="one more config file or folder, applied last")
    common.add_argument("--json", action="store_true", help="one JSON object per line")
    common.add_argument("-v", "--verbose", action="count", default=0, help="log more on stderr (-vv: debug)")
    job = argparse.ArgumentParser(add_help=False)
    job.add_argument("--type", help="job type (see `jobmon types`)")
    job.add_argument("--id", required=True, help="the job's id in its own system")
    job.add_argument("--host", help="login node or ssh alias the job runs behind")
    job.add_argument("--user")
    interval = argparse.ArgumentParser(add_help=False)
    interval.add_argument("--interval", type=float, help="seconds between checks, for every type")
    reader = argparse.ArgumentParser(add_help=False)
    reader.add_argument("--reader", default="agent",
                        help="whose cursor: starts after the last event given to it (default: agent)")

    parser = argparse.ArgumentParser(prog="jobmon", description="Watch long-running ML jobs and report each state change.",
                                     epilog="Exit codes: 0 done, 1 failed, 2 bad usage or config, 3 unreadable registry.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str, parents: list) -> argparse.ArgumentParser:  # type: ignore[type-arg]
        p = sub.add_parser(name, help=help, description=help, parents=parents)
        p.set_defaults(func=fn)
        return p

    p = add("add", cmd_add, "register a job", [common, job])
    p.add_argument("--desc", help="what the job is, shown in every event")
    p.add_argument("--file", help="the job's output or log file")
    p.add_argument("--field", action="append", metavar="NAME=VALUE", help="a type-specific field")
    p.add_argument("--watch", action="store_true", help="start a background watcher if none runs")
    add("list", cmd_list, "list registered jobs", [common])
    add("status", cmd_status, "check every job once now, print changes and a summary", [common])
    p = add("watch", cmd_watch, "print the session's events as they happen, until no job is left "
                                "(same as bin/jobmon-watch)", [common, interval, reader])
    p.add_argument("--once", action="store_true", help="check every job once, print what is new, then the summary")
    p.add_argument("--for", dest="for_", metavar="DURATION",
                   help="end at DURATION (90s, 25m, 1h) with a rearm line while jobs remain; never polls "
                        "itself but makes sure a detached poller runs")
    p.add_argument("--detach", action="store_true", help="start a poller in the background (if none runs), print its pid")
    p.add_argument("--raw", action="store_true",
                   help="a line per event, at once (as on a terminal): no grouping of ends, no pacing for a Monitor")
    p.add_argument("--until", choices=["ready"],
                   help="ready: end once every job whose type has a ready event has reached it (a deployment's READY: "
                        "it can take requests); the jobs stay registered and a detached poller goes on")
    p = add("poll", cmd_poll, "the poller alone, in the foreground, printing nothing (what watch --detach starts)",
            [common, interval])
    p.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)  # the watch lock, handed over by its starter
    shaping = argparse.ArgumentParser(add_help=False)
    shaping.add_argument("--raw", action="store_true",
                         help="a line per event, at once (as on a terminal): no grouping of ends, no pacing")
    bound = argparse.ArgumentParser(add_help=False)
    bound.add_argument("--max-chars", type=int, default=20000, metavar="N",
                       help="print at most N characters of events (0: no bound); the rest stays for the next "
                            "call, and a line says so (default: 20000, inside what an agent's tool shows)")
    p = add("events", cmd_events, "print the events not yet given to a reader, then the session summary",
            [common, reader, shaping, bound])
    p.add_argument("--all", action="store_true", help="the whole event log (the cursor stays)")
    p.add_argument("--if-new", action="store_true",
                   help="print nothing at all when the reader has no new event (for a turn-start hook)")
    p = add("wait", cmd_wait, "wait for the reader's next events (at most --for), print them and the summary, "
                              "exit 0: for an agent with no Monitor (run_in_background) and for scripts",
            [common, reader, shaping, bound])
    p.add_argument("--for", dest="for_", metavar="DURATION", default="25m",
                   help="return by DURATION (90s, 25m, 1h) with a rearm line if nothing came (default: 25m, "
                        "inside run_in_background's 30 min)")
    p.add_argument("--until", choices=["ended", "ready"],
                   help="ended: print events as they come until no job is left; ready: until every job whose "
                        "type has a ready event has reached it (default: return at the first new events)")
    p = add("remove", cmd_remove, "stop watching a job (it goes to history)", [common])
    p.add_argument("--id", required=True)
    p.add_argument("--type")
    p.add_argument("--host")
    p = add("report", cmd_report, "the session's ended jobs: time, wait, CPU, memory and GPU use; totals; "
                                  "the least efficient", [common])
    p.add_argument("--since", metavar="DURATION", help="only jobs that ended in the last DURATION (90m, 12h, 1d)")
    add("types", cmd_types, "list job types and the files they come from", [common])
    add("check", cmd_check, "validate the config and exit", [common])
    p = add("render", cmd_render, "print the exact command a job's check runs (a new job's: at first, and once it runs)",
            [common, job])
    p.add_argument("--file")
    p.add_argument("--field", action="append", metavar="NAME=VALUE", help="a type-specific field")
    p = add("discover", cmd_discover, "list jobs to watch: the registry, then each type's discovery", [common])
    p.add_argument("--type", action="append", help="only this type (repeatable)")
    p.add_argument("--host", action="append", help="a host to look on (repeatable; default: settings.hosts, "
                                                    "else the hosts of registered jobs)")
    p.add_argument("--user", help="whose jobs (default: $USER)")
    p.add_argument("--add", nargs="*", metavar="ID", help="register the new ones (all, or these ids)")
    # No argparse `choices` for --agent and --scope: a bad value reads as jobmon's own one line.
    p = add("skill", cmd_skill, "install the agent skill (skills/monitor/SKILL.md) where the agent finds it", [common])
    p.add_argument("action", choices=["install"])
    p.add_argument("--agent", default="claude", help="claude (.claude/skills/) or codex (.agents/skills/)")
    p.add_argument("--scope", default="project", help="project (the current folder) or user (your home)")
    p.add_argument("--dest", help="install under this folder instead of the current folder or home")
    p.add_argument("--force", action="store_true", help="replace a locally edited copy")
    p = add("hooks", cmd_hooks, "add (or remove) turn-start hooks that give an agent without a Monitor tool its "
                                "new events; `run` is what they run", [common])
    p.add_argument("action", choices=["install", "uninstall", "run"])
    p.add_argument("--agent", default="claude", help="claude (.claude/settings.json) or codex (.codex/hooks.json)")
    p.add_argument("--scope", default="project", help="project (the current folder) or user (your home)")
    p.add_argument("--dest", help="use this folder instead of the current folder or home")
    p = add("notify", cmd_notify, "send a test message to every notify: target, one line each", [common])
    p.add_argument("action", choices=["test"])
    p = add("demo", cmd_demo, "run two local demo jobs and watch them to the end", [common])
    p.add_argument("--interval", type=float, default=1.0)
    return parser


def _say(error: str) -> None:
    """An error's one line on stderr, through the sanitizer: it may quote a value from a registry."""
    from jobmon.events import one_line

    print(f"jobmon: {one_line(error)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    from jobmon.events import OutputClosed
    from jobmon.files import FileError

    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    args.argv_tail = raw[1:]  # the command's own words, for a rearm line that repeats them
    try:
        _durations(args)
        return args.func(args)
    except Failure as exc:
        _say(str(exc))
        return exc.code
    except FileError as exc:  # the registry (never overwritten) or another of the session's files
        _say(str(exc))
        return REGISTRY
    except OSError as exc:  # any other write that failed: one line naming the file, no traceback
        from jobmon.files import reason

        _say(f"{exc.filename + ': ' if exc.filename else ''}{reason(exc)}")
        return FAILED
    except OutputClosed:  # stdout's reader went away, or it was closed from the start: nobody to tell
        _quiet_stdout()
        return OK
    except KeyboardInterrupt:
        return 130


def watch_main() -> int:
    os.environ.setdefault("JOBMON_PROG", "jobmon-watch")
    return main(["watch", *sys.argv[1:]])
