"""A job's end: its on_complete / on_failure action, its final event, its history record.

Also how any change becomes an event (``event_for``): the type's ``detail`` template rendered
over the job's values and the check's named groups.
"""
from __future__ import annotations

import os
import secrets
import socket
from dataclasses import replace
from datetime import datetime
from typing import Any, Mapping, NamedTuple

from loguru import logger

from jobmon import clock, findings, parallel, plan, rules, run
from jobmon.config import Config, JobType
from jobmon.jobtype import Action
from jobmon.events import Event, clip, one_line
from jobmon.registry import Job
from jobmon.schema import describe

ACTION_TAIL = 4096  # characters of an action's output kept in history
CAUSE_LIMIT = 200  # characters of a failure's cause in its event


class Outcome(NamedTuple):
    """What a finished job leaves: its final event and its history record."""

    event: Event
    record: dict[str, Any]


def event_for(job: Job, jtype: JobType, change: rules.Change, now: datetime, extra: str = "",
              measured: Mapping[str, Any] | None = None) -> Event:
    """``measured``: what the end action's metrics computed (``detail`` may say some of it
    beside the row's own words: the time limit beside the elapsed time)."""
    detail = change.why
    if change.kind in ("state", "part") and jtype.detail is not None and change.groups:
        values = {**plan.result_values(job, jtype, change), "measured": dict(measured or {})}
        if change.kind == "part":  # a part's end: said as its own end, though the job goes on
            part_state = change.after.rsplit(" ", 1)[-1]
            values.update(state=part_state, outcome=rules.outcome_of(jtype.category(part_state)),
                          parts_total="", parts_done="", parts_failed="")
        try:
            detail = one_line(jtype.detail.render(values))
        except Exception as exc:  # a group the regex did not capture this time
            logger.warning("{}: detail template: {}", jtype.name, exc)
    if extra:
        detail = f"{detail}; {extra}" if detail else extra
    return Event(kind="state" if change.kind == "state" else "event", type=job.type, id=job.id,
                 host=job.host, description=job.description, before=change.before or None,
                 after=change.after, terminal=change.terminal, outcome=change.outcome, detail=detail, time=now)


class Ending(NamedTuple):
    """A job that ended, and the action that tells why or how well: the job's own, or, when
    another type gave the verdict, that type's for the job it names."""

    job: Job
    jtype: JobType
    change: rules.Change
    acting: Job
    acting_type: JobType
    action: Action | None
    values: dict[str, Any]  # the action's template values for this job

    @property
    def batch_key(self) -> tuple[str, str, str]:
        return (self.acting_type.name, self.acting.host, "success" if self.change.outcome == "success" else "failure")


class Said(NamedTuple):
    """An action's output for one job."""

    ok: bool
    stdout: str
    stderr: str
    why: str  # what went wrong, when not ok


BATCH_OUTPUT_LIMIT = 64 << 20  # a batched action's output, for all of its jobs together


def ending(config: Config, job: Job, jtype: JobType, change: rules.Change) -> Ending:
    acting, acting_type = job, jtype
    if change.groups.get("delegate_type") in config.types:
        # The other type gave the verdict: its actions know where that job's output is.
        acting = Job(change.groups["delegate_type"], change.groups["delegate_id"],
                     host=change.groups.get("delegate_host", ""), user=job.user)
        acting_type, _ = config.resolve(acting.type, acting.host)
    action = acting_type.on_complete if change.outcome == "success" else acting_type.on_failure
    other = rules.Change(change.kind, change.before, change.groups.get("delegate_state", change.after),
                         change.terminal, change.outcome, change.groups)
    values = plan.result_values(acting, acting_type, other if acting is not job else change)
    return Ending(job, jtype, change, acting, acting_type, action, values)


def outcomes(config: Config, claimed: list[tuple[Job, JobType, rules.Change]], now: datetime) -> list[Outcome]:
    """Every ended job's action run and its end said: one command per host for a type whose
    action is batched (500 jobs ending at once cost one round trip, not 500), one per job
    otherwise; hosts in parallel, within the configured bounds."""
    endings = [ending(config, *c) for c in claimed]
    said = _run_actions(config, endings)
    return [_outcome(e, said.get(i), now) for i, e in enumerate(endings)]


