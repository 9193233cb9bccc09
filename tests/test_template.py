"""Templates: every substituted value reaches the shell as one literal word, locally and over ssh.

Rendered commands really run through ``bash -c`` (``jobmon.run.run``), and the remote ones go
through the fake ``ssh`` of conftest, which hands its remote words to a second ``bash -c`` like
sshd does: the command prints the value back, and a marker the value would create if any shell
executed it must never appear.
"""
from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobmon import config, plan, run, template
from jobmon.registry import Job
from jobmon.template import Shell

# ---------------------------------------------------------------- finalize and the environments


def shell(source: str, **values: object) -> str:
    return template.render(template.compile_template(source, list(values), shell=True), values)


def test_finalize_quotes_strings_numbers_lists_and_none() -> None:
    out = shell("cmd {{ s }} {{ n }} {{ f }} {{ l }} {{ none }} {{ empty }} {{ safe }}",
                s="two words", n=3, f=1.5, l=["p q", "r", 7, "it's"], none=None, empty="", safe="plain")
    assert out == """cmd 'two words' 3 1.5 'p q' r 7 'it'"'"'s' '' '' plain"""


def test_an_empty_list_renders_as_no_words() -> None:
    assert shell("cmd {{ l }} end", l=[]) == "cmd  end"


def test_filter_results_are_quoted_once_as_a_whole() -> None:
    assert shell("sacct -j {{ ids | join(',') }}", ids=["1", "2 3", "$(x)"]) == "sacct -j '1,2 3,$(x)'"


def test_shell_values_pass_through_unquoted() -> None:
    assert shell("{{ ssh }} host {{ pipe }} {{ word }}",
                 ssh=template.words(["ssh", "-o", "ProxyJump=a b"]), pipe=Shell("| wc -l"),
                 word="| wc -l") == "ssh -o 'ProxyJump=a b' host | wc -l '| wc -l'"


def test_words_quotes_each_word() -> None:
    assert template.words(["ssh", "-o", "BatchMode=yes", "it's", ""]) == """ssh -o BatchMode=yes 'it'"'"'s' ''"""
    assert isinstance(template.words(["ssh"]), Shell)


def test_remote_block_quotes_its_rendered_body_once_more() -> None:
    out = shell("{{ ssh }} h {% remote %}  printf %s {{ v }}  {% endremote %}", ssh=Shell("ssh"), v="it's")
    assert out == """ssh h 'printf %s '"'"'it'"'"'"'"'"'"'"'"'s'"'"''"""


def test_text_templates_are_not_quoted() -> None:
    tpl = template.compile_template("exit {{ code }}, {{ l }}, [{{ none }}]", ["code", "l", "none"], shell=False)
    assert template.render(tpl, {"code": "1 $(x)", "l": ["a", "b"], "none": None}) == "exit 1 $(x), a, b, []"


def test_text_templates_have_no_remote_block() -> None:
    with pytest.raises(template.TemplateError) as exc:
        template.compile_template("{% remote %}x{% endremote %}", [], shell=False)
    assert str(exc.value) == "template syntax error on line 1: Encountered unknown tag 'remote'."


def test_strict_undefined_raises_for_an_unknown_variable_at_render() -> None:
    tpl = template.shell_env().from_string("echo {{ nope }}")
    with pytest.raises(jinja2.UndefinedError, match="'nope' is undefined"):
        tpl.render({})


def test_a_compiled_template_still_raises_when_a_known_variable_is_not_given() -> None:
    tpl = template.compile_template("echo {{ file }}", ["file"], shell=True)
    with pytest.raises(jinja2.UndefinedError, match="'file' is undefined"):
        template.render(tpl, {})


def test_compile_template_rejects_unknown_variables() -> None:
    with pytest.raises(template.TemplateError) as exc:
        template.compile_template("echo {{ idd }} {{ zz }} {{ id }}", ["id", "host"], shell=True)
    assert str(exc.value) == "unknown variable idd, zz (known: host, id)"


def test_compile_template_accepts_variables_it_sets_itself() -> None:
    tpl = template.compile_template("{% for i in ids %}{% set x = i %}{{ x }} {% endfor %}", ["ids"], shell=True)
    assert template.render(tpl, {"ids": ["a b", "c"]}) == "'a b' c"


@pytest.mark.parametrize(("source", "message"), [
    ("echo {{ id ", "template syntax error on line 1: unexpected end of template, expected 'end of print statement'."),
    ("echo\n{% if %}x{% endif %}", "template syntax error on line 2: Expected an expression, got 'end of statement block'"),
    ("{% remote %}echo", "template syntax error on line 1: Unexpected end of template. Jinja was looking for the "
                         "following tags: 'endremote'. The innermost block that needs to be closed is 'remote'."),
])
def test_compile_template_reports_syntax_errors_on_one_line(source: str, message: str) -> None:
    with pytest.raises(template.TemplateError) as exc:
        template.compile_template(source, ["id"], shell=True)
    assert str(exc.value) == message
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------- hostile values, really executed

