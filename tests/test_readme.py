"""The README's examples are real: the job type and the cluster override load and work."""
from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, FakeBin, Home, jobmon

README = (REPO / "README.md").read_text()


def yaml_block(marker: str) -> str:
    for block in re.findall(r"```yaml\n(.*?)```", README, re.S):
        if marker in block:
            return block
    raise AssertionError(f"no yaml block with {marker!r} in README.md")


def test_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make run" in first_screen and "make test" in first_screen


def test_the_k8s_example_type_works_with_no_python_change(home: Home, fakebin: FakeBin, tmp_path: Path) -> None:
    conf = tmp_path / "k8s.yaml"
    conf.write_text("types:\n" + "\n".join("  " + ln for ln in yaml_block("k8s:").splitlines() if not ln.startswith("#")))
    fakebin.add("kubectl", '#!/bin/sh\necho "kubectl $*" >> "$FAKE_LOG"\n'
                           'case "$*" in *jsonpath*) printf Complete ;; *) echo "error: boom" ;; esac\n')
    assert jobmon("check", "--config", str(conf), *home.args()).code == 0
    assert jobmon("add", "--type", "k8s", "--id", "train-7", "--config", str(conf), *home.args()).code == 0
    ran = jobmon("watch", "--json", "--interval", "0.05", "--config", str(conf), *home.args())
    assert ran.code == 0, ran.err
    (change, summary) = ran.events()
    assert (change["type"], change["to"], change["outcome"], change["detail"]) == ("k8s", "COMPLETED", "success", "state COMPLETED")
    assert fakebin.calls("kubectl") == ["kubectl get job train-7 -n default -o jsonpath={.status.conditions[0].type}"]


def test_the_cluster_override_example_loads_and_applies(home: Home, tmp_path: Path) -> None:
    conf = tmp_path / "monitor.yaml"
    conf.write_text(yaml_block("clusters:"))
    ran = jobmon("render", "--type", "slurm", "--id", "1", "--host", "eos-login2", "--config", str(conf), *home.args())
    assert ran.code == 0, ran.err
    assert ran.lines()[1].startswith("ssh -o BatchMode=yes -J bastion.example.com -- eos-login2 'a=$(sacct -j 1 ")
    from jobmon import config

    cfg = config.load(str(conf), env={})
    assert cfg.resolve("slurm", "eos-login2")[0].vars["window"] == "4194304"
    assert cfg.resolve("slurm", "della")[0].vars["window"] == "1048576"  # other hosts keep the default


def test_every_jobmon_command_in_the_readme_is_one_jobmon_takes() -> None:
    """Each ``jobmon …`` and ``bin/jobmon-watch …`` line of the README's sh blocks parses as
    written (the skill's own commands, the same words, are run in tests/test_skill.py)."""
    import shlex

    from jobmon.cli import build_parser

    lines = [ln.strip() for block in re.findall(r"```sh\n(.*?)```", README, re.S) for ln in block.splitlines()]
    commands = [shlex.split(ln, comments=True) for ln in lines if ln.startswith(("jobmon ", "bin/jobmon-watch"))]
    assert len(commands) >= 10
    for words in commands:
        argv = ["watch", *words[1:]] if words[0] == "bin/jobmon-watch" else words[1:]
        build_parser().parse_args(argv)  # argparse exits 2 on a word it does not take
