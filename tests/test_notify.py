"""Notifications to people: sent through apprise to a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from loguru import logger

from jobmon import config, notify
from jobmon.eventlog import EventLog
from jobmon.events import Event, JobRef
from jobmon.registry import Job
from conftest import Cluster, Home, add, jobmon, make_watcher, wait_for


@pytest.fixture
def said() -> Iterator[list[str]]:
    """What jobmon logs at WARNING and above (stderr's lines), in this process."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m).rstrip("\n")), level="WARNING", format="{message}")
    yield lines
    logger.remove(sink)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(path: Path, text: str) -> config.Config:
    path.write_text(text)
    return config.load(str(path), env={})


def names(targets: tuple[notify.Target, ...]) -> list[str]:
    return [t.name.split(" (", 1)[1].rstrip(")") for t in targets]


# ---------------------------------------------------------------- config


def test_each_job_is_told_by_the_most_specific_list(home: Home, tmp_path: Path) -> None:
    cfg = load(tmp_path / "m.yaml", """
notify:
  - json://127.0.0.1:1/top
clusters:
  eos:
    hosts: ["eos*"]
    notify: [{url: "json://127.0.0.1:1/eos", on: [failure]}]
    types:
      nel:
        notify: [{url: "json://127.0.0.1:1/eos-nel"}]
types:
  launcher:
    notify: []
  slurm:
    notify:
      - {url: "ntfy://127.0.0.1:1/slurm", on: [failure, stalled, success], timeout: 3}
""")
    assert names(cfg.notify_targets("local", "login1")) == ["json://127.0.0.1:1/top"]
    assert names(cfg.notify_targets("local", "eos2")) == ["json://127.0.0.1:1/eos"]
    assert names(cfg.notify_targets("nel", "eos2")) == ["json://127.0.0.1:1/eos-nel"]
    assert names(cfg.notify_targets("slurm", "eos2")) == ["ntfy://127.0.0.1:1/slurm"]  # the type's own beats the cluster's
    assert cfg.notify_targets("launcher", "login1") == ()  # an empty list: nobody is told
    assert names(cfg.notify_targets("", "eos2")) == ["json://127.0.0.1:1/eos"]  # a host's UNREACHABLE line
    (top,) = cfg.notify_targets("local")
    assert (top.name, top.on, top.timeout) == (
        f"{tmp_path / 'm.yaml'}: notify.0 (json://127.0.0.1:1/top)",
        {"failure", "never_starts", "stalled", "unhealthy", "not_ready"}, 10.0)
    (slurm,) = cfg.notify_targets("slurm")
    assert (slurm.on, slurm.timeout) == ({"failure", "stalled", "success"}, 3.0)  # `on:` as people write it
    assert len(cfg.notify.every()) == 4


def test_no_notify_anywhere_tells_no_one(home: Home) -> None:
    cfg = config.load(env={})
    assert cfg.notify.every() == () and cfg.notifier(None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("file,text,error", [
    ("m.yaml", "notify: [{on: [failure]}]", "{f}: notify.0.url: missing: an apprise URL such as ntfy://my-topic"),
    ("m.yaml", "notify: [{url: x, on: [stalld]}]",
     "{f}: notify.0.on.0: unknown event kind 'stalld' (did you mean 'stalled'?)"),
    ("m.yaml", "notify: [{url: 'json://h/{{ token }}'}]", "{f}: notify.0.url: unknown variable token (known: env)"),
    ("m.yaml", "notify: [{url: x, timeout: 0}]", "{f}: notify.0.timeout: must be greater than 0 and at most 120 (seconds)"),
    ("m.yaml", "notify: [{url: x, timeout: 600}]", "{f}: notify.0.timeout: must be greater than 0 and at most 120 (seconds)"),
    ("m.yaml", "notify: ntfy://x", "{f}: notify: expected a list, found the string 'ntfy://x'"),
    ("m.yaml", "clusters: {eos: {hosts: [e], notify: [{url: x, on: [failure, sucess]}]}}",
     "{f}: clusters.eos.notify.0.on.1: unknown event kind 'sucess' (did you mean 'success'?)"),
    ("m.yaml", "types: {slurm: {notify: [{url: x, tagets: []}]}}",
     "{f}: types.slurm.notify.0.tagets: unknown key (valid: url, on, timeout)"),
    ("checkers.d/x.yaml", "slurm: {notify: [{url: x, on: [stalled, NEVER_START]}]}",
     "{f}: slurm.notify.0.on.1: unknown event kind 'NEVER_START' (did you mean 'never_starts'?)"),
], ids=["no-url", "unknown-kind", "unknown-variable", "zero-timeout", "long-timeout", "not-a-list", "cluster", "type-key", "type"])
def test_a_bad_notify_is_one_line_at_load(home: Home, tmp_path: Path, file: str, text: str, error: str) -> None:
    path = tmp_path / file
    path.parent.mkdir(exist_ok=True)
    with pytest.raises(config.ConfigError) as exc:
        load(path, text)
    assert str(exc.value) == error.format(f=path)


def test_a_type_s_own_key_events_are_kinds_a_target_may_want(home: Home, tmp_path: Path) -> None:
    cfg = load(tmp_path / "m.yaml", "notify: [{url: x, on: [NEVER_STARTS, unreachable, resumed, calibration]}]")
    assert cfg.notify.top[0].on == {"never_starts", "unreachable", "resumed", "calibration"}  # type: ignore[index]


def test_a_key_event_a_cluster_adds_to_a_type_is_a_kind_too(home: Home, tmp_path: Path) -> None:
    cfg = load(tmp_path / "m.yaml", """
clusters:
  eos:
    hosts: ["eos*"]
    types:
      slurm:
        events:
          - {name: XID_ERROR, regex: 'Xid (?P<xid>[0-9]+)'}
notify: [{url: "json://h/", on: [xid_error]}]
""")
    assert [t.on for t in cfg.notify.every()] == [{"xid_error"}]


def test_the_readme_example_loads(home: Home, tmp_path: Path) -> None:
    import re

    from conftest import REPO

    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
                if b.startswith("# ~/.config/jobmon/monitor.yaml\nnotify:")]
    cfg = load(tmp_path / "m.yaml", block)
    assert [(t.on, t.timeout) for t in cfg.notify_targets("slurm", "eos")] == [
        ({"failure", "stalled"}, 10.0), (set(notify.DEFAULT_ON), 10.0), ({"failure", "success"}, 20.0)]
    assert "{{ env.NTFY_TOKEN }}" in cfg.notify_targets("slurm")[1].name


# ---------------------------------------------------------------- which events, which message


def target(on: tuple[str, ...] = notify.DEFAULT_ON, url: str = "json://127.0.0.1:1/", timeout: float = 10) -> notify.Target:
    from jobmon import template

    return notify.Target(f"test ({url})", template.compile_template(url, ("env",), shell=False), frozenset(on), timeout,
                         url)


def told(tmp_path: Path, *targets: notify.Target, retry_after: float = 0) -> notify.Notifier:
    """A notifier reading a session's event log, started as a poller starts it."""
    from jobmon.eventlog import EventLog

    log = EventLog(tmp_path / "session" / "events.jsonl")
    notifier = notify.Notifier(targets, lambda e: targets, log, {}, retry_after=retry_after)
    notifier.start()
    return notifier


def logged(notifier: notify.Notifier, *events: Event) -> None:
    """Log these as a poller does, and wait until they are sent."""
    notifier.log.append(list(events))
    notifier.wake()
    notifier.drain()


def end(job: str, state: str, outcome: str) -> Event:
    return Event(kind="state", type="slurm", id=job, host="eos", before="RUNNING", after=state, terminal=True,
                 outcome=outcome, detail="exit 1:0")


def key(job: str, name: str) -> Event:
    return Event(kind="event", type="slurm", id=job, host="eos", before="RUNNING", after=name, detail="for 0:30:00")


def test_by_default_failures_never_starts_stalls_and_sick_servers_are_told_not_successes() -> None:
    events = [end("1", "FAILED", "failure"), end("2", "COMPLETED", "success"), key("3", "NEVER_STARTS"),
              key("4", "STALLED"), key("4", "RESUMED"), end("5", "LOST", "failure"),
              Event(kind="state", type="slurm", id="6", host="eos", before="PENDING", after="RUNNING"),
              key("7", "READY"), key("7", "UNHEALTHY"), key("7", "HEALTHY"), key("8", "NOT_READY")]
    default, both = target(), target(("success", "failure"))
    routed = notify.route(events, lambda e: (default, both))
    assert [(e.id, e.after) for e in routed[default.key]] == [  # a server that stopped answering or never came up
        ("1", "FAILED"), ("3", "NEVER_STARTS"), ("4", "STALLED"), ("5", "LOST"), ("7", "UNHEALTHY"), ("8", "NOT_READY")]
    assert [e.id for e in routed[both.key]] == ["1", "2", "5"]


def test_one_cycle_is_one_message_per_target_and_a_digest_of_stalls_is_heard() -> None:
    stalls = tuple(JobRef("slurm", str(i), "eos", "RUNNING", "STALLED") for i in range(6))
    digest = Event(kind="changes", detail="7 changes", jobs=stalls + (JobRef("slurm", "9", "eos", "PENDING", "RUNNING"),))
    one = target()
    chosen = notify.route([digest, end("8", "FAILED", "failure")], lambda e: (one,))
    (events,) = chosen.values()
    message = notify.compose(events)
    assert message.title == "jobmon: 7 events: 6 STALLED, 1 FAILED"
    assert message.level == "failure"  # the worst of them
    assert [line.split(" ", 1)[1] for line in message.body.splitlines()] == [  # the end first
        "slurm 8@eos: RUNNING -> FAILED (exit 1:0)", *(f"slurm {i}@eos: STALLED" for i in range(6))]


def test_a_flood_never_folds_an_end_into_its_more_line() -> None:
    stalls = [key(str(i), "STALLED") for i in range(40)]
    ends = [end(str(100 + i), "FAILED", "failure") for i in range(3)]
    part = Event(kind="event", type="slurm", id="12", host="eos", before="RUNNING", after="12_3 FAILED", detail="x")
    body = notify.compose(stalls + ends + [part]).body.splitlines()
    assert [line.split(" ", 2)[2].split(":")[0] for line in body[:4]] == ["100@eos", "101@eos", "102@eos", "12@eos"]
    assert len(body) == notify.MAX_LINES + 1 and body[-1] == f"+{40 + 4 - notify.MAX_LINES} more"


def test_a_failed_array_task_is_a_failure_to_a_target() -> None:
    part = Event(kind="event", type="slurm", id="12", host="eos", before="RUNNING", after="12_3 FAILED")
    assert notify.kind_of(part) == "failure"
    assert list(notify.route([part], lambda e: (target(),))) == [target().key]


def test_a_url_listed_twice_with_the_same_kinds_is_one_reader_and_one_message(tmp_path: Path, servers: Any) -> None:
    server = servers()
    top, for_type = target(url=server.url()), target(url=server.url())
    notifier = notify.Notifier((top, for_type), lambda e: (top, for_type), EventLog(tmp_path / "events.jsonl"), {})
    assert list(notifier.readers) == [top.key]
    notifier.start()
    logged(notifier, end("17", "FAILED", "failure"))
    notifier.close()
    assert server.next()["title"] == "jobmon: FAILED slurm 17@eos" and server.count == 1


def test_a_secret_is_masked_as_written_and_url_encoded() -> None:
    secret = "p@ss:w/rd?1"
    url, secrets = notify.render(target(url="json://u:{{ env.T | urlencode }}@h/{{ env.T }}"), {"T": secret})
    from urllib.parse import quote

    assert quote(secret) in url  # Jinja2 keeps "/" as it is
    said = notify.masked(f"failed for {url}", secrets)
    assert secret not in said and quote(secret, safe="") not in said and quote(secret) not in said


def test_a_single_event_is_its_own_title() -> None:
    message = notify.compose([key("17", "STALLED")])
    assert (message.title, message.level) == ("jobmon: STALLED slurm 17@eos", "warning")
    assert message.body.endswith("slurm 17@eos: STALLED (for 0:30:00)")


# ---------------------------------------------------------------- sent to a real server


def test_a_failed_job_reaches_the_server_from_the_poll(home: Home, cluster: Cluster, tmp_path: Path, servers: Any) -> None:
    server = servers()
    cfg = load(tmp_path / "m.yaml", f"notify: [{{url: '{server.url('hook')}', on: [failure]}}]")
    cluster.set("17", "FAILED", "3:0")
    cluster.set("18", "COMPLETED")
    add(home, Job("slurm", "17", host="c", description="PTQ"), Job("slurm", "18", host="c"))
    watcher, _ = make_watcher(home, cfg)
    watcher.notifier = cfg.notifier(watcher.log)
    watcher.cycle(everything=True)
    watcher.notifier.drain()
    got = server.next()
    assert (got["path"], got["type"], got["title"]) == ("/hook", "failure", "jobmon: FAILED slurm 17@c")
    assert 'slurm 17@c "PTQ": NEW -> FAILED (exit 3:0' in got["message"]
    assert server.count == 1  # the success was not asked for


def test_the_issue_s_example_through_ntfy(tmp_path: Path, servers: Any) -> None:
    server = servers()
    logged(told(tmp_path, target(("failure", "stalled"), server.url("my-topic", "ntfy"))),
           key("17", "STALLED"), end("18", "COMPLETED", "success"))
    got = server.next()
    assert (got["topic"], got["title"]) == ("my-topic", "jobmon: STALLED slurm 17@eos")
    assert got["message"].endswith("slurm 17@eos: STALLED (for 0:30:00)")


def test_a_hung_server_never_holds_the_polling_up(home: Home, cluster: Cluster, tmp_path: Path, servers: Any) -> None:
    server = servers(hang=True)
    cfg = load(tmp_path / "m.yaml", f"notify: [{{url: '{server.url()}', timeout: 120}}]")
    cluster.set("17", "FAILED", "1:0")
    add(home, Job("slurm", "17", host="c"))
    watcher, _ = make_watcher(home, cfg)
    watcher.notifier = cfg.notifier(watcher.log)

    def cycle() -> None:
        poll = threading.Thread(target=watcher.cycle, kwargs={"everything": True})
        poll.start()
        poll.join(60)
        assert not poll.is_alive()  # the cycle ended, the send to the server did not
    cycle()
    assert server.next()["title"] == "jobmon: FAILED slurm 17@c"
    assert home.history()[0]["id"] == "17"  # its end written while the server still hangs
    cluster.set("18", "FAILED", "1:0")
    add(home, Job("slurm", "18", host="c"))
    cycle()  # and the poll goes on
    assert [e["id"] for e in home.logged()] == ["17", "18"]
    assert not server.release.is_set() and server.count == 1
    server.release.set()
    watcher.notifier.drain()
    assert server.next()["title"] == "jobmon: FAILED slurm 18@c"


def test_a_server_that_never_answers_times_out_then_is_one_line(tmp_path: Path, servers: Any, said: list[str]) -> None:
    server = servers(hang=True)
    logged(told(tmp_path, target(url=server.url(), timeout=0.5)), end("17", "FAILED", "failure"))
    assert server.count == 2  # one retry
    (line,) = said
    assert line.startswith(f"notify test (json://127.0.0.1:{server.port}/): not sent, tried twice: ")
    assert line.endswith(": jobmon: FAILED slurm 17@eos")


def test_a_send_the_retry_delivers_says_nothing_on_stderr(tmp_path: Path, servers: Any, said: list[str]) -> None:
    server = servers((503, 200))
    logged(told(tmp_path, target(url=server.url())), end("17", "FAILED", "failure"))
    assert server.count == 2 and said == []
    assert server.next() == server.next()  # the same message, twice


def test_a_closed_port_is_one_retry_and_one_line(tmp_path: Path, said: list[str]) -> None:
    port = closed_port()
    logged(told(tmp_path, target(url=f"json://127.0.0.1:{port}/x")), end("17", "FAILED", "failure"))
    assert said == [f"notify test (json://127.0.0.1:{port}/x): not sent, tried twice: A Connection error occurred "
                    "sending JSON notification to 127.0.0.1.: jobmon: FAILED slurm 17@eos"]


def test_a_refusing_server_gets_one_retry_one_stderr_line_and_never_the_secret(
        home: Home, cluster: Cluster, tmp_path: Path, servers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = servers(500)
    secret = "tk_9f8e7d6c5b4a"
    monkeypatch.setenv("JOBMON_TEST_TOKEN", secret)
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"notify: [{{url: '{server.url()}{{{{ env.JOBMON_TEST_TOKEN }}}}'}}]\n")
    cluster.set("17", "FAILED", "1:0")
    assert jobmon("add", "--type", "slurm", "--id", "17", "--host", "c", *home.args()).code == 0
    ran = jobmon("status", "--config", str(cfg), *home.args())
    assert ran.code == 0
    assert server.count == 2 and server.next()["path"] == f"/{secret}"  # the environment's value was sent
    (line,) = ran.err.splitlines()
    assert line.endswith(f"WARNING notify {cfg}: notify.0 (json://127.0.0.1:{server.port}/{{{{ env.JOBMON_TEST_TOKEN }}}}): "
                         "not sent, tried twice: Failed to send JSON POST notification: Internal server error., "
                         "error=500.: jobmon: FAILED slurm 17@c")
    files = [p for p in home.registry.parent.iterdir() if p.is_file()]
    assert files and not [p for p in files if secret in p.read_text()]
    assert secret not in ran.out + ran.err


def test_notify_test_reports_each_target_in_one_line(home: Home, tmp_path: Path, servers: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    server = servers()
    port = closed_port()
    monkeypatch.setenv("JOBMON_TEST_TOKEN", "tk_9f8e7d6c5b4a")
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"""
notify:
  - {server.url('ok')}
  - json://127.0.0.1:{port}/x
  - "{server.url()}{{{{ env.JOBMON_NO_SUCH }}}}"
  - "{{{{ env.JOBMON_TEST_TOKEN }}}}://x"
""")
    ran = jobmon("notify", "test", "--config", str(cfg), *home.args())
    assert ran.code == 1
    assert ran.out.splitlines() == [
        f"{cfg}: notify.0 ({server.url('ok')}): sent",
        f"{cfg}: notify.1 (json://127.0.0.1:{port}/x): not sent: A Connection error occurred sending JSON "
        "notification to 127.0.0.1.",
        f"{cfg}: notify.2 ({server.url()}{{{{ env.JOBMON_NO_SUCH }}}}): not sent: environment variable "
        "JOBMON_NO_SUCH is not set",
        f"{cfg}: notify.3 ({{{{ env.JOBMON_TEST_TOKEN }}}}://x): not sent: not a URL apprise can send to (scheme '***')",
    ]
    got = server.next()
    assert (got["path"], got["title"], got["type"]) == ("/ok", "jobmon: test", "info")
    assert got["message"].startswith("jobmon test message from ")
    as_json = jobmon("notify", "test", "--json", "--config", str(cfg), *home.args())
    assert [json.loads(line)["sent"] for line in as_json.out.splitlines()] == [True, False, False, False]


def test_notify_test_without_targets_says_so(home: Home) -> None:
    ran = jobmon("notify", "test", *home.args())
    assert (ran.code, ran.out, ran.err) == (
        1, "", "jobmon: notify test: the config names no notify: target (see the README, Notifications)\n")


def test_the_detached_poller_tells_with_no_one_watching(home: Home, cluster: Cluster, tmp_path: Path,
                                                        servers: Any) -> None:
    server = servers()
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"notify: ['{server.url()}']\n")
    cluster.set("17", "FAILED", "1:0")
    ran = jobmon("add", "--type", "slurm", "--id", "17", "--host", "c", "--watch", "--config", str(cfg), *home.args())
    assert ran.code == 0 and "poller started" in ran.err
    assert server.next()["title"] == "jobmon: FAILED slurm 17@c"
    assert wait_for(lambda: not home.jobs())


