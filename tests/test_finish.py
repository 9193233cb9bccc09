"""jobmon/finish.py: a batched action's output shared out among its jobs."""
from __future__ import annotations

from jobmon import finish


def test_a_batched_actions_output_goes_to_the_job_each_marker_line_names() -> None:
    marker = "jobmon-0123456789abcdef"
    out = (f"ssh banner before any part\n{marker} 17\nlog: /a.out\nline 1\n"
           f"{marker} 12_4\nlog: /b.out\n"
           # a log that prints a marker of its own making cannot start another job's part
           "jobmon-ffffffffffffffff 17\nValueError: x\n")
    parts = finish.split(out, marker)
    assert parts == {"17": "log: /a.out\nline 1\n",
                     "12_4": "log: /b.out\njobmon-ffffffffffffffff 17\nValueError: x\n"}
    assert finish.split("", marker) == {}


def test_a_claim_says_when_in_utc_and_which_process_holds_it() -> None:
    import os
    from datetime import datetime, timezone

    from jobmon import rules

    change = rules.Change("state", "RUNNING", "FAILED", True, "failure", {"exit": "1:0"})
    made = finish.claim(change, datetime(2026, 12, 1, 21, 30, tzinfo=timezone.utc), 7)
    assert made["at"] == "2026-12-01T21:30:00+00:00" and made["seq"] == 7
    assert made["pid"] == os.getpid() and isinstance(made["started"], int)
    assert not finish.held(made)  # this process's own claim: never waited for
