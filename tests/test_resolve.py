"""jobmon/resolve.py: a type's `resolve` at `jobmon add`, on a type whose check reads lines (the
nel type, which reads JSON, is tested on nel's real captures in test_checkers_nel.py)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import FakeBin
from jobmon import config, resolve
from jobmon.registry import Job

# `lookup` lists the runs it knows, one "<name> <state>" line each, whatever it is asked.
RUNS_TYPE = """\
types:
  runs:
    fields:
      id: {pattern: '[a-z][a-z0-9-]{1,30}'}
    check:
      batch: lookup {{ ids | join(' ') }}
      regex: '^(?P<id>\\S+) (?P<state>\\S+)$'
    resolve:
      when: '[a-z]{2,4}'
      command: lookup {{ id }}
    states:
      missing: [UNKNOWN]
      running: [RUNNING]
      success: [DONE]
      failure: [FAILED]
"""


@pytest.fixture
def runs(tmp_path: Path, fakebin: FakeBin, monkeypatch: pytest.MonkeyPatch) -> config.Config:
    fakebin.add("lookup", '#!/bin/sh\necho "lookup $*" >> "$FAKE_LOG"\nprintf "%b" "$LOOKUP_SAYS"\n'
                          'exit "${LOOKUP_EXIT:-0}"\n')
    layer = tmp_path / "runs.yaml"
    layer.write_text(textwrap.dedent(RUNS_TYPE))
    return config.load(str(layer), env={})


def says(monkeypatch: pytest.MonkeyPatch, text: str, code: int = 0) -> None:
    monkeypatch.setenv("LOOKUP_SAYS", text)
    monkeypatch.setenv("LOOKUP_EXIT", str(code))


def test_the_one_id_a_short_one_abbreviates_is_registered(runs: config.Config, fakebin: FakeBin,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    says(monkeypatch, "train-7 RUNNING\\neval-2 DONE\\n")
    assert resolve.resolve(runs, Job("runs", "tra")) == ("train-7", "runs tra resolved to train-7")
    assert fakebin.calls("lookup") == ["lookup tra"]


def test_an_id_when_does_not_match_is_never_looked_up(runs: config.Config, fakebin: FakeBin,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    says(monkeypatch, "train-7 RUNNING\\n")
    assert resolve.resolve(runs, Job("runs", "train")) == ("train", None)
    assert fakebin.calls("lookup") == []


@pytest.mark.parametrize(("output", "code", "why"), [
    ("train-7 RUNNING\\ntrain-8 DONE\\n", 0, "it abbreviates 2 jobs: train-7, train-8"),
    ("train-7 UNKNOWN\\n", 0, "runs knows no job it abbreviates"),   # its missing state names nothing
    ("eval-2 DONE\\n", 0, "runs knows no job it abbreviates"),
    ("train-7 RUNNING\\n", 3, "resolving it failed: exit 3"),
    ("trainONE RUNNING\\n", 0, "it resolved to 'trainONE', which the type refuses"),
])
def test_an_id_that_cannot_be_resolved_is_kept_with_one_line(runs: config.Config, monkeypatch: pytest.MonkeyPatch,
                                                             output: str, code: int, why: str) -> None:
    says(monkeypatch, output, code)
    assert resolve.resolve(runs, Job("runs", "tra")) == ("tra", f"runs tra kept as given: {why}")


def test_the_same_id_back_is_nothing_to_say(runs: config.Config, monkeypatch: pytest.MonkeyPatch) -> None:
    says(monkeypatch, "tra RUNNING\\n")
    assert resolve.resolve(runs, Job("runs", "tra")) == ("tra", None)


def test_a_type_without_resolve_keeps_every_id(runs: config.Config, fakebin: FakeBin) -> None:
    assert resolve.resolve(runs, Job("slurm", "12", host="c")) == ("12", None)
    assert fakebin.calls() == []


def test_json_nested_deeper_than_the_parser_is_bad_output_not_a_crash() -> None:
    # a check's output is not trusted: "[" * 100000 is a failed check (one line), never a RecursionError
    from jobmon import rules

    nel = config.load(env={}).types["nel"]
    deep = "[" * 100000 + "]" * 100000
    for read in (lambda: resolve.ids_in(deep, nel), lambda: rules.parse_json(deep, nel, ["4aa7"])):
        with pytest.raises(ValueError, match=r"^output is not JSON \(nested too deeply\)$"):
            read()
