"""Operations of a backup directory in LSN order: `events`, a record's `history`, `replay`.

Sources, finest first: the durable log (``wal/``: every operation, with its before/after
images and audit metadata) where it covers the range asked for; otherwise deltas (the net
change of a record per delta: *delta granularity*, said so in every result) and the oldest
full snapshot (the record's first known state). Files are read one at a time, so memory stays
bounded by the largest single file.
"""

from __future__ import annotations

import datetime as _dt
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple, overload

import attrs

from dictdb.audit import snapshot_keys
from dictdb.audit._common import (
    DELTA,
    OPERATION,
    SNAPSHOT,
    Progress,
    field_changes,
    iso,
    log_damage,
    log_dir,
    log_start,
    resolve_point,
    same,
    segment_bytes,
)
from dictdb.errors import CorruptFileError, RestoreError
from dictdb.storage.catalog import BackupFile, Catalog, scan
from dictdb.storage.persist import load, read_document
from dictdb.storage.restore import replanning, restore_engine
from dictdb.storage.target import Target, as_target
from dictdb.storage.timeline import read_log_lineage
from wal import (
    CREATE,
    DELETE,
    DROP,
    INSERT,
    UPDATE,
    CodecError,
    RecoveryError,
    from_plain,
    index_segments,
    iter_batches,
    key_operations,
    to_plain,
)


@attrs.frozen
class Event:
    """One change (or known state) of a record or table, as the directory recorded it.

    Attributes:
        lsn: the operation (or the last operation of the delta / the snapshot's LSN).
        ts: its time, epoch seconds.
        kind: ``insert``, ``update``, ``delete``, ``create``, ``drop`` (operations);
            ``upsert`` or ``delete`` (delta granularity); ``state`` (a snapshot).
        table: the table.
        key: the record's key (None for table events).
        before: the record before (operation granularity; None otherwise or if absent).
        after: the record after (None when deleted or absent).
        meta: audit metadata (actor, reason...) when the operation carried some.
        granularity: `OPERATION`, `DELTA` or `SNAPSHOT`.
        source: the file it came from.
    """

    lsn: int
    ts: float
    kind: str
    table: str
    key: Any
    before: Any
    after: Any
    meta: Any
    granularity: str
    source: str

    @property
    def time(self) -> str:
        """`ts` as ISO 8601 in UTC, to the microsecond."""
        return iso(self.ts)

    @property
    def actor(self) -> Any:
        """Who made the change (``meta["actor"]``), None when not recorded."""
        return self.meta.get("actor") if isinstance(self.meta, dict) else None

    @property
    def reason(self) -> Any:
        """Why (``meta["reason"]``), None when not recorded."""
        return self.meta.get("reason") if isinstance(self.meta, dict) else None

    @property
    def changes(self) -> dict[str, tuple[Any, Any]]:
        """Field -> (before, after) for each field that differs, type included; a field
        absent on one side is `dictdb.audit.missing_marker()`. A side that is None (an
        insert, a deletion, a table event, or a before-image the source does not hold)
        counts as a row without fields."""
        return field_changes(self.before, self.after)

    def as_document(self) -> dict[str, Any]:
        """Plain data (values tagged as in files) for JSON output; in ``changes`` an absent
        field is ``"<absent>"``, as in ``dictdb diff --json``."""
        from dictdb.audit._common import MISSING

        def plain(v: Any) -> Any:
            return "<absent>" if v is MISSING else to_plain(v)

        return {
            "lsn": self.lsn,
            "ts": self.ts,
            "time": self.time,
            "kind": self.kind,
            "table": self.table,
            "key": to_plain(self.key),
            "before": to_plain(self.before),
            "after": to_plain(self.after),
            "changes": {f: [plain(a), plain(b)] for f, (a, b) in self.changes.items()},
            "actor": to_plain(self.actor),
            "reason": to_plain(self.reason),
            "meta": to_plain(self.meta),
            "granularity": self.granularity,
            "source": self.source,
        }