def _run_actions(config: Config, endings: list[Ending]) -> dict[int, Said]:
    """Each ending's action, batched per type, host and outcome; what each said, by index."""
    units: list[list[int]] = []  # each: the endings one command serves
    batches: dict[tuple[str, str, str], list[int]] = {}
    for i, e in enumerate(endings):
        if e.action is not None and e.action.batch:
            batches.setdefault(e.batch_key, []).append(i)
        else:
            units.append([i])
    for members in batches.values():
        size = endings[members[0]].action.batch_size  # type: ignore[union-attr]
        units += [members[k:k + size] for k in range(0, len(members), size)]
    said: dict[int, Said] = {}

    def work(unit: list[int]) -> dict[int, Said]:
        return _act(config, [endings[i] for i in unit], unit)

    for result in parallel.map_by_host(units, lambda u: endings[u[0]].acting.host, work,
                                       limit=lambda u: config.resolve(endings[u[0]].acting_type.name,
                                                                      endings[u[0]].acting.host)[1].max_parallel,
                                       total=config.settings.max_parallel_total, name="action"):
        said.update(result)
    return said


def failed_parts(config: Config, parts: list[tuple[Job, JobType, rules.Change]], now: datetime) -> list[Event]:
    """A line for each failed task of an array (a part), with the cause its own log gives: its
    type's on_failure runs for the task as for a job (batched per host), and the line is the
    array's event, ``12_3 FAILED (...; cause (log: ...))``. The array goes on: no history."""
    endings = []
    for job, jtype, change in parts:
        task = replace(job, id=str(change.groups.get("failed_part") or job.id))
        failing = change._replace(outcome="failure")  # diagnosed as a failure, though not an end
        endings.append(Ending(job, jtype, failing, task, jtype, jtype.on_failure,
                              {**plan.result_values(task, jtype, failing), "failed_part": task.id}))
    said = _run_actions(config, endings)
    return [_outcome(e, said.get(i), now).event for i, e in enumerate(endings)]


def _act(config: Config, unit: list[Ending], indexes: list[int]) -> dict[int, Said]:
    """Run one action (one job's, or one batch's) and give each job its part of the output."""
    first = unit[0]
    if first.action is None:
        return {}
    _, settings = config.resolve(first.acting.type, first.acting.host)
    common = plan.common_values(settings, first.acting_type)
    which = "on_complete" if first.change.outcome == "success" else "on_failure"
    try:
        if not first.action.batch:
            command = plan.render(first.acting_type, first.action.template, {**first.values, **common})
            result = run.run(command, first.acting_type.action_timeout)
            why = "" if result.ok else f"{which} failed: {result.why()}"
            return {indexes[0]: Said(result.ok, result.stdout, result.stderr, why)}
        marker = f"jobmon-{secrets.token_hex(8)}"  # a log cannot print it, so cannot forge a job's part
        command = plan.render(first.acting_type, first.action.template, {
            **common, "ids": [e.acting.id for e in unit], "jobs": [e.values for e in unit],
            "host": first.acting.host, "user": first.acting.user, "type": first.acting_type.name, "marker": marker})
        result = run.run(command, first.acting_type.action_timeout, limit=BATCH_OUTPUT_LIMIT)
    except Exception as exc:  # a template that cannot render this job's values: its action failed
        logger.warning("{} {}: {}", first.acting_type.name, which, exc)
        return {i: Said(False, "", "", f"{which} failed: {exc}") for i in indexes}
    parts = split(result.stdout, marker)
    why = "" if result.ok else f"{which} failed: {result.why()}"
    return {i: Said(result.ok, parts.get(e.acting.id, ""), "" if result.ok else result.stderr, why)
            for i, e in zip(indexes, unit)}


def split(output: str, marker: str) -> dict[str, str]:
    """A batched action's output -> each job's part: a line ``<marker> <id>`` starts it."""
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    head = marker + " "
    for line in output.splitlines(keepends=True):
        if line.startswith(head):
            current = parts.setdefault(line[len(head):].strip(), [])
        elif current is not None:
            current.append(line)
    return {job_id: "".join(lines) for job_id, lines in parts.items()}


