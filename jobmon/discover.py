"""``jobmon discover``: the jobs a user could watch, registered or not yet.

First the registry, then each job type's own discovery command (nel runs of the last day,
``squeue -u`` on each host, recent launcher experiments), one candidate per matching line.
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
            result = run.run(template.render(jtype.discover.command, values), jtype.timeout)
            if not result.ok:
                problems.append(Problem(name, host, result.why()))
                continue
            for line in rules.clean(result.stdout).splitlines():
                match = jtype.discover.regex.search(line)
                if not match:
                    continue
                groups = {k: (v or "").strip() for k, v in match.groupdict().items()}
                job_id = groups.pop("id")
                state = groups.pop("state", "") or "?"
                desc = groups.pop("description", "")
                key = (name, job_id, host)
                if key in registered or any(c.key == key for c in found):
                    continue
                found.append(Candidate(name, job_id, host, state, desc, False, groups))
    return found, problems
