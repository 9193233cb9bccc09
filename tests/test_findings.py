"""Metrics with formulas (``values``): Jinja2 expressions over a regex's groups, computed at a
job's end, each left out when the scheduler's words cannot give it; and the filters they use."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jobmon import config, findings, template
from jobmon.config import ConfigError

PACKAGED = [config.packaged_dir() / name for name in ("monitor.yaml", "checkers.d/launcher.yaml", "checkers.d/local.yaml",
                                                      "checkers.d/nel.yaml", "checkers.d/slurm.yaml")]

TYPE = """\
k8s:
  check: {command: "kubectl get job {{ id }}", regex: '(?P<state>[A-Z]+)'}
  states: {running: [RUNNING], success: [SUCCEEDED], failure: [FAILED]}
  metrics:
    - name: usage
      regex: '^usage (?P<used>\\S*) of (?P<asked>\\S*) in (?P<took>\\S*)$'
      values:
        used_b: "used | bytes"
        asked_b: "asked | bytes"
        pct: "(used_b * 100 / asked_b) | round(1)"
        took_s: "took | seconds"
      text: "{{ '%.0f%% of %s' % (pct, asked_b | size) if pct is not none else 'no figure' }}, {{ took_s | hms }}"
"""


def load(tmp_path: Path, text: str = TYPE) -> config.Config:
    path = tmp_path / "checkers.d" / "k8s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return config.from_files([*PACKAGED, path])


def test_values_are_computed_in_order_and_said_and_kept_structured(tmp_path: Path) -> None:
    patterns = load(tmp_path).types["k8s"].metrics
    (found,) = findings.metrics("noise\nusage 2.5G of 64G in 1-02:00:00\n", patterns)
    assert found == findings.Found("4% of 64G, 1-02:00:00", True, {
        "used_b": 2.5 * 2**30, "asked_b": 64 * 2**30, "pct": 3.9, "took_s": 93600.0})


def test_a_value_the_words_cannot_give_is_left_out_with_all_that_needs_it(tmp_path: Path) -> None:
    patterns = load(tmp_path).types["k8s"].metrics
    (found,) = findings.metrics("usage 2.5G of UNLIMITED in 00:10\n", patterns)
    assert found.values == {"used_b": 2.5 * 2**30, "took_s": 10.0}  # no asked_b, so no pct
    assert found.text == "no figure, 00:00:10"


def test_a_text_that_renders_empty_says_nothing(tmp_path: Path) -> None:
    cfg = load(tmp_path, TYPE.replace("text: \"{{ '%.0f%%", "text: \"{{ '' if pct is none else '%.0f%%").replace(
        ", {{ took_s | hms }}\"", "\""))
    assert findings.metrics("usage x of y in z\n", cfg.types["k8s"].metrics) == []


@pytest.mark.parametrize(("old", "new", "message"), [
    ('pct: "(used_b', 'pct: "(nosuch', "k8s.metrics.0.values.pct: unknown variable nosuch (known: asked, asked_b, line, "
                                      "match, took, used, used_b)"),
    ('pct: "(used_b * 100 / asked_b) | round(1)"', 'pct: "used_b *"', "k8s.metrics.0.values.pct: expression syntax error: "
                                                                      "unexpected 'end of template'"),
    ("used_b:", "used:", "k8s.metrics.0.values.used: must be a new name (letters, digits, _), not a group of the regex"),
    ('pct: "(used_b * 100 / asked_b) | round(1)"', "pct: 3", "k8s.metrics.0.values.pct: expected a string, found the number 3"),
    ("      values:", "      failure: yes\n      values:", None),
])
def test_a_bad_value_is_one_line_naming_it(tmp_path: Path, old: str, new: str, message: str | None) -> None:
    assert old in TYPE
    if message is None:
        assert load(tmp_path, TYPE.replace(old, new, 1)).types["k8s"].metrics[0].failure
        return
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, TYPE.replace(old, new, 1))
    assert str(exc.value) == f"{tmp_path / 'checkers.d' / 'k8s.yaml'}: {message}"


@pytest.mark.parametrize(("extra", "message"), [
    ("  events:\n    - {name: e, regex: x, values: {a: '1'}}\n", "k8s.events.0.values: only for metrics"),
    ("    - {name: p, path: a.b, values: {a: '1'}}\n",
     "k8s.metrics.1.values: only for a metric with a regex: its groups are what the values use"),
])
def test_values_belong_to_metrics_with_a_regex_only(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, TYPE + extra)
    assert str(exc.value) == f"{tmp_path / 'checkers.d' / 'k8s.yaml'}: {message}"


@pytest.mark.parametrize(("name", "given", "expected"), [
    ("seconds", "1-02:03:04", 93784.0), ("seconds", "02:41:07", 9667.0), ("seconds", "00:37.407", 37.407),
    ("seconds", "12", 12.0), ("hms", 9667, "02:41:07"), ("hms", 93784.4, "1-02:03:04"), ("hms", 0, "00:00:00"),
    ("bytes", "139156K", 139156 * 1024.0), ("bytes", "64G", 64.0 * 2**30),
    ("bytes", "512", 512.0), ("size", 64 * 2**30, "64G"), ("size", 2.5 * 2**30, "2.5G"), ("size", 300 * 2**20, "300M"),
    ("size", 100, "100"), ("number", "8", 8), ("number", "2.5", 2.5),
    ("epoch", "2026-12-01T22:54:09", 1796165649.0), ("epoch", "1796171608", 1796171608.0),  # SLURM_TIME_FORMAT=%s
    ("pairs", "billing=2,cpu=2,gres/gpu=8,node=1", {"billing": "2", "cpu": "2", "gres/gpu": "8", "node": "1"}),
    ("pairs", "", {}),
])
def test_the_measuring_filters(name: str, given: object, expected: object) -> None:
    assert template.MEASURES[name](given) == expected


@pytest.mark.parametrize(("name", "given"), [
    ("seconds", "Unknown"), ("seconds", ""), ("hms", -1), ("bytes", ""), ("bytes", "lots"), ("number", "UNLIMITED"),
    ("number", ""), ("epoch", "Unknown"), ("epoch", "None"),  # Start, pending or cancelled unstarted, under %s
    ("bytes", "4000Mc"), ("bytes", "4000Mn"),  # an older ReqMem per CPU or per node: not the job's total
])
def test_a_filter_refuses_what_it_cannot_read_rather_than_guess(name: str, given: object) -> None:
    with pytest.raises(ValueError):
        template.MEASURES[name](given)


def test_only_plain_values_are_kept_for_history(tmp_path: Path) -> None:
    text = TYPE.replace('        took_s: "took | seconds"\n', '        took_s: "took | seconds"\n'
                        '        parts: "asked | pairs"\n        forever: "used_b * 1e308"\n')
    metrics = load(tmp_path, text).types["k8s"].metrics
    assert [n for n, _ in metrics[0].values][-2:] == ["parts", "forever"]
    (found,) = findings.metrics("usage 1K of 2K in 00:01\n", metrics)
    assert sorted(found.values) == ["asked_b", "pct", "took_s", "used_b"]  # no mapping, no infinity
