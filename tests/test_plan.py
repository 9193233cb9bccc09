"""Jobs -> check groups: one command per (type, host), chunked; the exact commands rendered."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobmon import config, plan
from jobmon.registry import Job
from conftest import Cluster, Home, jobmon, slurm_check


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    return config.load(env={})


@pytest.mark.parametrize("n,hosts", [(10, 1), (100, 1), (500, 10), (37, 3)])
def test_n_jobs_on_h_hosts_make_h_checks(cfg: config.Config, n: int, hosts: int) -> None:
    jobs = [Job("slurm", str(1000 + i), host=f"cluster-{i % hosts}") for i in range(n)]
    groups = plan.plan(jobs, cfg)
    assert len(groups) == hosts
    assert sorted(len(g.jobs) for g in groups) == sorted(
        len([j for j in jobs if j.host == g.host]) for g in groups)
    assert all(g.batched for g in groups)


def test_long_id_lists_are_chunked(tmp_path: Path) -> None:
    small = tmp_path / "small.yaml"
    small.write_text("types:\n  slurm:\n    check:\n      batch_size: 2\n")
    cfg = config.load(cli_config=str(small), env={})
    groups = plan.plan([Job("slurm", str(i), host="a") for i in range(5)], cfg)
    assert [len(g.jobs) for g in groups] == [2, 2, 1]


def test_unbatched_type_checks_each_job(cfg: config.Config) -> None:
    groups = plan.plan([Job("local", "1"), Job("local", "2")], cfg)
    assert [(g.batched, [j.id for j in g.jobs]) for g in groups] == [(False, ["1"]), (False, ["2"])]


def test_unknown_types_are_left_out(cfg: config.Config) -> None:
    assert plan.plan([Job("nope", "1")], cfg) == []


def test_slurm_batch_command_is_one_ssh_call_with_a_quoted_remote_command(cfg: config.Config, cache_home: Path) -> None:
    (group,) = plan.plan([Job("slurm", "101", host="eos"), Job("slurm", "102_3", host="eos")], cfg)
    assert plan.command(group) == slurm_check(cache_home, "eos", ["101", "102_3"])


def test_cluster_override_changes_the_command_for_matching_hosts_only(tmp_path: Path, cache_home: Path) -> None:
    over = tmp_path / "monitor.yaml"
    over.write_text(
        "clusters:\n"
        "  eos:\n"
        "    hosts: ['eos*']\n"
        "    settings:\n"
        "      ssh: [ssh, -J, bastion]\n"
        "    types:\n"
        "      slurm:\n"
        "        check:\n"
        "          batch: \"{{ ssh }} {{ host }} {% remote %}sacct -M eos -j {{ ids | join(',') }}{% endremote %}\"\n")
    cfg = config.load(cli_config=str(over), env={})
    groups = plan.plan([Job("slurm", "1", host="eos-login"), Job("slurm", "2", host="draco")], cfg)
    commands = sorted(plan.command(g) for g in groups)
    assert commands == [
        "ssh -J bastion eos-login 'sacct -M eos -j 1'",
        slurm_check(cache_home, "draco", ["2"]),
    ]


def test_local_command_quotes_the_file(cfg: config.Config) -> None:
    (group,) = plan.plan([Job("local", "42", fields={"file": "/tmp/a b;c"})], cfg)
    text = plan.command(group)
    assert "/proc/42/status" in text and "'/tmp/a b;c'" in text


# ---------------------------------------------------------------- the one door to a command
# Whatever path a value takes (the command line, a registry another agent wrote, a claimed end
# replayed, a discovery listing, a delegation), it is checked before any command is rendered:
# a host such as ``-oProxyCommand=…`` never reaches ssh's argv.

OPTION = "-oProxyCommand=touch M"


def test_every_value_a_command_sees_passes_the_type_s_checks(cfg: config.Config) -> None:
    slurm = cfg.types["slurm"]
    assert plan.vetted(slurm, {"host": "eos", "id": "12", "description": "-anything goes here"})
    for values in ({"host": OPTION}, {"host": "eos", "id": "-12"}, {"user": "-x"},
                   {"host": "eos", "jobs": [{"id": "1", "host": "eos"}, {"id": "2", "host": OPTION}]}):
        with pytest.raises(plan.Refused, match="is not valid"):
            plan.vetted(slurm, values)


def test_a_pattern_that_allows_a_leading_dash_still_refuses_it(tmp_path: Path) -> None:
    # ops may loosen a field's pattern; a value that starts with "-" stays out of commands anyway
    loose = tmp_path / "loose.yaml"
    loose.write_text("types:\n  local:\n    fields:\n      file: {pattern: '.*'}\n")
    local = config.load(str(loose), env={}).types["local"]
    with pytest.raises(plan.Refused, match="it would be read as an option"):
        plan.command(plan.Group(local, cfg_settings(), "", (Job("local", "1", fields={"file": "-rf"}),), False))


def cfg_settings() -> config.Settings:
    return config.load(env={}).settings


def test_discover_refuses_an_option_as_host_on_the_command_line(home: Home, cluster: Cluster) -> None:
    ran = jobmon("discover", "--type", "slurm", f"--host={OPTION}", *home.args())
    assert (ran.code, ran.out) == (2, "")
    assert ran.err.splitlines() == [f"jobmon: --host: slurm: --host {OPTION!r} is not valid: the cluster's login "
                                    "node or ssh alias (must match [A-Za-z0-9_][A-Za-z0-9._-]{0,252})"]
    assert cluster.ssh_calls() == []


def test_discover_refuses_an_option_as_host_found_in_the_registry(home: Home, cluster: Cluster) -> None:
    write_registry(home, [{"type": "slurm", "id": "12", "host": OPTION}])
    ran = jobmon("discover", "--type", "slurm", *home.args())
    assert ran.code == 1
    assert f"jobmon: discover slurm on {OPTION}: slurm: --host {OPTION!r} is not valid" in ran.err
    assert cluster.ssh_calls() == []


def test_a_replayed_end_never_runs_its_action_with_an_option_as_host(home: Home, cluster: Cluster) -> None:
    final = {"from": "RUNNING", "to": "FAILED", "outcome": "failure", "groups": {"exit": "1:0"},
             "at": "2026-12-01T10:00:00", "seq": 0}
    write_registry(home, [{"type": "slurm", "id": "12", "host": OPTION, "jobmon": {"final": final}},
                          {"type": "slurm", "id": "13", "host": "eos", "last_status": "RUNNING"}])
    cluster.set("13", "RUNNING")
    ran = jobmon("watch", "--once", "--json", *home.args())
    assert ran.code == 0, ran.err
    assert [c for c in cluster.ssh_calls() if "ProxyCommand" in c or not c.startswith("ssh eos ")] == []
    assert any("13" in c for c in cluster.ssh_calls())  # the good job is still checked


def test_a_delegated_end_never_runs_the_other_type_s_action_with_an_option_as_host(home: Home, cluster: Cluster) -> None:
    # a valid nel job whose claimed end names a Slurm job behind an option: its on_failure is refused
    groups = {"delegate": "slurm 12 says FAILED", "delegate_type": "slurm", "delegate_id": "12",
              "delegate_host": OPTION, "delegate_state": "FAILED"}
    final = {"from": "RUNNING", "to": "FAILED", "outcome": "failure", "groups": groups,
             "at": "2026-12-01T10:00:00", "seq": 0}
    write_registry(home, [{"type": "nel", "id": "4aa78841c0de5eed", "last_status": "RUNNING",
                           "jobmon": {"final": final}}])
    ran = jobmon("watch", "--once", "--json", *home.args())
    assert ran.code == 0, ran.err
    assert [c for c in cluster.fakebin.calls() if "ProxyCommand" in c] == []
    (end,) = [e for e in home.logged() if e.get("terminal")]
    assert end["id"] == "4aa78841c0de5eed" and end["to"] == "FAILED"
    assert f"on_failure failed: slurm: --host {OPTION!r} is not valid" in end["detail"]
    assert home.jobs() == []  # it ended: moved to history, said once


def write_registry(home: Home, entries: list[dict[str, object]]) -> None:
    home.registry.parent.mkdir(parents=True, exist_ok=True)
    home.registry.write_text(json.dumps(entries))
