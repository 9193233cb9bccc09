"""A job's end: its on_complete / on_failure action, its final event, its history record.

Also how any change becomes an event (``event_for``): the type's ``detail`` template rendered
over the job's values and the check's named groups.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from loguru import logger

from jobmon import findings, plan, rules, run, template
from jobmon.config import Config, JobType
from jobmon.events import Event, clip, one_line
from jobmon.registry import Job

ACTION_TAIL = 4096  # characters of an action's output kept in history
CAUSE_LIMIT = 200  # characters of a failure's cause in its event


class Outcome(NamedTuple):
    """What a finished job leaves: its final event and its history record."""

    event: Event
    record: dict[str, Any]


def event_for(job: Job, jtype: JobType, change: rules.Change, now: datetime, extra: str = "") -> Event:
    detail = change.why
    if change.kind == "state" and jtype.detail is not None and change.groups:
        try:
            detail = one_line(jtype.detail.render(plan.result_values(job, jtype, change)))
        except Exception as exc:  # a group the regex did not capture this time
            logger.warning("{}: detail template: {}", jtype.name, exc)
    if extra:
        detail = f"{detail}; {extra}" if detail else extra
    return Event(kind="state" if change.kind == "state" else "event", type=job.type, id=job.id,
                 host=job.host, description=job.description, before=change.before or None,
                 after=change.after, terminal=change.terminal, outcome=change.outcome, detail=detail, time=now)


def outcome(config: Config, job: Job, jtype: JobType, change: rules.Change, now: datetime) -> Outcome:
    """Run the job's action and say its end in one event, with the cause or the results."""
    acting, acting_type = job, jtype
    if change.groups.get("delegate_type") in config.types:
        # The other type gave the verdict: its actions know where that job's output is.
        acting = Job(change.groups["delegate_type"], change.groups["delegate_id"],
                     host=change.groups.get("delegate_host", ""), user=job.user)
        acting_type, _ = config.resolve(acting.type, acting.host)
    action = acting_type.on_complete if change.outcome == "success" else acting_type.on_failure
    output, distilled, found = "", "", []
    if action is not None:
        _, settings = config.resolve(acting.type, acting.host)
        other = rules.Change(change.kind, change.before, change.groups.get("delegate_state", change.after),
                             change.terminal, change.outcome, change.groups)
        values = {**plan.result_values(acting, acting_type, other if acting is not job else change),
                  **plan.common_values(settings, acting_type)}
        result = run.run(template.render(action, values), acting_type.action_timeout)
        full = rules.clean(result.stdout + ("\n" + result.stderr if result.stderr.strip() else ""))
        output = full[-ACTION_TAIL:]
        if result.ok or result.stdout.strip():
            if change.outcome == "failure":  # the cause short enough to leave room for the log's path
                said = rules.clean(result.stdout)
                if acting_type.log is not None:  # the line naming the log is not a cause (an empty log)
                    said = acting_type.log.sub("", said)
                cause = clip(findings.diagnose(full, acting_type.diagnosis) or distill(said), CAUSE_LIMIT)
                where = findings.log_path(full, acting_type.log)
                distilled = f"{cause} (log: {where})" if cause and where else cause or (f"log: {where}" if where else "")
            else:
                found = findings.metrics(rules.clean(result.stdout), acting_type.metrics)
                distilled = ", ".join(t for t, _ in found) if acting_type.metrics else distill(rules.clean(result.stdout))
        else:
            which = "on_complete" if change.outcome == "success" else "on_failure"
            distilled = f"{which} failed: {result.why()}"
    event = event_for(job, jtype, change, now, distilled)
    record = {**job.to_dict(), "last_status": change.after, "outcome": change.outcome,
              "finished": now.isoformat(timespec="seconds"), "detail": event.detail,
              "metrics": [t for t, _ in found], "summary_metrics": [t for t, shown in found if shown],
              "action_output": output}
    record.pop("jobmon", None)
    return Outcome(event, record)


def claim(change: rules.Change, now: datetime, logged: int) -> dict[str, Any]:
    """What the registry keeps of a final state found but not yet reported: the change, and the
    log's last seq then, so that a later poller can tell whether the event was logged."""
    return {"from": change.before, "to": change.after, "outcome": change.outcome,
            "groups": dict(change.groups), "at": now.isoformat(timespec="seconds"), "seq": logged}


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
