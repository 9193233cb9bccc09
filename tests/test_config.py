"""Config: the layers, the deep merge, every error as one exact line, clusters, a new job type.

Every test writes real small YAML files under tmp_path and loads them the way jobmon does:
``config.from_files`` / ``config.load`` in process, or the real CLI in a child process.
"""
from __future__ import annotations

import json
import sys
import re
import textwrap
from pathlib import Path

import pytest

from conftest import Home, folder_in_tmp, jobmon, slurm_check
from jobmon import config, plan
from jobmon.config import ConfigError
from jobmon.registry import Job

PACKAGED_DIR = config.packaged_dir()
PACKAGED_NAMES = ("monitor.yaml", "checkers.d/deploy.yaml", "checkers.d/launcher.yaml", "checkers.d/local.yaml", "checkers.d/nel.yaml",
                  "checkers.d/slurm.yaml")
PACKAGED = [PACKAGED_DIR / name for name in PACKAGED_NAMES]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_error(*files: Path) -> str:
    """The one line a config made of the packaged files and ``files`` fails with."""
    with pytest.raises(ConfigError) as exc:
        config.from_files([*PACKAGED, *files])
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- the packaged defaults


def test_the_packaged_defaults_load(home: Home) -> None:
    cfg = config.load(env={"XDG_CONFIG_HOME": str(home.root.parent / "xdg")})
    assert list(cfg.types) == ["deploy", "launcher", "local", "nel", "slurm"]
    assert cfg.files == PACKAGED_NAMES
    assert cfg.clusters == ()
    assert cfg.settings.interval == 30.0 and cfg.settings.max_parallel == 8 and cfg.settings.max_parallel_total == 32
    assert cfg.settings.ssh == ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15",
                                "-o", "ControlMaster=auto", "-o", "ControlPath={cache_dir}/ssh-%C", "-o", "ControlPersist=300")
    slurm = cfg.types["slurm"]
    assert slurm.sources == ("checkers.d/slurm.yaml",)
    assert slurm.check.batch is not None and slurm.check.command is None
    assert set(slurm.fields) == {"id", "host", "file"} and slurm.fields["host"].required
    assert slurm.category("CANCELLED") == "failure" and slurm.category("COMPLETED") == "success"
    assert cfg.types["local"].interval == 2.0
    assert cfg.types["local"].sources == ("checkers.d/local.yaml",)


def test_jobmon_check_accepts_the_packaged_defaults(home: Home) -> None:
    ran = jobmon("check")
    assert (ran.code, ran.err) == (0, "")
    assert ran.out == ("config OK: 5 job types, 0 clusters, from monitor.yaml, checkers.d/deploy.yaml, checkers.d/launcher.yaml, "
                       "checkers.d/local.yaml, checkers.d/nel.yaml, checkers.d/slurm.yaml\n")


def test_jobmon_types_lists_the_packaged_types_with_their_files(home: Home) -> None:
    ran = jobmon("types")
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines() == [
        "deploy: a model server run as a SLURM job (vLLM, SGLang, trtllm-serve, NIM); READY with its endpoint, or why it never came up",
        "  fields: id, host, [file], [endpoint]; every 30s; from checkers.d/deploy.yaml, checkers.d/slurm.yaml",
        "launcher: the Model-Optimizer launcher's output log (NeMo-Run experiments on SLURM)",
        "  fields: id, file, [host]; every 5s; from checkers.d/launcher.yaml",
        "local: a process on this machine, by pid (exit code from --file)",
        "  fields: id, [file], [log]; every 2s; from checkers.d/local.yaml",
        "nel: a NeMo Evaluator Launcher invocation, checked with nel status --json",
        "  fields: id; every 30s; from checkers.d/nel.yaml",
        "slurm: a SLURM job, array or heterogeneous job, checked with sacct and squeue over ssh",
        "  fields: id, host, [file]; every 30s; from checkers.d/slurm.yaml",
    ]