@attrs.frozen
class History(Sequence[Event]):
    """Every version of one record, oldest first: a sequence of `Event`.

    Attributes:
        table: the table.
        key: the record's key.
        versions: the versions; where the source held no before-image (deltas, snapshots),
            each version's ``before`` is the version before it, so that ``changes`` says
            what changed.
    """

    table: str
    key: Any
    versions: tuple[Event, ...]

    @property
    def granularity(self) -> str | None:
        """How fine the history is: `OPERATION` when every version is one logged operation,
        `DELTA` when some are a delta's net change, `SNAPSHOT` when some are only known from
        a full snapshot (such as the first known state); None when there is no version."""
        kinds = {v.granularity for v in self.versions}
        for coarsest in (SNAPSHOT, DELTA, OPERATION):
            if coarsest in kinds:
                return coarsest
        return None

    def __len__(self) -> int:
        return len(self.versions)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self.versions[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.versions)


# ---------------------------------------------------------------------------------------------
# Reading the directory in LSN order


def file_events(
    f: BackupFile, table: str | None, key: Any, keys: set[Any] | None, *, absent: bool = False
) -> Iterator[Event]:
    """A backup file's events: a full snapshot's states (with *absent*, also that the record
    is absent), a delta's DDL and net changes; *key* `ANY_KEY` for every key.

    Raises:
        CorruptFileError: a damaged file or tagged value.
    """
    # `read_document` checked the file and the shape of its body; its tagged values are only
    # decoded here.
    try:
        yield from _decoded_events(f, table, key, keys, absent=absent)
    except CodecError as exc:
        raise CorruptFileError(f.path, f"bad tagged value: {exc}") from None


def _row(f: BackupFile, plain_row: Any) -> dict[str, Any]:
    row = from_plain(plain_row)
    if type(row) is not dict:
        raise CorruptFileError(f.path, f"a row is a tag of a {type(row).__name__}")
    return row


def _decoded_events(
    f: BackupFile, table: str | None, key: Any, keys: set[Any] | None, *, absent: bool
) -> Iterator[Event]:
    source = f.path.name
    if f.is_full and table is not None and key is not ANY_KEY and keys is None:
        indexed = snapshot_keys.rows(f, table, key)  # None: no usable key index
        if indexed is not None:
            # The record's row, or (*absent*) that the snapshot records none.
            for k, row in indexed if indexed or not absent else [(key, None)]:
                yield Event(
                    f.last_lsn, f.last_op_ts, "state", table, k, None, row, None, SNAPSHOT, source
                )
            return
    if (
        not f.is_full
        and table is not None
        and key is not ANY_KEY
        and keys is None
        and not snapshot_keys.delta_may_hold(f, table, key)
    ):
        return  # its key index says it neither changes the record nor names the table
    doc = read_document(f.where)
    if f.is_full:
        found = False
        for name, tdoc in doc["tables"].items():
            if table is not None and name != table:
                continue
            pk = tdoc["primary_key"]
            special = set(tdoc.get("special", []))
            records = tdoc["records"]
            for i in _candidates(records, pk, key, keys, special):
                plain_row = records[i]
                row = _row(f, plain_row) if i in special else plain_row
                k = row.get(pk)
                if _wanted(k, key, keys):
                    found = True
                    yield Event(
                        f.last_lsn,
                        f.last_op_ts,
                        "state",
                        name,
                        k,
                        None,
                        row,
                        None,
                        SNAPSHOT,
                        source,
                    )
        if absent and not found and key is not ANY_KEY and table is not None:
            # The snapshot records that the row does not exist (deleted, or not yet there).
            yield Event(
                f.last_lsn, f.last_op_ts, "state", table, key, None, None, None, SNAPSHOT, source
            )
        return
    ts = f.last_op_ts
    for event in doc.get("ddl", []):
        name = event["table"]
        if table is None or name == table:
            kind = CREATE if event["op"] == "create" else DROP
            yield Event(event["lsn"], ts, kind, name, None, None, None, None, DELTA, source)
    for name, change in doc["tables"].items():
        if table is not None and name != table:
            continue
        upserts, deletes = change.get("upserts", []), change.get("deletes", [])
        # Who changed each row last, and when (deltas written since the journal kept it);
        # older deltas say only the delta's last LSN and time.
        trail = change.get("changed")
        for i, plain_row in enumerate(upserts):
            row = _row(f, plain_row)  # every row: a bad tag anywhere refuses the file
            k = row.get(change.get("primary_key", "id"))
            if _wanted(k, key, keys):
                lsn, at, meta = _last_change(trail, i, f.last_lsn, ts)
                yield Event(lsn, at, "upsert", name, k, None, row, meta, DELTA, source)
        for j, plain_key in enumerate(deletes):
            k = from_plain(plain_key)
            if _wanted(k, key, keys):
                lsn, at, meta = _last_change(trail, len(upserts) + j, f.last_lsn, ts)
                yield Event(lsn, at, DELETE, name, k, None, None, meta, DELTA, source)


