"""What the suite measures: workloads, groups, units, operation counts and skip rules."""

from __future__ import annotations

from dataclasses import dataclass

IMPLS: tuple[str, ...] = ("ours", "reference", "sqlite3")

FULL_SIZES: tuple[int, ...] = (100_000, 1_000_000)
QUICK_SIZES: tuple[int, ...] = (10_000,)
FULL_REPEAT = 5
QUICK_REPEAT = 2

# The reference checks explicit keys against a Python list while bulk inserting: O(n^2).
REFERENCE_EXPLICIT_KEYS_CAP = 20_000
# The reference has no primary-key fast path for `update(where=t.id == k)`: every update
# scans the whole table, so on large tables it runs fewer updates (reported per update).
REFERENCE_UPDATE_OPS: tuple[tuple[int, int], ...] = ((20_000, 1000), (200_000, 100))
REFERENCE_UPDATE_OPS_LARGEST = 20


def reference_update_ops(size: int) -> int:
    for max_size, ops in REFERENCE_UPDATE_OPS:
        if size <= max_size:
            return ops
    return REFERENCE_UPDATE_OPS_LARGEST


def reference_update_ops_note() -> str:
    parts = [f"{ops} updates up to {size:,} rows" for size, ops in REFERENCE_UPDATE_OPS]
    return ", ".join(parts) + f" and {REFERENCE_UPDATE_OPS_LARGEST} above"


# Budgets quoted from the performance issues. Informational only: nothing asserts on them.
BUDGET_OURS_INSERT_ROW_US = 1.5
BUDGET_JOURNAL_OVERHEAD = 1.25
# Issue 6.
BUDGET_SAVE_JSON_SPEEDUP = 3.0  # ours JSON save >= 3x faster than the reference
BUDGET_LOAD_JSON_SPEEDUP = 8.0  # ours JSON load >= 8x faster than the reference
BUDGET_DELTA_1PCT_OF_FULL = 0.05  # a 1% delta <= 5% of a full save
BUDGET_STALL_MS = 50.0  # worst single insert during a full backup (1M rows)
BUDGET_GROUP_COMMIT_SPEEDUP = 3.0  # "several times": fsync=always, 8 threads vs 1 thread
BUDGET_EVERYSEC_OVER_MEMORY = 1.2  # fsync=everysec within 20% of in-memory inserts

# The durable-log workloads time a fixed number of operations (the "size" column), whatever
# the table sizes: fsync=always is bounded by the disk's fsync rate, so it runs fewer.
WAL_OPS_FULL, WAL_OPS_QUICK = 200_000, 2_000
WAL_ALWAYS_OPS_FULL, WAL_ALWAYS_OPS_QUICK = 5_000, 200


@dataclass(frozen=True)
class Group:
    key: str
    title: str
    size_label: str = "rows"
    note: str = ""


@dataclass(frozen=True)
class Extra:
    """An extra measurement shown in a group's detail table (median of the repetitions)."""

    key: str
    label: str
    scale: float = 1.0  # stored value -> shown value