# Each "{m}" becomes the marker's absolute path: the file exists only if a shell ran the value.
HOSTILE = [
    "; touch {m}",
    "$(touch {m})",
    "`touch {m}`",
    "'; touch {m}; '",
    '"; touch {m}; "',
    "\"$(touch {m})\"",
    "'$(touch {m})'",
    "| touch {m}",
    "&& touch {m}",
    "& touch {m} &",
    "> {m}",
    ">> {m}",
    "< {m}",
    "x\ntouch {m}",
    "x\rtouch {m}",
    "$(touch {m}) ; `touch {m}` | touch {m} & touch {m} > {m} < {m}",
    "'\"'\"'$(touch {m})'\"'\"'",
    "\\'; touch {m}; echo \\'",
    "${{IFS}}touch${{IFS}}{m}",
    "<(touch {m})",
    "$'\\x41'; touch {m}",
    "*",
    "?",
    "[a-z]*",
    "~",
    "~root",
    "$HOME",
    "${HOME}",
    "!!",
    "#not a comment",
    "-n",
    "--",
    "-e \\n",
    "%s %d %%",
    "\\",
    "\\n",
    "",
    " ",
    "  two  spaces  ",
    "\ttab\t",
    "\n",
    "a\n\nb\n",
    "{{ host }}",
    "{% remote %}",
    "日本語 ünïcødé ελληνικά 🚀 \u200b\u202e",
    "é' $(touch {m}) '",
    "\x01\x02\x7f\x1b[31mred",
    "x" * 20_000,
    ("$(touch {m})'\";|&<> " * 500),
]


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The marker path; the working directory holds a decoy file so that an expanded glob shows."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "decoy").write_text("")
    monkeypatch.chdir(work)
    return tmp_path / "MARKER"


def hostile(marker: Path) -> list[str]:
    return [v.format(m=marker) if "{m}" in v else v for v in HOSTILE]


def printed(values: list[str]) -> str:
    """What ``printf '%s\\n' WORDS...`` prints: each word on its line, or one empty line."""
    return "".join(v + "\n" for v in values) or "\n"


def execute(command: str) -> str:
    """Run shell text as the watcher does (``bash -c`` through ``run.run``); return its stdout."""
    result = run.run(command, timeout=30)
    assert result.ok, (command[:300], result.why())
    return result.stdout


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_a_hostile_value_is_one_literal_word_locally(marker: Path, index: int) -> None:
    value = hostile(marker)[index]
    out = execute(shell("printf '%s\\n' {{ v }}", v=value))
    assert out == value + "\n"
    assert not marker.exists()
    assert sorted(p.name for p in marker.parent.joinpath("work").iterdir()) == ["decoy"]


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_a_hostile_value_is_one_literal_word_on_the_remote_side(cluster, marker: Path, index: int) -> None:
    value = hostile(marker)[index]
    command = shell("{{ ssh }} {{ host }} {% remote %}printf '%s\\n' {{ v }}{% endremote %}",
                    ssh=template.words(["ssh", "-o", "BatchMode=yes"]), host="login-1", v=value)
    out = execute(command)
    assert out == value + "\n"
    assert not marker.exists()
    assert len(cluster.ssh_calls()) >= 1 and cluster.ssh_calls()[0].startswith("ssh login-1 printf ")


@pytest.mark.parametrize("name", ["ids", "hosts", "users", "paths"])
def test_a_list_of_hostile_values_is_one_word_each(cluster, marker: Path, name: str) -> None:
    values = hostile(marker)
    local = execute(shell(f"printf '%s\\n' {{{{ {name} }}}}", **{name: values}))
    assert local == printed(values)
    remote = execute(shell(f"{{{{ ssh }}}} h {{% remote %}}printf '%s\\n' {{{{ {name} }}}}{{% endremote %}}",
                           ssh=Shell("ssh"), **{name: values}))
    assert remote == printed(values)
    assert not marker.exists()


def test_an_empty_list_prints_nothing_but_the_newline(cluster) -> None:
    assert execute(shell("printf '%s\\n' {{ v }}", v=[])) == "\n"
    assert execute(shell("ssh h {% remote %}printf '%s\\n' {{ v }}{% endremote %}", v=[])) == "\n"


def test_a_value_used_twice_in_one_remote_command_stays_literal(cluster, marker: Path) -> None:
    value = f"a'b $(touch {marker}) \"c\""
    out = execute(shell("ssh h {% remote %}printf '%s|%s\\n' {{ v }} {{ v }}; printf '%s\\n' {{ w }}{% endremote %}",
                        v=value, w=[value, "x"]))
    assert out == f"{value}|{value}\n{value}\nx\n"
    assert not marker.exists()