_KEY_TYPES = frozenset({int, str, bytes, uuid.UUID, _dt.date, _dt.datetime})


def _candidates(
    rows: list[Any], pk: str, key: Any, keys: set[Any] | None, special: set[int]
) -> Iterable[int]:
    # The positions of a full snapshot's *rows* that may hold *key*: its row among the plain
    # ones, found at C speed, and the *special* ones (tagged: they are decoded, and so
    # checked, whatever the key). Every position when that cannot be told.
    if key is ANY_KEY or keys is not None or type(key) not in _KEY_TYPES:
        return range(len(rows))  # (a float or a bool equal to an int key: compared below)
    try:
        pks = list(map(dict.get, rows, repeat(pk)))
    except TypeError:  # not rows: the checks that follow name the damage
        return range(len(rows))
    found = set(special)
    if type(key) in (int, str) and key in pks:
        found.add(pks.index(key))
    return sorted(found)


def _last_change(
    trail: dict[str, list[Any]] | None, i: int, lsn: int, ts: float
) -> tuple[int, float, Any]:
    # Row *i*'s last operation from a delta's `changed` columns (checked when read).
    if trail is None:
        return lsn, ts, None
    meta = trail["meta"][i]
    return trail["lsn"][i], float(trail["ts"][i]), None if meta is None else from_plain(meta)


def _log_operations(wal_dir: Path, after_lsn: int) -> Iterator[tuple[Any, int]]:
    # The log's operations, streamed a decoded frame at a time: (operation, 0) for each, then
    # (None, the segment's size) once the segment is told.
    try:
        for _, batch, size in iter_batches(wal_dir, after_lsn=after_lsn):
            if batch is None:
                yield None, size
            else:
                yield from zip(batch.operations(), repeat(0))
    except RecoveryError as exc:
        raise log_damage(exc) from None


def _key_operations(
    wal_dir: Path, table: str | None, key: Any, after_lsn: int
) -> Iterator[tuple[Any, int]]:
    # `_log_operations` for one key's operations and its table's own, read through the
    # segments' key indexes where there are (`wal.key_operations`; nothing is written).
    assert table is not None
    try:
        for ops, size in key_operations(wal_dir, table, key, after_lsn=after_lsn):
            for op in ops:
                yield op, 0
            yield None, size
    except RecoveryError as exc:
        raise log_damage(exc) from None


def _wanted(k: Any, key: Any, keys: set[Any] | None) -> bool:
    if key is not ANY_KEY and k != key:
        return False
    return keys is None or k in keys


class _Any:
    __slots__ = ()


#: The *key* of the readers here that means every key (None is no key: a table event's).
ANY_KEY: Any = _Any()