@dataclass(frozen=True)
class Workload:
    name: str
    group: str
    unit: str
    scale: float  # seconds per operation -> unit (MiB workloads: 1)
    ops: int  # timed operations per repetition; 0 = SIZE (insert workloads)
    measures: str
    impls: tuple[str, ...] = IMPLS
    # Each repetition in a fresh worker process (peak-memory measurements).
    per_process: bool = False
    # Build the on-disk fixture in a worker of its own first (REPEAT 0), untimed.
    fixture: bool = False
    # Fixed sizes (full, quick) that replace the table sizes (operation counts).
    fixed_sizes: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    extras: tuple[Extra, ...] = ()

    def ops_for(self, impl: str, size: int) -> int:
        if self.name == "upsert_update":
            return max(1, size // 100)
        if self.name == "update_by_key" and impl == "reference":
            return reference_update_ops(size)
        return self.ops if self.ops else size


GROUPS: tuple[Group, ...] = (
    Group("insert", "Inserts"),
    Group("write", "Upserts and updates"),
    Group("select", "Selects"),
    Group(
        "persist",
        "Full snapshots: save and load",
        note="ours: `db.save(path, fmt[, 'zstd'])` (atomic: temp file, fsync, rename; SHA-256 "
        "and state digest) and `DictDB.load(path)` (verified). reference: "
        "`db.save(path, fmt)` and `DictDB.load(path, fmt)`. sqlite3 has no JSON or pickle: "
        "its nearest equivalent is used in both rows, `src.backup(dest)` from the `:memory:` "
        "database to a file for save, and opening that file + `SELECT` of all rows "
        "(`fetchall`, tuples) for load. A save includes building the file from an "
        "in-memory table of SIZE rows; zstd rows are ours only.",
    ),
    Group(
        "delta",
        "Delta backups",
        note="A fresh table of SIZE rows, a full JSON save (timed separately: `full save` "
        "below), then 0.1% / 1% / 10% of the rows changed by `upsert` (untimed), then the "
        "timed delta: ours `persist.save_delta(db, path)` (journal since the last cut, "
        "compacted); reference `persist.save_delta(db, path)` (its dirty-row sets; they are "
        "cleared after the full save because its `save` does not). `delta ÷ full` is the "
        "delta time over the full-save time of the same repetition. sqlite3 has no delta "
        "backup.",
    ),
    Group(
        "restore",
        "Restore: full snapshot + deltas, point-in-time",
        note="The directory holds one full JSON snapshot and 100 deltas (10 below 20,000 "
        "rows), written by each implementation's `BackupManager` (incremental); each delta "
        "changes SIZE/1000 rows (90% updates, 10% inserts). ours: `restore(dir)`; "
        "reference: its documented manual recipe, `DictDB.load(full, 'json')` then "
        "`persist.apply_delta(db, delta)` for each delta in name order. `restore_pitr`: "
        "ours `restore(dir, lsn=n)` with n the last LSN of the 50th delta (the reference "
        "has no point-in-time restore). The directory is built once per worker (untimed); "
        "the files are in the page cache.",
    ),
    Group(
        "backup",
        "Full backup under load: writer stall and peak memory",
        note="`backup_stall`: a table of SIZE rows; one thread inserts rows one at a time "
        "(`t.insert(row)`, each timed) while another runs `BackupManager(db, dir, "
        "file_format='json').backup_full()` twice; the cell is the longest single insert "
        "that overlapped the first backup (the second backup's is in the details). "
        "`backup_peak_rss`: in a fresh process per repetition, a table of SIZE rows, then "
        "the kernel's peak-RSS mark is reset (Linux `clear_refs`) and one `backup_full()` "
        "runs; the cell is peak RSS during the backup minus RSS before it (sqlite3: "
        "`backup` of the `:memory:` database to a file). `memory_per_row`: in a fresh "
        "process per repetition, a `BackupManager` attached to an empty table (ours and the "
        "reference), then SIZE rows made one at a time and inserted with `t.insert(row)` "
        "(the caller keeps none); the cell is the growth of RSS (after `gc.collect()`) "
        "divided by SIZE, in bytes: what a database costs per row before its first backup "
        "(sqlite3: the same inserts into `:memory:`, then a commit).",
    ),
    Group(
        "wal",
        "Durable log (WAL): throughput, latency, recovery",
        size_label="ops",
        note="`wal_<policy>_<N>t`: N threads insert the given number of rows one at a time "
        "(auto keys, each insert timed) into a table of `DictDB.open(dir, fsync=policy)`; "
        "`memory` is the same harness on an in-memory `DictDB()` (the baseline). Cells are "
        "wall time per operation (1 ÷ throughput); the details hold throughput and per-insert "
        "latency percentiles. sqlite3 (1 thread): a file in WAL journal mode, one "
        "autocommitted INSERT per row, `synchronous=FULL` for always, `NORMAL` for "
        "everysec, `OFF` for off (`:memory:` for memory). `wal_recovery`: "
        "`DictDB.open` on a directory whose log holds SIZE logged inserts (statements of "
        "1000 rows, fsync=off) and no snapshot.",
    ),
    Group(
        "audit",
        "Audit tools",
        note="A durable directory: SIZE rows inserted (statements of 1000 rows, so SIZE "
        "logged operations), one full JSON snapshot by a `BackupManager` in the same "
        "directory, then 20 updates of one key. `audit_verify`: `dictdb.audit.verify(dir)`; "
        "`audit_history`: `dictdb.audit.history(dir, 'users', key)` (21 events). Each "
        "repetition runs in a fresh process; the details give the peak RSS it needed.",
    ),
)

WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "insert_row",
        "insert",
        "µs/row",
        1e6,
        0,
        "SIZE single-row `t.insert(row)` calls into a fresh table (auto primary key); "
        "sqlite3: one `execute` per row and a single `commit` at the end.",
    ),
    Workload(
        "insert_row_journaled",
        "insert",
        "µs/row",
        1e6,
        0,
        "Same as insert_row on `DictDB(retain_journal=True)`: every operation kept in the "
        "journal, as with a BackupManager between two backups (ours only; a plain "
        "`DictDB()` keeps none until a consumer needs them).",
        impls=("ours",),
    ),
    Workload(
        "insert_row_indexed",
        "insert",
        "µs/row",
        1e6,
        0,
        "Same as insert_row with two indexes present: a hash index on `name` and a sorted "
        "index on `age` (sqlite3: `CREATE INDEX` on both columns before the inserts).",
    ),
    Workload(
        "insert_bulk",
        "insert",
        "µs/row",
        1e6,
        0,
        "One `t.insert([row, ...])` call with SIZE rows (auto primary keys); "
        "sqlite3: `executemany` + `commit`.",
    ),
    Workload(
        "insert_bulk_explicit_keys",
        "insert",
        "µs/row",
        1e6,
        0,
        "One `t.insert([...])` call with SIZE rows that carry their own `id`; "
        f"the reference is O(n^2) here and runs only up to {REFERENCE_EXPLICIT_KEYS_CAP:,} rows.",
    ),
    Workload(
        "upsert_update",
        "write",
        "µs/op",
        1e6,
        0,
        "`t.upsert({'id': k, 'age': 5})` on existing keys for 1% of the rows (update path); "
        "sqlite3: `INSERT ... ON CONFLICT(id) DO UPDATE` + `commit`.",
    ),
    Workload(
        "update_by_key",
        "write",
        "µs/update",
        1e6,
        1000,
        "1000 `t.update({'age': 1}, where=t.id == k)` calls, one row each; "
        "sqlite3: `UPDATE ... WHERE id = ?` + `commit`.",
    ),
    Workload(
        "select_eq_scan",
        "select",
        "ms/query",
        1e3,
        20,
        "20 `t.select(where=t.name == 'userN')` queries without an index (full scan, "
        "1 row returned).",
    ),
    Workload(
        "select_eq_hash",
        "select",
        "µs/query",
        1e6,
        1000,
        "1000 equality queries on `name` after `t.create_index('name')` (hash index; "
        "sqlite3: `CREATE INDEX`). Index build time is reported separately, untimed.",
    ),
    Workload(
        "select_range_sorted",
        "select",
        "ms/query",
        1e3,
        20,
        "20 `t.select(where=t.age >= 80)` queries (~11% of the rows) after "
        "`t.create_index('age', index_type='sorted')` (sqlite3: `CREATE INDEX`).",
    ),
)


