"""``jobmon add`` for a type whose system abbreviates ids (its ``resolve``): the full id its
system answers with, or the id as given when the system cannot tell (not installed, failing,
knows no such job, or knows several).

The command's output is read as the type's check reads a batch (``check.json`` or the check's
regexes with their ``id`` group), so one place in the YAML says where a row's id is.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from jobmon import plan, rules, run
from jobmon.config import Config, JobType
from jobmon.events import clip
from jobmon.findings import walk
from jobmon.ids import abbreviates
from jobmon.registry import Job

NOTE_LIMIT = 300  # characters of the one stderr line


class Resolved(NamedTuple):
    id: str  # what to register
    note: str | None  # one line for stderr, or None when there is nothing to say


def resolve(config: Config, job: Job) -> Resolved:
    """The id to register for ``job``; never raises: a system that cannot tell keeps the id given."""
    jtype, settings = config.resolve(job.type, job.host)
    spec = jtype.resolve
    if spec is None or (spec.when is not None and not spec.when.fullmatch(job.id)):
        return Resolved(job.id, None)
    values = {**plan.job_values(job, jtype), **plan.common_values(settings, jtype)}
    try:
        command = plan.render(jtype, spec.command, values)
    except plan.Refused as exc:
        return _kept(job, str(exc))
    result = run.run(command, jtype.timeout)
    if not result.ok:
        return _kept(job, f"resolving it failed: {result.why()}")
    try:
        named = ids_in(rules.clean(result.stdout), jtype)
    except ValueError as exc:
        return _kept(job, f"resolving it failed: {exc}")
    full = sorted({i for i in named if abbreviates(job.id, i)})
    if not full:
        return _kept(job, f"{jtype.name} knows no job it abbreviates")
    if len(full) > 1:
        return _kept(job, f"it abbreviates {len(full)} jobs: {', '.join(full)}")
    if full[0] == job.id:
        return Resolved(job.id, None)
    problem = jtype.problem({"id": full[0]})
    if problem is not None:  # never register what `jobmon add --id` itself would refuse
        return _kept(job, f"it resolved to {full[0]!r}, which the type refuses")
    return Resolved(full[0], clip(f"{job.type} {job.id} resolved to {full[0]}", NOTE_LIMIT))


def _kept(job: Job, why: str) -> Resolved:
    return Resolved(job.id, clip(f"{job.type} {job.id} kept as given: {why}", NOTE_LIMIT))


def ids_in(output: str, jtype: JobType) -> list[str]:
    """Every id the output names for a job the system knows: the check's rows, less those in
    the type's ``missing`` states (nel's NOT_FOUND names the id it was asked about)."""
    probe = jtype.check
    if probe.json is not None:
        data = rules.load_json(output)
        out: list[str] = []
        for _, item in walk(data, probe.json.items):
            state = _first(item, probe.json.state)
            if state is None or jtype.category(rules.normalize(str(state), jtype)) == "missing":
                continue
            out += [str(v) for v in (_first(item, path) for path in probe.json.id) if v is not None]
        return out
    found = []
    for line in output.splitlines():
        match = next((m for r in probe.regexes if (m := r.search(line))), None)
        if match and jtype.category(rules.normalize(match.group("state") or "", jtype)) != "missing":
            found.append((match.group("id") or "").strip())
    return [i for i in found if i]


def _first(data: Any, path: str) -> Any:
    return next((value for _, value in walk(data, path)), None)