def events(
    backup_dir: str | Path | Target,
    *,
    from_lsn: int | None = None,
    to_lsn: int | None = None,
    from_at: Any = None,
    to_at: Any = None,
    table: str | None = None,
    key: Any = ANY_KEY,
    keys: Iterable[Any] | None = None,
    actor: str | None = None,
    include_state: bool = False,
    progress: Progress | None = None,
    timeline: int | None = None,
    storage_options: dict[str, Any] | None = None,
    start: int | None = None,
    end: int | None = None,
    after_ts: float | None = None,
    until_ts: float | None = None,
) -> Iterator[Event]:
    """Every recorded change of one timeline in LSN order, finest source first.

    Operations come from the log where it covers them; before that, each delta gives its net
    change (reported at the delta's last LSN, so a delta that straddles the end is left out:
    deltas cannot be split); a stretch that only a full snapshot records (no delta and no log
    for it) is reported as its net change: the rows that differ between the state before it
    and the snapshot (granularity snapshot; this restores the state before, so it costs a
    restore).

    The range is what happened after one state and up to another, as `diff` compares them:
    ``events(d, from_lsn=10, to_lsn=20)`` yields operations 11..20.

    Args:
        backup_dir: the directory (or a URL, or a storage target).
        from_lsn: only what came after operation *from_lsn*.
        to_lsn: only up to operation *to_lsn* (inclusive).
        from_at: only what came later than this time (a datetime, ISO 8601 string or epoch
            seconds).
        to_at: only what came at or before this time.
        table: only this table.
        key: only this record key (with *table*).
        keys: only these keys.
        actor: only operations recorded with this actor (``db.audit(actor=...)``); events
            that carry no metadata (deltas, snapshots) are left out.
        include_state: begin with the record's (or rows') first known state from a full
            snapshot when the log does not reach back to operation 1, and report the state
            from each full snapshot that bridges a stretch no delta covers.
        progress: called as ``progress(bytes_read, bytes_total)`` after each file and log
            segment, ending at the total (when the events are read to the end).
        timeline: the timeline whose history is told (default: the newest); its ancestors'
            files count up to each fork.
        storage_options: for a URL, passed to fsspec.
        start: the first LSN wanted (inclusive): ``from_lsn=start - 1``.
        end: the last LSN wanted (inclusive): ``to_lsn=end``.
        after_ts: ``from_at`` as epoch seconds.
        until_ts: ``to_at`` as epoch seconds.

    Raises:
        RestoreError: damage in the log, or no such timeline.
        CorruptFileError: a damaged file.
        ValueError: a bound given twice, a negative LSN, a time that is not one.
    """
    first_lsn, low_ts = resolve_point("from", lsn=from_lsn, at=from_at)
    last_lsn, high_ts = resolve_point("to", lsn=to_lsn, at=to_at)
    if first_lsn is not None:
        if start is not None:
            raise ValueError("give from_lsn= or start=, not both")
        start = first_lsn + 1
    if last_lsn is not None:
        if end is not None:
            raise ValueError("give to_lsn= or end=, not both")
        end = last_lsn
    if low_ts is not None:
        if after_ts is not None:
            raise ValueError("give from_at= or after_ts=, not both")
        after_ts = low_ts
    if high_ts is not None:
        if until_ts is not None:
            raise ValueError("give to_at= or until_ts=, not both")
        until_ts = high_ts
    return _events(
        as_target(backup_dir, storage_options),
        start=start,
        end=end,
        table=table,
        key=key,
        wanted=None if keys is None else set(keys),
        actor=actor,
        include_state=include_state,
        after_ts=after_ts,
        until_ts=until_ts,
        progress=progress,
        timeline=timeline,
    )


