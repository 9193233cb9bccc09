"""``jobmon discover``: the jobs a user could watch, registered or not yet.

First the registry, then each job type's own discovery command (nel runs of the last day,
``squeue -u`` on each host, recent launcher experiments). Lines whose ``id`` group is the same
are one candidate: the type's regex decides what a job is (SLURM's array tasks and het job
components name their array or het job), and this module only merges them.
"""
from __future__ import annotations

import getpass
import os
from typing import Iterable, NamedTuple

from jobmon import plan, rules, run, template
from jobmon.config import Config, JobType
from jobmon.registry import Job


class Candidate(NamedTuple):
    type: str
    id: str
    host: str
    state: str
    description: str
    registered: bool
    fields: dict[str, str] = {}

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.type, self.id, self.host)


class Problem(NamedTuple):
    type: str
    host: str
    why: str


def hosts_for(jtype: JobType, config: Config, jobs: Iterable[Job], given: list[str]) -> list[str]:
    """Where to look: --host, else the configured hosts, else the hosts of registered jobs of
    the type, else the clusters' host names that are not globs."""
    if given:
        return given
    if config.settings.hosts:
        return list(config.settings.hosts)
    known = list(dict.fromkeys(j.host for j in jobs if j.type == jtype.name and j.host))
    if known:
        return known
    return [h for c in config.clusters for h in c.hosts if not any(ch in h for ch in "*?[")]


def discover(config: Config, jobs: list[Job], *, types: list[str], hosts: list[str],
             user: str | None) -> tuple[list[Candidate], list[Problem]]:
    user = user or os.environ.get("USER") or getpass.getuser()
    registered = {j.key for j in jobs}
    found = [Candidate(j.type, j.id, j.host, j.last_status or "NEW", j.description, True)
             for j in jobs if not types or j.type in types]
    problems: list[Problem] = []
    for name, base in config.types.items():
        if (types and name not in types) or base.discover is None:
            continue
        for host in hosts_for(base, config, jobs, hosts) if base.discover.per_host else [""]:
            jtype, settings = config.resolve(name, host)
            assert jtype.discover is not None
            values = {**plan.common_values(settings, jtype), "user": user, "host": host}
            try:
                # --user may list several (squeue -u a,b): each is a user to the seam
                for one in user.split(","):
                    plan.vetted(jtype, {"host": host, "user": one})
                command = template.render(jtype.discover.command, values)
            except plan.Refused as exc:  # a host from the registry, or one discovery listed
                problems.append(Problem(name, host, str(exc)))
                continue
            result = run.run(command, jtype.timeout)
            if not result.ok:
                problems.append(Problem(name, host, result.why()))
                continue
            for job_id, row in listed(result.stdout, jtype).items():
                if (name, job_id, host) in registered or any(c.key == (name, job_id, host) for c in found):
                    continue
                groups = {k: v for k, v in row.groups.items() if k not in ("id", "state", "description")}
                found.append(Candidate(name, job_id, host, row.state or "?", row.groups.get("description", ""),
                                       False, groups))
    return found, problems


def listed(output: str, jtype: JobType) -> dict[str, rules.Row]:
    """A discovery command's output as one row per job id, in the order the ids first appear.

    Rows that share an id (an array's running tasks and its pending record) are combined as a
    check combines a job's rows, so the candidate shows the state the watcher would report.
    """
    assert jtype.discover is not None
    rows: dict[str, list[rules.Row]] = {}
    for line in rules.clean(output).splitlines():
        match = jtype.discover.regex.search(line)
        if match:
            groups = {k: (v or "").strip() for k, v in match.groupdict().items()}
            rows.setdefault(groups["id"], []).append(rules.Row(rules.normalize(groups.get("state", ""), jtype), groups))
    return {job_id: rules.combine(same, jtype) for job_id, same in rows.items()}