def _persist_workloads() -> tuple[Workload, ...]:
    out: list[Workload] = []
    for action in ("save", "load"):
        for fmt in ("json", "pickle"):
            for zstd in (False, True):
                name = f"{action}_{fmt}" + ("_zstd" if zstd else "")
                what = f"`db.save(path, '{fmt}')`" if action == "save" else "`DictDB.load(path)`"
                out.append(
                    Workload(
                        name,
                        "persist",
                        "ms",
                        1e3,
                        1,
                        f"{what} of a {fmt} snapshot of SIZE rows"
                        + (", zstd-compressed (ours only)." if zstd else "."),
                        impls=("ours",) if zstd else IMPLS,
                        extras=(Extra("file_mib", "file MiB"),),
                    )
                )
    return tuple(out)


_DELTA_EXTRAS = (
    Extra("full_save_s", "full save ms", 1e3),
    Extra("delta_over_full", "delta ÷ full"),
    Extra("delta_mib", "delta MiB"),
    Extra("full_mib", "full MiB"),
)
_WAL_EXTRAS = (
    Extra("ops_per_s", "ops/s"),
    Extra("p50_us", "p50 µs"),
    Extra("p99_us", "p99 µs"),
    Extra("max_us", "max µs"),
)
_MEMORY_EXTRAS = (
    Extra("rss_before_mib", "RSS before MiB"),
    Extra("peak_rss_mib", "peak RSS MiB"),
    Extra("ru_maxrss_before_mib", "ru_maxrss before MiB"),
    Extra("ru_maxrss_after_mib", "ru_maxrss after MiB"),
)


def _wal_workloads() -> tuple[Workload, ...]:
    out: list[Workload] = []
    for policy in ("memory", "always", "everysec", "off"):
        for threads in (1, 8):
            sizes = (
                ((WAL_ALWAYS_OPS_FULL,), (WAL_ALWAYS_OPS_QUICK,))
                if policy == "always"
                else ((WAL_OPS_FULL,), (WAL_OPS_QUICK,))
            )
            where = (
                "an in-memory `DictDB()` (baseline)"
                if policy == "memory"
                else f"`DictDB.open(dir, fsync='{policy}')`"
            )
            impls: tuple[str, ...] = ("ours",)
            if threads == 1:
                impls = ("ours", "sqlite3")
            if policy == "memory":
                impls = IMPLS if threads == 1 else ("ours", "reference")
            out.append(
                Workload(
                    f"wal_{policy}_{threads}t",
                    "wal",
                    "µs/op",
                    1e6,
                    0,
                    f"{threads} thread(s) inserting SIZE rows one at a time into {where}.",
                    impls=impls,
                    fixed_sizes=sizes,
                    extras=_WAL_EXTRAS,
                )
            )
    return tuple(out)