def _outcome(e: Ending, said: Said | None, now: datetime) -> Outcome:
    """Say the job's end in one event, with the cause or the results its action found."""
    job, jtype, change, acting_type = e.job, e.jtype, e.change, e.acting_type
    output, distilled = "", ""
    found: list[findings.Found] = []
    if said is not None:
        full = rules.clean(said.stdout + ("\n" + said.stderr if said.stderr.strip() else ""))
        output = full[-ACTION_TAIL:]
        if said.ok or said.stdout.strip():
            if change.outcome == "failure":  # the cause short enough to leave room for the log's path
                text = rules.clean(said.stdout)
                measures = [p for p in acting_type.metrics if p.failure]
                found = findings.metrics(text, measures)
                for pattern in measures:  # the scheduler's figures are no cause
                    text, full = pattern.regex.sub("", text), pattern.regex.sub("", full)
                if acting_type.log is not None:  # the line naming the log is not a cause (an empty log)
                    text = acting_type.log.sub("", text)
                cause = findings.diagnose(full, acting_type.diagnosis, {**e.values, **change.groups})
                cause = clip(cause or distill(text), CAUSE_LIMIT)
                where = findings.log_path(full, acting_type.log)
                distilled = f"{cause} (log: {where})" if cause and where else cause or (f"log: {where}" if where else "")
                distilled = "; ".join(t for t in (distilled, ", ".join(f.text for f in found if f.text)) if t)
            else:
                found = findings.metrics(rules.clean(said.stdout), acting_type.metrics)
                distilled = ", ".join(f.text for f in found if f.text) if acting_type.metrics \
                    else distill(rules.clean(said.stdout))
        else:
            distilled = said.why
    measured = {k: v for f in found for k, v in f.values.items()}
    summary = [f.text for f in found if f.text and f.summary]
    event = replace(event_for(job, jtype, change, now, distilled, measured), figures=tuple(summary))
    record = {**job.to_dict(), "last_status": change.after, "outcome": change.outcome,
              "finished": clock.stamp(now), "detail": event.detail,
              "metrics": [f.text for f in found if f.text],
              "summary_metrics": summary,
              "action_output": output}
    if measured:
        record["measured"] = measured
    record.pop("jobmon", None)
    return Outcome(event, record)


def claim(change: rules.Change, now: datetime, logged: int) -> dict[str, Any]:
    """What the registry keeps of a final state found but not yet reported: the change, the
    log's last seq then (so that a later poller can tell whether the event was logged), and who
    claimed it (only once that process is gone may another finish the job)."""
    return {"from": change.before, "to": change.after, "outcome": change.outcome,
            "groups": dict(change.groups), "at": clock.stamp(now), "seq": logged, **claimant()}


def claimant(pid: int | None = None) -> dict[str, Any]:
    """A process as a claim names it: its pid and start time (a pid is reused; the pair is not)
    and the host (a registry on a shared file system is seen from several login nodes)."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "started": _started(pid), "node": socket.gethostname()}


def held(final: Mapping[str, Any]) -> bool:
    """Whether the process that claimed an end still runs, and so will finish the job itself."""
    pid = final.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid == os.getpid():
        return False  # an older jobmon's claim, or this process's own, left by a poller that failed
    if final.get("node") != socket.gethostname():
        return False  # another node's process cannot be asked: replayed, as before claims named one
    return final.get("started") is not None and _started(pid) == final.get("started")


def _started(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def claim_problem(config: Config, final: Mapping[str, Any]) -> str | None:
    """What is wrong with a claim another process (or a hand) wrote, as ``key: problem``; None
    when it can be finished. A claim is replayed with actions: its values pass the same checks as
    a registered job's."""
    checks = (("from", final.get("from", ""), lambda v: isinstance(v, str), "a state"),
              ("to", final.get("to"), lambda v: isinstance(v, str) and v != "", "a state"),
              ("outcome", final.get("outcome"), lambda v: v in ("success", "failure"), "success or failure"))
    for key, value, fits, wanted in checks:
        if not fits(value):
            return f"jobmon.final.{key}: is {describe(value, json=True)}, not {wanted}"
    groups = final.get("groups", {})
    if not isinstance(groups, Mapping) or any(not isinstance(v, str) for v in groups.values()):
        return f"jobmon.final.groups: is {describe(groups, json=True)}, not an object of strings"
    other = groups.get("delegate_type")
    if other is None or other not in config.types:
        return None
    if not groups.get("delegate_id"):
        return f"jobmon.final.groups.delegate_id: is {describe(groups.get('delegate_id'), json=True)}, " \
               f"not a job id of type {other}"
    return None  # the values themselves are vetted where its action is rendered (plan)


def claimed_change(job: Job) -> rules.Change:
    final = dict(job.book.final or {})
    return rules.Change("state", str(final.get("from", "")), str(final.get("to", job.last_status)),
                        True, final.get("outcome"), final.get("groups", {}))  # type: ignore[arg-type]


def distill(output: str, limit: int = 200) -> str:
    """An action's result in one line: its last non-empty line of output."""
    for line in reversed(output.splitlines()):
        if line.strip():
            return one_line(line)[:limit]
    return ""