class Sources(NamedTuple):
    """What one timeline's history is read from.

    Attributes:
        catalog: the target's files, as `scan` found them.
        files: the files that belong to the timeline, in LSN order (a full snapshot before
            the delta that ends at its LSN).
        log_from: the first LSN of the durable log that serves the timeline (None: none).
        log_cap: how far that log serves it (`math.inf`: all of it).
        wal_dir: the log's directory (None: no log serves it).
    """

    catalog: Catalog
    files: tuple[BackupFile, ...]
    log_from: int | None
    log_cap: float
    wal_dir: Path | None


def history_sources(target: Target, timeline: int | None) -> Sources:
    """The files and the log one timeline's history is read from (default: the newest).

    Raises:
        RestoreError: no such timeline.
    """
    catalog = scan(target)
    caps, log_cap = timeline_caps(catalog, target, timeline)
    log_from = log_start(target) if log_cap > 0 else None
    files = sorted(
        (f for f in catalog.files if caps is None or f.last_lsn <= caps.get(f.lineage, -1)),
        key=lambda f: (f.last_lsn, 0 if f.is_full else 1),
    )
    wal_dir = log_dir(target) if log_from is not None else None
    return Sources(catalog, tuple(files), log_from, log_cap, wal_dir)


def _events(
    target: Target,
    *,
    start: int | None,
    end: int | None,
    table: str | None,
    key: Any,
    wanted: set[Any] | None,
    actor: str | None,
    include_state: bool,
    after_ts: float | None,
    until_ts: float | None,
    progress: Progress | None,
    timeline: int | None,
) -> Iterator[Event]:
    _, files, log_from, log_cap, wal_dir = history_sources(target, timeline)
    lo = 1 if start is None else max(start, 1)
    hi = end
    total = sum(f.size for f in files) + segment_bytes(wal_dir)
    done = 0
    if progress is not None:
        progress(0, total)

    def read(size: int) -> None:
        nonlocal done
        done = min(done + size, total)
        if progress is not None:
            progress(done, total)

    def timely(event: Event) -> bool:
        return (
            (after_ts is None or event.ts > after_ts)
            and (until_ts is None or event.ts <= until_ts)
            and (actor is None or event.actor == actor)
        )

    covered = lo - 1  # operations up to here are reported (or before *start*)
    if include_state and (log_from is None or log_from > lo):
        # The first known state: the newest full snapshot the log (if any) continues from,
        # else the newest one at or before *start*, else the oldest one.
        fulls = [f for f in files if f.is_full]
        limit = lo - 1 if log_from is None else max(log_from - 1, lo - 1)
        before = [f for f in fulls if f.last_lsn <= limit]
        first = before[-1] if before else (fulls[0] if fulls else None)
        if first is not None and (hi is None or first.last_lsn <= hi):
            yield from filter(timely, file_events(first, table, key, wanted, absent=True))
            covered = max(covered, first.last_lsn)
            read(first.size)
    for f in files:
        if f.last_lsn <= covered or (hi is not None and f.last_lsn > hi):
            continue
        if log_from is not None and f.first_lsn >= log_from:
            continue  # the log has these operations one by one
        if f.is_full:
            if include_state:
                yield from filter(timely, file_events(f, table, key, wanted, absent=True))
            elif f.last_lsn > covered:
                # Operations covered+1 .. this snapshot are in no delta: report their net
                # effect, the difference between the state at `covered` and this snapshot.
                bridged = bridge_events(target, covered, f, table, key, wanted)
                yield from filter(timely, bridged)
        else:
            if f.first_lsn > covered + 1:
                continue  # not chained to what is known; a later full snapshot covers it
            yield from filter(timely, file_events(f, table, key, wanted))
        covered = f.last_lsn
        read(f.size)
    if wal_dir is not None:
        one_key = table is not None and key is not ANY_KEY and wanted is None
        reading = (
            _key_operations(wal_dir, table, key, covered)
            if one_key
            else _log_operations(wal_dir, covered)
        )
        for op, segment_size in reading:
            if op is None:
                read(segment_size)
                continue
            if (hi is not None and op.lsn > hi) or op.lsn > log_cap:
                break
            if table is not None and op.table != table:
                continue
            if op.kind in (INSERT, UPDATE, DELETE):
                if not _wanted(op.key, key, wanted):
                    continue
            elif (key is not ANY_KEY or wanted is not None) and op.kind != DROP:
                continue
            event = Event(
                op.lsn,
                op.ts,
                op.kind,
                op.table,
                op.key,
                op.before,
                op.after,
                op.meta,
                OPERATION,
                "wal",
            )
            if timely(event):
                yield event
    if progress is not None:
        progress(total, total)


