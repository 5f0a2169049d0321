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
import uuid
from pathlib import Path
from typing import Any

import attrs

from dictdb._engine import Engine, Lock
from dictdb.errors import CorruptFileError, DictDBError, RestoreError
from dictdb.storage import persist
from dictdb.storage.catalog import NAME_PATTERN, BackupFile, Catalog, scan
from dictdb.storage.target import LocalDirectory, Place, Target, as_target
from wal import RecoveryError, WALError, list_segments, read_until_gap

log = logging.getLogger("dictdb")


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
        log_from: the first operation replayed from the durable log (None: no log used).
        log_to: the last one.
        forks: whether the history goes on past `lsn` (a restored database then starts a
            new lineage, so that its own backups never mix with the later history).
    """

    directory: Path
    files: tuple[BackupFile, ...]
    target_lsn: int | None
    target_ts: float | None
    lsn: int
    ts: float
    skipped: tuple[tuple[Path, str], ...] = ()
    log_from: int | None = None
    log_to: int | None = None
    forks: bool = False
    #: Where the files are read from (None: the local directory `directory`).
    target: Target | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def source(self) -> Target:
        """The target the files are read from."""
        return LocalDirectory(self.directory) if self.target is None else self.target

    def as_document(self) -> dict[str, Any]:
        """A plain description (for ``dictdb restore --dry-run`` and logs)."""
        return {
            "directory": str(self.directory),
            "files": [f.path.name for f in self.files],
            "target_lsn": self.target_lsn,
            "target_ts": self.target_ts,
            "lsn": self.lsn,
            "ts": self.ts,
            "log": None if self.log_from is None else [self.log_from, self.log_to],
            "skipped": [{"file": p.name, "reason": r} for p, r in self.skipped],
        }


def to_epoch(at: Any) -> float:
    """Epoch seconds from a datetime (naive = local time), a date, an ISO 8601 string, or a
    number.

    Raises:
        TypeError: anything else.
        ValueError: NaN, infinity, or a string that is not ISO 8601.
    """
    if isinstance(at, str):
        try:
            at = _dt.datetime.fromisoformat(at)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {at!r}") from None
    if isinstance(at, _dt.datetime):
        return at.timestamp()
    if isinstance(at, _dt.date):
        return _dt.datetime(at.year, at.month, at.day).timestamp()
    if isinstance(at, int | float) and not isinstance(at, bool):
        if not math.isfinite(at):
            raise ValueError(f"at must be a finite number, got {at!r}")
        return float(at)
    raise TypeError(f"at must be a datetime or epoch seconds, got {type(at).__name__}")


def _within(f: BackupFile, target_lsn: int | None, target_ts: float | None) -> bool:
    if target_lsn is not None:
        return f.last_lsn <= target_lsn
    if target_ts is not None:
        return f.last_op_ts <= target_ts
    return True


def _name_stamp(path: Path) -> float:
    match = NAME_PATTERN.match(path.name)
    if match is None:
        return 0.0
    return int(match["sec"]) + int(match["usec"]) / 1_000_000


def _lineages(catalog: Catalog) -> dict[str | None, float]:
    """The history to restore and its ancestors, each with the last LSN it may serve.

    The current history is the one of the most recently written file; an ancestor serves only
    up to the LSN where the current history forked from it.
    """
    if not catalog.files:
        return {}
    current = max(catalog.files, key=lambda f: f.written_ts).lineage
    caps: dict[str | None, float] = {current: math.inf}
    parents = {f.lineage: f.parent for f in catalog.files if f.parent is not None}
    lineage = current
    while lineage in parents:
        parent, fork_lsn = parents[lineage]
        if parent in caps:
            break
        caps[parent] = min(fork_lsn, caps[lineage])
        lineage = parent
    return caps


def _plan(catalog: Catalog, target: Target, lsn: int | None, ts: float | None) -> RestorePlan:
    directory = target.describe()
    caps = _lineages(catalog)

    def usable(f: BackupFile) -> bool:
        return f.lineage in caps and f.last_lsn <= caps[f.lineage]

    files = [f for f in catalog.files if usable(f)]
    fulls = [f for f in files if f.is_full and _within(f, lsn, ts)]
    if not fulls:
        if catalog.unreadable:
            path, reason = catalog.unreadable[0]
            raise RestoreError(
                f"no readable full snapshot; this file is unreadable: {reason}", path
            )
        if not any(f.is_full for f in files):
            raise RestoreError(f"no full snapshot in {directory}")
        earliest = min((f for f in files if f.is_full), key=lambda f: f.last_lsn)
        what = f"LSN {lsn}" if lsn is not None else f"time {ts}"
        raise RestoreError(
            f"{what} is before the earliest point this directory can rebuild "
            f"(LSN {earliest.last_lsn}, time {earliest.last_op_ts})",
            earliest.path,
        )
    full = max(fulls, key=lambda f: (f.last_lsn, f.written_ts))
    lineage_files = [f for f in files if f.lineage == full.lineage]
    by_first: dict[int, list[BackupFile]] = {}
    for f in lineage_files:
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
    for f in lineage_files:
        if not f.is_full and f.first_lsn < nxt <= f.last_lsn and f not in chain:
            raise RestoreError(f"delta overlaps LSN {nxt - 1} reached by the chain", f.path)
    exact = lsn is not None and reached.last_lsn == lsn
    if not exact:
        # A file whose header cannot be read, written after the chosen snapshot, may hold
        # operations this restore needs: refuse rather than silently stop short.
        for path, reason in catalog.unreadable:
            if _name_stamp(path) >= _name_stamp(full.path):
                raise RestoreError(f"unreadable, and it may be needed: {reason}", path)
        _check_gap(lineage_files, reached, nxt, lsn)
    return RestorePlan(
        directory,
        tuple(chain),
        lsn,
        ts,
        reached.last_lsn,
        reached.last_op_ts,
        catalog.unreadable,
        target=target,
    )


def _check_gap(
    lineage_files: list[BackupFile], reached: BackupFile, nxt: int, lsn: int | None
) -> None:
    # A delta that starts after `nxt` proves operations nxt..start-1 were written to a file
    # that is gone, unless a full snapshot ends exactly at start-1.
    if any(not f.is_full and f.first_lsn == nxt for f in lineage_files):
        return  # the next delta is there; the chain stopped at the target
    later = [f for f in lineage_files if not f.is_full and f.first_lsn > nxt]
    if not later:
        return
    first = min(later, key=lambda f: f.first_lsn)
    if any(f.is_full and f.last_lsn == first.first_lsn - 1 for f in lineage_files):
        return  # a full snapshot bridges it: the chain simply stops at a boundary
    if lsn is not None and nxt > lsn:
        return
    raise RestoreError(
        f"gap: no file covers LSN {nxt}..{first.first_lsn - 1} before this delta", first.path
    )


def plan_restore(backup_dir: Place, *, at: Any = None, lsn: int | None = None) -> RestorePlan:
    """Decide which files (and logged operations) rebuild the state asked for, without
    rebuilding it: a dry run.

    Args:
        backup_dir: the backup directory.
        at: a time (datetime, ISO 8601 string or epoch seconds): the state as of that moment.
        lsn: the state right after operation *lsn*.

    Returns:
        The plan; `RestorePlan.lsn` says where it stops (never past the target).

    Raises:
        ValueError: both *at* and *lsn* given, or a negative *lsn*.
        RestoreError: nothing at or before the target, a gap or an overlap, damage in the log.
    """
    return _plan_all(backup_dir, at, lsn)[0]


def _plan_all(backup_dir: Place, at: Any, lsn: int | None) -> tuple[RestorePlan, list[Any]]:
    # The plan, and the logged operations it replays (read once, used by `restore`).
    target = as_target(backup_dir)
    directory = target.describe()
    ts = _target_time(at, lsn)
    catalog = scan(target)
    # The durable log is read where it is written: a local directory's ``wal/``.
    local = target.local_directory()
    log_dir = None if local is None else local / "wal"
    segments = [] if log_dir is None else list_segments(log_dir)
    try:
        plan = _plan(catalog, target, lsn, ts)
    except RestoreError:
        if not segments or segments[0][0] != 1:
            raise
        # The log holds every operation from the first: rebuild from an empty database.
        plan = RestorePlan(directory, (), lsn, ts, 0, 0.0, catalog.unreadable, target=target)
    forks = any(
        f.lineage == (plan.files[0].lineage if plan.files else None) and f.last_lsn > plan.lsn
        for f in catalog.files
    )
    if log_dir is None or not segments:
        return attrs.evolve(plan, forks=forks), []
    try:
        ops, hole = read_until_gap(log_dir, after_lsn=plan.lsn)
    except RecoveryError as exc:
        raise RestoreError(
            f"log damaged at offset {exc.offset}: {exc.reason}", Path(exc.segment)
        ) from None
    if ops and ops[0].lsn != plan.lsn + 1:
        raise RestoreError(
            f"the log resumes at LSN {ops[0].lsn} but the snapshots reach only {plan.lsn}",
            Path(segments[0][1]),
        )
    used = []
    for op in ops:
        if (lsn is not None and op.lsn > lsn) or (ts is not None and op.ts > ts):
            break
        used.append(op)
    reached = used[-1].lsn if used else plan.lsn
    if hole is not None and len(used) == len(ops) and (lsn is None or lsn > reached):
        # The target lies past a hole in the log (operations the log never got, e.g. after
        # a crash of a database whose snapshots went further): what is beyond is unknown.
        raise RestoreError(
            f"the log has a hole after LSN {reached}: {hole.reason}", Path(hole.segment)
        )
    forks = forks or len(used) < len(ops) or hole is not None
    if not used:
        return attrs.evolve(plan, forks=forks), []
    final = attrs.evolve(
        plan,
        lsn=used[-1].lsn,
        ts=used[-1].ts,
        log_from=used[0].lsn,
        log_to=used[-1].lsn,
        forks=forks,
    )
    return final, used


def restore_snapshots(
    backup_dir: Place, *, at: Any = None, lsn: int | None = None, lock: Lock | None = None
) -> Engine:
    """`restore_engine` from snapshots and deltas alone (the durable log is not read).

    *lock* is the lock the engine is built with (durable mode's group-commit lock).
    """
    target = as_target(backup_dir)
    ts = _target_time(at, lsn)
    return _carry_out(_plan(scan(target), target, lsn, ts), lock)


def _target_time(at: Any, lsn: int | None) -> float | None:
    # Checks a restore target and returns the time one as epoch seconds.
    if at is not None and lsn is not None:
        raise ValueError("give at= or lsn=, not both")
    if lsn is not None and (type(lsn) is not int or lsn < 0):
        raise ValueError(f"lsn must be an int >= 0, got {lsn!r}")
    return None if at is None else to_epoch(at)


def _carry_out(plan: RestorePlan, lock: Lock | None = None) -> Engine:
    target = plan.source
    bad: list[Path] = []
    while True:
        full = plan.files[0]
        try:
            engine = persist.load(full.where, lock=lock)
        except CorruptFileError as exc:
            log.warning("restore: skipping damaged full snapshot %s: %s", full.path, exc.reason)
            bad.append(full.path)
            try:
                fallback = _plan(scan(target, exclude=bad), target, plan.target_lsn, plan.target_ts)
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
            persist.apply_delta(engine, delta.where)
        except CorruptFileError as exc:
            raise RestoreError(exc.reason, delta.path) from None
    return engine


def restore_engine(backup_dir: Place, *, at: Any = None, lsn: int | None = None) -> Engine:
    """Rebuild an engine from a backup directory: the newest state, or the state at a point.

    Snapshots and deltas bring the state to the last file boundary at or before the target;
    where the directory also holds a durable log (``wal/``), its operations then carry the
    state to the exact target (or to the log's end). An engine restored to a point that the
    directory's history went past starts a new lineage. See `dictdb.restore`.

    Raises:
        ValueError: both *at* and *lsn* given.
        RestoreError: nothing restorable at or before the target, a gap, an overlap, a
            damaged file on the way (the error names it), or damage in the log.
    """
    plan, ops = _plan_all(backup_dir, at, lsn)
    engine = _carry_out(plan) if plan.files else Engine()
    for op in ops:
        try:
            engine.apply_operation(op)
        except (DictDBError, WALError) as exc:
            raise RestoreError(
                f"log operation {op.lsn} does not apply: {exc}", plan.directory / "wal"
            ) from None
    if plan.forks:
        engine.parent = (engine.lineage, engine.lsn)
        engine.lineage = uuid.uuid4().hex
    return engine