WORKLOADS = (
    *WORKLOADS,
    *_persist_workloads(),
    *(
        Workload(
            f"delta_{label}",
            "delta",
            "ms",
            1e3,
            1,
            f"`save_delta` after {label.replace('pct', '%')} of SIZE rows changed by upsert.",
            impls=("ours", "reference"),
            extras=_DELTA_EXTRAS,
        )
        for label in ("0.1pct", "1pct", "10pct")
    ),
    Workload(
        "restore_chain",
        "restore",
        "s",
        1.0,
        1,
        "Rebuild SIZE rows from a full snapshot and 100 deltas.",
        impls=("ours", "reference"),
        extras=(Extra("dir_mib", "directory MiB"),),
    ),
    Workload(
        "restore_pitr",
        "restore",
        "s",
        1.0,
        1,
        "`restore(dir, lsn=n)` to the end of the 50th delta (ours only).",
        impls=("ours",),
    ),
    Workload(
        "backup_stall",
        "backup",
        "ms",
        1e3,
        1,
        "Longest single insert while `backup_full()` runs in another thread.",
        impls=("ours", "reference"),
        extras=(
            Extra("backup_s", "backup s"),
            Extra("idle_max_ms", "max insert, no backup, ms"),
            Extra("second_stall_ms", "2nd backup: max insert ms"),
            Extra("second_backup_s", "2nd backup s"),
            Extra("inserts_during", "inserts during backup"),
        ),
    ),
    Workload(
        "backup_peak_rss",
        "backup",
        "MiB",
        1.0,
        1,
        "Peak RSS during one `backup_full()` minus RSS before it (fresh process).",
        per_process=True,
        extras=(Extra("backup_s", "backup s"), *_MEMORY_EXTRAS),
    ),
    Workload(
        "memory_per_row",
        "backup",
        "B/row",
        1.0,
        1,
        "RSS growth per row over SIZE single-row inserts, after gc (fresh process).",
        per_process=True,
        extras=(Extra("rss_before_mib", "RSS before MiB"), Extra("rss_after_mib", "RSS after MiB")),
    ),
    *_wal_workloads(),
    Workload(
        "wal_recovery",
        "wal",
        "s",
        1.0,
        1,
        "`DictDB.open` of a directory whose log holds SIZE logged inserts.",
        impls=("ours",),
        extras=(Extra("log_mib", "log MiB"),),
    ),
    Workload(
        "audit_verify",
        "audit",
        "s",
        1.0,
        1,
        "`dictdb.audit.verify(dir)` over SIZE rows and SIZE logged operations.",
        impls=("ours",),
        per_process=True,
        fixture=True,
        extras=(Extra("extra_rss_mib", "peak RSS - before, MiB"), *_MEMORY_EXTRAS),
    ),
    Workload(
        "audit_history",
        "audit",
        "s",
        1.0,
        1,
        "`dictdb.audit.history(dir, 'users', key)` over the same directory.",
        impls=("ours",),
        per_process=True,
        fixture=True,
        extras=(Extra("extra_rss_mib", "peak RSS - before, MiB"), *_MEMORY_EXTRAS),
    ),
)

BY_NAME: dict[str, Workload] = {w.name: w for w in WORKLOADS}
GROUP_BY_KEY: dict[str, Group] = {g.key: g for g in GROUPS}


def skip_reason(workload: Workload, impl: str, size: int) -> str | None:
    """Status to report without spawning a worker, or None to run it."""
    if impl not in workload.impls:
        return "n/a"
    if (
        workload.name == "insert_bulk_explicit_keys"
        and impl == "reference"
        and size > REFERENCE_EXPLICIT_KEYS_CAP
    ):
        return "skipped (quadratic)"
    return None


def sizes_for(workload: Workload, sizes: list[int], impls: list[str], quick: bool) -> list[int]:
    """Sizes to run; explicit keys also get the reference's cap so a comparison exists."""
    if workload.fixed_sizes is not None:
        return list(workload.fixed_sizes[1 if quick else 0])
    if (
        workload.name == "insert_bulk_explicit_keys"
        and "reference" in impls
        and any(s > REFERENCE_EXPLICIT_KEYS_CAP for s in sizes)
    ):
        return sorted({*sizes, REFERENCE_EXPLICIT_KEYS_CAP})
    return list(sizes)