# ---------------------------------------------------------------- nothing lost, nothing repeated


def test_a_reader_goes_on_from_its_cursor_and_a_new_target_starts_from_now(tmp_path: Path, servers: Any) -> None:
    from jobmon.eventlog import Cursor, EventLog

    server = servers()
    log = EventLog(tmp_path / "session" / "events.jsonl")
    log.append([end("16", "FAILED", "failure")])  # before the target was configured: not its news
    first = told(tmp_path, target(url=server.url()))
    logged(first, end("17", "FAILED", "failure"))
    first.close()
    assert server.next()["title"] == "jobmon: FAILED slurm 17@eos"
    assert Cursor(tmp_path / "session", notify.reader_name(target(url=server.url()))).get() == 2
    log.append([end("18", "FAILED", "failure"), end("19", "FAILED", "failure")])  # a poller killed before it sent them
    later = told(tmp_path, target(url=server.url()))  # the next poller
    later.drain()
    later.close()
    assert server.next()["title"] == "jobmon: 2 events: 2 FAILED"
    last = told(tmp_path, target(url=server.url()))
    last.drain()
    last.close()
    assert server.count == 2  # each once


def test_while_a_poller_sends_to_a_target_no_other_process_does(tmp_path: Path, servers: Any) -> None:
    from jobmon.eventlog import Cursor

    server = servers()
    one = target(url=server.url())
    poller = Cursor(tmp_path / "session", notify.reader_name(one))
    assert poller.claim(0, ask=False)
    status = told(tmp_path, one)  # a `jobmon status` beside it
    status.log.append([end("17", "FAILED", "failure")])
    status.wake()
    status.drain(0.5)  # waits for the poller's cursor to pass it, in vain: the poller here sends nothing
    status.close()
    assert server.count == 0
    poller.set(1)  # the poller sent it
    status = told(tmp_path, one)
    status.drain()  # returns as soon as the poller's cursor shows it: nothing sent twice
    poller.release()
    status.close()
    assert server.count == 0


