"""Finding a place in the event log: the seq of a line, whole lines forwards and backwards, the
last seq and the first line past a cursor, checked against reading the file whole."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Iterator

import pytest

from jobmon import logscan
from jobmon.events import Event

JUNK = [b"garbage", b"", b'{"seq": 7, "kind": "sta', b'{"time": "x", "seq": Infinity}', b"[1, 2]",
        b'{"seq": true}', b'{"seq": -3}', b'{"seq": 1e400}', b"\xff\xfe\x00", b"[" * 1200 + b"]" * 1200]


def line(seq: int, size: int = 0) -> bytes:
    event = Event("state", "slurm", str(seq), "c", after="RUNNING", detail="d" * size, seq=seq)
    return json.dumps(event.to_json(), ensure_ascii=False).encode()


@pytest.fixture(autouse=True)
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads of a few bytes: every line crosses a block's edge somewhere."""
    monkeypatch.setattr(logscan, "BLOCK", 7)
    monkeypatch.setattr(logscan, "BIG", 64)


def opened(path: Path, data: bytes) -> int:
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def seqs(lines: list[bytes]) -> list[int]:
    return [s for s in (logscan.line_seq(ln) for ln in lines) if s]


def files(rng: random.Random, n: int) -> Iterator[tuple[list[bytes], bytes]]:
    """Logs of rising seqs with junk lines among them, some with a line still being written."""
    for _ in range(n):
        lines: list[bytes] = []
        seq = 0
        for _ in range(rng.randrange(0, 12)):
            if rng.random() < 0.3:
                lines.append(rng.choice(JUNK))
            else:
                seq += rng.randrange(1, 4)
                lines.append(line(seq, rng.choice((0, 0, 30))))
        tail = rng.choice((b"", b"", b'{"time": "half'))
        yield lines, b"".join(ln + b"\n" for ln in lines) + tail


def test_the_seq_of_a_line_is_a_whole_number_above_zero_however_it_is_written() -> None:
    assert logscan.line_seq(line(123)) == 123
    assert logscan.line_seq(b'{"kind": "state", "seq": 9, "time": "t"}') == 9  # another order: json says it
    assert logscan.line_seq(line(5).replace(b'"seq": 5}', b'"seq": 5 }')) == 5
    for junk in JUNK:
        assert logscan.line_seq(junk) is None, junk[:30]
    assert logscan.line_seq(b'{"time": "t", "seq": 0}') is None
    assert logscan.line_seq(b'{"time": "t", "seq": ' + b"9" * 5000 + b"}") is None  # no int of 5000 digits


def test_whole_lines_forwards_and_backwards_match_reading_the_file_whole(tmp_path: Path) -> None:
    rng = random.Random(1)
    for lines, data in files(rng, 150):
        fd = opened(tmp_path / "log", data)
        try:
            got = list(logscan.lines_from(fd, 0, len(data)))
            assert [ln for _, ln in got] == lines
            assert all(data[off:off + len(ln)] == ln for off, ln in got)
            assert list(logscan.lines_back(fd, len(data))) == lines[::-1]
            assert logscan.last_seq(fd, len(data)) == (seqs(lines) or [0])[-1]
            edges = {o + d for o, _ in got for d in (-1, 0, 1)} | {rng.randrange(len(data) + 1) for _ in range(20)}
            for start in sorted(e for e in edges if 0 <= e <= len(data)):  # from anywhere: the lines from there
                after = [(o, ln) for o, ln in got if o >= start]
                assert list(logscan.lines_from(fd, start, len(data), aligned=False)) == after
        finally:
            os.close(fd)


def test_the_place_past_a_cursor_is_found_by_halving_for_every_cursor(tmp_path: Path) -> None:
    rng = random.Random(2)
    for lines, data in files(rng, 150):
        fd = opened(tmp_path / "log", data)
        try:
            starts = [o for o, _ in logscan.lines_from(fd, 0, len(data))]
            for cursor in range((seqs(lines) or [0])[-1] + 2):
                want = next((o for o, ln in zip(starts, lines) if (logscan.line_seq(ln) or 0) > cursor), len(data))
                assert logscan.find_after(fd, len(data), cursor) == want, (cursor, data)
        finally:
            os.close(fd)


def test_the_last_seq_reads_back_only_so_far(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logscan, "BLOCK", 4096)
    data = line(1) + b"\n" + b"x" * (3 << 20) + b"\n"  # a junk last line of 3 MB
    fd = opened(tmp_path / "log", data)
    try:
        assert logscan.last_seq(fd, len(data)) == 1  # read back past it
        monkeypatch.setattr(logscan, "BACK_LIMIT", 1 << 20)
        read = []
        monkeypatch.setattr(logscan, "pread", lambda fd, n, at: read.append(n) or os.pread(fd, n, at))
        assert logscan.last_seq(fd, len(data)) == 0  # not found within the limit: not read whole
        assert sum(read) < 2 << 20
    finally:
        os.close(fd)
