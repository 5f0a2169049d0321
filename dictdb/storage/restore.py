"""Point-in-time restore from a backup directory.

`plan_restore` picks, from file headers alone, the newest full snapshot at or before the
target and the deltas chained to it by LSN, stopping at the last delta boundary at or before
the target (never past it). `restore` carries the plan out: it loads and verifies the full
snapshot (checksum and digest), then applies each delta with `apply_delta` (checksum, LSN
continuity, digest). A damaged full snapshot is skipped for an older one only when the older
chain reaches the same point; a damaged or missing delta on the way is an error naming it.

Targets: ``lsn=n`` (the state right after operation n), ``at=t`` (the state as of time t:
datetime, aware or naive-as-local, or epoch seconds), or neither (the newest state).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dictdb.errors import CorruptFileError, DictDBError
from dictdb.storage.catalog import BackupFile, Catalog, scan

if TYPE_CHECKING:
    from dictdb.database import DictDB

log = logging.getLogger("dictdb")


class RestoreError(DictDBError, ValueError):
    """The directory cannot rebuild the state asked for.

    Attributes:
        path: the file at fault, when one is (else None).
        reason: what is wrong, in one line.
    """

    def __init__(self, reason: str, path: Path | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path is not None else reason)
        self.path = None if path is None else str(path)
        self.reason = reason


@attrs.frozen
class RestorePlan:
    """Which files rebuild which state, decided from headers alone.

    Attributes:
        directory: the backup directory.
        files: the full snapshot, then the deltas, in the order they apply.
        target_lsn: the LSN asked for (None for a time or the newest).
        target_ts: the time asked for, epoch seconds (None for an LSN or the newest).
        lsn: the LSN the plan reaches (<= the target).
        ts: the time of operation `lsn` (0.0 for an empty history).
        skipped: damaged files left out, with the reason.
    """

    directory: Path
    files: tuple[BackupFile, ...]
    target_lsn: int | None
    target_ts: float | None
    lsn: int
    ts: float
    skipped: tuple[tuple[Path, str], ...] = ()

    def as_document(self) -> dict[str, Any]:
        """A plain description (for ``dictdb restore --dry-run`` and logs)."""
        return {
            "directory": str(self.directory),
            "files": [f.path.name for f in self.files],
            "target_lsn": self.target_lsn,
            "target_ts": self.target_ts,
            "lsn": self.lsn,
            "ts": self.ts,
            "skipped": [{"file": p.name, "reason": r} for p, r in self.skipped],
        }


def to_epoch(at: Any) -> float:
    """Epoch seconds from a datetime (naive = local time), a date, or a number.

    Raises:
        TypeError: anything else.
        ValueError: NaN.
    """
    if isinstance(at, _dt.datetime):
        return at.timestamp()
    if isinstance(at, _dt.date):
        return _dt.datetime(at.year, at.month, at.day).timestamp()
    if isinstance(at, int | float) and not isinstance(at, bool):
        if math.isnan(at):
            raise ValueError("at must not be NaN")
        return float(at)
    raise TypeError(f"at must be a datetime or epoch seconds, got {type(at).__name__}")


def _within(f: BackupFile, target_lsn: int | None, target_ts: float | None) -> bool:
    if target_lsn is not None:
        return f.last_lsn <= target_lsn
    if target_ts is not None:
        return f.last_op_ts <= target_ts
    return True


def _plan(catalog: Catalog, directory: Path, lsn: int | None, ts: float | None) -> RestorePlan:
    fulls = [f for f in catalog.files if f.is_full and _within(f, lsn, ts)]
    if not fulls:
        if not any(f.is_full for f in catalog.files):
            raise RestoreError(f"no full snapshot in {directory}")
        earliest = min((f for f in catalog.files if f.is_full), key=lambda f: f.last_lsn)
        what = f"LSN {lsn}" if lsn is not None else f"time {ts}"
        raise RestoreError(
            f"{what} is before the earliest point this directory can rebuild "
            f"(LSN {earliest.last_lsn}, time {earliest.last_op_ts})",
            earliest.path,
        )
    full = max(fulls, key=lambda f: (f.last_lsn, f.written_ts))
    by_first: dict[int, list[BackupFile]] = {}
    for f in catalog.files:
        if not f.is_full:
            by_first.setdefault(f.first_lsn, []).append(f)
    chain: list[BackupFile] = [full]
    nxt = full.last_lsn + 1
    while nxt in by_first:
        candidates = by_first[nxt]
        if len(candidates) > 1:
            names = ", ".join(c.path.name for c in candidates)
            raise RestoreError(
                f"overlapping deltas start at LSN {nxt}: {names}", candidates[0].path
            )
        step = candidates[0]
        if not _within(step, lsn, ts):
            break
        chain.append(step)
        nxt = step.last_lsn + 1
    reached = chain[-1]
    # Anything within the target beyond where the chain stopped means a missing delta.
    beyond = [
        f
        for f in catalog.files
        if f.last_lsn > reached.last_lsn and _within(f, lsn, ts) and f.first_lsn > nxt - 1
    ]
    for f in sorted(beyond, key=lambda f: f.first_lsn):
        if not f.is_full:
            raise RestoreError(
                f"gap: no file covers LSN {nxt}..{f.first_lsn - 1} before this delta",
                f.path,
            )
    for f in catalog.files:
        if not f.is_full and f.first_lsn < nxt <= f.last_lsn and f not in chain:
            raise RestoreError(f"delta overlaps LSN {nxt - 1} reached by the chain", f.path)
    return RestorePlan(
        directory, tuple(chain), lsn, ts, reached.last_lsn, reached.last_op_ts, catalog.unreadable
    )


def plan_restore(backup_dir: str | Path, *, at: Any = None, lsn: int | None = None) -> RestorePlan:
    """Decide which files rebuild the state asked for, without loading them (a dry run).

    Args:
        backup_dir: the backup directory.
        at: a time (datetime or epoch seconds): the state as of that moment.
        lsn: the state right after operation *lsn*.

    Returns:
        The plan; `RestorePlan.lsn` says where it stops (never past the target).

    Raises:
        ValueError: both *at* and *lsn* given, or a negative *lsn*.
        RestoreError: no full snapshot at or before the target, a gap or an overlap.
    """
    if at is not None and lsn is not None:
        raise ValueError("give at= or lsn=, not both")
    if lsn is not None and (type(lsn) is not int or lsn < 0):
        raise ValueError(f"lsn must be an int >= 0, got {lsn!r}")
    directory = Path(backup_dir)
    ts = None if at is None else to_epoch(at)
    return _plan(scan(directory), directory, lsn, ts)


def restore_snapshots(backup_dir: str | Path, *, at: Any = None, lsn: int | None = None) -> DictDB:
    """`restore` from snapshots and deltas alone (the durable log is not read)."""
    return _carry_out(plan_restore(backup_dir, at=at, lsn=lsn))


def _carry_out(plan: RestorePlan) -> DictDB:
    from dictdb.storage.persist import apply_delta, load

    directory = plan.directory
    bad: list[Path] = []
    while True:
        full = plan.files[0]
        try:
            db = load(full.path)
        except CorruptFileError as exc:
            log.warning("restore: skipping damaged full snapshot %s: %s", full.path, exc.reason)
            bad.append(full.path)
            try:
                fallback = _plan(
                    scan(directory, exclude=bad), directory, plan.target_lsn, plan.target_ts
                )
            except RestoreError as err:
                raise RestoreError(
                    f"damaged ({exc.reason}) and no older chain reaches LSN {plan.lsn}: {err}",
                    full.path,
                ) from None
            if fallback.lsn != plan.lsn:
                raise RestoreError(
                    f"damaged ({exc.reason}); the next older chain reaches only LSN "
                    f"{fallback.lsn}, not {plan.lsn}",
                    full.path,
                ) from None
            plan = fallback
            continue
        break
    for delta in plan.files[1:]:
        try:
            apply_delta(db, delta.path)
        except CorruptFileError as exc:
            raise RestoreError(exc.reason, delta.path) from None
    return db


def restore(backup_dir: str | Path, *, at: Any = None, lsn: int | None = None) -> DictDB:
    """Rebuild a database from a backup directory: the newest state, or the state at a point.

    Snapshots and deltas bring the state to the last file boundary at or before the target;
    where the directory also holds a durable log (``wal/``, written by `DictDB.open`), its
    operations then carry the state to the exact target (or to the log's end).

    Args:
        backup_dir: the directory (json, pickle and zstd files may be mixed).
        at: a time (datetime or epoch seconds): the state as of that moment.
        lsn: the state right after operation *lsn*.

    Returns:
        The database; its `lsn` tells where it stopped (never past the target).

    Raises:
        ValueError: both *at* and *lsn* given.
        RestoreError: nothing restorable at or before the target, a gap, an overlap, a
            damaged file on the way (the error names it), or damage in the log.
    """
    from dictdb.database import DictDB

    directory = Path(backup_dir)
    wal_dir = directory / "wal"
    has_log = wal_dir.is_dir() and any(wal_dir.iterdir())
    try:
        plan = plan_restore(directory, at=at, lsn=lsn)
    except RestoreError:
        if not has_log:
            raise
        db = DictDB()  # a log that starts at operation 1 rebuilds from nothing
    else:
        db = _carry_out(plan)
    if has_log:
        _replay_log(db, wal_dir, at, lsn)
    return db


def _replay_log(db: DictDB, wal_dir: Path, at: Any, lsn: int | None) -> None:
    from wal import WALError
    from wal.recovery import RecoveryError, read_wal

    try:
        ops, segments, _torn = read_wal(wal_dir, repair=False, after_lsn=db.lsn)
    except RecoveryError as exc:
        raise RestoreError(
            f"log damaged at offset {exc.offset}: {exc.reason}", Path(exc.segment)
        ) from None
    if not ops:
        if db.lsn == 0 and not segments:
            raise RestoreError(f"nothing in {wal_dir.parent} to restore from")
        return
    if ops[0].lsn != db.lsn + 1:
        raise RestoreError(
            f"the log resumes at LSN {ops[0].lsn} but the snapshots reach only {db.lsn}",
            segments[0].path if segments else wal_dir,
        )
    limit_ts = None if at is None else to_epoch(at)
    for op in ops:
        if lsn is not None and op.lsn > lsn:
            break
        if limit_ts is not None and op.ts > limit_ts:
            break
        try:
            db.apply_operation(op)
        except (DictDBError, WALError) as exc:
            raise RestoreError(f"log operation {op.lsn} does not apply: {exc}", wal_dir) from None