def test_a_poller_killed_mid_send_leaves_the_message_to_the_next(home: Home, cluster: Cluster, tmp_path: Path,
                                                                 servers: Any) -> None:
    import os
    import signal

    from conftest import pids_with

    hung = servers(hang=True)
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"notify: [{{url: '{hung.url()}', timeout: 120}}]\n")
    cluster.set("17", "FAILED", "1:0")
    assert jobmon("add", "--type", "slurm", "--id", "17", "--host", "c", "--watch", "--config", str(cfg),
                  *home.args()).code == 0
    assert hung.next()["title"] == "jobmon: FAILED slurm 17@c"  # in flight, and the server holds it
    (poller,) = [p for p in pids_with(str(home.root)) if b"poll" in Path(f"/proc/{p}/cmdline").read_bytes()]
    os.kill(poller, signal.SIGKILL)
    assert wait_for(lambda: not pids_with(str(home.root)))
    hung.release.set()  # the server answers again
    cluster.set("18", "FAILED", "1:0")
    assert jobmon("add", "--type", "slurm", "--id", "18", "--host", "c", "--watch", "--config", str(cfg),
                  *home.args()).code == 0
    after = [hung.next()["message"]]
    if "slurm 18@c" not in after[0]:  # 17's end alone, when the next poller read it before 18 ended
        after.append(hung.next()["message"])
    assert [m.count("slurm 17@c") for m in after] == [1] + [0] * (len(after) - 1)  # sent again, once
    assert "slurm 18@c" in after[-1]
    assert wait_for(lambda: not home.jobs())
    assert hung.arrived.empty()


def test_a_url_listed_twice_with_the_same_kinds_is_tested_once(tmp_path: Path) -> None:
    cfg = load(tmp_path / "m.yaml", """
notify: ["json://h/a", {url: "json://h/b", on: [failure]}]
types:
  slurm:
    notify: ["json://h/a", {url: "json://h/b", on: [success]}]
""")
    assert names(cfg.notify.every()) == ["json://h/a", "json://h/b", "json://h/b"]  # b: other kinds, another target
    assert cfg.notify.every()[0].name.endswith(": notify.0 (json://h/a)")  # the first listed names it
