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
import io
import logging
import math
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TypeVar, cast

import attrs

from dictdb._engine import Engine, Lock
from dictdb._replay import collector_paused, replay_batch
from dictdb.errors import CorruptFileError, DictDBError, RestoreError
from dictdb.storage import persist
from dictdb.storage.catalog import BackupFile, Catalog, LegacyFile, scan
from dictdb.storage.names import name_stamp
from dictdb.storage.target import LocalDirectory, Located, Place, Target, as_target
from dictdb.storage.timeline import LOG_LINEAGE, Timeline, parse_log_lineage, read_log_lineage
from wal import (
    WALError,
    list_segments,
    parse_segment_name,
    segment_name,
    stream_until_damage,
)

if TYPE_CHECKING:
    from wal.framing import Batch

log = logging.getLogger("dictdb")

_T = TypeVar("_T")


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
            new timeline, so that its own backups never mix with the later history).
        timeline: the timeline restored (None: the target holds no backups).
        lineage: that timeline's history (what the restored database continues, or forks
            from).
        parent: where that timeline forked from: (its parent's lineage, the fork LSN).
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
    timeline: int | None = None
    lineage: str | None = None
    parent: tuple[str, int] | None = None
    #: Where the files are read from (None: the local directory `directory`).
    target: Target | None = attrs.field(default=None, eq=False, repr=False)
    #: Reference DictDB 1.x files to read instead of `files` (the guide's recipe: the newest
    #: full at or before the target, then the later deltas in name order); `lsn` is then 0,
    #: `ts` the last file's name time.
    legacy: tuple[LegacyFile, ...] = ()
    #: Whether the plan reaches the target exactly (see `restore_engine`'s *exact*).
    exact: bool = True

    @property
    def source(self) -> Target:
        """The target the files are read from."""
        return LocalDirectory(self.directory) if self.target is None else self.target

    def as_document(self) -> dict[str, Any]:
        """A plain description (for ``dictdb restore --dry-run`` and logs)."""
        return {
            "directory": str(self.directory),
            "files": [f.path.name for f in self.files] + [f.path.name for f in self.legacy],
            "target_lsn": self.target_lsn,
            "target_ts": self.target_ts,
            "lsn": self.lsn,
            "ts": self.ts,
            "log": None if self.log_from is None else [self.log_from, self.log_to],
            "skipped": [{"file": p.name, "reason": r} for p, r in self.skipped],
            "legacy": bool(self.legacy),
            "exact": self.exact,
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
    return name_stamp(path.name) or 0.0


def _choose(catalog: Catalog, timeline: int | None) -> Timeline | None:
    # The timeline asked for, or the newest (highest number): never a wall-clock choice.
    history = catalog.history
    if timeline is None:
        return history.newest()
    if type(timeline) is not int or timeline < 1:
        raise ValueError(f"timeline must be an int >= 1, got {timeline!r}")
    chosen = history.timelines.get(timeline)
    if chosen is None:
        known = ", ".join(str(n) for n in sorted(history.timelines)) or "none"
        raise RestoreError(f"no timeline {timeline} here (timelines: {known})")
    return chosen


def _plan(
    catalog: Catalog, target: Target, lsn: int | None, ts: float | None, timeline: int | None
) -> RestorePlan:
    directory = target.describe()
    chosen = _choose(catalog, timeline)
    caps = {} if chosen is None else catalog.history.caps(chosen.number)
    rank = {tl.lineage: tl.number for tl in catalog.history.timelines.values()}

    def usable(f: BackupFile) -> bool:
        return f.lineage in caps and f.last_lsn <= caps[f.lineage]

    files = [f for f in catalog.files if usable(f)]
    fulls = [f for f in files if f.is_full and _within(f, lsn, ts)]
    on = "" if chosen is None else f" on timeline {chosen.number}"
    if not fulls:
        for path, reason in catalog.history.unreadable:
            raise RestoreError(f"unreadable timeline, and it may be needed: {reason}", path)
        if catalog.unreadable:
            path, reason = catalog.unreadable[0]
            raise RestoreError(
                f"no readable full snapshot; this file is unreadable: {reason}", path
            )
        if not any(f.is_full for f in files):
            raise RestoreError(f"no full snapshot{on} in {directory}")
        earliest = min((f for f in files if f.is_full), key=lambda f: f.last_lsn)
        what = f"LSN {lsn}" if lsn is not None else f"time {iso(ts)}"
        raise RestoreError(
            f"{what} is before the earliest point this directory can rebuild{on} "
            f"(LSN {earliest.last_lsn}, time {iso(earliest.last_op_ts)})",
            earliest.path,
        )
    # At one LSN, the file of the nearest history: the chosen timeline's own, then its
    # parent's (whose chain cannot go past the fork).
    full = max(fulls, key=lambda f: (f.last_lsn, rank.get(f.lineage, 0)))
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
        timeline=None if chosen is None else chosen.number,
        lineage=None if chosen is None else chosen.lineage,
        parent=_fork_of(catalog, chosen),
        target=target,
    )


def _fork_of(catalog: Catalog, chosen: Timeline | None) -> tuple[str, int] | None:
    # (parent lineage, fork LSN) of the chosen timeline, as the target's history records it.
    if chosen is None or chosen.parent is None or chosen.fork_lsn is None:
        return None
    parent = catalog.history.timelines.get(chosen.parent)
    if parent is None or parent.lineage is None:
        return None
    return parent.lineage, chosen.fork_lsn


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


def plan_restore(
    backup_dir: Place,
    *,
    at: Any = None,
    lsn: int | None = None,
    timeline: int | None = None,
    storage_options: dict[str, Any] | None = None,
    exact: bool = False,
    use_log: bool = True,
) -> RestorePlan:
    """Decide which files (and logged operations) rebuild the state asked for, without
    rebuilding it: a dry run.

    Args:
        backup_dir: the backup directory, or a storage target.
        at: a time (datetime, ISO 8601 string or epoch seconds): the state as of that moment.
        lsn: the state right after operation *lsn*.
        timeline: the timeline to follow (default: the newest, the highest number).
        storage_options: for a URL, passed to fsspec.
        exact: refuse (`RestoreError`) a target that can only be reached approximately
            (without a log covering it, the backup point before it) instead of warning.
        use_log: replay the durable log (``wal/``) where there is one; False restores from
            snapshots and deltas alone (a damaged log then does not matter).

    Returns:
        The plan; `RestorePlan.lsn` says where it stops (never past the target), and
        `RestorePlan.exact` whether it is the target.

    Raises:
        ValueError: both *at* and *lsn* given, or a negative *lsn*.
        RestoreError: nothing at or before the target, an LSN past the newest point, a gap or
            an overlap, damage in the log before the target, no such timeline, an
            approximate target with *exact*.
    """
    target = as_target(backup_dir, storage_options)
    return replanning(lambda: _plan_all(target, at, lsn, timeline, exact, use_log), target)[0]


#: How many times a reader plans afresh when the target changed under it (retention).
_REPLANS: Final = 5


def replanning(
    attempt: Callable[[], _T],
    target: Target,
    settled: Callable[[_T], bool] = lambda _: True,
) -> _T:
    """Run a reader's *attempt* (a restore, a plan, a verify, a history), again from a fresh
    listing when the target changed under it, a bounded number of times.

    Retention may delete a file between the listing and the read, and a listing taken while
    files come and go may show neither the old chain nor the new one (a directory listing is
    no snapshot). So: a vanished file means plan again; a failed plan (`RestoreError`,
    `CorruptFileError`), or an answer that is not *settled*, means plan again if the names
    changed meanwhile (the same names: the answer stands). Never a bare FileNotFoundError.
    """
    for _ in range(_REPLANS - 1):
        names = _names(target)
        try:
            result = attempt()
        except FileNotFoundError as exc:
            local = target.local_directory()
            if local is not None and not local.is_dir():
                raise  # the directory itself is missing: no listing will bring it back
            log.info("restore: %s vanished while reading (retention?): planning again", exc)
            continue
        except (RestoreError, CorruptFileError):
            if _names(target) == names:
                raise  # the same files: the answer stands
            continue
        if settled(result) or _names(target) == names:
            return result
    try:
        return attempt()
    except FileNotFoundError as exc:
        raise RestoreError(
            f"files kept vanishing while reading (retention running?): {exc}"
        ) from None


def _names(target: Target) -> frozenset[str]:
    try:
        return frozenset(e.name for e in target.list())
    except OSError:
        return frozenset()


def _log_lineage(log_dir: Path) -> str | None:
    try:
        found = read_log_lineage(log_dir)
    except CorruptFileError as exc:
        raise RestoreError(exc.reason, Path(exc.path)) from None
    return None if found is None else found[0]


def _plan_all(
    backup_dir: Place,
    at: Any,
    lsn: int | None,
    timeline: int | None = None,
    exact: bool = False,
    use_log: bool = True,
    build: Callable[[RestorePlan], Engine] | None = None,
) -> tuple[RestorePlan, Engine | None]:
    # The plan; with *build*, the engine carried through the log (see `_plan_ours`).
    target = as_target(backup_dir)
    ts = _target_time(at, lsn)
    catalog = scan(target)
    if not catalog.legacy:
        return _judged(target, catalog, lsn, ts, timeline, exact, use_log, build)
    # Files of the reference DictDB too: its chain serves a time (or the newest state) when it
    # reaches later than ours, or ours none; an LSN or a timeline only ours can serve.
    legacy = _legacy_files(catalog.legacy, ts)
    if lsn is not None or timeline is not None:
        if not catalog.files:
            what = f"lsn={lsn}" if lsn is not None else f"timeline={timeline}"
            raise RestoreError(
                f"{what}: the files here are the reference DictDB's, which carry no LSN and "
                "no timeline; restore them by time (at=) or to the newest state, or convert "
                "the directory with `python -m dictdb migrate` first"
            )
        return _judged(target, catalog, lsn, ts, timeline, exact, use_log, build)
    try:
        ours = _judged(target, catalog, lsn, ts, timeline, exact, use_log, build)
    except RestoreError as exc:
        if not legacy:
            if catalog.files:
                raise
            raise RestoreError(_no_legacy_chain(catalog.legacy, ts), target.describe()) from exc
        return _legacy_plan(target, catalog, legacy, ts, exact), None
    if legacy and legacy[-1].stamp > ours[0].ts:
        return _legacy_plan(target, catalog, legacy, ts, exact), None
    return ours


def _legacy_files(files: Sequence[LegacyFile], ts: float | None) -> tuple[LegacyFile, ...]:
    # The seed guide's recipe: the newest full at or before *ts*, then the deltas after it (in
    # name order, which is time order) up to *ts*. `files` are in name-time order.
    usable = [f for f in files if ts is None or f.stamp <= ts]
    fulls = [f for f in usable if f.is_full]
    if not fulls:
        return ()
    full = fulls[-1]
    after = (full.stamp, full.path.name)
    return (full, *(f for f in usable if not f.is_full and (f.stamp, f.path.name) > after))


def _no_legacy_chain(files: Sequence[LegacyFile], ts: float | None) -> str:
    fulls = [f for f in files if f.is_full]
    if not fulls:
        return (
            "the reference DictDB files here hold no full snapshot (dictdb_backup_*): its "
            "deltas alone rebuild nothing"
        )
    first = fulls[0]
    return (
        f"time {iso(ts)} is before the earliest reference full snapshot here, "
        f"{first.path.name} ({iso(first.stamp)})"
    )


def iso(ts: float | None) -> str:
    """A time for messages: ISO 8601 in UTC (``now`` for None)."""
    if ts is None:
        return "now"
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat()


def _approximate(message: str, exact: bool) -> None:
    # A target reached only approximately: an error when exactness was asked for.
    if exact:
        raise RestoreError(f"{message} (exact=True)")
    log.warning("restore: %s", message)


def _judged(
    target: Target,
    catalog: Catalog,
    lsn: int | None,
    ts: float | None,
    timeline: int | None,
    exact: bool,
    use_log: bool,
    build: Callable[[RestorePlan], Engine] | None = None,
) -> tuple[RestorePlan, Engine | None]:
    """`_plan_ours`, then the verdict on the target: reached exactly; past the newest point
    (an error for an LSN); or approximately (a warning naming the point reached, an error
    with *exact*)."""
    plan, ops, log_state = _plan_ours(target, catalog, lsn, ts, timeline, use_log, build)
    if lsn is None and ts is None:
        return plan, ops
    if lsn is not None and plan.lsn == lsn:
        return plan, ops
    read_log, later_op, log_end = log_state
    if lsn is None and read_log and (later_op or log_end is None):
        return plan, ops  # the log holds every operation up to the target and one after it
    newest_lsn, newest_ts = plan.lsn, plan.ts
    if read_log and log_end is not None:
        newest_lsn, newest_ts = log_end
    elif not read_log:
        try:
            newest = _plan(catalog, target, None, None, timeline)
            newest_lsn, newest_ts = newest.lsn, newest.ts
        except RestoreError:
            pass
    if lsn is not None and lsn > newest_lsn:
        raise RestoreError(
            f"LSN {lsn} is past the newest point this directory can rebuild: LSN {newest_lsn} "
            f"({iso(newest_ts)})",
            plan.directory,
        )
    reached = f"restored LSN {plan.lsn} ({iso(plan.ts)})"
    why = "no log covers it" if not read_log else "the log does not reach it"
    if lsn is not None:
        message = f"LSN {lsn} cannot be reached exactly ({why}): {reached}, the point before it"
    elif ts is not None and ts >= newest_ts and plan.lsn == newest_lsn:
        message = (
            f"time {iso(ts)} is past the newest point here: {reached}; changes after it, if "
            "any, are not here"
        )
    else:
        message = (
            f"time {iso(ts)} cannot be reached exactly ({why}): {reached}, the point before it"
        )
    _approximate(message, exact)
    return attrs.evolve(plan, exact=False), ops


def _legacy_plan(
    target: Target,
    catalog: Catalog,
    files: tuple[LegacyFile, ...],
    ts: float | None,
    exact: bool = False,
) -> RestorePlan:
    if ts is not None:
        # The reference's files say only when they were written: any time is approximate.
        _approximate(
            f"time {iso(ts)}: the reference DictDB's files hold only the states at their "
            f"name times: restored {files[-1].path.name} ({iso(files[-1].stamp)})",
            exact,
        )
    return RestorePlan(
        target.describe(),
        (),
        None,
        ts,
        0,
        files[-1].stamp,
        catalog.unreadable,
        target=target,
        legacy=files,
    )


#: What `_plan_ours` learnt from the log: whether it was read, whether an operation after the
#: target was seen, and the last operation readable (LSN, time) when the log ends there
#: (None: read to its very end, or not read).
_LogState = tuple[bool, bool, tuple[int, float] | None]


def _plan_ours(
    target: Target,
    catalog: Catalog,
    lsn: int | None,
    ts: float | None,
    timeline: int | None,
    use_log: bool = True,
    build: Callable[[RestorePlan], Engine] | None = None,
) -> tuple[RestorePlan, Engine | None, _LogState]:
    # The plan; with *build*, the engine it made from the plan's files and carried through
    # the log (None when no logged operation was kept: carry the plan out).
    directory = target.describe()
    # The durable log: a local directory's ``wal/``, or the log shipped to the target's
    # (`dictdb.storage.archive`); it serves the history it belongs to (and, up to the fork,
    # the timelines forked from it).
    source = _LogSource(target)
    segments = source.segments if use_log else []
    log_lineage = source.lineage() if segments else None
    try:
        plan = _plan(catalog, target, lsn, ts, timeline)
    except RestoreError:
        # (No segment: a durable database that never wrote an operation, an empty history.)
        from_start = segments[0][0] == 1 if segments else not catalog.files and source.exists()
        if timeline is not None or not from_start:
            raise
        # The log holds every operation from the first (or the durable database never wrote
        # one: an empty database): rebuild from an empty database.
        plan = RestorePlan(
            directory, (), lsn, ts, 0, 0.0, catalog.unreadable, lineage=log_lineage, target=target
        )
    caps = {} if plan.timeline is None else catalog.history.caps(plan.timeline)
    # How far the log may carry this plan: all the way on its own history (or when it does
    # not say which it is), up to the fork on an ancestor's, not at all on another's.
    if log_lineage is None or plan.timeline is None or log_lineage == plan.lineage:
        log_cap = math.inf
    else:
        log_cap = caps.get(log_lineage, -1)
    # The restored state forks when its own timeline went on past it, or when it is not the
    # newest timeline: what it writes next must become the newest history.
    newest = catalog.history.newest()
    forks = any(
        caps.get(f.lineage, -1) == math.inf and f.last_lsn > plan.lsn for f in catalog.files
    ) or (plan.timeline is not None and newest is not None and newest.number != plan.timeline)
    if not segments or log_cap <= plan.lsn:
        return attrs.evolve(plan, forks=forks), None, (False, False, None)
    reader = _LogReader(plan, lsn, ts, log_cap, build)
    try:
        with collector_paused():
            hole = source.stream(plan.lsn, reader.take)
    except _Enough:
        hole = None  # what lies past the target does not matter: it is not restored
    if reader.first is not None and reader.first != plan.lsn + 1:
        raise RestoreError(
            f"the log resumes at LSN {reader.first} but the snapshots reach only {plan.lsn}",
            Path(segments[0][1]),
        )
    used = reader.used
    reached = used[1][0] if used is not None else plan.lsn
    if hole is not None and not reader.later and (lsn is None or lsn > reached):
        # The target lies past a hole in the log (operations it never got, after a crash of
        # a database whose snapshots went further) or past damage: what is beyond is unknown.
        at_ts = used[1][1] if used is not None else plan.ts
        raise RestoreError(
            f"the log is unreadable past LSN {reached} (offset {hole.offset}: {hole.reason}); "
            f"the newest point reachable before it is LSN {reached} ({iso(at_ts)})",
            source.name(hole.segment),
        )
    forks = forks or reader.later or hole is not None
    end = None if hole is None else (reader.seen or (plan.lsn, plan.ts))
    if used is None:
        return attrs.evolve(plan, forks=forks), None, (True, reader.later, end)
    final = attrs.evolve(
        plan, lsn=used[1][0], ts=used[1][1], log_from=used[0], log_to=used[1][0], forks=forks
    )
    return final, reader.engine, (True, reader.later, end)


class _Enough(Exception):
    """Raised by `_LogReader.take` at the first operation past the target: stop reading."""


class _LogReader:
    """Takes a log's decoded frames in LSN order: keeps those up to the target (an LSN, a
    time, the cap of the history the log serves) and, with *build*, applies them to the
    engine *build* makes from the plan's files (made at the first one kept)."""

    def __init__(
        self,
        plan: RestorePlan,
        lsn: int | None,
        ts: float | None,
        cap: float,
        build: Callable[[RestorePlan], Engine] | None,
    ) -> None:
        self.plan, self.ts, self.build = plan, ts, build
        self.limit = min(math.inf if lsn is None else lsn, cap)
        self.first: int | None = None  # the first LSN read
        self.seen: tuple[int, float] | None = None  # the last operation read
        self.used: tuple[int, tuple[int, float]] | None = None  # first LSN, last (LSN, time)
        self.later = False  # an operation past the target was read
        self.engine: Engine | None = None

    def take(self, batch: Batch) -> None:
        if self.first is None:
            self.first = batch.first
            if batch.first != self.plan.lsn + 1:
                raise _Enough  # reported by the caller, which knows the segment
        self.seen = (batch.last, batch.ts[-1])
        keep = len(batch)
        if batch.last > self.limit:
            keep = max(0, int(self.limit) - batch.first + 1)
        if self.ts is not None and max(batch.ts[:keep], default=0.0) > self.ts:
            keep = next(i for i, t in enumerate(batch.ts) if t > self.ts)
        kept = batch.until(batch.first + keep - 1)
        if kept is not None:
            first = batch.first if self.used is None else self.used[0]
            self.used = (first, (kept.last, kept.ts[-1]))
            if self.build is not None:
                self._apply(kept)
        if keep < len(batch):
            self.later = True
            raise _Enough

    def _apply(self, batch: Batch) -> None:
        if self.engine is None:
            assert self.build is not None
            self.engine = self.build(self.plan)
        try:
            replay_batch(self.engine, batch)
        except (DictDBError, WALError) as exc:
            raise RestoreError(
                f"log operations {batch.first}..{batch.last} do not apply: {exc}",
                self.plan.directory / "wal",
            ) from None


#: Deltas a restore fetches ahead from a remote target (each fetch is a round trip).
_PREFETCH: Final = 8


class _Fetched:
    """One object already read from a remote target: read again from memory, named as there."""

    def __init__(self, origin: Target, name: str, data: bytes) -> None:
        self._origin = origin
        self._name = name
        self._data = data

    def describe(self, name: str = "") -> Path:
        return self._origin.describe(name)

    def open(self, name: str) -> BinaryIO:
        if name != self._name:
            return self._origin.open(name)
        return io.BytesIO(self._data)

    def read(self, name: str) -> bytes:
        return self._data if name == self._name else self._origin.read(name)

    def read_head(self, name: str, size: int) -> bytes:
        return self.read(name)[:size]


def _fetched(target: Target, files: Sequence[BackupFile]) -> Iterator[Located]:
    # Where to read each delta from: in place for a local directory; from a remote target,
    # fetched _PREFETCH ahead in parallel while the ones before are applied.
    if target.local_directory() is not None or len(files) < 2:
        for f in files:
            yield f.where
        return

    def fetch(f: BackupFile) -> bytes:
        return f.where.target.read(f.where.name)

    with ThreadPoolExecutor(_PREFETCH, thread_name_prefix="dictdb-fetch") as pool:
        pending = deque(pool.submit(fetch, f) for f in files[:_PREFETCH])
        for i, f in enumerate(files):
            data = pending.popleft().result()
            if i + _PREFETCH < len(files):
                pending.append(pool.submit(fetch, files[i + _PREFETCH]))
            yield Located(cast(Target, _Fetched(f.where.target, f.where.name, data)), f.where.name)


class _LogSource:
    """The log a target holds: a local directory's ``wal/`` read in place, or a shipped log
    (pieces under the target's ``wal/``) fetched into a temporary directory to be read."""

    def __init__(self, target: Target) -> None:
        self._local = target.local_directory()
        self._dir = None if self._local is None else self._local / "wal"
        self._remote = None if self._local is not None else target.child("wal")
        if self._dir is not None:
            self.segments = list_segments(self._dir)
        else:
            assert self._remote is not None
            firsts = [
                (first, e.name)
                for e in self._remote.list()
                if e.regular and (first := parse_segment_name(e.name)) is not None
            ]
            self.segments = [(f, self._remote.describe(n)) for f, n in sorted(firsts)]

    def exists(self) -> bool:
        return self._dir is not None and self._dir.is_dir()

    def lineage(self) -> str | None:
        if self._dir is not None:
            return _log_lineage(self._dir)
        assert self._remote is not None
        try:
            data = self._remote.read(LOG_LINEAGE)
        except FileNotFoundError:
            return None
        try:
            return parse_log_lineage(self._remote.describe(LOG_LINEAGE), data)[0]
        except CorruptFileError as exc:
            raise RestoreError(exc.reason, Path(exc.path)) from None

    def name(self, segment: object) -> Path:
        # A segment named in an error: a shipped piece by its name in the target.
        path = Path(str(segment))
        if self._remote is not None:
            return self._remote.describe(path.name)
        return path

    def stream(self, after_lsn: int, sink: Callable[[Batch], object]) -> Any:
        # Hand the operations readable after *after_lsn* to *sink*, a decoded frame at a
        # time; return the gap or damage that ends them (None: none).
        if self._dir is not None:
            return stream_until_damage(self._dir, sink, after_lsn=after_lsn)
        # Only the pieces from the one holding after_lsn + 1 on are fetched.
        assert self._remote is not None
        firsts = [first for first, _ in self.segments]
        start = max((i for i, f in enumerate(firsts) if f <= after_lsn + 1), default=0)
        with tempfile.TemporaryDirectory(prefix="dictdb-log-") as tmp:
            for first, path in self.segments[start:]:
                (Path(tmp) / segment_name(first)).write_bytes(self._remote.read(path.name))
            return stream_until_damage(Path(tmp), sink, after_lsn=after_lsn)


def restore_snapshots(
    backup_dir: Place,
    *,
    at: Any = None,
    lsn: int | None = None,
    timeline: int | None = None,
    lock: Lock | None = None,
) -> Engine:
    """`restore_engine` from snapshots and deltas alone (the durable log is not read).

    *lock* is the lock the engine is built with (durable mode's group-commit lock).
    """
    target = as_target(backup_dir)
    ts = _target_time(at, lsn)

    def attempt() -> Engine:
        return _carry_out(_plan(scan(target), target, lsn, ts, timeline), lock)

    return replanning(attempt, target)


def _target_time(at: Any, lsn: int | None) -> float | None:
    # Checks a restore target and returns the time one as epoch seconds.
    if at is not None and lsn is not None:
        raise ValueError("give at= or lsn=, not both")
    if lsn is not None and (type(lsn) is not int or lsn < 0):
        raise ValueError(f"lsn must be an int >= 0, got {lsn!r}")
    return None if at is None else to_epoch(at)


#: ``progress(bytes done, bytes in all)``, called as a restore reads its files.
Progress = Callable[[int, int], None]


def _carry_out(
    plan: RestorePlan, lock: Lock | None = None, progress: Progress | None = None
) -> Engine:
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
                fallback = _plan(
                    scan(target, exclude=bad),
                    target,
                    plan.target_lsn,
                    plan.target_ts,
                    plan.timeline,
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
    total = sum(f.size for f in plan.files)
    done = plan.files[0].size
    if progress is not None:
        progress(done, total)
    for delta, where in zip(plan.files[1:], _fetched(target, plan.files[1:]), strict=True):
        try:
            persist.apply_delta(engine, where)
        except CorruptFileError as exc:
            raise RestoreError(
                f"{exc.reason}; the newest point reachable before it is LSN {engine.lsn}",
                delta.path,
            ) from None
        done += delta.size
        if progress is not None:
            progress(done, total)
    if plan.lineage is not None:
        # The state is a point of the chosen timeline, whatever history the last file came
        # from (an ancestor's, before the fork).
        engine.lineage = plan.lineage
        engine.parent = plan.parent
    return engine


def _carry_out_legacy(files: tuple[LegacyFile, ...]) -> Engine:
    # The reference's chain: no digest links its files, so a damaged one cannot be replaced
    # by another (no other file reaches the same state); it is named.
    full, *deltas = files
    try:
        engine = persist.load(full.where)
    except CorruptFileError as exc:
        raise RestoreError(exc.reason, full.path) from None
    done = full
    for delta in deltas:
        try:
            persist.apply_delta(engine, delta.where)
        except CorruptFileError as exc:
            raise RestoreError(
                f"{exc.reason}; the newest point reachable before it is {done.path.name} "
                f"({iso(done.stamp)})",
                delta.path,
            ) from None
        done = delta
    return engine


def restore_engine(
    backup_dir: Place,
    *,
    at: Any = None,
    lsn: int | None = None,
    timeline: int | None = None,
    storage_options: dict[str, Any] | None = None,
    exact: bool = False,
    use_log: bool = True,
    progress: Progress | None = None,
) -> Engine:
    """Rebuild an engine from a backup directory: the newest state, or the state at a point.

    Snapshots and deltas bring the state to the last file boundary at or before the target;
    where the directory also holds a durable log (``wal/``), its operations then carry the
    state to the exact target (or to the log's end). The newest timeline is followed unless
    *timeline* names another. An engine restored to a point that its timeline went past
    starts a new history, forked from that point. See `dictdb.restore`.

    A target reached only approximately (no log covers it: the backup point before it) logs a
    WARNING naming the point reached; *exact* makes it an error. An LSN past the newest point
    the directory holds is an error naming that point. A damaged log serves every target
    before the damage.

    Raises:
        ValueError: both *at* and *lsn* given.
        RestoreError: nothing restorable at or before the target, an LSN past the newest
            point, a gap, an overlap, a damaged file on the way (the error names it), damage
            in the log before the target, no such timeline, an approximate target with
            *exact*.
    """
    target = as_target(backup_dir, storage_options)
    return replanning(
        lambda: _restore_once(target, at, lsn, timeline, exact, use_log, progress), target
    )


def _restore_once(
    backup_dir: Place,
    at: Any,
    lsn: int | None,
    timeline: int | None,
    exact: bool = False,
    use_log: bool = True,
    progress: Progress | None = None,
) -> Engine:
    def build(plan: RestorePlan) -> Engine:
        # The state of the plan's files, which the log's operations then carry on.
        return _carry_out(plan, progress=progress) if plan.files else Engine(lineage=plan.lineage)

    plan, carried = _plan_all(backup_dir, at, lsn, timeline, exact, use_log, build)
    if plan.legacy:
        return _carry_out_legacy(plan.legacy)
    engine = build(plan) if carried is None else carried
    if plan.forks:
        engine.parent = (engine.lineage, engine.lsn)
        engine.lineage = uuid.uuid4().hex
    return engine
