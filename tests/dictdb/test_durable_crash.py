"""kill -9 of a writing process at random moments: nothing acknowledged is ever lost.

A child process (``_scripts/crash_writer.py``) writes a deterministic sequence of statements
to ``DictDB.open(dir, fsync="always")`` and prints each acknowledged one; the parent SIGKILLs
it at a random moment (sometimes while it is still opening and recovering), reopens the
directory and checks, against the same sequence run on an in-memory `DictDB`:

- every acknowledged operation is there (``db.lsn`` >= the last acknowledged LSN);
- the state is exactly the model after ``db.lsn`` operations, which is the end of a whole
  statement (a multi-row insert is all there or not at all), compared type for type;

then starts a new child that resumes the sequence. The ``backup`` variants add a
`BackupManager` cutting snapshots and deltas into the same directory meanwhile; there,
``restore(dir)`` must equal the reopened state, and at the end ``restore(dir, lsn=n)`` must
equal the model at many earlier statement boundaries.

This loop found two bugs, now fixed, each with its own deterministic test: a kill while a new
segment file was being created left a database that failed to reopen
(``tests/wal/test_recovery.py``), and a backup could hold an operation that the log lost,
leaving a hole in the log (``tests/dictdb/test_durable.py``).
"""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dictdb import DictDB, restore
from tests.dictdb._scripts.crash_writer import SEGMENT_SIZE, statement
from tests.dictdb._scripts.strict import db_diff

ROOT = Path(__file__).resolve().parents[2]


class Model:
    """The sequence run on an in-memory database, with the states at statement boundaries."""

    def __init__(self) -> None:
        self.db = DictDB()
        self.index = 0  # the next statement to run
        self.index_at = {0: 0}  # LSN at a statement boundary -> the next statement's index
        self.states: dict[int, dict[str, Any]] = {0: {}}  # sampled boundary states

    def advance_to(self, lsn: int) -> bool:
        """Run statements until the model reaches *lsn*; False if *lsn* falls inside one."""
        while self.db.lsn < lsn:
            statement(self.db, self.index)
            self.index += 1
            self.index_at[self.db.lsn] = self.index
            if self.index % 7 == 0:
                self.states[self.db.lsn] = self.db.to_dict()
        return self.db.lsn == lsn


def spawn(directory: Path, start: int, backup: bool) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    args = [sys.executable, "-m", "tests.dictdb._scripts.crash_writer", str(directory), str(start)]
    return subprocess.Popen(
        [*args, *(["--backup"] if backup else [])],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_round(
    rng: random.Random, directory: Path, start: int, backup: bool, max_delay: float
) -> tuple[list[tuple[int, str]], str]:
    """Start a writer, kill it at a random moment; its acknowledged (lsn, key) lines."""
    proc = spawn(directory, start, backup)
    early = rng.random() < 0.25
    head = ""
    if early:
        time.sleep(rng.uniform(0.0, 0.45))  # may land while it opens and recovers
    else:
        head = proc.stdout.readline() if proc.stdout is not None else ""
        time.sleep(rng.uniform(0.01, max_delay))
    alive = proc.poll() is None
    proc.kill()
    out, err = proc.communicate(timeout=30)
    assert alive, f"the writer died on its own:\n{head}{out}\n{err}"
    lines = (head + out).split("\n")[:-1]  # the last piece is cut mid-line, or empty
    acked = [(int(lsn), key) for lsn, key in (line.split(" ", 1) for line in lines[1:])]
    return acked, err


def crash_loop(
    directory: Path, rounds: int, backup: bool, seed: int, max_delay: float = 0.35
) -> None:
    rng = random.Random(seed)
    model = Model()
    lsn = 0
    acked_total = 0
    for round_no in range(rounds):
        where = f"seed {seed}, round {round_no}"
        acked, _ = run_round(rng, directory, model.index_at[lsn], backup, max_delay)
        acked_total += len(acked)
        with DictDB.open(directory, fsync="always", segment_size=SEGMENT_SIZE) as db:
            previous, lsn = lsn, db.lsn
            assert previous <= lsn, where
            if acked:
                assert acked[-1][0] <= lsn, f"{where}: acknowledged {acked[-1]} lost"
            assert model.advance_to(lsn), f"{where}: LSN {lsn} is inside a statement"
            assert [] == db_diff(model.db.to_dict(), db.to_dict()), where
            for key_lsn, key in acked:
                assert key_lsn <= lsn, (where, key)
            state = db.to_dict()
        if backup and lsn:
            assert [] == db_diff(state, restore(directory).to_dict()), where
    assert 0 < acked_total, "no round acknowledged anything"
    assert 0 < lsn
    if backup:
        files = [p.name for p in directory.iterdir() if p.name.startswith("dictdb_")]
        assert any("backup" in name for name in files), files
        sampled = sorted(model.states)
        for n in rng.sample(sampled, min(12, len(sampled))):
            restored = restore(directory, lsn=n)
            assert n == restored.lsn
            assert [] == db_diff(model.states[n], restored.to_dict()), f"seed {seed}: lsn {n}"


SEED = int.from_bytes(os.urandom(4), "big")


def test_kill_9_at_random_moments_never_loses_an_acknowledged_operation(tmp_path: Path) -> None:
    t0 = time.monotonic()
    crash_loop(tmp_path / "db", rounds=7, backup=False, seed=SEED)
    assert time.monotonic() - t0 < 40


def test_kill_9_while_a_backup_manager_writes_into_the_same_directory(tmp_path: Path) -> None:
    t0 = time.monotonic()
    crash_loop(tmp_path / "db", rounds=7, backup=True, seed=SEED + 1)
    assert time.monotonic() - t0 < 40


@pytest.mark.slow
@pytest.mark.parametrize("backup", [False, True], ids=["wal", "wal+backups"])
def test_kill_9_for_40_rounds(tmp_path: Path, backup: bool) -> None:
    # Shorter lives: without backups every reopen replays the whole log from operation 1.
    crash_loop(tmp_path / "db", rounds=40, backup=backup, seed=SEED + 2, max_delay=0.12)
