"""The poller's cycle: plan the due checks, run them, apply the rules, act, log, write back.

A terminal job is handled in two steps so that no terminal event is lost to a crash: first the
registry records the claimed final state (``jobmon.final``), then the actions run and the event
is appended to the session's event log, then the job moves to history. A poller that finds a
claimed final state at start logs it, marked ``replayed``, only if the log does not hold it yet:
followers print each end once.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

from loguru import logger

from jobmon import plan as planner
from jobmon import clock, digest, finish, findings, logfile, parallel, rules, run
from jobmon.config import Config, JobType
from jobmon.eventlog import EventLog
from jobmon.events import Event, clip, one_line
from jobmon.notify import Notifier
from jobmon.registry import Invalid, Job, Registry
from jobmon.waits import Waits, spoken

BACKOFF_CAP = 600.0  # seconds: a host that keeps failing is still asked every ten minutes


@dataclass
class Watcher:
    config: Config
    registry: Registry
    log: EventLog
    interval: float | None = None  # --interval: wins over every configured interval
    echo: Callable[[list[Event]], None] | None = None  # also shown at once (``jobmon status``)
    notifier: Notifier | None = None  # people told of what was logged (``notify:``)
    stop: threading.Event = field(default_factory=threading.Event)
    _due: dict[tuple[str, str], float] = field(default_factory=dict)
    _failures: dict[tuple[str, str], int] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)
    _waits: Waits = field(default_factory=Waits)  # delegate.during: how long the other type has said "ended"

    # ------------------------------------------------------------ one pass

    def cycle(self, *, everything: bool = False) -> list[Job]:
        """Check the due groups (all of them with ``everything``); return the active jobs left."""
        entries = self.registry.read()
        jobs = [e for e in entries if isinstance(e, Job) and not e.book.final]
        unusable = self._unusable(entries)
        jobs = [j for j in jobs if j.key not in unusable]
        now = time.monotonic()
        asked = self._delegates(jobs)
        real = {j.key for j in jobs}
        groups = planner.plan(jobs + [v for v in asked.values() if v.key not in real], self.config)
        live = {g.key for g in groups}
        # Forget groups whose jobs are gone: a stale due time in the past would wake the loop at once, forever.
        self._due = {k: v for k, v in self._due.items() if k in live}
        self._failures = {k: v for k, v in self._failures.items() if k in live}
        due = [g for g in groups if everything or self._due.get(g.key, 0.0) <= now]
        if due:
            results = self._run_checks(due)
            # Stopped meanwhile (SIGINT, SIGTERM, SIGHUP): the checks were killed and say nothing
            # of the jobs. Nothing is written; the next poller checks again.
            if not run.stopping():
                merged: dict[tuple[str, str, str], rules.Observation] = {}
                for result in results:
                    merged.update(result)
                self._apply([j for g in due for j in g.jobs if j.key in real], merged, asked)
        return [e for e in self.registry.read() if isinstance(e, Job)]

    def _delegates(self, jobs: list[Job]) -> dict[tuple[str, str, str], Job]:
        """For each job whose own check has gone quiet, the job its type delegates to."""
        out: dict[tuple[str, str, str], Job] = {}
        now = clock.now()
        for job in jobs:
            jtype, _ = self.config.resolve(job.type, job.host)
            d = jtype.delegate
            if d is None or jtype.terminal(job.last_status):
                continue
            since = clock.parse(job.book.grew_at or job.book.missing_since or "")
            if since is None or (now - since).total_seconds() < d.after:
                continue
            open_parts = [p for p, state in (job.book.parts or {}).items()
                          if p and not jtype.terminal(state)]
            other = self._other(job, jtype, {**(job.book.captured or {}),
                                             "open_part": open_parts[-1] if open_parts else ""})
            if other is not None:
                out[job.key] = other
        return out

    def _other(self, job: Job, jtype: JobType, extra: Mapping[str, Any]) -> Job | None:
        """The job the type delegates to, named from this job's values; None when the values name
        none (a log that never said its Slurm job) or one its type would refuse."""
        d = jtype.delegate
        assert d is not None
        values = {**planner.blank_values(jtype), **planner.job_values(job, jtype), **extra}
        other = Job(d.type, d.id.render(values).strip(), host=d.host.render(values).strip(), user=job.user)
        other_type, _ = self.config.resolve(other.type, other.host)
        if not other.id or other_type.problem({"id": other.id, "host": other.host}) is not None:
            return None
        return other

    def _run_checks(self, groups: list[planner.Group]) -> list[dict[tuple[str, str, str], rules.Observation]]:
        # A cluster's settings may lower its own bound (an sshd with a smaller MaxSessions).
        return parallel.map_by_host(groups, lambda g: g.host, self._check, limit=lambda g: g.settings.max_parallel,
                                    total=self.config.settings.max_parallel_total, name="check")

    def _check(self, group: planner.Group) -> dict[tuple[str, str, str], rules.Observation]:
        """Never raises: whatever goes wrong is a failed check, which is not a failed job."""
        try:
            return self._check_group(group)
        except planner.Refused as exc:  # a value the watcher let through: never run, said in one line
            logger.error("check of {} on {} not run: {}", group.jtype.name, group.host, exc)
            self._schedule(group, False)
            return {job.key: rules.Observation(None, f"not run: {exc}") for job in group.jobs}
        except Exception as exc:
            logger.opt(exception=exc).error("check of {} on {} crashed", group.jtype.name, group.host)
            self._schedule(group, False)
            why = f"check crashed: {type(exc).__name__}: {exc}"
            return {job.key: rules.Observation(None, why) for job in group.jobs}

    def _check_group(self, group: planner.Group, *, schedule: bool = True) -> dict[tuple[str, str, str], rules.Observation]:
        jtype = group.jtype
        if jtype.check.read is not None:
            observations = {job.key: self._read(job, jtype, planner.command(group)) for job in group.jobs}
            if schedule:
                self._schedule(group, all(o.error is None for o in observations.values()))
            return observations
        observations = self._ask(group, jtype.check)
        if schedule:
            self._schedule(group, all(o.error is None for o in observations.values()))
        return self._confirm(group, observations)

    def _confirm(self, group: planner.Group, observations: dict[tuple[str, str, str], rules.Observation]
                 ) -> dict[tuple[str, str, str], rules.Observation]:
        """States the type does not trust alone (nel says "failed" whenever sacct is silent) are
        checked with the type it delegates to: if that one says the job still runs, this check
        failed, not the job. States it waits in (``during``: nel's PENDING after a TIMEOUT) are
        checked too: if that one has said the job ended for ``lost_after``, its verdict stands."""
        d = group.jtype.delegate
        if d is None or not (d.confirm or d.during):
            return observations
        asked: dict[tuple[str, str, str], Job] = {}
        for job in group.jobs:
            obs = observations[job.key]
            if obs.row is not None and obs.row.state not in d.during:
                self._waits.forget(job.key)  # it left the state it waited in: a later wait starts anew
            if obs.row is None or obs.row.state not in d.confirm | d.during:
                continue
            other = self._other(job, group.jtype, obs.row.groups)
            if other is not None:
                asked[job.key] = other
        if not asked:
            return observations
        answers: dict[tuple[str, str, str], rules.Observation] = {}
        for sub in planner.plan(list({o.key: o for o in asked.values()}.values()), self.config):
            answers.update(self._check_group(sub, schedule=False))
        for key, other in asked.items():
            answer = answers.get(other.key)
            if observations[key].row.state in d.during:  # type: ignore[union-attr]
                observations[key] = self._waited_out(key, observations[key], answer, other, group.jtype)
                continue
            if answer is None or answer.row is None:
                continue  # the other type knows nothing either: the state stands
            other_type, _ = self.config.resolve(other.type, other.host)
            if not other_type.terminal(answer.row.state):
                said = observations[key].row.state  # type: ignore[union-attr]
                why = f"says {said} while {other.type} {other.label} is {answer.row.state}"
                logger.warning("{} {}: {}", group.jtype.name, key[1], why)
                observations[key] = rules.Observation(None, why)
        return observations

    def _waited_out(self, key: tuple[str, str, str], own: rules.Observation, answer: rules.Observation | None,
                    other: Job, jtype: JobType) -> rules.Observation:
        """A job whose check says it waits while the other type says it ended: the other's
        verdict once that has held for the other host's ``lost_after`` (no new job came), else
        the job's own observation."""
        if answer is None or answer.row is None:
            return own  # the other type cannot tell now: the wait goes on, its clock too
        other_type, settings = self.config.resolve(other.type, other.host)
        if not other_type.terminal(answer.row.state):
            self._waits.forget(key)
            return own
        waited = self._waits.waited(key, other.key)
        if waited == 0:
            logger.info("{} {}: says {} while {} {} ended {}; its verdict stands after {}", jtype.name, key[1],
                        own.row.state if own.row else "", other.type, other.label, answer.row.state,
                        spoken(settings.lost_after))
        if waited < settings.lost_after:
            return own
        self._waits.forget(key)
        return _delegated(own, answer, other, jtype, self.config, waited=waited)

    def _ask(self, group: planner.Group, probe: Any) -> dict[tuple[str, str, str], rules.Observation]:
        """Run one check command and read every job's row out of its output."""
        jtype = group.jtype
        command = planner.command(group, probe)
        logger.debug("check {} ({} jobs): {}", group.key, len(group.jobs), command)
        result = run.run(command, jtype.timeout, ok_codes=probe.ok_exit)
        why = None if result.ok else result.why()
        text = rules.clean(result.stdout)
        said = text + "\n" + rules.clean(result.stderr)
        live_why = _says(probe.live.fail_if, said, "controller") if why is None and probe.live else None
        own_why = _says(probe.fail_if, said, "check") if why is None else None
        if own_why is not None and probe.live is None:
            why = own_why  # without live rows, nothing answers for the jobs
        if why is not None and result.ok and group.batched and len(group.jobs) > 1:
            # The output says something failed, not for which job (nel's stderr names a host, not
            # an invocation): ask about each job alone, so one bad cluster does not hide the rest.
            logger.info("check of {} on {} says it failed; asking job by job", jtype.name, group.host or "localhost")
            observations: dict[tuple[str, str, str], rules.Observation] = {}
            for job in group.jobs:
                observations.update(self._ask(group._replace(jobs=(job,)), probe))
            return observations
        answers: dict[str, rules.Answer] = {}
        if why is None:
            try:
                if group.batched:
                    answers = rules.read_batch(text, jtype, {j.id: j.submitted for j in group.jobs}, probe,
                                               failed=own_why, live_failed=live_why)
                else:
                    row = rules.parse_one(text, jtype, group.jobs[0].id, probe)
                    answers = {group.jobs[0].id: rules.Answer(row)} if row else {}
            except ValueError as exc:  # output that cannot be read (bad JSON) is a failed check
                why = str(exc)
        if why is not None:
            logger.warning("check of {} on {} failed: {}", jtype.name, group.host or "localhost", why)
            return {job.key: rules.Observation(None, why) for job in group.jobs}
        for failure in dict.fromkeys(w for w in (own_why, live_why) if w):
            logger.warning("check of {} on {}: {}", jtype.name, group.host or "localhost", failure)
        one = not group.batched
        blank = rules.Answer(None)
        if probe is jtype.check:  # a count in the row (nel's requests done) is read here: this machine's clock
            now = clock.now().timestamp()
            answers = {i: a if a.progress else a._replace(progress=rules.row_mark(a.row, jtype, now))
                       for i, a in answers.items()}
        return {job.key: _observed(answers.get(job.id, blank), text if one else None) for job in group.jobs}

    def _read(self, job: Job, jtype: JobType, path: str) -> rules.Observation:
        """A check that reads the job's file from where the last one stopped: no process at all."""
        try:
            chunk = logfile.read_new(path, job.book.offset, self.config.settings.max_read)
        except logfile.Missing as exc:  # not there (yet): "not yet", LOST after the grace period
            return rules.Observation(None, note=str(exc))
        except logfile.Unreadable as exc:
            return rules.Observation(None, str(exc))
        if chunk.skipped:
            logger.warning("{}: {} bytes arrived at once; read only the last {}", path, chunk.skipped,
                           self.config.settings.max_read)
        text = rules.clean(chunk.text)
        # A log that shrank was written anew (a relaunch with `>`): its parts start over.
        row, parts = rules.parse_log(text, jtype, {} if chunk.restarted else (job.book.parts or {}))
        # Its progress on this machine's clock: the log is read here, so its growth is seen here.
        mark = rules.read_mark(text, chunk.offset, jtype, clock.now().timestamp())
        return rules.Observation(row, text=text, offset=chunk.offset, grew=chunk.grew, parts=parts, progress=mark)

    def _schedule(self, group: planner.Group, ok: bool) -> None:
        interval = self.interval or group.jtype.interval
        failures = 0 if ok else self._failures.get(group.key, 0) + 1
        self._failures[group.key] = failures
        wait = interval if ok else min(interval * 2 ** (failures - 1), max(BACKOFF_CAP, interval))
        self._due[group.key] = time.monotonic() + wait

    # ------------------------------------------------------------ decisions and write-back

    def _apply(self, jobs: list[Job], observations: Mapping[tuple[str, str, str], rules.Observation],
               asked: Mapping[tuple[str, str, str], Job]) -> None:
        now = clock.now()
        seen: dict[tuple[str, str, str], tuple[Job, JobType, rules.Step]] = {}
        for job in jobs:
            jtype, s = self.config.resolve(job.type, job.host)
            obs = observations[job.key]
            if job.key in asked and asked[job.key].key in observations:
                obs = _delegated(obs, observations[asked[job.key].key], asked[job.key], jtype, self.config)
            # Its fields, declared ones blank when not given, so a text may test them (an endpoint).
            obs = obs._replace(given={**{f: "" for f in jtype.fields if f != "id"},
                                      **{k: str(v) for k, v in job.fields.items() if k in jtype.fields}})
            step = rules.advance(job.last_status, job.book, obs, jtype, now,
                                 unreachable_after=s.unreachable_after, lost_after=s.lost_after)
            if obs.offset is not None:
                grew_at = clock.stamp(now) if obs.grew or step.book.grew_at is None else step.book.grew_at
                # A read check's parts come from its log; a batched check's, from its rows (kept by advance).
                parts = {"parts": dict(obs.parts) or None} if obs.parts is not None else {}
                step = step._replace(book=step.book._replace(offset=obs.offset, grew_at=grew_at, **parts))
            seen[job.key] = (job, jtype, step)

        moved: list[tuple[Job, JobType, rules.Change]] = []
        claimed: list[tuple[Job, JobType, rules.Change]] = []
        failed: list[tuple[Job, JobType, rules.Change]] = []  # tasks of an array (parts) that failed
        logged: int | None = None  # the log's last seq, read only when an end is claimed
        with self.registry.transaction() as entries:
            for i, entry in enumerate(entries):
                if not isinstance(entry, Job) or entry.key not in seen:
                    continue
                job, jtype, step = seen[entry.key]
                if entry.last_status != job.last_status or entry.book.final:
                    continue  # another process reported this change first
                final = next((c for c in step.changes if c.terminal), None)
                book = step.book
                if final is not None:
                    logged = self.log.last_seq() if logged is None else logged
                    book = book._replace(final=finish.claim(final, now, logged))
                entries[i] = replace(entry, last_status=step.status, book=book)
                if final is not None:  # with what this check kept of it (its log paths)
                    claimed.append((entries[i], jtype, final))
                moved += [(entry, jtype, c) for c in step.changes if not c.terminal and c.kind != "part"]
                failed += [(entries[i], jtype, c) for c in step.changes if c.kind == "part"]

        outcomes = self._finish(claimed, now)
        told = finish.failed_parts(self.config, failed, now)  # each failed task with its own cause
        if run.stopping():  # actions killed by a stop: the claims stay, replayed once this process is gone
            outcomes, told = [], []
        hosts = digest.by_host([(j, c) for j, _, c in moved if c.kind in ("unreachable", "recovered")], now)
        changes = [finish.event_for(j, t, c, now) for j, t, c in moved if c.kind not in ("unreachable", "recovered")]
        self._say(digest.fold(hosts + told + changes + [o.event for o in outcomes], self.config.settings.aggregate_after))
        self._to_history(outcomes)

    def _say(self, events: list[Event]) -> None:
        """Into the event log first; then, for ``jobmon status``, on the screen; then the
        notifier's readers are woken (they send from threads of their own: a hung server never
        holds a cycle up)."""
        if self.notifier is not None and events:
            self.notifier.start()  # before this process's first event: where a new target starts
        logged = self.log.append(events)
        if self.echo is not None and logged:
            self.echo(logged)
        if self.notifier is not None and logged:
            self.notifier.wake()

    # ------------------------------------------------------------ terminal jobs

    def _finish(self, claimed: list[tuple[Job, JobType, rules.Change]], now: datetime) -> list[finish.Outcome]:
        return finish.outcomes(self.config, claimed, now)

    def _to_history(self, outcomes: list[finish.Outcome]) -> None:
        if not outcomes:
            return
        self.registry.append_history([o.record for o in outcomes])  # first: a crash here repeats, never loses
        gone = {(o.event.type, o.event.id, o.event.host) for o in outcomes}
        with self.registry.transaction() as entries:
            entries[:] = [e for e in entries if not (isinstance(e, Job) and e.key in gone)]

    def replay_claimed(self) -> None:
        """Finish terminal jobs a killed poller claimed but never moved to history. Their end is
        logged again (marked ``replayed``) only if the log does not hold it yet."""
        entries = self.registry.read()
        unusable = self._unusable(entries)  # said once, never run: a hand-written claim is a value like any other
        jobs = [e for e in entries if isinstance(e, Job) and e.book.final and e.key not in unusable
                and not finish.held(e.book.final)]  # its claimant finishes it, unless it is gone
        if not jobs:
            return
        claimed = [(job, self.config.resolve(job.type, job.host)[0], finish.claimed_change(job)) for job in jobs]
        outcomes = finish.outcomes(self.config, claimed, clock.now())
        new = [replace(done.event, replayed=True) for job, done in zip(jobs, outcomes)
               if not self._logged(job, job.book.final or {})]
        self._say(new)
        self._to_history(outcomes)

    def _logged(self, job: Job, final: Mapping[str, Any]) -> bool:
        since = final.get("seq")
        if not isinstance(since, int):
            return False  # claimed by a jobmon without an event log
        return any(e.kind == "state" and e.terminal and (e.type, e.id, e.host) == job.key
                   for e in self.log.since(since))

    def _unusable(self, entries: Iterable[Any]) -> set[tuple[str, str, str]]:
        """Entries jobmon cannot watch: said once per poller, left in the registry as they are."""
        bad: set[tuple[str, str, str]] = set()
        for entry in entries:
            problem = unwatchable(self.config, self.registry, entry)
            if problem is None:
                continue
            if isinstance(entry, Job):
                bad.add(entry.key)
            if problem not in self._reported:
                self._reported.add(problem)
                logger.error(problem)
                self._say([Event(kind="error", detail=problem)])
        return bad

    def watchable(self, active: list[Job]) -> list[Job]:
        unusable = self._unusable(active)
        return [j for j in active if j.key not in unusable]


def unwatchable(config: Config, registry: Registry, entry: Job | Invalid) -> str | None:
    """Why jobmon cannot watch this entry (one line), or None.

    A job's values are checked again here, not only at ``jobmon add``: agents may write the
    registry directly, and a host such as ``-oProxyCommand=…`` must never reach ssh.
    """
    if isinstance(entry, Invalid):
        return f"{registry.path}: {entry.reason}; left as it is"
    if entry.type not in config.types:
        return f"job {clip(entry.id, 24)}: unknown job type '{entry.type}'; left as it is in {registry.path}"
    jtype, _ = config.resolve(entry.type, entry.host)
    reason = jtype.problem(jtype.checked(entry.values()))
    if reason is None and entry.book.final:  # a claim is finished with actions: its values too
        reason = finish.claim_problem(config, entry.book.final)
    if reason is None:
        return None
    return f"job {clip(entry.id, 24)}: {reason}; not watched, left as it is in {registry.path}"


def to_watch(config: Config, registry: Registry) -> list[Job]:
    """The registered jobs a poller has work for (claimed ends to finish included)."""
    return [e for e in registry.read() if isinstance(e, Job) and unwatchable(config, registry, e) is None]


def _says(pattern: Any, text: str, who: str) -> str | None:
    """Why a check failed, if its output says so (its ``fail_if``): the line that says it."""
    match = pattern.search(text) if pattern is not None else None
    return f"{who} says: {one_line(findings.line_at(text, match.start()))[:200]}" if match else None


def _observed(answer: rules.Answer, text: str | None) -> rules.Observation:
    """``text``: a one-job check's whole output; a batched check gives each job its own lines."""
    return rules.Observation(answer.row, answer.error, text=answer.text if text is None else text,
                             offset=answer.offset, grew=bool(answer.text), part_rows=answer.parts,
                             captured=answer.captured, progress=answer.progress, health=answer.health)


def _delegated(own: rules.Observation, other: rules.Observation, asked: Job, jtype: JobType,
               config: Config, *, waited: float | None = None) -> rules.Observation:
    """The job's own observation, unless the type it delegates to has a verdict. ``waited``: the
    verdict of a job whose own row says it waits (``delegate.during``), given after so long: the
    job's own row with the other's end, and one line of text that says the wait, for a key event
    (``slurm 439@host ended TIMEOUT; nel said PENDING for 10 min``)."""
    if other.row is None or jtype.delegate is None:
        return own
    other_type, _ = config.resolve(asked.type, asked.host)
    if not other_type.terminal(other.row.state):
        return own
    category = other_type.category(other.row.state)
    state = jtype.delegate.success if category == "success" else jtype.delegate.failure
    groups = {**other.row.groups, "delegate": f"{asked.type} {asked.label} says {other.row.state}",
              "delegate_type": asked.type, "delegate_id": asked.id, "delegate_host": asked.host,
              "delegate_state": other.row.state}
    if waited is not None and own.row is not None:
        said = (f"{asked.type} {asked.label} ended {other.row.state}; {jtype.name} said {own.row.state} "
                f"for {spoken(waited)}")
        text = f"{own.text}\n{said}" if own.text else said
        # Its own type's actions explain it (no delegate_type): nel copies the job's logs, the
        # Slurm one among them, long after the controller (MinJobAge, 5 min) forgot the job.
        groups = {**own.row.groups, "delegate": groups["delegate"]}
        return own._replace(row=rules.Row(state, groups), error=None, text=text)
    return own._replace(row=rules.Row(state, groups), error=None)
