"""Jobs -> check groups: one command per (type, host), chunked; the exact commands rendered."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobmon import config, plan
from jobmon.registry import Job
from conftest import slurm_check


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
