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

Two known bugs show up here at random (each has its own deterministic strict-xfail test);
their exact signatures are stepped over with a warning (see `reopen` and
`restore_unless_known_hole`), so that this loop keeps checking everything else.
"""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from dictdb import DictDB, RestoreError, list_backups, restore
from tests.dictdb._scripts.crash_writer import SEGMENT_SIZE, statement
from tests.dictdb._scripts.strict import db_diff
from wal.framing import HEADER_SIZE

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
    rng: random.Random, directory: Path, start: int, backup: bool
) -> tuple[list[tuple[int, str]], str]:
    """Start a writer, kill it at a random moment; its acknowledged (lsn, key) lines."""
    proc = spawn(directory, start, backup)
    early = rng.random() < 0.25
    head = ""
    if early:
        time.sleep(rng.uniform(0.0, 0.45))  # may land while it opens and recovers
    else:
        head = proc.stdout.readline() if proc.stdout is not None else ""
        time.sleep(rng.uniform(0.02, 0.35))
    alive = proc.poll() is None
    proc.kill()
    out, err = proc.communicate(timeout=30)
    assert alive, f"the writer died on its own:\n{head}{out}\n{err}"
    lines = (head + out).split("\n")[:-1]  # the last piece is cut mid-line, or empty
    acked = [(int(lsn), key) for lsn, key in (line.split(" ", 1) for line in lines[1:])]
    return acked, err


def reopen(directory: Path) -> DictDB:
    """`DictDB.open`, stepping over one known bug.

    A kill while a new segment file is being created (``O_CREAT`` can block for a while under
    fsync load) leaves an empty segment; the repair removes it and keeps ``.torn-0``, but the
    open then fails with FileNotFoundError (strict xfail:
    ``tests/wal/test_recovery.py::test_reopening_after_a_crash_at_rotation_repairs_and_continues``).
    That exact signature is reported as a warning and the open retried once; anything else
    fails the test.
    """
    try:
        return DictDB.open(directory, fsync="always", segment_size=SEGMENT_SIZE)
    except FileNotFoundError as exc:
        missing = Path(str(exc.filename))
        kept = missing.with_name(missing.name + ".torn-0")
        if missing.exists() or not kept.exists() or kept.stat().st_size >= HEADER_SIZE:
            raise
        warnings.warn(
            f"known bug hit: reopening after a kill at rotation ({missing.name})", stacklevel=2
        )
    return DictDB.open(directory, fsync="always", segment_size=SEGMENT_SIZE)


HOLE = re.compile(r"a gap: starts at LSN (\d+), previous segment ends at (\d+)")


def restore_unless_known_hole(directory: Path, lsn: int | None = None) -> DictDB | None:
    """`restore`, stepping over one known bug (None when it is hit).

    A backup may capture an operation that the log had not written when the writer was
    killed; the reopened log then resumes after a hole, and a restore that reads the log
    across it fails (strict xfail: ``tests/dictdb/test_durable.py::
    test_a_backup_ahead_of_the_log_at_a_crash_leaves_op_exact_restore_working``). That exact
    signature (a gap in the log whose operations a backup file holds) is reported as a
    warning; anything else fails the test.
    """
    try:
        return restore(directory, lsn=lsn)
    except RestoreError as exc:
        match = HOLE.search(str(exc))
        if match is None:
            raise
        first, previous = int(match[1]), int(match[2])
        if not any(previous < f.last_lsn < first for f in list_backups(directory).files):
            raise
        warnings.warn(
            f"known bug hit: a backup holds LSN {previous + 1}..{first - 1}, the log does not",
            stacklevel=2,
        )
        return None


def crash_loop(directory: Path, rounds: int, backup: bool, seed: int) -> None:
    rng = random.Random(seed)
    model = Model()
    lsn = 0
    acked_total = 0
    for round_no in range(rounds):
        where = f"seed {seed}, round {round_no}"
        acked, _ = run_round(rng, directory, model.index_at[lsn], backup)
        acked_total += len(acked)
        with reopen(directory) as db:
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
            newest = restore_unless_known_hole(directory)
            if newest is not None:
                assert [] == db_diff(state, newest.to_dict()), where
    assert 0 < acked_total, "no round acknowledged anything"
    assert 0 < lsn
    if backup:
        files = [p.name for p in directory.iterdir() if p.name.startswith("dictdb_")]
        assert any("backup" in name for name in files), files
        sampled = sorted(model.states)
        for n in rng.sample(sampled, min(12, len(sampled))):
            restored = restore_unless_known_hole(directory, lsn=n)
            if restored is None:
                continue
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
    crash_loop(tmp_path / "db", rounds=40, backup=backup, seed=SEED + 2)
