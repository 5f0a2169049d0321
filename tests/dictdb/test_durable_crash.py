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

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
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


def spawn(directory: Path, start: int, backup: bool, policy: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    args = [sys.executable, "-m", "tests.dictdb._scripts.crash_writer", str(directory), str(start)]
    if backup:
        args.append("--backup")
    if policy == "everysec":
        args.append("--everysec")
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    )


def run_round(
    rng: random.Random,
    directory: Path,
    start: int,
    backup: bool,
    max_delay: float,
    policy: str,
    settle: float | None = None,
) -> tuple[list[tuple[int, str, float]], float]:
    """Start a writer, kill it at a random moment; its acknowledged (lsn, key, monotonic time)
    lines, and the monotonic time of the kill.

    With *settle*, the kill waits for the first acknowledgement (up to `ACK_DEADLINE`), then
    *settle* seconds more, then the random delay: the round then always has acknowledged
    operations older than *settle* at the kill, however slowly the writer started.

    Its output is drained all along by a thread (a full pipe would stall the writer).
    """
    proc = spawn(directory, start, backup, policy)
    assert proc.stdout is not None
    assert proc.stderr is not None
    chunks: list[bytes] = []
    ready = threading.Event()  # the READY line arrived
    acknowledged = threading.Event()  # and the first acknowledged statement's line

    def drain(fd: int) -> None:
        lines = 0
        while block := os.read(fd, 1 << 16):
            chunks.append(block)
            lines += block.count(b"\n")
            if lines:
                ready.set()
            if lines > 1:
                acknowledged.set()

    reader = threading.Thread(target=drain, args=(proc.stdout.fileno(),), daemon=True)
    reader.start()
    if settle is not None:
        acknowledged.wait(ACK_DEADLINE)
        time.sleep(settle + rng.uniform(0.01, max_delay))
    elif rng.random() < 0.25:
        time.sleep(rng.uniform(0.0, 0.45))  # may land while it opens and recovers
    else:
        ready.wait(30)
        time.sleep(rng.uniform(0.01, max_delay))
    alive = proc.poll() is None
    killed_at = time.monotonic()
    proc.kill()
    proc.wait(30)
    reader.join(30)
    err = proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    out = b"".join(chunks).decode()
    assert alive, f"the writer died on its own:\n{out[-2000:]}\n{err}"
    lines = out.split("\n")[:-1]  # the last piece is cut mid-line, or empty
    fields = [line.split() for line in lines[1:]]  # after READY
    assert all(len(f) == 3 for f in fields), [f for f in fields if len(f) != 3][:3]
    acked = [(int(lsn), key, float(at)) for lsn, key, at in fields]
    return acked, killed_at


def crash_loop(
    directory: Path,
    rounds: int,
    backup: bool,
    seed: int,
    max_delay: float = 0.35,
    policy: str = "always",
) -> None:
    """Kill, reopen, check, resume; *rounds* times, plus one round if none checked anything.

    With ``always`` every acknowledged operation must survive; with ``everysec`` (a process
    crash loses at most the flusher's interval) every operation acknowledged more than
    `EVERYSEC_MARGIN` before the kill. The kill moments are random, so a round may check
    nothing (killed while opening, or, with ``everysec``, before any acknowledgement was
    `EVERYSEC_MARGIN` old: more likely when the writer starts slowly, under coverage or load).
    Then one more round kills only once an acknowledgement is that old (`run_round`'s
    *settle*), so every run checks acknowledged operations.
    """
    rng = random.Random(seed)
    model = Model()
    lsn = 0
    acked_total = checked = 0
    for round_no in range(rounds + 1):
        settle = round_no == rounds
        if settle and checked:
            break
        where = f"seed {seed}, round {round_no}" + (" (settled)" if settle else "")
        acked, killed_at = run_round(
            rng,
            directory,
            model.index_at[lsn],
            backup,
            max_delay,
            policy,
            settle=EVERYSEC_MARGIN if settle else None,
        )
        acked_total += len(acked)
        if policy != "always":
            acked = [a for a in acked if a[2] < killed_at - EVERYSEC_MARGIN]
        checked += len(acked)
        with DictDB.open(directory, fsync=policy, segment_size=SEGMENT_SIZE) as db:
            previous, lsn = lsn, db.lsn
            assert previous <= lsn, where
            if acked:
                assert acked[-1][0] <= lsn, f"{where}: acknowledged {acked[-1]} lost"
            assert model.advance_to(lsn), f"{where}: LSN {lsn} is inside a statement"
            assert [] == db_diff(model.db.to_dict(), db.to_dict()), where
            for key_lsn, key, _ in acked:
                assert key_lsn <= lsn, (where, key)
            state = db.to_dict()
        if backup and lsn:
            assert [] == db_diff(state, restore(directory).to_dict()), where
    assert 0 < acked_total, "no round acknowledged anything"
    assert 0 < checked, "no acknowledged operation was old enough to be checked"
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
EVERYSEC_MARGIN = 0.25  # seconds: the 50 ms flush interval, plus scheduling slack
ACK_DEADLINE = 60.0  # seconds: only a writer that never acknowledges anything waits this long


def test_kill_9_at_random_moments_never_loses_an_acknowledged_operation(tmp_path: Path) -> None:
    t0 = time.monotonic()
    crash_loop(tmp_path / "db", rounds=7, backup=False, seed=SEED)
    assert time.monotonic() - t0 < 40


def test_kill_9_while_a_backup_manager_writes_into_the_same_directory(tmp_path: Path) -> None:
    t0 = time.monotonic()
    crash_loop(tmp_path / "db", rounds=7, backup=True, seed=SEED + 1)
    assert time.monotonic() - t0 < 40


def test_kill_9_with_everysec_loses_only_the_last_moments(tmp_path: Path) -> None:
    t0 = time.monotonic()
    crash_loop(
        tmp_path / "db", rounds=6, backup=True, seed=SEED + 3, max_delay=0.7, policy="everysec"
    )
    assert time.monotonic() - t0 < 40


@pytest.mark.slow
@pytest.mark.parametrize("backup", [False, True], ids=["wal", "wal+backups"])
def test_kill_9_for_40_rounds(tmp_path: Path, backup: bool) -> None:
    # Shorter lives: without backups every reopen replays the whole log from operation 1.
    crash_loop(tmp_path / "db", rounds=40, backup=backup, seed=SEED + 2, max_delay=0.12)
