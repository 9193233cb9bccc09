"""Jobs -> check groups: one batched command per (type, host), chunked; else one per job."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple

from jobmon import template
from jobmon.config import Config, JobType, Probe, Settings
from jobmon.jobtype import row_vars
from jobmon.rows import NAMING
from jobmon.registry import Job
from jobmon.rules import stalling

if TYPE_CHECKING:
    import jinja2

    from jobmon.rules import Change


class Group(NamedTuple):
    jtype: JobType
    settings: Settings
    host: str
    jobs: tuple[Job, ...]
    batched: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.jtype.name, self.host)


def plan(jobs: Iterable[Job], config: Config) -> list[Group]:
    """Jobs whose type the config does not know are left out: the caller reports them."""
    buckets: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        if job.type in config.types:
            buckets.setdefault((job.type, job.host), []).append(job)
    groups: list[Group] = []
    for (type_name, host), members in buckets.items():
        jtype, settings = config.resolve(type_name, host)
        groups += split(jtype, settings, host, members, jtype.check)
    return groups


def split(jtype: JobType, settings: Settings, host: str, members: list[Job], probe: Probe) -> list[Group]:
    """One host's jobs of one type: batches of ``batch_size`` if the probe batches, else one each."""
    if probe.batch is not None and (len(members) > 1 or probe.command is None):
        size = probe.batch_size
        return [Group(jtype, settings, host, tuple(members[i:i + size]), True) for i in range(0, len(members), size)]
    return [Group(jtype, settings, host, (job,), False) for job in members]


class Refused(ValueError):
    """A value about to reach a command that its job type would not register: one line."""


def vetted(jtype: JobType, values: Mapping[str, Any]) -> Mapping[str, Any]:
    """The one door between values and commands. Whatever brought a value here (the command
    line, a registry another agent wrote, a claimed end replayed, a discovery listing, a
    delegation), the job's fields, host and user are checked again as ``jobmon add`` checks
    them; each of a batch's jobs too. Raises ``Refused``."""
    for each in (values, *values.get("jobs", ())):
        problem = jtype.invalid(jtype.checked(each))
        if problem is not None:
            raise Refused(problem)
    return values


def render(jtype: JobType, source: "jinja2.Template", values: Mapping[str, Any]) -> str:
    """A command of ``jtype`` over ``values``, once they have passed ``vetted``."""
    return template.render(source, vetted(jtype, values))


def common_values(settings: Settings, jtype: JobType) -> dict[str, object]:
    return {**jtype.vars, "ssh": template.words(w.replace("{cache_dir}", cache_dir()) for w in settings.ssh)}


def cache_dir() -> str:
    """jobmon's own cache folder (ssh ControlPath sockets, nel's copied logs), made private on
    first use: 0700 whatever the umask, one of someone else's refused (files.FileError)."""
    import os
    from pathlib import Path

    from jobmon.files import private_dir

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "jobmon")
    if path not in _MADE:
        private_dir(Path(path))
        _MADE.add(path)
    return path


_MADE: set[str] = set()


def job_values(job: Job, jtype: JobType) -> dict[str, object]:
    values: dict[str, object] = {name: spec.default for name, spec in jtype.fields.items()}
    values.update({k: v for k, v in job.values().items() if v != "" or k not in values})
    return values


def command(group: Group, probe: Probe | None = None) -> str:
    """The exact shell text a group's check (or ``probe``, e.g. its fallback) runs; for a check
    that reads a file, the file's path."""
    probe = probe or group.jtype.check
    values = common_values(group.settings, group.jtype)
    if group.batched:
        first = group.jobs[0]
        values.update(ids=[j.id for j in group.jobs],
                      jobs=[batch_values(j, group.jtype, probe) for j in group.jobs],
                      host=group.host, user=first.user, type=group.jtype.name, progress=group.jtype.progress is not None)
        return render(group.jtype, probe.batch, values)
    values.update(job_values(group.jobs[0], group.jtype))
    return render(group.jtype, probe.read if probe.read is not None else probe.command, values)


def batch_values(job: Job, jtype: JobType, probe: Probe) -> dict[str, object]:
    """One job as a batched check sees it: its values, what earlier checks captured (its log
    paths, for the progress probe), its last state, and whether the check should still capture
    its paths or bring its log's tail (it may be said STALLED)."""
    blank = {name: "" for name in (probe.capture.groupindex if probe.capture is not None else ())}
    return {**blank, **(job.book.captured or {}), **job.values(), "last_status": job.last_status,
            "capture": needs_capture(job, jtype, probe), "stalling": stalling(job.book, jtype),
            "offset": job.book.offset, "ready": jtype.reached_ready(job.book.seen)}


def as_running(job: Job, jtype: JobType) -> tuple[Job, str]:
    """A new job as a later check sees it, for ``render``: running, what its first checks
    capture kept (placeholders: its log paths), past its ``ready`` event (a server's URL kept);
    and those words, for a title."""
    from dataclasses import replace

    from jobmon.rules import Book

    running = "RUNNING" if "RUNNING" in jtype.states["running"] else min(jtype.states["running"], default="")
    names = set(jtype.check.capture.groupindex) - set(NAMING) if jtype.check.capture is not None else set()
    kept = {k for p in jtype.events for k, _ in p.keep} if jtype.ready else set()
    captured = {n: f"<{n}>" for n in sorted(names | kept)}
    said = f"with {', '.join(sorted(captured))} kept" if captured else "as before"
    if jtype.ready:
        said += f", after {jtype.ready}"
    return replace(job, last_status=running, book=Book(captured=captured or None, seen=(jtype.ready,) if jtype.ready else ())), said


def needs_capture(job: Job, jtype: JobType, probe: Probe) -> bool:
    """Whether the check should still ask for the job's capture lines (its log paths, from a
    call that costs the controller an RPC per job): until it has them; for a job of parts,
    while a part has started whose lines are not kept yet."""
    if probe.capture is None:
        return False
    book = job.book
    names = set(probe.capture.groupindex) - set(NAMING)
    if not book.parts:
        return not any((book.captured or {}).get(n) for n in names)
    started = [s for s in book.parts.values() if jtype.category(s) in ("running", "success", "failure")]
    return len(book.parts_captured or {}) < len(started)


def blank_values(jtype: JobType) -> dict[str, str]:
    """Every name a result template may use and a check may not have captured, as ""."""
    names = row_vars(jtype.check).union(*(p.gives for p in jtype.events))
    return {name: "" for name in names}


def result_values(job: Job, jtype: JobType, change: "Change") -> dict[str, object]:
    """What ``detail``, ``on_complete`` and ``on_failure`` see for a change of a job. For a job
    of parts that failed, the first failed part's captured values (its log paths) stand in for
    the job's own."""
    failed = (job.book.parts_captured or {}).get(str(change.groups.get("failed_raw", "")), {})
    parts = {"parts_total": "", "parts_done": "", "parts_failed": "", "failed_part": ""}
    return {**blank_values(jtype), **parts, "delegate": "", **job_values(job, jtype), **(job.book.captured or {}),
            **failed, **change.groups, "state": change.after, "previous": change.before, "outcome": change.outcome,
            "groups": dict(change.groups), "ssh": "", "measured": {},
            # the job's own names, whatever a row of one of its tasks called itself
            "id": job.id, "host": job.host, "type": job.type}
