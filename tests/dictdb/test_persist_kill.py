"""SIGKILL during saves: the file under the final name is always one complete snapshot.

A child process saves two distinguishable 50k-row databases alternately to one path; the
parent kills it at random moments. After each kill the file must load completely and equal
one of the two contents exactly (never a mix, a truncation or nothing). Temp files a kill
leaves behind are allowed (readers ignore them), nothing else is.
"""

from __future__ import annotations

import collections
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dictdb import DictDB
from tests.dictdb._scripts.save_loop import build

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "_scripts" / "save_loop.py"


def wait_ready(child: subprocess.Popen[bytes], timeout: float = 30.0) -> bytes:
    assert child.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return b"(timeout)"
    return child.stdout.readline()


def kill_repeatedly(folder: Path, kills: int, seed: int) -> collections.Counter[int]:
    rng = random.Random(seed)
    expected = {v: build(v).to_dict() for v in (0, 1)}
    path = folder / "snap.json"
    seen: collections.Counter[int] = collections.Counter()
    for attempt in range(kills):
        child = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(path)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert wait_ready(child) == b"ready\n", f"seed {seed}"
            time.sleep(rng.uniform(0.0, 0.12))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            assert child.stdout is not None
            child.stdout.close()
        where = f"seed {seed}, kill {attempt}"
        db = DictDB.load(path)
        variant = db.get_table("marker").records[1]["variant"]
        assert expected[variant] == db.to_dict(), where
        leftovers = [p.name for p in folder.iterdir() if p != path]
        assert [n for n in leftovers if not n.startswith(".snap.json.")] == [], where
        assert [n for n in leftovers if not n.endswith(".tmp")] == [], where
        seen[variant] += 1
    return seen


def test_a_save_killed_at_random_moments_leaves_one_complete_snapshot(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    started = time.monotonic()
    seen = kill_repeatedly(tmp_path, 8, seed)
    assert sum(seen.values()) == 8
    assert time.monotonic() - started < 20, f"seed {seed}"


@pytest.mark.slow
def test_fifty_kills_leave_one_complete_snapshot_each_time(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    seen = kill_repeatedly(tmp_path, 50, seed)
    assert {0, 1} == set(seen), f"seed {seed}: both contents were seen after some kill"