def timeline_caps(
    catalog: Catalog, target: Target, timeline: int | None
) -> tuple[dict[str | None, float] | None, float]:
    """What the timeline told (default: the newest) takes from each history's files, as
    lineage -> last LSN (None: the target has no timelines, every file counts), and how far
    the log serves it.

    Raises:
        RestoreError: no such timeline.
    """
    history = catalog.history
    if timeline is not None and timeline not in history.timelines:
        known = ", ".join(str(n) for n in sorted(history.timelines)) or "none"
        raise RestoreError(f"no timeline {timeline} here (timelines: {known})")
    chosen = history.timelines.get(timeline) if timeline is not None else history.newest()
    if chosen is None:
        return None, math.inf
    caps = history.caps(chosen.number)
    wal_dir = log_dir(target)
    try:
        recorded = None if wal_dir is None else read_log_lineage(wal_dir)
    except CorruptFileError:
        recorded = None
    if recorded is None or recorded[0] == chosen.lineage:
        return caps, math.inf
    return caps, caps.get(recorded[0], 0)


def bridge_events(
    target: Target, covered: int, f: BackupFile, table: str | None, key: Any, keys: set[Any] | None
) -> list[Event]:
    """The net change of a stretch only full snapshot *f* records: the rows that differ
    between the state at *covered* (a restore) and *f* (granularity snapshot)."""
    try:
        before = restore_engine(target, lsn=covered).to_dict() if covered > 0 else {}
    except RestoreError:
        before = {}
    after = load(f.where).to_dict()
    out: list[Event] = []
    source = f.path.name
    for name in sorted(set(before) | set(after)):
        if table is not None and name != table:
            continue
        rows_a = before.get(name, {}).get("records", {})
        rows_b = after.get(name, {}).get("records", {})
        if name not in after:
            out.append(
                Event(
                    f.last_lsn, f.last_op_ts, DROP, name, None, None, None, None, SNAPSHOT, source
                )
            )
        elif name not in before:
            out.append(
                Event(
                    f.last_lsn, f.last_op_ts, CREATE, name, None, None, None, None, SNAPSHOT, source
                )
            )
        for k in list(rows_a) + [k for k in rows_b if k not in rows_a]:
            if not _wanted(k, key, keys):
                continue
            ra, rb = rows_a.get(k), rows_b.get(k)
            if ra is not None and rb is not None and same(ra, rb):
                continue
            kind = DELETE if rb is None else "upsert"
            out.append(
                Event(f.last_lsn, f.last_op_ts, kind, name, k, ra, rb, None, SNAPSHOT, source)
            )
    return out