def test_an_empty_layer_file_changes_nothing(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.yaml", "# nothing yet\n")
    cfg = config.from_files([*PACKAGED, empty])
    assert list(cfg.types) == ["deploy", "launcher", "local", "nel", "slurm"]
    assert cfg.files == (*PACKAGED_NAMES, str(empty))


# ---------------------------------------------------------------- layers and the deep merge


def test_a_later_layer_overrides_one_key_and_keeps_the_rest_of_the_type(tmp_path: Path) -> None:
    mine = write(tmp_path / "mine.yaml", """
        types:
          slurm:
            interval: 120
    """)
    base = config.from_files(PACKAGED).types["slurm"]
    slurm = config.from_files([*PACKAGED, mine]).types["slurm"]
    assert slurm.interval == 120.0
    assert slurm.timeout == base.timeout == 60.0
    assert slurm.description == base.description
    assert slurm.check.source == base.check.source
    assert slurm.check.regex.pattern == base.check.regex.pattern
    assert slurm.states == base.states
    assert [(p.pattern, to) for p, to in slurm.rewrite] == [(r"^CANCELLED\b", "CANCELLED")]
    assert slurm.sources == ("checkers.d/slurm.yaml", str(mine))


def test_lists_are_replaced_whole_and_mappings_merged(tmp_path: Path) -> None:
    mine = write(tmp_path / "checkers.d" / "slurm.yaml", """
        slurm:
          states:
            failure: [FAILED, CANCELLED]
          normalize:
            rewrite:
              '^TIMEOUT$': FAILED
          check:
            ok_exit: [0, 1]
    """)
    settings = write(tmp_path / "monitor.yaml", """
        settings:
          ssh: [ssh, -J, bastion]
          timeout: 5
    """)
    cfg = config.from_files([*PACKAGED, settings, mine])
    slurm = cfg.types["slurm"]
    assert slurm.states["failure"] == {"FAILED", "CANCELLED"}  # the packaged list is gone
    assert "PENDING" in slurm.states["pending"] and slurm.states["success"] == {"COMPLETED"}
    assert [(p.pattern, to) for p, to in slurm.rewrite] == [(r"^CANCELLED\b", "CANCELLED"), ("^TIMEOUT$", "FAILED")]
    assert slurm.check.ok_exit == (0, 1)
    assert slurm.check.batch is not None
    assert cfg.settings.ssh == ("ssh", "-J", "bastion")
    assert cfg.settings.timeout == 5.0 and cfg.settings.interval == 30.0 and cfg.settings.max_line == 400


def test_layer_order_packaged_xdg_cwd_env_cli(home: Home, tmp_path: Path) -> None:
    """Each layer sets slurm.interval (the last one wins) and adds a field of its own (all kept)."""
    xdg = tmp_path / "xdg"
    layers = {
        "xdg monitor": write(xdg / "jobmon" / "monitor.yaml", """
            settings: {interval: 11, ssh: [ssh, -o, BatchMode=yes]}
            types:
              slurm: {interval: 11, timeout: 41, fields: {a: {help: from xdg monitor}}}
        """),
        "xdg checkers": write(xdg / "jobmon" / "checkers.d" / "slurm.yaml", """
            slurm: {interval: 12, fields: {b: {help: from xdg checkers.d}}}
        """),
        "cwd": write(Path.cwd() / "monitor.yaml", """
            settings: {timeout: 13}
            types:
              slurm: {interval: 13, fields: {c: {help: from ./monitor.yaml}}}
        """),
        "env": write(tmp_path / "env.yaml", """
            settings: {timeout: 14, max_parallel: 3}
            types:
              slurm: {interval: 14, fields: {d: {help: from JOBMON_CONFIG}}}
        """),
        "cli": write(tmp_path / "cli" / "monitor.yaml", """
            types:
              slurm: {interval: 15, description: mine, fields: {e: {help: from --config}}}
        """),
    }
    cfg = config.load(cli_config=str(tmp_path / "cli"),
                      env={"XDG_CONFIG_HOME": str(xdg), "JOBMON_CONFIG": str(layers["env"])})
    names = tuple(str(p) for p in layers.values())
    assert cfg.files == (*PACKAGED_NAMES, *names)
    slurm = cfg.types["slurm"]
    assert slurm.interval == 15.0
    assert slurm.timeout == 41.0
    assert slurm.description == "mine"
    assert list(slurm.fields) == ["id", "host", "file", "a", "b", "c", "d", "e"]
    assert slurm.fields["d"].help == "from JOBMON_CONFIG"
    assert slurm.check.batch is not None
    assert slurm.sources == ("checkers.d/slurm.yaml", *names)
    assert cfg.types["local"].sources == ("checkers.d/local.yaml",)
    assert cfg.settings.interval == 11.0
    assert cfg.settings.timeout == 14.0
    assert cfg.settings.max_parallel == 3
    assert cfg.settings.ssh == ("ssh", "-o", "BatchMode=yes")


def test_each_layer_beats_the_one_before(home: Home, tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    env = {"XDG_CONFIG_HOME": str(xdg)}
    assert config.load(env=env).settings.interval == 30.0
    write(xdg / "jobmon" / "monitor.yaml", "settings: {interval: 1}\n")
    assert config.load(env=env).settings.interval == 1.0
    write(Path.cwd() / "monitor.yaml", "settings: {interval: 2}\n")
    assert config.load(env=env).settings.interval == 2.0
    env["JOBMON_CONFIG"] = str(write(tmp_path / "env.yaml", "settings: {interval: 3}\n"))
    assert config.load(env=env).settings.interval == 3.0
    cli = write(tmp_path / "cli.yaml", "settings: {interval: 4}\n")
    assert config.load(cli_config=str(cli), env=env).settings.interval == 4.0


def test_a_file_named_by_two_layers_is_read_once(home: Home, tmp_path: Path) -> None:
    here = write(Path.cwd() / "monitor.yaml", "settings: {interval: 7}\n")
    cfg = config.load(cli_config=str(here), env={"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "JOBMON_CONFIG": str(here)})
    assert cfg.files == (*PACKAGED_NAMES, str(here))


def test_the_cli_names_every_layer_it_read(home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each layer also sets a key of its own: a file whose every key a later one overrides is no
    # longer a source of the type.
    write(tmp_path / "xdg" / "jobmon" / "checkers.d" / "slurm.yaml", "slurm: {interval: 12, timeout: 50}\n")
    env_file = write(tmp_path / "env.yaml", "types: {slurm: {interval: 14, action_timeout: 70}}\n")
    cli_file = write(tmp_path / "cli.yaml", "types: {slurm: {interval: 15}}\n")
    monkeypatch.setenv("JOBMON_CONFIG", str(env_file))
    ran = jobmon("types", "--config", str(cli_file))
    assert (ran.code, ran.err) == (0, "")
    xdg_file = tmp_path / "xdg" / "jobmon" / "checkers.d" / "slurm.yaml"
    assert ran.lines()[9] == f"  fields: id, host, [file]; every 15s; from checkers.d/slurm.yaml, {xdg_file}, {env_file}, {cli_file}"
    ran = jobmon("types", "--json", "--config", str(cli_file))
    slurm = [e for e in ran.events() if e["type"] == "slurm"][0]
    assert slurm["files"] == ["checkers.d/slurm.yaml", str(xdg_file), str(env_file), str(cli_file)]


# ---------------------------------------------------------------- errors, one exact line each

ERRORS = [
    pytest.param("checkers.d/x.yaml", """
        slurm:
          chek:
            regex: '(?P<state>.*)'
    """, "{f}: slurm.chek: unknown key (did you mean 'check'?)", id="unknown-key-checkers"),
    pytest.param("monitor.yaml", """
        settings:
          intervall: 5
    """, "{f}: settings.intervall: unknown key (did you mean 'interval'?)", id="unknown-key-settings"),
    pytest.param("monitor.yaml", """
        types:
          slurm:
            check:
              regexp: x
    """, "{f}: types.slurm.check.regexp: unknown key (did you mean 'regex'?)", id="unknown-key-monitor"),
    pytest.param("monitor.yaml", """
        setings: {}
    """, "{f}: setings: unknown key (did you mean 'settings'?)", id="unknown-top-key"),
    pytest.param("monitor.yaml", """
        delivery: {join: 0.5, gap: 0.3}
    """, "{f}: delivery.gap: must be more than delivery.join (0.5 s): else two notifications join into one",
        id="delivery-gap-within-join"),
    pytest.param("monitor.yaml", """
        settings: {max_line: 600}
    """, "{f}: settings.max_line: 600 is past delivery.line (500): the reader would see lines cut",
        id="max-line-past-the-harness-cut"),
    pytest.param("monitor.yaml", """
        delivery: {burst: "10"}
    """, "{f}: delivery.burst: expected a whole number, found the string '10'", id="delivery-burst-not-a-number"),
    pytest.param("monitor.yaml", """
        zzz: {}
    """, "{f}: zzz: unknown key (valid: settings, delivery, diagnosis, types, clusters, notify)", id="unknown-key-no-near"),
    pytest.param("checkers.d/x.yaml", r"""
        slurm:
          check:
            regex: '^(?P<id>[^|]+)\|(?P<state>[^|]*'
    """, "{f}: slurm.check.regex: bad regex: missing ), unterminated subpattern at position 16", id="bad-regex"),
    pytest.param("checkers.d/x.yaml", r"""
        slurm:
          check:
            regex: '^(?P<id>[^|]+)\|(?P<status>[^|]*)'
    """, "{f}: slurm.check.regex: no (?P<state>…) group", id="no-state-group"),
    pytest.param("checkers.d/x.yaml", r"""
        slurm:
          check:
            regex: '^(?P<job>[^|]+)\|(?P<state>[^|]*)'
    """, "{f}: slurm.check.regex: no (?P<id>…) group", id="batch-without-id-group"),
    pytest.param("monitor.yaml", r"""
        types:
          slurm:
            check:
              regex: '^(?P<job>[^|]+)\|(?P<state>[^|]*)'
    """, "{f}: slurm.check.regex: no (?P<id>…) group", id="batch-without-id-group-monitor"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          fields:
            id: {pattern: '[0-9'}
    """, "{f}: slurm.fields.id.pattern: bad regex: unterminated character set at position 0", id="bad-field-pattern"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          normalize:
            rewrite:
              '*CANCELLED': CANCELLED
    """, "{f}: slurm.normalize.rewrite.*CANCELLED: bad regex: nothing to repeat at position 0", id="bad-rewrite-regex"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          detail: "exit {{ exit "
    """, "{f}: slurm.detail: template syntax error on line 1: unexpected end of template, "
         "expected 'end of print statement'.", id="template-syntax"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          check:
            batch: "{{ ssh }} {{ host }} {% remote %}sacct -j {{ ids | join(',') }}{% endremote"
    """, "{f}: slurm.check.batch: template syntax error on line 1: unexpected end of template, "
         "expected 'end of statement block'.", id="template-syntax-remote"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          check:
            batch: "{{ ssh }} {{ host }} {% remote %}sacct -j {{ id }}{% endremote %}"
    """, "{f}: slurm.check.batch: unknown variable id (known: end_awk, end_fields, follow_log, health_path, host, ids, jobs, progress, ssh, type, user, window)",
        id="template-unknown-variable"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          on_failure: "tail {{ logfile }}"
    """, "{f}: slurm.on_failure: unknown variable logfile (known: delegate, derived, description, elapsed, end_awk, "
         "end_fields, exit, failed_part, file, follow_log, groups, health_path, host, id, measured, node, of, outcome, parts_done, parts_failed, "
         "parts_total, previous, raw, "
         "reason, ssh, state, stderr, stdout, submit, submitted, type, user, window, workdir)",
        id="action-unknown-variable"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          states:
            running: [RUNNING, COMPLETED]
    """, "{f}: slurm.states.running: COMPLETED is already under states.success", id="two-categories"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          normalize:
            rewrite:
              '^CANCELLED': CANCELED
    """, "{f}: slurm.normalize.rewrite.^CANCELLED: rewrites to 'CANCELED', which is not in states",
        id="rewrite-outside-vocabulary"),
    pytest.param("monitor.yaml", """
        settings:
          interval: fast
    """, "{f}: settings.interval: expected a number, found the string 'fast'", id="string-for-number"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          timeout: "60"
    """, "{f}: slurm.timeout: expected a number, found the string '60'", id="quoted-number"),
    pytest.param("monitor.yaml", """
        settings:
          max_parallel: 2.5
    """, "{f}: settings.max_parallel: expected a whole number, found the number 2.5", id="float-for-int"),
    pytest.param("monitor.yaml", """
        settings:
          max_parallel_total: 0
    """, "{f}: settings.max_parallel_total: must be at least 1", id="zero-total-bound"),
    pytest.param("monitor.yaml", """
        settings:
          interval: yes
    """, "{f}: settings.interval: expected a number, found a boolean", id="bool-for-number"),
    pytest.param("monitor.yaml", """
        settings:
          ssh: ssh -J bastion
    """, "{f}: settings.ssh: expected a list, found the string 'ssh -J bastion'", id="string-for-list"),
    pytest.param("monitor.yaml", """
        settings:
          ssh: [ssh, -p, 22]
    """, "{f}: settings.ssh.2: expected a string, found the number 22", id="number-in-string-list"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          normalize: {upper: "yes"}
    """, "{f}: slurm.normalize.upper: expected true or false, found the string 'yes'", id="string-for-bool"),
    pytest.param("checkers.d/x.yaml", """
        - slurm
    """, "{f}: (top): expected a mapping, found a list", id="list-at-top"),
    pytest.param("monitor.yaml", """
        settings:
          interval: 0
    """, "{f}: settings.interval: must be greater than 0", id="zero-interval"),
    pytest.param("monitor.yaml", """
        settings:
          max_line: 40
    """, "{f}: settings.max_line: must be at least 80", id="short-max-line"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          interval: -1
    """, "{f}: slurm.interval: must be greater than 0", id="negative-type-interval"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          check:
            batch_size: 0
    """, "{f}: slurm.check.batch_size: must be at least 1", id="zero-batch-size"),
    pytest.param("checkers.d/x.yaml", """
        k:
          check: {command: "true", regex: '(?P<state>x)', live: {regex: '(?P<state>y)'}}
          states: {success: [X]}
    """, "{f}: k.check.live: only for a batched check: its rows come from the batch's output", id="live-without-batch"),
    pytest.param("checkers.d/x.yaml", """
        k:
          check: {command: "true", regex: '(?P<state>x)'}
          states: {success: [X]}
          on_complete: {batch_size: 10}
    """, "{f}: k.on_complete.batch: missing: the command run once for all of a host's ending jobs",
        id="batched-action-without-batch"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          on_failure: [tail]
    """, "{f}: slurm.on_failure: expected a string or a mapping (batch, batch_size), found a list", id="action-kind"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          on_complete: {batch: "echo {{ id }}"}
    """, "{f}: slurm.on_complete.batch: unknown variable id (known: end_awk, end_fields, follow_log, health_path, host, ids, jobs, marker, ssh, type, user, window)",
        id="batched-action-names-one-job"),
    pytest.param("checkers.d/x.yaml", """
        slurm:
          metrics: [{name: m, regex: x, field: exit}]
    """, "{f}: slurm.metrics.0.field: only for events or diagnosis", id="field-in-metrics"),
    pytest.param("checkers.d/x.yaml", """
        k:
          check: {batch: "true", regex: '(?P<id>x)(?P<state>x)', capture: '(?P<stdout>x)'}
          states: {success: [X]}
    """, "{f}: k.check.capture: no (?P<id>…) group", id="capture-without-id"),
    pytest.param("checkers.d/x.yaml", """
        k:
          extends: slrum
    """, "{f}: k.extends: unknown job type 'slrum' (did you mean 'slurm'?)", id="extends-unknown"),
    pytest.param("checkers.d/x.yaml", """
        k:
          extends: deploy
    """, "{f}: k.extends: deploy extends slurm itself: extend that one", id="extends-an-extension"),
    pytest.param("checkers.d/x.yaml", """
        k:
          extends: slurm
          events: [{name: READY, regex: 'up', needs: [url]}]
    """, "{f}: k.events.0.needs.0: no field, and no other event with a (?P<url>…) group or a keep of that name",
        id="needs-unknown-group"),
    pytest.param("checkers.d/x.yaml", """
        k:
          extends: slurm
          ready: UP
    """, "{f}: k.ready: 'UP' is none of the type's events (said once each)", id="ready-unknown-event"),
    pytest.param("checkers.d/x.yaml", """
        k:
          extends: slurm
          ready_within: 60
    """, "{f}: k.ready_within: needs `ready`: the key event it waits for", id="ready-within-alone"),
    pytest.param("checkers.d/x.yaml", """
        k:
          extends: slurm
          events: [{name: UP, regex: 'up'}]
          ready: UP
          ready_within: 0
    """, "{f}: k.ready_within: must be greater than 0 (seconds)", id="ready-within-zero"),
    pytest.param("checkers.d/x.yaml", """
        k:
          extends: slurm
          diagnosis: [{name: d, regex: 'x', say: false}]
    """, "{f}: k.diagnosis.0.say: only for events", id="say-in-diagnosis"),
    pytest.param("checkers.d/x.yaml", """
        k:
          check: {batch: "true", regex: '(?P<id>x)(?P<state>x)', lines: '(?P<id>x)'}
          states: {success: [X]}
    """, "{f}: k.check.lines: no (?P<line>…) group", id="lines-without-line"),
    pytest.param("checkers.d/x.yaml", """
        k:
          check: {command: "true", regex: '(?P<state>x)', offset: '(?P<id>x)(?P<offset>[0-9]+)'}
          states: {success: [X]}
    """, "{f}: k.check.offset: only for a batched check: a one-job check's whole output is its text", id="offset-one-job"),
]


@pytest.mark.parametrize(("name", "text", "message"), ERRORS)
def test_each_error_is_one_exact_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path / name, text)
    assert load_error(path) == message.replace("{f}", str(path))


# A brand-new type, complete but for what each case below breaks.
NEW_TYPE = """\
k8s:
  check:
    command: kubectl get job {{ id }}
    regex: '(?P<state>[A-Z]+)'
  states:
    running: [RUNNING]
    success: [SUCCEEDED]
    failure: [FAILED]
"""


@pytest.mark.parametrize(("old", "new", "message"), [
    ("    success: [SUCCEEDED]\n    failure: [FAILED]\n", "",
     "{f}: k8s.states: no terminal state: list at least one state under success or failure"),
    ("    failure: [FAILED]", "    failure: [FAILED, RUNNING]",
     "{f}: k8s.states.failure: RUNNING is already under states.running"),
    ("    command: kubectl get job {{ id }}\n", "",
     "{f}: k8s.check.command: missing: give command, batch or read"),
    ("    regex: '(?P<state>[A-Z]+)'\n", "",
     "{f}: k8s.check.regex: missing: the regex (or json) that finds the state"),
    ("    command: kubectl get job {{ id }}\n", "    batch: kubectl get jobs {{ ids }}\n",
     "{f}: k8s.check.regex: no (?P<id>…) group"),
    ("{{ id }}", "{{ name }}",
     "{f}: k8s.check.command: unknown variable name (known: description, file, host, id, ssh, submitted, type, user)"),
    ("  check:", "  chekc:", "{f}: k8s.chekc: unknown key (did you mean 'check'?)"),
])
def test_errors_in_a_new_type(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in NEW_TYPE
    path = write(tmp_path / "checkers.d" / "k8s.yaml", NEW_TYPE.replace(old, new, 1))
    assert load_error(path) == message.replace("{f}", str(path))


def test_the_new_type_above_is_valid(tmp_path: Path) -> None:
    path = write(tmp_path / "checkers.d" / "k8s.yaml", NEW_TYPE)
    assert list(config.from_files([*PACKAGED, path]).types) == ["deploy", "launcher", "local", "nel", "slurm", "k8s"]


def test_a_new_type_needs_a_check(tmp_path: Path) -> None:
    path = write(tmp_path / "checkers.d" / "k8s.yaml", "k8s: {description: no check yet}\n")
    assert load_error(path) == f"{path}: k8s.check: missing: a job type needs a check (command, batch or read, and regex or json)"


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "monitor.yaml", """
        settings:
          interval: 3
           timeout: 4
    """)
    assert load_error(path) == f"{path}:3:11: YAML syntax error: mapping values are not allowed here"


def test_an_unclosed_flow_list_names_where_yaml_gave_up(tmp_path: Path) -> None:
    path = write(tmp_path / "checkers.d" / "slurm.yaml", """
        slurm:
          states:
            running: [RUNNING, COMPLETING
          interval: 5
    """)
    assert load_error(path) == f"{path}:4:11: YAML syntax error: expected ',' or ']', but got ':'"


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_bytes(b"settings:\n  interval: \xff\n")
    assert load_error(path) == (f"{path}: cannot read: 'utf-8' codec can't decode byte 0xff in position 22: "
                                "invalid start byte")


def test_a_missing_cli_or_env_config_path_is_an_error(home: Home, tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    with pytest.raises(ConfigError) as exc:
        config.load(cli_config=str(tmp_path / "nope.yaml"), env=env)
    assert str(exc.value) == f"{tmp_path / 'nope.yaml'}: no such file or folder"
    with pytest.raises(ConfigError) as exc:
        config.load(env={**env, "JOBMON_CONFIG": str(tmp_path / "gone")})
    assert str(exc.value) == f"{tmp_path / 'gone'}: no such file or folder"
    # The implicit layers may be missing: no XDG folder, no ./monitor.yaml.
    assert config.load(env=env).files == PACKAGED_NAMES


def test_an_error_from_a_later_layer_names_the_later_file(tmp_path: Path) -> None:
    first = write(tmp_path / "first" / "checkers.d" / "slurm.yaml", "slurm: {interval: 10}\n")
    later = write(tmp_path / "later.yaml", r"""
        types:
          slurm:
            check:
              regex: '^(?P<job>[^|]+)\|(?P<state>[^|]*)'
    """)
    assert load_error(first, later) == f"{later}: slurm.check.regex: no (?P<id>…) group"
    later = write(tmp_path / "later.yaml", "settings: {lost_after: 0}\n")
    assert load_error(first, later) == f"{later}: settings.lost_after: must be greater than 0"
    later = write(tmp_path / "later.yaml", "types: {slurm: {normalize: {rewrite: {'^OOM': OOM}}}}\n")
    assert load_error(first, later) == f"{later}: slurm.normalize.rewrite.^OOM: rewrites to 'OOM', which is not in states"


def test_a_state_moved_by_a_later_layer_blames_the_later_file(tmp_path: Path) -> None:
    """PREEMPTED is packaged as a failure; the user's layer lists it as pending too."""
    later = write(tmp_path / "checkers.d" / "slurm.yaml", """
        slurm:
          states:
            pending: [PENDING, PREEMPTED]
    """)
    assert load_error(later) == f"{later}: slurm.states.pending: PREEMPTED is already under states.failure"


@pytest.mark.parametrize(("text", "message"), [
    ("types: {slurm: {check: {regex: '(?P<id>x)'}}}\n", "{f}: slurm.check.regex: no (?P<state>…) group"),
    ("settings:\n  interval: 3\n   timeout: 4\n", "{f}:3:11: YAML syntax error: mapping values are not allowed here"),
    ("settings: {timeout: soon}\n", "{f}: settings.timeout: expected a number, found the string 'soon'"),
    ("clusters: {eos: {hosts: [eos], types: {slrum: {interval: 5}}}}\n",
     "{f}: clusters.eos.types.slrum: unknown job type 'slrum' (did you mean 'slurm'?)"),
])
def test_jobmon_check_exits_2_with_the_one_line(home: Home, tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.yaml", text)
    line = "jobmon: " + message.replace("{f}", str(path)) + "\n"
    for command in ("check", "types", "watch"):
        ran = jobmon(command, "--config", str(path), *home.args())
        assert (ran.code, ran.out, ran.err) == (2, "", line), command
    ran = jobmon("add", "--type", "slurm", "--id", "1", "--host", "eos", "--config", str(path), *home.args())
    assert (ran.code, ran.out, ran.err) == (2, "", line)
    assert home.jobs() == []


def test_jobmon_check_with_a_missing_config_exits_2(home: Home, tmp_path: Path) -> None:
    ran = jobmon("check", "--config", str(tmp_path / "nope.yaml"))
    assert (ran.code, ran.out, ran.err) == (2, "", f"jobmon: {tmp_path / 'nope.yaml'}: no such file or folder\n")


# ---------------------------------------------------------------- clusters

CLUSTERS = """
    clusters:
      eos:
        hosts: ["eos", "eos-login*"]
        settings:
          ssh: [ssh, -J, bastion]
          unreachable_after: 9
        types:
          slurm:
            interval: 60
            check:
              batch: "{{ ssh }} {{ host }} {% remote %}sacct -M eos -j {{ ids | join(',') }}{% endremote %}"
      everywhere:
        hosts: ["*"]
        settings:
          unreachable_after: 4
          max_line: 300
"""


def test_a_cluster_overrides_a_type_and_settings_for_its_hosts_only(tmp_path: Path) -> None:
    path = write(tmp_path / "monitor.yaml", CLUSTERS)
    cfg = config.from_files([*PACKAGED, path])
    assert [(c.name, c.hosts) for c in cfg.clusters] == [("eos", ("eos", "eos-login*")), ("everywhere", ("*",))]
    base = cfg.types["slurm"]

    for host in ("eos", "eos-login2"):
        slurm, settings = cfg.resolve("slurm", host)
        assert slurm.interval == 60.0
        assert slurm.check.source["batch"].startswith("{{ ssh }} {{ host }} {% remote %}sacct -M eos")
        assert slurm.check.regex.pattern == base.check.regex.pattern  # merged, not replaced
        assert slurm.states == base.states and slurm.timeout == 60.0
        assert settings.ssh == ("ssh", "-J", "bastion")
        assert settings.unreachable_after == 4  # both clusters match: the later one wins
        assert settings.max_line == 300
        assert settings.interval == cfg.settings.interval
        assert str(path) in slurm.sources

    for host in ("eos2", "login.eos", "other"):
        slurm, settings = cfg.resolve("slurm", host)
        assert slurm.interval == 30.0 and slurm.check.source == base.check.source
        assert settings.ssh == cfg.settings.ssh and settings.unreachable_after == 4 and settings.max_line == 300

    assert cfg.resolve("slurm", "") == (base, cfg.settings)
    assert cfg.settings.unreachable_after == 3
    local, settings = cfg.resolve("local", "eos-login1")
    assert local.check.source == cfg.types["local"].check.source
    assert settings.ssh == ("ssh", "-J", "bastion")


def test_a_cluster_override_reaches_the_rendered_command(tmp_path: Path, cache_home: Path) -> None:
    path = write(tmp_path / "monitor.yaml", CLUSTERS)
    cfg = config.from_files([*PACKAGED, path])
    jobs = [Job(type="slurm", id=i, host=h) for i, h in [("1", "eos-login1"), ("2", "eos-login1"), ("3", "della")]]
    commands = {g.host: plan.command(g) for g in plan.plan(jobs, cfg)}
    assert commands["eos-login1"] == "ssh -J bastion eos-login1 'sacct -M eos -j 1,2'"
    assert commands["della"] == slurm_check(cache_home, "della", ["3"])


def test_a_cluster_in_its_own_layer_overrides_a_type_from_another(tmp_path: Path) -> None:
    typ = write(tmp_path / "a" / "checkers.d" / "slurm.yaml", "slurm: {interval: 45}\n")
    clus = write(tmp_path / "b.yaml", "clusters: {della: {hosts: [della*], types: {slurm: {timeout: 5}}}}\n")
    cfg = config.from_files([*PACKAGED, typ, clus])
    slurm, _ = cfg.resolve("slurm", "della-gpu")
    assert (slurm.interval, slurm.timeout) == (45.0, 5.0)
    assert cfg.resolve("slurm", "eos")[0].timeout == 60.0


@pytest.mark.parametrize(("text", "message"), [
    ("""
     clusters:
       eos:
         hosts: [eos]
         types:
           slurm:
             check:
               regex: '^(?P<id>[^|]+)\\|(?P<state>[^|]*'
     """, "{f}: clusters.eos.types.slurm.check.regex: bad regex: missing ), unterminated subpattern at position 16"),
    ("""
     clusters:
       eos:
         hosts: [eos]
         types:
           slurm:
             check:
               regex: '^(?P<id>[^|]+)'
     """, "{f}: clusters.eos.types.slurm.check.regex: no (?P<state>…) group"),
    ("""
     clusters:
       eos:
         hosts: [eos]
         types:
           slurm:
             detail: "{{ exitcode }}"
     """, "{f}: clusters.eos.types.slurm.detail: unknown variable exitcode (known: delegate, derived, description, "
          "elapsed, end_awk, end_fields, exit, failed_part, file, follow_log, groups, health_path, host, id, measured, node, of, outcome, parts_done, "
          "parts_failed, parts_total, previous, raw, reason, ssh, state, stderr, stdout, submit, submitted, type, user, "
          "window, workdir)"),
    ("""
     clusters:
       eos:
         hosts: [eos]
         settings:
           timeout: 0
     """, "{f}: clusters.eos.settings.timeout: must be greater than 0"),
    ("""
     clusters:
       eos:
         hosts: [eos]
         types:
           slurmm:
             interval: 60
     """, "{f}: clusters.eos.types.slurmm: unknown job type 'slurmm' (did you mean 'slurm'?)"),
    ("""
     clusters:
       eos:
         types:
           slurm: {interval: 60}
     """, "{f}: clusters.eos.hosts: a cluster needs at least one host glob"),
    ("""
     clusters:
       eos:
         hosts: eos
     """, "{f}: clusters.eos.hosts: expected a list, found the string 'eos'"),
    ("""
     clusters:
       eos:
         host: [eos]
     """, "{f}: clusters.eos.host: unknown key (did you mean 'hosts'?)"),
])
def test_cluster_errors_are_reported_at_load(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "clusters.yaml", text)
    assert load_error(path) == message.replace("{f}", str(path))


# ---------------------------------------------------------------- JobType.problem


@pytest.fixture(scope="module")
def packaged() -> config.Config:
    return config.from_files(PACKAGED)


def test_problem_accepts_good_values(packaged: config.Config) -> None:
    assert packaged.types["slurm"].problem({"id": "1234567_3", "host": "della-gpu.princeton.edu", "user": "me"}) is None
    assert packaged.types["local"].problem({"id": "4242", "host": "", "user": "", "file": "/tmp/x y"}) is None


def test_problem_a_required_field_is_missing(packaged: config.Config) -> None:
    assert packaged.types["slurm"].problem({"id": "123", "host": ""}) == (
        "job type 'slurm' needs --host (the cluster's login node or ssh alias)")
    assert packaged.types["slurm"].problem({"host": "eos"}) == (
        "job type 'slurm' needs --id (a SLURM job id: 1234567, an array or het job 1234567 (all its tasks), "
        "one task 1234567_3, one component 1234567+1)")


def test_problem_a_value_not_matching_the_type_pattern(packaged: config.Config) -> None:
    assert packaged.types["slurm"].problem({"id": "123; rm -rf ~", "host": "eos"}) == (
        r"slurm: --id '123; rm -rf ~' is not valid: a SLURM job id: 1234567, an array or het job 1234567 "
        r"(all its tasks), one task 1234567_3, one component 1234567+1 (must match [0-9]+([_+][0-9]+)?(\.[0-9A-Za-z]+)?)")
    # fullmatch: a valid prefix is not enough
    assert packaged.types["local"].problem({"id": "12\n34"}) == (
        "local: --id '12\\n34' is not valid: the process id (must match [0-9]{1,10})")


def test_problem_a_host_or_user_that_is_an_ssh_option(packaged: config.Config) -> None:
    assert packaged.types["slurm"].problem({"id": "1", "host": "-oProxyCommand=touch /tmp/x"}) == (
        "slurm: --host '-oProxyCommand=touch /tmp/x' is not valid: the cluster's login node or ssh alias "
        "(must match [A-Za-z0-9_][A-Za-z0-9._-]{0,252})")
    assert packaged.types["local"].problem({"id": "1", "host": "-x"}) == (
        "local: --host '-x' is not valid (must match [A-Za-z0-9_][A-Za-z0-9._-]{0,252})")
    assert packaged.types["slurm"].problem({"id": "1", "host": "eos", "user": "-l root"}) == (
        "slurm: --user '-l root' is not valid (must match [A-Za-z_][A-Za-z0-9_.-]{0,63})")


def test_problem_cuts_a_long_value(packaged: config.Config) -> None:
    message = packaged.types["slurm"].problem({"id": "1", "host": "-" + "a" * 500})
    assert message is not None and len(message) < 250
    assert f"'{'-' + 'a' * 79}'" in message


def test_the_cli_refuses_a_host_that_is_an_ssh_option(home: Home) -> None:
    ran = jobmon("add", "--type", "slurm", "--id", "1", "--host=-oProxyCommand=touch x", *home.args())
    assert ran.code == 2
    assert ran.err == ("jobmon: slurm: --host '-oProxyCommand=touch x' is not valid: the cluster's login node or "
                       "ssh alias (must match [A-Za-z0-9_][A-Za-z0-9._-]{0,252})\n")
    assert home.jobs() == []


# ---------------------------------------------------------------- a brand-new job type, YAML only

K8S_TYPE = """\
# A Kubernetes Job: nothing in jobmon's Python knows about it.
k8s:
  description: a Kubernetes Job, by name
  fields:
    id: {pattern: '[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?', help: "the Job's name"}
    namespace: {default: default, pattern: '[a-z0-9-]{1,63}', help: "its namespace"}
  interval: 5
  timeout: 20
  check:
    command: kubectl get job {{ id }} --namespace {{ namespace }} -o 'jsonpath={.status.phase} {.status.reason}'
    regex: '^(?P<state>[A-Za-z]+)(?: (?P<reason>.*))?$'
  normalize:
    upper: true
  states:
    pending: [PENDING]
    running: [RUNNING]
    success: [SUCCEEDED]
    failure: [FAILED]
  detail: "{% if reason %}{{ reason }}{% else %}in {{ namespace }}{% endif %}"
"""
K8S = "types:\n" + textwrap.indent(K8S_TYPE, "  ")  # the same type, in a monitor.yaml-shaped file


# Answers with the phase after the one jobmon last recorded for the Job (so a check whose output
# is not used is simply asked again), and logs its argv as JSON, one call a line.
FAKE_KUBECTL = """#!{python}
import json, os, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write("kubectl " + json.dumps(argv) + "\\n")
name = argv[2]
try:
    with open(os.environ["FAKE_K8S_REGISTRY"]) as f:
        jobs = json.load(f)
except FileNotFoundError:
    jobs = []
last = next((j.get("last_status", "") for j in jobs if j.get("type") == "k8s" and j.get("id") == name), None)
if last is None:
    print(f'Error from server (NotFound): jobs.batch "{{name}}" not found', file=sys.stderr)
    sys.exit(1)
end = "Failed BackoffLimitExceeded" if name.startswith("bad-") else "Succeeded"
print({{"": "Pending", "PENDING": "Running"}}.get(last, end if last == "RUNNING" else last.title()))
"""


@pytest.fixture
def k8s(home: Home, fakebin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # type: ignore[no-untyped-def]
    fakebin.add("kubectl", FAKE_KUBECTL.format(python=sys.executable))
    monkeypatch.setenv("FAKE_K8S_REGISTRY", str(home.registry))
    return write(tmp_path / "k8s.yaml", K8S)


def test_a_new_type_passes_check_and_types(home: Home, k8s: Path) -> None:
    ran = jobmon("check", "--config", str(k8s))
    assert (ran.code, ran.err) == (0, "")
    assert ran.out == f"config OK: 6 job types, 0 clusters, from {', '.join(PACKAGED_NAMES)}, {k8s}\n"
    ran = jobmon("types", "--config", str(k8s))
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines()[-2:] == ["k8s: a Kubernetes Job, by name",
                                f"  fields: id, [namespace]; every 5s; from {k8s}"]
    ran = jobmon("types", "--json", "--config", str(k8s))
    [entry] = [e for e in ran.events() if e["type"] == "k8s"]
    assert entry == {"type": "k8s", "description": "a Kubernetes Job, by name", "files": [str(k8s)],
                     "fields": {"id": True, "namespace": False}, "terminal": ["FAILED", "SUCCEEDED"]}


def test_a_new_type_is_unknown_without_its_file(home: Home, k8s: Path) -> None:
    ran = jobmon("add", "--type", "k8s", "--id", "train-1", *home.args())
    assert (ran.code, ran.err) == (2, "jobmon: --type: unknown job type 'k8s'; see `jobmon types`\n")


def test_a_new_type_validates_its_fields_on_add(home: Home, k8s: Path) -> None:
    ran = jobmon("add", "--type", "k8s", "--id", "Train_1", "--config", str(k8s), *home.args())
    assert (ran.code, ran.err) == (2, "jobmon: k8s: --id 'Train_1' is not valid: the Job's name "
                                      "(must match [a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\n")
    ran = jobmon("add", "--type", "k8s", "--id", "t", "--field", "namespace=$(x)", "--config", str(k8s), *home.args())
    assert (ran.code, ran.err) == (2, "jobmon: k8s: --field namespace='$(x)' is not valid: its namespace "
                                      "(must match [a-z0-9-]{1,63})\n")
    ran = jobmon("add", "--type", "k8s", "--id", "t", "--field", "nmspace=ml", "--config", str(k8s), *home.args())
    assert (ran.code, ran.err) == (2, "jobmon: --field nmspace: job type 'k8s' has no such field (fields: id, namespace)\n")
    assert home.jobs() == []


def test_a_new_type_is_added_and_watched_to_the_end(home: Home, k8s: Path, fakebin) -> None:  # type: ignore[no-untyped-def]
    conf = ["--config", str(k8s), *home.args()]
    ran = jobmon("add", "--type", "k8s", "--id", "train-1", "--field", "namespace=ml", "--desc", "train", *conf)
    assert (ran.code, ran.err) == (0, f"registered k8s train-1 in {home.registry}\n")
    ran = jobmon("add", "--type", "k8s", "--id", "bad-eval", "--desc", "eval", *conf)
    assert ran.code == 0
    assert [(j["type"], j["id"], j.get("namespace")) for j in home.jobs()] == [("k8s", "train-1", "ml"), ("k8s", "bad-eval", None)]

    ran = jobmon("watch", "--interval", "0.1", "--json", *conf)
    assert (ran.code, ran.err) == (0, "")
    events = ran.events()
    keys = ("kind", "type", "id", "host", "description", "from", "to", "terminal", "outcome", "detail")

    def of(job_id: str) -> list[dict[str, object]]:
        return [{k: e[k] for k in keys} for e in events if e["id"] == job_id]

    def state(job_id: str, desc: str, before: str | None, after: str, outcome: str | None, detail: str) -> dict:
        return {"kind": "state", "type": "k8s", "id": job_id, "host": "", "description": desc, "from": before,
                "to": after, "terminal": outcome is not None, "outcome": outcome, "detail": detail}

    assert of("train-1") == [
        state("train-1", "train", None, "PENDING", None, "in ml"),
        state("train-1", "train", "PENDING", "RUNNING", None, "in ml"),
        state("train-1", "train", "RUNNING", "SUCCEEDED", "success", "in ml"),
    ]
    assert of("bad-eval") == [
        state("bad-eval", "eval", None, "PENDING", None, "in default"),
        state("bad-eval", "eval", "PENDING", "RUNNING", None, "in default"),
        state("bad-eval", "eval", "RUNNING", "FAILED", "failure", "BackoffLimitExceeded"),
    ]
    assert events[-1]["kind"] == "summary"
    assert events[-1]["detail"] == "2 jobs: 1 completed, 1 failed"
    assert len(events) == 7

    assert home.jobs() == []
    assert sorted((h["id"], h["last_status"], h["outcome"]) for h in home.history()) == [
        ("bad-eval", "FAILED", "failure"), ("train-1", "SUCCEEDED", "success")]
    calls = {json.dumps(json.loads(c.split(" ", 1)[1])) for c in fakebin.calls("kubectl ")}
    assert calls == {
        json.dumps(["get", "job", "train-1", "--namespace", "ml", "-o", "jsonpath={.status.phase} {.status.reason}"]),
        json.dumps(["get", "job", "bad-eval", "--namespace", "default", "-o", "jsonpath={.status.phase} {.status.reason}"]),
    }


def test_a_new_type_in_a_config_folder(home: Home, tmp_path: Path) -> None:
    checkers = write(tmp_path / "conf" / "checkers.d" / "k8s.yaml", K8S_TYPE)
    ran = jobmon("check", "--config", str(tmp_path / "conf"))
    assert (ran.code, ran.err) == (0, "")
    assert ran.out == f"config OK: 6 job types, 0 clusters, from {', '.join(PACKAGED_NAMES)}, {checkers}\n"


def test_an_override_of_a_misspelled_type_suggests_the_real_one(home: Home, tmp_path: Path) -> None:
    conf = tmp_path / "slrum.yaml"
    conf.write_text("types:\n  slrum:\n    interval: 5\n")
    ran = jobmon("check", "--config", str(conf))
    assert (ran.code, ran.err) == (
        2, f"jobmon: {conf}: slrum: unknown job type 'slrum' (did you mean 'slurm'?): a new job type needs check and states\n")


def test_a_pattern_group_may_not_shadow_a_template_name(home: Home, tmp_path: Path) -> None:
    conf = tmp_path / "diag.yaml"
    conf.write_text("types:\n  slurm:\n    diagnosis:\n      - {regex: 'ERR (?P<match>\\w+)', text: 'got {{ match }}'}\n")
    ran = jobmon("check", "--config", str(conf), *home.args())
    assert (ran.code, ran.err) == (2, f"jobmon: {conf}: slurm.diagnosis.0.regex: (?P<match>…) is a name the "
                                      "text template already has; rename the group\n")


# ---------------------------------------------------------------- resolve and delegate.during

@pytest.mark.parametrize(("text", "message"), [
    pytest.param("""
        nel:
          delegate: {during: [SUCCESS]}
    """, "{f}: nel.delegate.during: 'SUCCESS' is under states.success: list states a job waits in", id="during-terminal"),
    pytest.param("""
        nel:
          delegate: {during: [WAITING]}
    """, "{f}: nel.delegate.during: 'WAITING' is not in states", id="during-unknown-state"),
    pytest.param("""
        nel:
          delegate: {confirm: [FAILED, PENDING]}
    """, "{f}: nel.delegate.confirm: 'PENDING' is also under delegate.during", id="confirm-and-during"),
    pytest.param("""
        nel:
          delegate: {confirm: [FAILED, RUNNING], during: [RUNNING]}
    """, "{f}: nel.delegate.during: 'RUNNING' is also under delegate.confirm", id="during-and-confirm"),
    pytest.param("""
        nel:
          delegate: {during: PENDING}
    """, "{f}: nel.delegate.during: expected a list, found the string 'PENDING'", id="during-not-a-list"),
    pytest.param("""
        nel:
          resolve: {when: '[0-9a-f'}
    """, "{f}: nel.resolve.when: bad regex: unterminated character set at position 0", id="resolve-bad-when"),
    pytest.param("""
        nel:
          resolve: {command: 'nel status {{ invocation }}'}
    """, "{f}: nel.resolve.command: unknown variable invocation (known: description, file, host, id, ssh, "
         "submitted, type, user)", id="resolve-unknown-variable"),
    pytest.param("""
        nel:
          resolve: {comand: nel status}
    """, "{f}: nel.resolve.comand: unknown key (did you mean 'command'?)", id="resolve-misspelled-key"),
    pytest.param("""
        nel:
          resolve: {command: ''}
    """, "{f}: nel.resolve.command: missing: the command whose output names the full id", id="resolve-empty-command"),
])
def test_resolve_and_during_errors_are_one_exact_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "checkers.d" / "x.yaml", text)
    assert load_error(path) == message.replace("{f}", str(path))


def test_resolve_needs_a_check_that_names_ids(tmp_path: Path) -> None:
    # NEW_TYPE's check is one job's command: its output says a state, never whose
    path = write(tmp_path / "checkers.d" / "k8s.yaml", NEW_TYPE + "  resolve: {command: 'kubectl get job {{ id }}'}\n")
    assert load_error(path) == (f"{path}: k8s.resolve: the check's output names no ids: give check.json, "
                                "or a check regex with an (?P<id>…) group")


def test_the_packaged_nel_type_resolves_prefixes_and_waits_out_its_pending(packaged: config.Config) -> None:
    nel = packaged.types["nel"]
    assert nel.resolve is not None and nel.resolve.when is not None
    assert [i for i in ("4aa7", "4aa7.1", "4aa78841c0de5eed", "4aa78841c0de5eed.1") if nel.resolve.when.fullmatch(i)] == [
        "4aa7", "4aa7.1"]
    assert nel.delegate is not None and (nel.delegate.confirm, nel.delegate.during) == ({"FAILED"}, {"PENDING"})


# ---------------------------------------------------------------- config that cannot be run (issue 12)


@pytest.mark.parametrize("name,text,message", [
    pytest.param("monitor.yaml", "settings:\n  timeout: .nan\n",
                 "{f}: settings.timeout: expected a finite number, found the number nan", id="nan-timeout"),
    pytest.param("monitor.yaml", "settings:\n  interval: .inf\n",
                 "{f}: settings.interval: expected a finite number, found the number inf", id="inf-interval"),
    pytest.param("checkers.d/x.yaml", "slurm:\n  timeout: -.inf\n",
                 "{f}: slurm.timeout: expected a finite number, found the number -inf", id="minus-inf-type"),
    pytest.param("monitor.yaml", "clusters:\n  eos:\n    hosts: [eos]\n    settings: {action_timeout: .NaN}\n",
                 "{f}: clusters.eos.settings.action_timeout: expected a finite number, found the number nan",
                 id="nan-in-cluster"),
])
def test_nan_and_inf_are_refused(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path / name, text)
    assert load_error(path) == message.replace("{f}", str(path))


CYCLE = """
    a:
      description: asks b
      check: {command: "echo {{ id }} RUNNING", regex: '(?P<state>[A-Z]+)'}
      states: {running: [RUNNING], success: [DONE], failure: [FAILED]}
      delegate: {type: b, id: "{{ id }}", success: DONE, failure: FAILED, confirm: [FAILED]}
    b:
      description: asks a
      check: {command: "echo {{ id }} RUNNING", regex: '(?P<state>[A-Z]+)'}
      states: {running: [RUNNING], success: [DONE], failure: [FAILED]}
      delegate: {type: a, id: "{{ id }}", success: DONE, failure: FAILED, confirm: [FAILED]}
"""


def test_a_delegate_cycle_is_refused_at_load(tmp_path: Path) -> None:
    path = write(tmp_path / "checkers.d" / "x.yaml", CYCLE)
    assert load_error(path) == f"{path}: b.delegate.type: delegates in a cycle: b -> a -> b"


def test_a_cycle_made_by_a_cluster_override_is_refused_at_load(tmp_path: Path) -> None:
    types = write(tmp_path / "checkers.d" / "x.yaml", CYCLE.replace("      delegate: {type: a, id: \"{{ id }}\", success: DONE, failure: FAILED, confirm: [FAILED]}\n", ""))
    clusters = write(tmp_path / "monitor.yaml", """
        clusters:
          eos:
            hosts: [eos]
            types:
              b: {delegate: {type: a, id: "{{ id }}", success: DONE, failure: FAILED, confirm: [FAILED]}}
    """)
    assert load_error(types, clusters) == f"{clusters}: clusters.eos.types.b.delegate.type: delegates in a cycle: b -> a -> b"


def test_jobmon_check_refuses_a_delegate_cycle_instead_of_recursing(home: Home, tmp_path: Path) -> None:
    path = write(tmp_path / "cyc" / "checkers.d" / "x.yaml", CYCLE)
    ran = jobmon("check", "--config", str(path.parent.parent), *home.args())
    assert (ran.code, ran.err.splitlines()) == (2, [f"jobmon: {path}: b.delegate.type: delegates in a cycle: b -> a -> b"])


def test_every_shipped_ssh_call_ends_its_options_before_the_host() -> None:
    # a host that slipped past every check would still be a host name to ssh, never an option
    sources = [p for p in PACKAGED if p.suffix == ".yaml"]
    calls = [(p.name, m.group(0)) for p in sources for m in re.finditer(r"\{\{ ssh \}\}.{0,40}", p.read_text())]
    assert len(calls) >= 4
    assert [c for c in calls if not re.match(r"\{\{ ssh \}\} -- \{\{ (host|[a-z_]+_host) \}\}", c[1])] == []


# ---------------------------------------------------------------- trust: config found, not named (issue 12)
# A ./monitor.yaml or $JOBMON_CONFIG declares commands: one someone else could have written is
# skipped with one line, as git's safe.directory does. A --config named on the command line is
# trusted: the user chose it.

NOBODY_UID = 65534


@pytest.fixture
def open_folder():  # type: ignore[no-untyped-def]
    """A world-writable folder outside pytest's private tmp (a shared project folder)."""
    import os

    if os.geteuid() != 0:
        pytest.skip("a file of a second uid needs root (chown)")
    yield from folder_in_tmp(0o777)


def planted(path: Path, text: str, *, uid: int = NOBODY_UID, mode: int = 0o644) -> Path:
    import os

    write(path, text)
    os.chown(path, uid, uid)
    path.chmod(mode)
    return path


def skipped_lines(err: str) -> list[str]:
    """The warnings about skipped config files, without their time."""
    return [ln.split(" ", 2)[2] for ln in err.splitlines() if " WARNING " in ln]


def test_a_monitor_yaml_of_another_user_in_the_current_folder_never_runs(
        home: Home, open_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import add

    marker = tmp_path / "ran"
    evil = planted(open_folder / "monitor.yaml", f'types: {{local: {{check: {{command: "touch {marker}; echo RUNNING"}}}}}}\n')
    add(home, Job(type="local", id="999999999"))
    monkeypatch.chdir(open_folder)
    why = f"{evil}: skipped: not owned by you or root but by nobody (uid {NOBODY_UID})"
    status = jobmon("status", *home.args())
    assert status.code == 0 and not marker.exists()
    assert skipped_lines(status.err) == [why]
    check = jobmon("check", *home.args())
    assert check.code == 0 and str(evil) not in check.out
    assert skipped_lines(check.err) == [why]


def test_a_group_or_world_writable_config_is_skipped_even_if_yours(home: Home, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    mine = planted(tmp_path / "mine.yaml", "settings: {interval: 5}\n", uid=os.geteuid(), mode=0o664)
    monkeypatch.setenv("JOBMON_CONFIG", str(mine))
    ran = jobmon("check", *home.args())
    assert ran.code == 0 and str(mine) not in ran.out
    assert skipped_lines(ran.err) == [f"{mine}: skipped: writable by group/others (mode 0664); chmod go-w to use it"]
    mine.chmod(0o644)
    ran = jobmon("check", *home.args())
    assert ran.code == 0 and str(mine) in ran.out and skipped_lines(ran.err) == []


def test_a_config_folder_skips_the_files_of_another_user_and_keeps_yours(home: Home, open_folder: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    layer = open_folder / "conf"
    layer.mkdir()
    (layer / "checkers.d").mkdir()
    ok = planted(layer / "checkers.d" / "ok.yaml", "slurm: {interval: 7}\n", uid=os.geteuid())
    evil = planted(layer / "checkers.d" / "evil.yaml", "slurm: {interval: 9}\n")
    monkeypatch.setenv("JOBMON_CONFIG", str(layer))
    ran = jobmon("check", *home.args())
    assert ran.code == 0 and str(ok) in ran.out and str(evil) not in ran.out
    assert skipped_lines(ran.err) == [f"{evil}: skipped: not owned by you or root but by nobody (uid {NOBODY_UID})"]
    layer.chmod(0o777)  # the folder itself: anyone could put a file of their own in it
    ran = jobmon("check", *home.args())
    assert ran.code == 0 and str(ok) not in ran.out
    assert skipped_lines(ran.err) == [f"{layer}: skipped: writable by group/others (mode 0777); chmod go-w to use it"]


def test_a_config_named_on_the_command_line_is_trusted(home: Home, tmp_path: Path) -> None:
    named = write(tmp_path / "named.yaml", "settings: {interval: 5}\n")
    named.chmod(0o666)
    ran = jobmon("check", "--config", str(named), *home.args())
    assert ran.code == 0 and str(named) in ran.out and skipped_lines(ran.err) == []


def test_an_open_checkers_folder_is_said_once_and_all_its_files_skipped(home: Home, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    layer = tmp_path / "conf"
    for name in ("a", "b"):
        write(layer / "checkers.d" / f"{name}.yaml", "slurm: {interval: 7}\n")
    (layer / "checkers.d").chmod(0o777)
    monkeypatch.setenv("JOBMON_CONFIG", str(layer))
    ran = jobmon("check", *home.args())
    assert ran.code == 0 and str(layer) not in ran.out
    assert skipped_lines(ran.err) == [f"{layer / 'checkers.d'}: skipped: writable by group/others (mode 0777); "
                                      "chmod go-w to use it"]


def test_a_batched_action_cannot_use_progress_which_only_a_check_is_given(tmp_path: Path) -> None:
    # an action that named it loaded, then failed with UndefinedError at a job's end
    path = write(tmp_path / "checkers.d" / "x.yaml", """
        slurm:
          on_failure: {batch: "echo {{ progress }} {{ ids | join(' ') }}"}
    """)
    assert load_error(path) == (f"{path}: slurm.on_failure.batch: unknown variable progress (known: end_awk, end_fields, "
                                "follow_log, health_path, host, ids, jobs, marker, ssh, type, user, window)")


def test_a_type_that_extends_another_adds_to_its_events_and_replaces_one_of_the_same_name(tmp_path: Path) -> None:
    path = tmp_path / "checkers.d" / "k.yaml"
    path.parent.mkdir()
    path.write_text("""
k:
  extends: slurm
  description: slurm, and a line of the job's log
  vars: {follow_log: "1"}
  events:
    - {name: NEVER_STARTS, field: reason, regex: '^Never$'}
    - {name: UP, regex: 'up on (?P<url>\\S+)'}
  diagnosis: [{name: mine, regex: 'boom'}]
slurm:
  notify: ["json://127.0.0.1:1/slurm-only"]
""")
    cfg = config.from_files([*PACKAGED, path])
    k, slurm = cfg.types["k"], cfg.types["slurm"]
    assert [p.name for p in k.events] == ["NEVER_STARTS", "UP"] and k.events[0].regex.pattern == "^Never$"
    assert [p.name for p in slurm.events] == ["NEVER_STARTS"]  # the base is left as it was
    assert [p.name for p in k.diagnosis] == ["mine", *(p.name for p in slurm.diagnosis)]  # its own causes first
    assert k.check.source == slurm.check.source and k.description == "slurm, and a line of the job's log"
    assert cfg.notify_targets("k") == () and len(cfg.notify_targets("slurm")) == 1  # who is told is not inherited
