"""Backup directories built by real runs, for the audit and CLI tests.

Two builders run the same scenario (`PHASES` phases, each a few operations on ``users`` and
``orders``, a backup after each but the last):

- `build_snapshot_dir`: an in-memory `DictDB` and an incremental `BackupManager`
  (``max_deltas_before_full=3``): snapshots and deltas only, no log.
- `build_durable_dir`: `DictDB.open(dir, fsync="off", segment_size=4096)` with an incremental
  `BackupManager` writing into the same directory, every phase inside ``db.audit(...)``; the
  database is closed and reopened at phases 4 and 8 (where the manager writes full snapshots
  anyway), so the log has several segments.

Backups: full (phase 0), delta (1, 2, 3), full (4), delta (5, 6, 7), full (8); phase 9 is
written to the log only. Both record what was live after every operation (`Built.states`),
a time between every two operations (`Built.marks`), every operation (`Built.ops`) and every
backup file (`Built.backups`).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dictdb import BackupManager, DictDB

PHASES = 10  # 0..9; phase 9 is not backed up
MAX_DELTAS = 3
REOPEN_AT = (4, 8)


@dataclass(frozen=True)
class Op:
    """One operation as the test wrote it: its LSN, kind, table, key, after-image, metadata."""

    lsn: int
    kind: str
    table: str
    key: Any
    after: Any
    meta: Any
    phase: int


@dataclass(frozen=True)
class Backup:
    """One file a backup wrote: kind (``full``/``delta``), LSN range, path, phase."""

    kind: str
    first_lsn: int
    last_lsn: int
    path: Path
    phase: int


@dataclass
class Built:
    """A directory and what was live while it was written."""

    path: Path
    durable: bool
    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    marks: dict[int, float] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    backups: list[Backup] = field(default_factory=list)

    @property
    def last_lsn(self) -> int:
        return self.ops[-1].lsn

    def fulls(self) -> list[Backup]:
        return [b for b in self.backups if b.kind == "full"]

    def deltas(self) -> list[Backup]:
        return [b for b in self.backups if b.kind == "delta"]

    def boundary_at_or_before(self, lsn: int) -> int:
        """The LSN a snapshots-and-deltas restore reaches for target *lsn* (chain-wise)."""
        return max(b.last_lsn for b in self.backups if b.last_lsn <= lsn)

    def segments(self) -> list[Path]:
        wal = self.path / "wal"
        return sorted(wal.glob("*.wal")) if wal.is_dir() else []


def iso(ts: float) -> str:
    """ISO 8601 (UTC, microseconds) for epoch seconds *ts*."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds")


class _Recorder:
    def __init__(self, built: Built) -> None:
        self.built = built
        self.phase = 0
        self.meta: Any = None

    def do(self, db: DictDB, kind: str, table: str, key: Any, fn: Any) -> None:
        before = db.lsn
        fn()
        assert db.lsn == before + 1, (kind, table, key, before, db.lsn)
        state = db.to_dict()
        after = None
        if key is not None and table in state:
            after = state[table]["records"].get(key)
        self.built.ops.append(Op(db.lsn, kind, table, key, after, self.meta, self.phase))
        self.built.states[db.lsn] = state
        time.sleep(0.001)
        self.built.marks[db.lsn] = time.time()
        time.sleep(0.001)


def _phase(db: DictDB, rec: _Recorder, i: int) -> None:
    rec.phase = i
    if i == 0:
        rec.do(db, "create", "users", None, lambda: db.create_table("users", primary_key="id"))
        users = db.get_table("users")
        rec.do(
            db, "insert", "users", 1, lambda: users.insert({"id": 1, "name": "ann", "v": 0, "n": 1})
        )
        rec.do(db, "insert", "users", 2, lambda: users.insert({"id": 2, "name": "bob", "v": 0}))
        return
    users = db.get_table("users")
    rec.do(db, "update", "users", 1, lambda: users.update({"v": i}, where=users.id == 1))
    rec.do(db, "update", "users", 1, lambda: users.update({"v": i * 10}, where=users.id == 1))
    if i == 1:
        pad = "x" * 4200  # a big row: phases 0-3 and 4-7 each fill a 4 KiB segment
        rec.do(db, "insert", "users", 3, lambda: users.insert({"id": 3, "bio": pad}))
    if i == 2:
        rec.do(db, "create", "orders", None, lambda: db.create_table("orders", primary_key="id"))
        orders = db.get_table("orders")
        rec.do(db, "insert", "orders", "o1", lambda: orders.insert({"id": "o1", "total": 5}))
    if i == 3:
        rec.do(db, "update", "users", 1, lambda: users.update({"n": 1.0}, where=users.id == 1))
        rec.do(db, "delete", "users", 2, lambda: users.delete(where=users.id == 2))
    if i == 4:
        rec.do(db, "update", "users", 1, lambda: users.update({"n": True}, where=users.id == 1))
        rec.do(db, "insert", "users", 2, lambda: users.insert({"id": 2, "name": "bob again"}))
    if i == 5:
        orders = db.get_table("orders")
        rec.do(db, "update", "orders", "o1", lambda: orders.update({"total": 6}))
    if i == 6:
        rec.do(db, "drop", "orders", None, lambda: db.drop_table("orders"))
    if i in (5, 7):
        pad = str(i) * 4200
        rec.do(db, "update", "users", 3, lambda: users.update({"bio": pad}, where=users.id == 3))