def history(
    backup_dir: str | Path | Target,
    table: str,
    key: Any,
    *,
    timeline: int | None = None,
    progress: Progress | None = None,
    storage_options: dict[str, Any] | None = None,
) -> History:
    """Every version of one record on one timeline (default: the newest): its first known
    state, then each change.

    Where the durable log covers a stretch of history, every operation is listed (with
    before/after and audit metadata), read through the log segments' key indexes: only the
    frames that hold the record (or its table's drop) are decoded. A segment without an
    index (see `index_log`, which writes them: history never writes) is scanned; a damaged
    or stale index is reported (`wal.KeyIndexWarning`) and its segment scanned, so the
    answer never depends on it. Elsewhere each delta gives the
    record's net change over that delta (``granularity == "delta"``); the oldest full
    snapshot gives its first known state (``granularity == "snapshot"``). A drop of the
    table is listed too. A file that retention deletes while it is read makes the history
    be read again.

    Args:
        backup_dir: the directory (or a URL, or a storage target).
        table: the table.
        key: the record's primary key.
        timeline: the timeline to follow (default: the newest).
        progress: called as ``progress(bytes_read, bytes_total)`` as files and log segments
            are read.
        storage_options: for a URL, passed to fsspec.

    Returns:
        The versions, oldest first (empty when the record never existed: see
        `table_names` to tell an unknown table from an unknown key).

    Raises:
        RestoreError: damage in the log, or no such timeline.
        CorruptFileError: a damaged file.
    """
    target = as_target(backup_dir, storage_options)

    def attempt() -> History:
        out: list[Event] = []
        for found in _events(
            target,
            start=None,
            end=None,
            table=table,
            key=key,
            wanted=None,
            actor=None,
            include_state=True,
            after_ts=None,
            until_ts=None,
            progress=progress,
            timeline=timeline,
        ):
            previous = out[-1].after if out else None
            # An absent state matters only after the record was seen: it records a deletion.
            if found.kind == "state" and found.after is None and previous is None:
                continue
            if found.granularity != OPERATION and found.key is not None:
                # Deltas and snapshots hold no before-image: the version before is one.
                out.append(attrs.evolve(found, before=previous))
            else:
                out.append(found)
        return History(table, key, tuple(out))

    return replanning(attempt, target)


def index_log(
    backup_dir: str | Path | Target, *, storage_options: dict[str, Any] | None = None
) -> tuple[int, int]:
    """Bring the key indexes of a durable directory's log up to date, so that `history`
    reads only the frames that hold the record asked for. For a cron job (every few
    minutes, or after each backup): the work (~1.5 µs per new operation) happens in its own
    process, and `history` then scans only what was logged since.

    Returns:
        (segments indexed or extended, segments already up to date); (0, 0) without a log.

    Raises:
        RestoreError: damage in the log, a gap or an overlap.
    """
    wal_dir = log_dir(as_target(backup_dir, storage_options))
    if wal_dir is None:
        return 0, 0
    try:
        return index_segments(wal_dir)
    except RecoveryError as exc:
        raise log_damage(exc) from None


def table_names(
    backup_dir: str | Path | Target,
    *,
    timeline: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> frozenset[str]:
    """Every table that one timeline's files and log mention, dropped ones included (this
    reads every file: it tells an unknown table from an unknown key).

    Raises:
        RestoreError: damage in the log, or no such timeline.
        CorruptFileError: a damaged file.
    """
    target = as_target(backup_dir, storage_options)

    def attempt() -> frozenset[str]:
        src = history_sources(target, timeline)
        names: set[str] = set()
        for f in src.files:
            doc = read_document(f.where)
            names.update(doc["tables"])
            names.update(event["table"] for event in doc.get("ddl", []))
        if src.wal_dir is not None:
            for op, _ in _log_operations(src.wal_dir, 0):
                if op is not None and op.lsn <= src.log_cap:
                    names.add(op.table)
        return frozenset(names)

    return replanning(attempt, target)


def replay(
    backup_dir: str | Path,
    start: int | None = None,
    end: int | None = None,
    *,
    tables: Iterable[str] | None = None,
    keys: Iterable[Any] | None = None,
) -> Iterator[Event]:
    """The operations between two LSNs (inclusive), optionally for some tables or keys.

    Operation granularity where the log covers the range, delta granularity elsewhere.
    """
    only = None if tables is None else set(tables)
    for event in events(backup_dir, start=start, end=end, keys=keys):
        if only is None or event.table in only:
            yield event
