"""The cycle: plan the due checks, run them, apply the rules, act, report, write back.

A terminal job is handled in two steps so that no terminal event is lost to a crash: first the
registry records the claimed final state (``jobmon.final``), then the actions run and the event
is printed, then the job moves to history. A watcher that finds a claimed final state at start
prints it again, marked ``replayed``: at least once, and a repeat says so.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Iterable, Mapping

from loguru import logger

from jobmon import plan as planner
from jobmon import findings, logfile, parallel, rules, run, template
from jobmon.config import Config, JobType
from jobmon.events import Event, Printer, clip, display_name, one_line
from jobmon.registry import Invalid, Job, Registry
from jobmon.report import summarize

BACKOFF_CAP = 600.0  # seconds: a host that keeps failing is still asked every ten minutes
ACTION_TAIL = 4096  # characters of an action's output kept in history
CAUSE_LIMIT = 200  # characters of a failure's cause in its event


@dataclass
class Outcome:
    """What a finished job leaves: its final event and its history record."""

    event: Event
    record: dict[str, Any]


@dataclass
class Watcher:
    config: Config
    registry: Registry
    printer: Printer
    interval: float | None = None  # --interval: wins over every configured interval
    stop: threading.Event = field(default_factory=threading.Event)
    finished: list[str] = field(default_factory=list)  # categories of jobs this run saw end
    metrics: list[str] = field(default_factory=list)  # results of the jobs this run saw complete
    _due: dict[tuple[str, str], float] = field(default_factory=dict)
    _failures: dict[tuple[str, str], int] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)

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
            merged: dict[tuple[str, str, str], rules.Observation] = {}
            for result in results:
                merged.update(result)
            self._apply([j for g in due for j in g.jobs if j.key in real], merged, asked)
        return [e for e in self.registry.read() if isinstance(e, Job)]

    def _delegates(self, jobs: list[Job]) -> dict[tuple[str, str, str], Job]:
        """For each job whose own check has gone quiet, the job its type delegates to."""
        out: dict[tuple[str, str, str], Job] = {}
        now = datetime.now()
        for job in jobs:
            jtype, _ = self.config.resolve(job.type, job.host)
            d = jtype.delegate
            if d is None or jtype.terminal(job.last_status):
                continue
            since = job.book.grew_at or job.book.missing_since
            if since is None or (now - datetime.strptime(since, rules.TIME_FORMAT)).total_seconds() < d.after:
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
        values = {**_blank(jtype), **planner.job_values(job, jtype), **extra}
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
        # The fallback also asks when the check erred but the host answered (sacct fails while
        # slurmdbd is down; squeue still knows the running jobs), never when ssh itself failed.
        unseen = [j for j in group.jobs if observations[j.key].row is None and observations[j.key].answered]
        if unseen and jtype.fallback is not None:
            for sub in planner.split(jtype, group.settings, group.host, unseen, jtype.fallback):
                for key, obs in self._ask(sub, jtype.fallback).items():
                    # A fallback says a job exists and how far it got, never that it ended: the
                    # verdict (with its exit code) waits for the check itself. A failed fallback
                    # leaves the job as it was.
                    if obs.row is not None and not jtype.terminal(obs.row.state):
                        observations[key] = obs
        return self._confirm(group, observations)

    def _confirm(self, group: planner.Group, observations: dict[tuple[str, str, str], rules.Observation]
                 ) -> dict[tuple[str, str, str], rules.Observation]:
        """States the type does not trust alone (nel says "failed" whenever sacct is silent) are
        checked with the type it delegates to: if that one says the job still runs, this check
        failed, not the job."""
        d = group.jtype.delegate
        if d is None or not d.confirm:
            return observations
        asked: dict[tuple[str, str, str], Job] = {}
        for job in group.jobs:
            obs = observations[job.key]
            if obs.row is None or obs.row.state not in d.confirm:
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
            if answer is None or answer.row is None:
                continue  # the other type knows nothing either: the state stands
            other_type, _ = self.config.resolve(other.type, other.host)
            if not other_type.terminal(answer.row.state):
                said = observations[key].row.state  # type: ignore[union-attr]
                why = f"says {said} while {other.type} {other.label} is {answer.row.state}"
                logger.warning("{} {}: {}", group.jtype.name, key[1], why)
                observations[key] = rules.Observation(None, why)
        return observations

    def _ask(self, group: planner.Group, probe: Any) -> dict[tuple[str, str, str], rules.Observation]:
        """Run one check command and read every job's row out of its output."""
        jtype = group.jtype
        command = planner.command(group, probe)
        logger.debug("check {} ({} jobs): {}", group.key, len(group.jobs), command)
        result = run.run(command, jtype.timeout, ok_codes=probe.ok_exit)
        why = None if result.ok else result.why()
        text = rules.clean(result.stdout)
        if why is None and probe.fail_if is not None:
            match = probe.fail_if.search(text + "\n" + rules.clean(result.stderr))
            if match:
                why = f"check says: {one_line(findings.line_at(match.string, match.start()))[:200]}"
        if why is not None and result.ok and group.batched and len(group.jobs) > 1:
            # The output says something failed, not for which job (nel's stderr names a host, not
            # an invocation): ask about each job alone, so one bad cluster does not hide the rest.
            logger.info("check of {} on {} says it failed; asking job by job", jtype.name, group.host or "localhost")
            observations: dict[tuple[str, str, str], rules.Observation] = {}
            for job in group.jobs:
                observations.update(self._ask(group._replace(jobs=(job,)), probe))
            return observations
        rows: dict[str, rules.Row] = {}
        if why is None:
            try:
                if group.batched:
                    rows = rules.parse_batch(text, jtype, [j.id for j in group.jobs], probe)
                else:
                    row = rules.parse_one(text, jtype, group.jobs[0].id, probe)
                    rows = {group.jobs[0].id: row} if row else {}
            except ValueError as exc:  # output that cannot be read (bad JSON) is a failed check
                why = str(exc)
        if why is not None:
            logger.warning("check of {} on {} failed: {}", jtype.name, group.host or "localhost", why)
            answered = result.kind in (run.OK, run.NONZERO)
            return {job.key: rules.Observation(None, why, answered=answered) for job in group.jobs}
        one = not group.batched
        return {job.key: rules.Observation(rows.get(job.id), text=text if one else "") for job in group.jobs}

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
        return rules.Observation(row, text=text, offset=chunk.offset, grew=chunk.grew, parts=parts)

    def _schedule(self, group: planner.Group, ok: bool) -> None:
        interval = self.interval or group.jtype.interval
        failures = 0 if ok else self._failures.get(group.key, 0) + 1
        self._failures[group.key] = failures
        wait = interval if ok else min(interval * 2 ** (failures - 1), max(BACKOFF_CAP, interval))
        self._due[group.key] = time.monotonic() + wait

    # ------------------------------------------------------------ decisions and write-back

    def _apply(self, jobs: list[Job], observations: Mapping[tuple[str, str, str], rules.Observation],
               asked: Mapping[tuple[str, str, str], Job]) -> None:
        now = datetime.now()
        seen: dict[tuple[str, str, str], tuple[Job, JobType, rules.Step]] = {}
        for job in jobs:
            jtype, s = self.config.resolve(job.type, job.host)
            obs = observations[job.key]
            if job.key in asked and asked[job.key].key in observations:
                obs = _delegated(obs, observations[asked[job.key].key], asked[job.key], jtype, self.config)
            step = rules.advance(job.last_status, job.book, obs, jtype, now,
                                 unreachable_after=s.unreachable_after, lost_after=s.lost_after)
            if obs.offset is not None:
                grew_at = now.strftime(rules.TIME_FORMAT) if obs.grew or step.book.grew_at is None else step.book.grew_at
                step = step._replace(book=step.book._replace(offset=obs.offset, grew_at=grew_at,
                                                             parts=dict(obs.parts or {}) or None))
            seen[job.key] = (job, jtype, step)

        events: list[Event] = []
        claimed: list[tuple[Job, JobType, rules.Change]] = []
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
                    book = book._replace(final=_claim(final, now))
                    claimed.append((entry, jtype, final))
                entries[i] = replace(entry, last_status=step.status, book=book)
                events += [self._event(entry, jtype, c, now) for c in step.changes if not c.terminal]

        outcomes = self._finish(claimed, now)
        self._emit(events, [o.event for o in outcomes])
        self._to_history(outcomes)

    def _event(self, job: Job, jtype: JobType, change: rules.Change, now: datetime, extra: str = "") -> Event:
        detail = change.why
        if change.kind == "state" and jtype.detail is not None and change.groups:
            values = _result_values(job, jtype, change)
            try:
                detail = one_line(jtype.detail.render(values))
            except Exception as exc:  # a group the regex did not capture this time
                logger.warning("{}: detail template: {}", jtype.name, exc)
        if extra:
            detail = f"{detail}; {extra}" if detail else extra
        return Event(kind="state" if change.kind == "state" else "event", type=job.type, id=job.id,
                     host=job.host, description=job.description, before=change.before or None,
                     after=change.after, terminal=change.terminal, outcome=change.outcome, detail=detail, time=now)

    # ------------------------------------------------------------ terminal jobs

    def _finish(self, claimed: list[tuple[Job, JobType, rules.Change]], now: datetime) -> list[Outcome]:
        return parallel.map_by_host(claimed, lambda c: c[0].host, lambda c: self._outcome(*c, now),
                                    limit=lambda c: self.config.resolve(c[1].name, c[0].host)[1].max_parallel,
                                    total=self.config.settings.max_parallel_total,
                                    name="action")

    def _outcome(self, job: Job, jtype: JobType, change: rules.Change, now: datetime) -> Outcome:
        acting, acting_type = job, jtype
        if change.groups.get("delegate_type") in self.config.types:
            # The other type gave the verdict: its actions know where that job's output is.
            acting = Job(change.groups["delegate_type"], change.groups["delegate_id"],
                         host=change.groups.get("delegate_host", ""), user=job.user)
            acting_type, _ = self.config.resolve(acting.type, acting.host)
        action = acting_type.on_complete if change.outcome == "success" else acting_type.on_failure
        output, distilled, found = "", "", []
        if action is not None:
            _, settings = self.config.resolve(acting.type, acting.host)
            other = rules.Change(change.kind, change.before, change.groups.get("delegate_state", change.after),
                                 change.terminal, change.outcome, change.groups)
            values = {**_result_values(acting, acting_type, other if acting is not job else change),
                      **planner.common_values(settings, acting_type)}
            command = template.render(action, values)
            result = run.run(command, acting_type.action_timeout)
            full = rules.clean(result.stdout + ("\n" + result.stderr if result.stderr.strip() else ""))
            output = full[-ACTION_TAIL:]
            if result.ok or result.stdout.strip():
                if change.outcome == "failure":  # the cause short enough to leave room for the log's path
                    distilled = clip(findings.diagnose(full, acting_type.diagnosis) or distill(rules.clean(result.stdout)), CAUSE_LIMIT)
                    where = findings.log_path(full, acting_type.log)
                    distilled += f" (log: {where})" if where else ""
                else:
                    found = findings.metrics(rules.clean(result.stdout), acting_type.metrics)
                    distilled = ", ".join(t for t, _ in found) if acting_type.metrics else distill(rules.clean(result.stdout))
            else:
                which = "on_complete" if change.outcome == "success" else "on_failure"
                distilled = f"{which} failed: {result.why()}"
        event = self._event(job, jtype, change, now, distilled)
        self.finished.append(jtype.category(change.after) if change.after != rules.LOST else "failure")
        self.metrics += [t for t, shown in found if shown]
        record = {**job.to_dict(), "last_status": change.after, "outcome": change.outcome,
                  "finished": now.isoformat(timespec="seconds"), "detail": event.detail,
                  "metrics": [t for t, _ in found], "action_output": output}
        record.pop("jobmon", None)
        return Outcome(event, record)

    def _to_history(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        self.registry.append_history([o.record for o in outcomes])  # first: a crash here repeats, never loses
        gone = {(o.event.type, o.event.id, o.event.host) for o in outcomes}
        with self.registry.transaction() as entries:
            entries[:] = [e for e in entries if not (isinstance(e, Job) and e.key in gone)]

    def replay_claimed(self) -> None:
        """Finish terminal jobs a killed watcher claimed but never moved to history."""
        jobs = [e for e in self.registry.read() if isinstance(e, Job) and e.book.final]
        outcomes = []
        for job in jobs:
            final = dict(job.book.final or {})
            if job.type not in self.config.types:
                continue
            jtype, _ = self.config.resolve(job.type, job.host)
            change = rules.Change("state", str(final.get("from", "")), str(final.get("to", job.last_status)),
                                  True, final.get("outcome"), final.get("groups", {}))  # type: ignore[arg-type]
            outcome = self._outcome(job, jtype, change, datetime.now())
            outcome.event = replace(outcome.event, replayed=True)
            outcomes.append(outcome)
        self._emit([], [o.event for o in outcomes])
        self._to_history(outcomes)

    # ------------------------------------------------------------ output

    def _emit(self, changes: list[Event], finals: list[Event]) -> None:
        """One line per event while few jobs changed in a cycle. When more than
        ``aggregate_after`` jobs did, failures keep their own lines (that many at most) and
        everything else becomes one digest line, so a flood is one notification."""
        limit = self.config.settings.aggregate_after
        everything = changes + finals
        if len({(e.type, e.id, e.host) for e in everything}) <= limit:
            for event in everything:
                self.printer.emit(event)
            return
        failures = [e for e in finals if e.outcome == "failure"][:limit]
        for event in failures:
            self.printer.emit(event)
        rest = [e for e in everything if e not in failures]
        moves: dict[str, int] = {}
        for e in rest:
            move = f"{e.before or 'NEW'} -> {e.after}" if e.kind == "state" else display_name(e.after or "")
            moves[move] = moves.get(move, 0) + 1
        text = ", ".join(f"{n} {m}" for m, n in sorted(moves.items(), key=lambda kv: -kv[1]))
        self.printer.emit(Event(kind="changes", detail=f"{len(rest)} more changes: {text}", counts=moves))

    def _unusable(self, entries: Iterable[Any]) -> set[tuple[str, str, str]]:
        """Entries jobmon cannot watch: said once per watcher, left in the registry as they are.

        A job's values are checked again here, not only at ``jobmon add``: agents may write the
        registry directly, and a host such as ``-oProxyCommand=…`` must never reach ssh.
        """
        bad: set[tuple[str, str, str]] = set()
        for entry in entries:
            if isinstance(entry, Invalid):
                problem = f"{self.registry.path}: {entry.reason}; left as it is"
            elif entry.type not in self.config.types:
                problem = f"job {clip(entry.id, 24)}: unknown job type '{entry.type}'; left as it is in {self.registry.path}"
            else:
                jtype, _ = self.config.resolve(entry.type, entry.host)
                reason = jtype.problem({k: str(v) for k, v in entry.values().items() if k in jtype.fields or k in ("host", "user")})
                if reason is None:
                    continue
                problem = f"job {clip(entry.id, 24)}: {reason}; not watched, left as it is in {self.registry.path}"
            if isinstance(entry, Job):
                bad.add(entry.key)
            if problem not in self._reported:
                self._reported.add(problem)
                logger.error(problem)
                self.printer.emit(Event(kind="error", detail=problem))
        return bad

    def watchable(self, active: list[Job]) -> list[Job]:
        unusable = self._unusable(active)
        return [j for j in active if j.key not in unusable]

    def summary_event(self, active: list[Job]) -> Event:
        categories = list(self.finished)
        for job in active:
            if job.type in self.config.types:
                jtype, _ = self.config.resolve(job.type, job.host)
                categories.append("unreachable" if job.book.unreachable else jtype.category(job.last_status) if job.last_status else "pending")
            else:
                categories.append("unknown")
        summary = summarize(categories, self.metrics)
        return Event(kind="summary", detail=summary.text(), counts=summary.counts)

    # ------------------------------------------------------------ the loop

    def loop(self, *, once: bool = False) -> None:
        self.replay_claimed()
        stamp = None
        while not self.stop.is_set():
            active = self.cycle()
            if once or not self.watchable(active):
                self.printer.emit(self.summary_event(active))
                return
            stamp = self._sleep(stamp)

    def _sleep(self, stamp: tuple[int, int] | None) -> tuple[int, int] | None:
        """Until the next group is due, waking each second only to see if the registry changed."""
        while not self.stop.is_set():
            now = time.monotonic()
            nearest = min(self._due.values(), default=now)
            current = _stamp(self.registry.path)
            if nearest <= now or (stamp is not None and current != stamp):
                return current
            stamp = current
            self.stop.wait(min(nearest - now, 1.0))
        return stamp


def _stamp(path: os.PathLike[str]) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _blank(jtype: JobType) -> dict[str, str]:
    """Every name a result template may use and a check may not have captured, as ""."""
    names = {g for r in jtype.check.regexes for g in r.groupindex} | {g for p in jtype.events for g in p.regex.groupindex}
    names |= set(jtype.check.json.fields) if jtype.check.json else set()
    return {name: "" for name in names}


def _result_values(job: Job, jtype: JobType, change: rules.Change) -> dict[str, Any]:
    return {**_blank(jtype), "delegate": "", **planner.job_values(job, jtype), **(job.book.captured or {}), **change.groups,
            "state": change.after, "previous": change.before, "outcome": change.outcome,
            "groups": dict(change.groups), "ssh": ""}


def _delegated(own: rules.Observation, other: rules.Observation, asked: Job, jtype: JobType,
               config: Config) -> rules.Observation:
    """The job's own observation, unless the type it delegates to has a verdict."""
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
    return own._replace(row=rules.Row(state, groups), error=None)


def _claim(change: rules.Change, now: datetime) -> dict[str, Any]:
    return {"from": change.before, "to": change.after, "outcome": change.outcome,
            "groups": dict(change.groups), "at": now.isoformat(timespec="seconds")}


def distill(output: str, limit: int = 200) -> str:
    """An action's result in one line: its last non-empty line of output."""
    for line in reversed(output.splitlines()):
        if line.strip():
            return one_line(line)[:limit]
    return ""