def _backup(bm: BackupManager, built: Built, phase: int) -> None:
    path = bm.backup_now()
    assert path is not None, bm.last_error
    from dictdb.storage.persist import read_header

    header = read_header(path)
    if header["type"] == "full":
        backup = Backup("full", header["lsn"] + 1, header["lsn"], path, phase)
    else:
        backup = Backup("delta", header["from_lsn"], header["to_lsn"], path, phase)
    built.backups.append(backup)


def _meta(i: int) -> dict[str, str] | None:
    if i == 0:
        return {"actor": "alice", "reason": "setup"}
    if i < PHASES - 1:
        return {"actor": "bob", "reason": f"step {i}"}
    return None  # the last phase runs without an audit block


def build_snapshot_dir(path: Path) -> Built:
    """Snapshots and deltas only (no log); see the module docstring."""
    built = Built(path, durable=False)
    rec = _Recorder(built)
    db = DictDB()
    bm = BackupManager(db, path, incremental=True, max_deltas_before_full=MAX_DELTAS)
    for i in range(PHASES):
        meta = _meta(i)
        rec.meta = meta  # each delta keeps, per row, the meta of its last operation
        if meta is None:
            _phase(db, rec, i)
        else:
            with db.audit(**meta):
                _phase(db, rec, i)
        if i < PHASES - 1:
            _backup(bm, built, i)
    _check_kinds(built)
    return built


def build_durable_dir(path: Path) -> Built:
    """A durable database's directory (log + snapshots + deltas); see the module docstring."""
    built = Built(path, durable=True)
    rec = _Recorder(built)
    db = DictDB.open(path, fsync="off", segment_size=4096)
    bm = BackupManager(db, path, incremental=True, max_deltas_before_full=MAX_DELTAS)
    try:
        for i in range(PHASES):
            if i in REOPEN_AT:
                db.close()
                db = DictDB.open(path, fsync="off", segment_size=4096)
                assert db.to_dict() == built.states[db.lsn]
                bm = BackupManager(db, path, incremental=True, max_deltas_before_full=MAX_DELTAS)
            meta = _meta(i)
            rec.meta = meta
            if meta is None:
                _phase(db, rec, i)
            else:
                with db.audit(**meta):
                    _phase(db, rec, i)
            if i < PHASES - 1:
                _backup(bm, built, i)
    finally:
        db.close()
    _check_kinds(built)
    assert len(built.segments()) >= 3, built.segments()
    return built


def _check_kinds(built: Built) -> None:
    kinds = [b.kind for b in built.backups]
    expected = ["full", "delta", "delta", "delta", "full", "delta", "delta", "delta", "full"]
    assert kinds == expected, kinds


def typed(value: Any) -> Any:
    """A comparable form that tells types apart (1, 1.0, True; Decimal exponents; offsets)
    and ignores the order of dict entries."""
    if type(value) is dict:
        return ("dict", tuple(sorted((repr(k), typed(v)) for k, v in value.items())))
    if type(value) is list:
        return ("list", tuple(typed(v) for v in value))
    return (type(value).__name__, repr(value))


def copy_dir(built: Built, tmp_path: Path) -> Path:
    """A copy of *built*'s directory under *tmp_path* (tests damage copies, never the original)."""
    target = tmp_path / "copy"
    shutil.copytree(built.path, target)
    return target


def moved(built: Built, directory: Path, path: Path) -> Path:
    """*path* (a file of *built*) inside the copy *directory*."""
    return directory / path.relative_to(built.path)


def flip_byte_in_row_data(path: Path) -> None:
    """Flip one bit inside a record value (user 1's name), well past the header."""
    data = bytearray(path.read_bytes())
    data[data.index(b'"ann"') + 1] ^= 0x01
    path.write_bytes(bytes(data))