def test_the_packaged_slurm_batch_check_passes_hostile_ids_to_sacct_as_one_word(cluster, marker: Path,
                                                                                 monkeypatch) -> None:
    # plan.vetted refuses these ids before any command is rendered; the quoting beneath holds alone
    monkeypatch.setattr(plan, "vetted", lambda jtype, values: values)
    cfg = config.from_files([config.packaged_dir() / "monitor.yaml", config.packaged_dir() / "checkers.d" / "slurm.yaml"])
    ids = ["123", f"$(touch {marker})", f"4;touch {marker}", "5 6"]
    jobs = [Job(type="slurm", id=i, host="login-1") for i in ids]
    [group] = plan.plan(jobs, cfg)
    cluster.set("123", "RUNNING")
    # sacct's row, then squeue's (none: no such job queued), then scontrol's (none known), then
    # the cluster's clock for the progress probe (no job runs yet: no log is looked at)
    said = execute(plan.command(group))
    assert said.startswith("123|123|RUNNING|0:0|0:0|00:00:01|2026-01-01T00:00:00\n\nclock|")
    assert said.split("clock|")[1].strip().isdigit()
    assert not marker.exists()
    [sacct] = cluster.sacct_calls()
    assert sacct == (f"sacct -j 123,$(touch {marker}),4;touch {marker},5 6 -X -n -P "
                     "--format=JobID,JobIDRaw,State,ExitCode,DerivedExitCode,Elapsed,Submit")
    assert cluster.fakebin.calls("squeue") == [f"squeue -h -j 123,$(touch {marker}),4;touch {marker},5 6 -o squeue|%i|%A|%T|%r|%N"]


def test_the_packaged_slurm_progress_probe_passes_hostile_log_paths_as_one_word(cluster, marker: Path,
                                                                             tmp_path: Path) -> None:
    # log paths come from scontrol (what the job's owner asked for): quoted like any value
    from jobmon.rules import Book

    cfg = config.from_files([config.packaged_dir() / "monitor.yaml", config.packaged_dir() / "checkers.d" / "slurm.yaml"])
    out = tmp_path / "out $(touch MARKER) `touch MARKER`;x *"  # run from work/: a MARKER there would show
    out.write_text("step 1\n")
    about_to_stall = {"mark": "m", "at": 3600.0, "since": 0.0}  # its check also brings its log's tail
    jobs = [Job(type="slurm", id=i, host="login-1", last_status="RUNNING",
                book=Book(captured={"stdout": str(out), "stderr": "/x;touch MARKER"}, progress=about_to_stall))
            for i in ("123", "124")]
    [group] = plan.plan(jobs, cfg)
    said = execute(plan.command(group))
    assert not marker.exists() and sorted(p.name for p in Path.cwd().iterdir()) == ["decoy"]
    size, mtime = out.stat().st_size, int(out.stat().st_mtime)
    assert [ln for ln in said.splitlines() if ln.startswith(("progress|", "last|"))] == [
        f"progress|123|{size}|{mtime}", f"progress|124|{size}|{mtime}", "last|123|step 1", "last|124|step 1"]


def test_the_packaged_local_check_reads_a_hostile_file_name_literally(marker: Path) -> None:
    cfg = config.from_files([config.packaged_dir() / "monitor.yaml", config.packaged_dir() / "checkers.d" / "local.yaml"])
    name = marker.parent / "exit $(touch MARKER); `touch MARKER` 'x' *"
    name.write_text("3\n")
    job = Job(type="local", id="999999999", fields={"file": str(name)})
    [group] = plan.plan([job], cfg)
    assert execute(plan.command(group)) == "EXITED 3\n"
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["decoy"]


def test_the_runner_returns_all_a_fast_command_printed() -> None:
    """A command that ends at once still comes back whole (sh's wait(timeout=) used to lose it)."""
    command = shell("printf '%s\\n' {{ v }}", v="$(not run) 'x'")
    outputs = [run.run(command, timeout=30).stdout for _ in range(100)]
    assert outputs == ["$(not run) 'x'\n"] * 100


# ---------------------------------------------------------------- property: any text at all

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=300)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=TEXT)
def test_any_text_is_printed_back_exactly_locally_and_over_ssh(cluster, marker: Path, value: str) -> None:
    assert execute(shell("printf '%s\\n' {{ v }}", v=value)) == value + "\n"
    remote = shell("{{ ssh }} {{ host }} {% remote %}printf '%s\\n' {{ v }}{% endremote %}",
                   ssh=template.words(["ssh", "-o", "BatchMode=yes"]), host="h", v=value)
    assert execute(remote) == value + "\n"
    assert sorted(p.name for p in marker.parent.joinpath("work").iterdir()) == ["decoy"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(TEXT, max_size=6))
def test_any_list_of_text_is_one_word_per_item_over_ssh(cluster, marker: Path, values: list[str]) -> None:
    remote = shell("ssh h {% remote %}printf '%s\\n' {{ v }}{% endremote %}", v=values)
    assert execute(remote) == printed(values)
    assert sorted(p.name for p in marker.parent.joinpath("work").iterdir()) == ["decoy"]


def test_signal_name_names_an_exit_codes_signal() -> None:
    from jobmon.template import compile_template, render

    t = compile_template("killed by signal {{ sig }} ({{ sig | signal_name }})", {"sig"}, shell=False)
    assert render(t, {"sig": "9"}) == "killed by signal 9 (SIGKILL)"
    assert render(t, {"sig": "15"}) == "killed by signal 15 (SIGTERM)"
    assert render(t, {"sig": "200"}) == "killed by signal 200 ()"  # no such signal: nothing made up
