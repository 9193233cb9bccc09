"""Jobs -> check groups: one batched command per (type, host), chunked; else one per job."""
from __future__ import annotations

from typing import Iterable, NamedTuple

from jobmon import template
from jobmon.config import Config, JobType, Settings
from jobmon.registry import Job


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
        if jtype.check.batch is not None and (len(members) > 1 or jtype.check.command is None):
            size = jtype.check.batch_size
            for start in range(0, len(members), size):
                groups.append(Group(jtype, settings, host, tuple(members[start:start + size]), True))
        else:
            groups.extend(Group(jtype, settings, host, (job,), False) for job in members)
    return groups


def common_values(settings: Settings) -> dict[str, object]:
    return {"ssh": template.words(settings.ssh)}


def job_values(job: Job, jtype: JobType) -> dict[str, object]:
    values: dict[str, object] = {name: spec.default for name, spec in jtype.fields.items()}
    values.update({k: v for k, v in job.values().items() if v != "" or k not in values})
    return values


def command(group: Group) -> str:
    """The exact shell text a group's check runs."""
    values = common_values(group.settings)
    if group.batched:
        first = group.jobs[0]
        values.update(ids=[j.id for j in group.jobs], jobs=[j.values() for j in group.jobs],
                      host=group.host, user=first.user, type=group.jtype.name)
        return template.render(group.jtype.check.batch, values)
    values.update(job_values(group.jobs[0], group.jtype))
    return template.render(group.jtype.check.command, values)
