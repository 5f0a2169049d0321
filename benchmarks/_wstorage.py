"""Storage workloads of the worker: save/load, deltas, restore, backups under load, the
durable log and the audit tools (issue 6).

`DictDBStorage` is mixed into the worker's ``DictDBBench`` (ours and the reference share
the public API; where they differ the method says so), `SQLiteStorage` into
``SQLiteBench``. Like the rest of the worker this imports nothing from the ``benchmarks``
package, so it runs in the reference's venv too.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if not __package__:  # imported by the worker run as a script
    from _wcommon import (
        MIB,
        TABLE,
        Case,
        NotSupportedError,
        PeakMemory,
        Writers,
        current_rss_mib,
        dir_bytes,
        expect,
        fixture,
        fresh_dir,
        keyed_row,
        make_rows,
        remove,
        row,
        spread,
    )
else:
    from benchmarks._wcommon import (
        MIB,
        TABLE,
        Case,
        NotSupportedError,
        PeakMemory,
        Writers,
        current_rss_mib,
        dir_bytes,
        expect,
        fixture,
        fresh_dir,
        keyed_row,
        make_rows,
        remove,
        row,
        spread,
    )

_clock = time.perf_counter

# Workload names handled here (the method is the name with "." replaced by "_").
WORKLOADS: tuple[str, ...] = (
    "save_json",
    "save_json_zstd",
    "save_pickle",
    "save_pickle_zstd",
    "load_json",
    "load_json_zstd",
    "load_pickle",
    "load_pickle_zstd",
    "delta_0.1pct",
    "delta_1pct",
    "delta_10pct",
    "restore_chain",
    "restore_pitr",
    "backup_stall",
    "backup_peak_rss",
    "memory_per_row",
    "wal_memory_1t",
    "wal_memory_8t",
    "wal_always_1t",
    "wal_always_8t",
    "wal_everysec_1t",
    "wal_everysec_8t",
    "wal_off_1t",
    "wal_off_8t",
    "wal_recovery",
    "audit_verify",
    "audit_history",
)

# restore_chain / restore_pitr: a full snapshot then this many deltas (fewer for small
# tables, so the quick run stays quick); each delta changes SIZE/1000 rows (at least 10),
# 90% updates of existing rows and 10% inserts of new ones.
CHAIN_DELTAS = 100
CHAIN_DELTAS_SMALL = 10
CHAIN_SMALL_SIZE = 20_000
# backup_stall: how long the writer runs alone before the backup starts (its idle latency).
STALL_IDLE_S = 0.2
# The WAL fixture and the audit fixture insert their rows in statements of this many rows.
FIXTURE_CHUNK = 1000
# audit_history: updates of one key logged after the full snapshot.
HISTORY_UPDATES = 20


def chain_deltas(size: int) -> int:
    return CHAIN_DELTAS if size > CHAIN_SMALL_SIZE else CHAIN_DELTAS_SMALL


def _mib(nbytes: int) -> float:
    return nbytes / MIB


def _worst(starts: list[float], durations: list[float], lo: float, hi: float) -> float:
    """The longest single operation that overlapped [lo, hi]."""
    worst = 0.0
    for start, duration in zip(starts, durations, strict=True):
        if start <= hi and start + duration >= lo and duration > worst:
            worst = duration
    return worst


class DictDBStorage:
    """Storage workloads for dictdb (``impl`` is ``ours`` or ``reference``)."""

    impl: str
    module: ModuleType

    if TYPE_CHECKING:  # provided by the worker's DictDBBench

        def _table(self, **db_kwargs: Any) -> tuple[Any, Any]: ...

        def _populated(self, size: int) -> tuple[Any, Any, list[Any]]: ...

        def _api(self, obj: Any, name: str) -> Any: ...

        @staticmethod
        def _count(t: Any) -> int | None: ...

    # -- helpers -----------------------------------------------------------------------------

    @property
    def ours(self) -> bool:
        return self.impl == "ours"

    def _persist(self) -> ModuleType:
        try:
            from dictdb.storage import persist
        except ImportError as exc:
            raise NotSupportedError("not implemented", f"dictdb.storage.persist: {exc}") from exc
        return persist

    def _manager(self, db: Any, directory: Path, **kwargs: Any) -> Any:
        manager = getattr(self.module, "BackupManager", None)
        if manager is None:
            raise NotSupportedError("not implemented", "dictdb.BackupManager is missing")
        return manager(db, directory, file_format="json", **kwargs)

    def _clear_tracking(self, db: Any) -> None:
        # The reference tracks dirty rows from creation on, and neither `save` nor
        # `backup_full` clears the tracking: without this, its first delta holds every row.
        if not self.ours:
            for table in db.tables.values():
                table.clear_dirty_tracking()

    def _rows_of(self, db: Any) -> int | None:
        return self._count(db.get_table(TABLE))

    def _save_snapshot(self, db: Any, path: Path, fmt: str, zstd: bool) -> Path:
        if self.ours:
            return Path(db.save(path, fmt, "zstd" if zstd else None))
        db.save(str(path), fmt)
        return path

    def _load_snapshot(self, path: Path, fmt: str) -> Any:
        if self.ours:
            return self.module.DictDB.load(path)
        return self.module.DictDB.load(str(path), fmt)

    # -- full snapshots ------------------------------------------------------------------------

    def _save(self, size: int, fmt: str, zstd: bool) -> Case:
        if zstd and not self.ours:
            raise NotSupportedError("n/a", "zstd compression is ours only")
        db, _t, _pks = self._populated(size)
        directory = fresh_dir("save")
        target = directory / f"snapshot.{fmt}"
        extras: dict[str, float] = {}

        def check(path: Any) -> None:
            written = Path(path)
            expect(written.is_file(), f"no snapshot at {written}")
            extras["file_mib"] = _mib(written.stat().st_size)

        return Case(
            lambda: self._save_snapshot(db, target, fmt, zstd),
            1,
            check,
            extras,
            cleanup=lambda: remove(directory),
        )

    def _snapshot_fixture(self, size: int, fmt: str, zstd: bool) -> tuple[Path, dict[str, Any]]:
        def build(root: Path) -> dict[str, Any]:
            db, _t, _pks = self._populated(size)
            path = self._save_snapshot(db, root / f"snapshot.{fmt}", fmt, zstd)
            return {"file": path.name, "bytes": path.stat().st_size}

        suffix = "-zstd" if zstd else ""
        root, manifest = fixture(f"{self.impl}-snapshot-{fmt}{suffix}-{size}", build)
        return root / manifest["file"], manifest

    def _load(self, size: int, fmt: str, zstd: bool) -> Case:
        if zstd and not self.ours:
            raise NotSupportedError("n/a", "zstd compression is ours only")
        path, manifest = self._snapshot_fixture(size, fmt, zstd)

        def check(db: Any) -> None:
            count = self._rows_of(db)
            expect(count == size, f"loaded {count} rows, expected {size}")

        extras = {"file_mib": _mib(manifest["bytes"])}
        return Case(lambda: self._load_snapshot(path, fmt), 1, check, extras)

    def save_json(self, size: int, ops: int) -> Case:
        return self._save(size, "json", zstd=False)

    def save_json_zstd(self, size: int, ops: int) -> Case:
        return self._save(size, "json", zstd=True)

    def save_pickle(self, size: int, ops: int) -> Case:
        return self._save(size, "pickle", zstd=False)

    def save_pickle_zstd(self, size: int, ops: int) -> Case:
        return self._save(size, "pickle", zstd=True)

    def load_json(self, size: int, ops: int) -> Case:
        return self._load(size, "json", zstd=False)

    def load_json_zstd(self, size: int, ops: int) -> Case:
        return self._load(size, "json", zstd=True)

    def load_pickle(self, size: int, ops: int) -> Case:
        return self._load(size, "pickle", zstd=False)

    def load_pickle_zstd(self, size: int, ops: int) -> Case:
        return self._load(size, "pickle", zstd=True)

    # -- deltas ----------------------------------------------------------------------------

    def _delta(self, size: int, fraction: float) -> Case:
        persist = self._persist()
        db, t, pks = self._populated(size)
        directory = fresh_dir("delta")
        full = directory / "full.json"
        start = _clock()
        if self.ours:
            persist.save(db, full, "json", as_base=True)
        else:
            db.save(str(full), "json")
        full_s = _clock() - start
        self._clear_tracking(db)
        changed = max(1, round(size * fraction))
        upsert = self._api(t, "upsert")
        for key in spread(pks, changed):
            upsert(keyed_row(key, age=(key + 1) % 90))  # a different age: a real change
        delta = directory / "delta.json"
        extras: dict[str, float] = {
            "full_save_s": full_s,
            "full_mib": _mib(full.stat().st_size),
            "changed_rows": float(changed),
        }
        measured: dict[str, float] = {}

        def run() -> Any:
            start = _clock()
            if self.ours:
                result = persist.save_delta(db, delta, "json")
            else:
                result = persist.save_delta(db, str(delta))
            measured["value"] = elapsed = _clock() - start
            extras["delta_over_full"] = elapsed / full_s
            return result

        def check(result: Any) -> None:
            expect(result not in (None, False), f"save_delta returned {result!r}")
            expect(delta.is_file(), "no delta file")
            extras["delta_mib"] = _mib(delta.stat().st_size)

        return Case(run, 1, check, extras, measured, cleanup=lambda: remove(directory))

    def delta_0_1pct(self, size: int, ops: int) -> Case:
        return self._delta(size, 0.001)

    def delta_1pct(self, size: int, ops: int) -> Case:
        return self._delta(size, 0.01)

    def delta_10pct(self, size: int, ops: int) -> Case:
        return self._delta(size, 0.10)

    # -- restore ------------------------------------------------------------------------------

    def _chain_fixture(self, size: int) -> tuple[Path, dict[str, Any]]:
        deltas = chain_deltas(size)

        def build(root: Path) -> dict[str, Any]:
            backups = root / "backups"
            backups.mkdir()
            db, t, pks = self._populated(size)
            manager = self._manager(
                db, backups, incremental=True, max_deltas_before_full=deltas + 10
            )
            manager.backup_full()
            self._clear_tracking(db)
            per = max(10, size // 1000)
            inserts = per // 10
            updates = per - inserts
            upsert, insert = self._api(t, "upsert"), self._api(t, "insert")
            mid_lsn = None
            for i in range(deltas):
                offset = (i * 7919) % size
                for j in range(updates):
                    key = pks[(offset + j * (size // updates)) % size]
                    upsert(keyed_row(key, age=(key + i + 1) % 90))
                insert([row(size + i * inserts + j + 1) for j in range(inserts)])
                manager.backup_delta()
                if self.ours and i == deltas // 2 - 1:
                    mid_lsn = db.lsn
            files = sorted(p.name for p in _backup_files(backups))
            expect(len(files) == deltas + 1, f"{len(files)} backup files, expected {deltas + 1}")
            return {
                "rows": self._rows_of(db),
                "deltas": deltas,
                "changes_per_delta": per,
                "lsn": db.lsn if self.ours else None,
                "mid_lsn": mid_lsn,
                "bytes": dir_bytes(backups),
            }

        return fixture(f"{self.impl}-chain-{size}", build)

    def restore_chain(self, size: int, ops: int) -> Case:
        root, manifest = self._chain_fixture(size)
        backups = root / "backups"
        extras = {"deltas": float(manifest["deltas"]), "dir_mib": _mib(manifest["bytes"])}
        if self.ours:
            from dictdb import restore

            def run() -> Any:
                return restore(backups)
        else:
            persist = self._persist()

            def run() -> Any:
                # The reference's documented manual recipe: the newest full backup, then
                # every delta in file-name (time) order.
                full = sorted(backups.glob("dictdb_backup_*.json"))[-1]
                db = self.module.DictDB.load(str(full), "json")
                for delta in sorted(backups.glob("dictdb_delta_*.json")):
                    persist.apply_delta(db, str(delta))
                return db

        def check(db: Any) -> None:
            count = self._rows_of(db)
            expect(count == manifest["rows"], f"restored {count} rows, not {manifest['rows']}")
            if self.ours:
                expect(db.lsn == manifest["lsn"], f"restored to LSN {db.lsn}")

        return Case(run, 1, check, extras)

    def restore_pitr(self, size: int, ops: int) -> Case:
        if not self.ours:
            raise NotSupportedError("n/a", "the reference has no point-in-time restore")
        from dictdb import restore

        root, manifest = self._chain_fixture(size)
        backups = root / "backups"
        target = int(manifest["mid_lsn"])
        extras = {"deltas_applied": float(manifest["deltas"] // 2), "target_lsn": float(target)}

        def check(db: Any) -> None:
            expect(db.lsn == target, f"restored to LSN {db.lsn}, asked for {target}")

        return Case(lambda: restore(backups, lsn=target), 1, check, extras)

    # -- full backup under load ----------------------------------------------------------------

    def backup_stall(self, size: int, ops: int) -> Case:
        db, t, _pks = self._populated(size)
        directory = fresh_dir("stall")
        manager = self._manager(db, directory)
        insert = self._api(t, "insert")
        extras: dict[str, float] = {}
        measured: dict[str, float] = {}

        def run() -> Any:
            stop = threading.Event()
            starts: list[float] = []
            durations: list[float] = []
            errors: list[BaseException] = []
            spans: list[tuple[float, float]] = []

            def writer() -> None:
                i = size + 1
                try:
                    while not stop.is_set():
                        r = row(i)
                        start = _clock()
                        insert(r)
                        durations.append(_clock() - start)
                        starts.append(start)
                        i += 1
                except BaseException as exc:
                    errors.append(exc)

            def backups() -> None:
                try:
                    for _ in range(2):  # the first backup, then a second one
                        begin = _clock()
                        manager.backup_full()
                        spans.append((begin, _clock()))
                        time.sleep(0.05)
                except BaseException as exc:
                    errors.append(exc)

            writer_thread = threading.Thread(target=writer, name="bench-writer")
            writer_thread.start()
            time.sleep(STALL_IDLE_S)
            backup_thread = threading.Thread(target=backups, name="bench-backup")
            backup_thread.start()
            backup_thread.join()
            stop.set()
            writer_thread.join()
            if errors:
                raise errors[0]
            (b0, b1), (c0, c1) = spans
            measured["value"] = _worst(starts, durations, b0, b1)
            extras.update(
                backup_s=b1 - b0,
                second_backup_s=c1 - c0,
                second_stall_ms=_worst(starts, durations, c0, c1) * 1e3,
                idle_max_ms=_worst(starts, durations, starts[0] + 0.02, b0 - 1e-3) * 1e3,
                inserts_during=float(sum(1 for s in starts if b0 <= s <= b1)),
            )
            return len(_backup_files(directory))

        def check(files: int) -> None:
            expect(files >= 2, f"{files} backup files written, expected 2")

        return Case(run, 1, check, extras, measured, cleanup=lambda: remove(directory))

    def backup_peak_rss(self, size: int, ops: int) -> Case:
        db, _t, _pks = self._populated(size)
        directory = fresh_dir("rss")
        manager = self._manager(db, directory)
        extras: dict[str, float] = {}
        measured: dict[str, float] = {}

        def run() -> Any:
            with PeakMemory() as memory:
                start = _clock()
                manager.backup_full()
                extras["backup_s"] = _clock() - start
            measured["value"] = memory.extra
            extras.update(memory.extras())
            return _backup_files(directory)

        def check(files: list[Path]) -> None:
            expect(len(files) == 1, f"{len(files)} backup files written")
            extras["file_mib"] = _mib(files[0].stat().st_size)

        return Case(run, 1, check, extras, measured, cleanup=lambda: remove(directory))

    def memory_per_row(self, size: int, ops: int) -> Case:
        # A database with a backup manager attached (what production runs), before its first
        # backup; rows made one at a time and handed over, none kept by the caller.
        db, t = self._table()
        directory = fresh_dir("memory")
        attached = [self._manager(db, directory)]  # kept alive until the cleanup
        insert = self._api(t, "insert")
        extras: dict[str, float] = {}
        measured: dict[str, float] = {}

        def insert_all() -> None:
            for i in range(1, size + 1):
                insert(row(i))

        def run() -> int:
            return _growth_per_row(insert_all, size, measured, extras)

        def check(done: int) -> None:
            count = self._count(t)
            expect(count in (None, done), f"{count} rows after {done} inserts")

        def cleanup() -> None:
            attached.clear()
            remove(directory)

        return Case(run, 1, check, extras, measured, cleanup=cleanup)

    # -- durable log ------------------------------------------------------------------------------

    def _wal(self, policy: str, threads: int, ops: int) -> Case:
        directory: Path | None = None
        if policy == "memory":
            db, t = self._table()
        else:
            if not self.ours:
                raise NotSupportedError("n/a", "the reference has no durable log")
            directory = fresh_dir(f"wal-{policy}")
            db = self.module.DictDB.open(directory, fsync=policy)
            db.create_table(TABLE, primary_key="id")
            t = db.get_table(TABLE)
        insert = self._api(t, "insert")
        writers = Writers(insert, make_rows(ops), threads)  # last: its threads are waiting
        extras: dict[str, float] = {}

        def run() -> int:
            start = _clock()
            done = writers.run()
            extras.update(writers.extras(_clock() - start))
            return done

        def check(done: int) -> None:
            count = self._count(t)
            expect(done == ops and count in (None, ops), f"{done} inserts, {count} rows")

        def cleanup() -> None:
            if directory is not None:
                db.close()
                remove(directory)

        return Case(run, ops, check, extras, cleanup=cleanup)

    def wal_memory_1t(self, size: int, ops: int) -> Case:
        return self._wal("memory", 1, size)

    def wal_memory_8t(self, size: int, ops: int) -> Case:
        return self._wal("memory", 8, size)

    def wal_always_1t(self, size: int, ops: int) -> Case:
        return self._wal("always", 1, size)

    def wal_always_8t(self, size: int, ops: int) -> Case:
        return self._wal("always", 8, size)

    def wal_everysec_1t(self, size: int, ops: int) -> Case:
        return self._wal("everysec", 1, size)

    def wal_everysec_8t(self, size: int, ops: int) -> Case:
        return self._wal("everysec", 8, size)

    def wal_off_1t(self, size: int, ops: int) -> Case:
        return self._wal("off", 1, size)

    def wal_off_8t(self, size: int, ops: int) -> Case:
        return self._wal("off", 8, size)

    def _durable_fixture(self, name: str, size: int, audit: bool) -> tuple[Path, dict[str, Any]]:
        if not self.ours:
            raise NotSupportedError("n/a", "the reference has no durable log")

        def build(root: Path) -> dict[str, Any]:
            path = root / "db"
            db = self.module.DictDB.open(path, fsync="off")
            db.create_table(TABLE, primary_key="id")
            t = db.get_table(TABLE)
            rows = make_rows(size)
            for i in range(0, size, FIXTURE_CHUNK):
                t.insert(rows[i : i + FIXTURE_CHUNK])
            del rows
            key = size // 2
            if audit:
                self._manager(db, path).backup_full()
                for j in range(HISTORY_UPDATES):
                    t.upsert({"id": key, "age": j})
            lsn = db.lsn
            db.close()
            return {"lsn": lsn, "key": key, "bytes": dir_bytes(path)}

        return fixture(f"ours-{name}-{size}", build)

    def wal_recovery(self, size: int, ops: int) -> Case:
        root, manifest = self._durable_fixture("wal", size, audit=False)
        opened: list[Any] = []

        def run() -> Any:
            db = self.module.DictDB.open(root / "db", fsync="off")
            opened.append(db)
            return db

        def check(db: Any) -> None:
            expect(db.lsn == manifest["lsn"], f"recovered to LSN {db.lsn}")
            count = self._rows_of(db)
            expect(count == size, f"recovered {count} rows")

        def cleanup() -> None:
            for db in opened:
                db.close()

        extras = {"log_mib": _mib(manifest["bytes"]), "log_ops": float(manifest["lsn"])}
        return Case(run, 1, check, extras, cleanup=cleanup)

    # -- audit ------------------------------------------------------------------------------

    def _audit(self, size: int, what: str) -> Case:
        root, manifest = self._durable_fixture("audit", size, audit=True)
        from dictdb import audit

        path = root / "db"
        key = manifest["key"]
        extras: dict[str, float] = {"dir_mib": _mib(manifest["bytes"])}

        def run() -> Any:
            call = audit.verify if what == "verify" else audit.history
            args = (path,) if what == "verify" else (path, TABLE, key)
            with PeakMemory() as memory:
                result = call(*args)
            extras["extra_rss_mib"] = memory.extra
            extras.update(memory.extras())
            return result

        def check(result: Any) -> None:
            if what == "verify":
                expect(result.ok, f"verify found {result.findings}")
                expect(result.files_checked >= 1, "verify checked no file")
            else:
                expected = 1 + HISTORY_UPDATES
                expect(len(result) == expected, f"{len(result)} history events, not {expected}")

        return Case(run, 1, check, extras)

    def audit_verify(self, size: int, ops: int) -> Case:
        return self._audit(size, "verify")

    def audit_history(self, size: int, ops: int) -> Case:
        return self._audit(size, "history")


def _growth_per_row(
    insert_all: Callable[[], None],
    size: int,
    measured: dict[str, float],
    extras: dict[str, float],
) -> int:
    """`memory_per_row`'s measure: RSS growth over *insert_all* (after gc) in bytes per row."""
    gc.collect()
    before = current_rss_mib()
    insert_all()
    gc.collect()
    after = current_rss_mib()
    measured["value"] = (after - before) * MIB / size
    extras.update(rss_before_mib=round(before, 1), rss_after_mib=round(after, 1))
    return size


# --------------------------------------------------------------------------- sqlite3

SQLITE_SYNC = {"always": "FULL", "everysec": "NORMAL", "off": "OFF"}
_INSERT_AUTO = "INSERT INTO users (name, age, dept) VALUES (?, ?, ?)"
_SELECT_ALL = "SELECT id, name, age, dept FROM users"
_CREATE = "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, dept TEXT)"


class SQLiteStorage:
    """The nearest sqlite3 equivalents (see the notes of each group in the report)."""

    sqlite3: ModuleType

    if TYPE_CHECKING:  # provided by the worker's SQLiteBench

        def _populated(self, size: int) -> Any: ...

        def _conn(self) -> Any: ...

        @staticmethod
        def _count(conn: Any) -> int: ...

    def _backup_to(self, source: Any, path: Path) -> Path:
        dest = self.sqlite3.connect(path)
        try:
            source.backup(dest)
        finally:
            dest.close()
        return path

    def _file_rows(self, path: Path) -> int:
        conn = self.sqlite3.connect(path)
        try:
            return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])
        finally:
            conn.close()

    def _save(self, size: int) -> Case:
        source = self._populated(size)
        directory = fresh_dir("sqlite-save")
        target = directory / "copy.sqlite3"
        extras: dict[str, float] = {}

        def check(path: Path) -> None:
            expect(self._file_rows(path) == size, "backup row count")
            extras["file_mib"] = _mib(path.stat().st_size)

        return Case(
            lambda: self._backup_to(source, target),
            1,
            check,
            extras,
            cleanup=lambda: remove(directory),
        )

    def save_json(self, size: int, ops: int) -> Case:
        return self._save(size)

    def save_pickle(self, size: int, ops: int) -> Case:
        return self._save(size)

    def _load(self, size: int) -> Case:
        def build(root: Path) -> dict[str, Any]:
            path = self._backup_to(self._populated(size), root / "db.sqlite3")
            return {"file": path.name, "bytes": path.stat().st_size}

        root, manifest = fixture(f"sqlite3-file-{size}", build)
        path = root / manifest["file"]

        def run() -> Any:
            conn = self.sqlite3.connect(path)
            try:
                return conn.execute(_SELECT_ALL).fetchall()
            finally:
                conn.close()

        def check(rows: Any) -> None:
            expect(len(rows) == size, f"read {len(rows)} rows")

        return Case(run, 1, check, {"file_mib": _mib(manifest["bytes"])})

    def load_json(self, size: int, ops: int) -> Case:
        return self._load(size)

    def load_pickle(self, size: int, ops: int) -> Case:
        return self._load(size)

    def backup_peak_rss(self, size: int, ops: int) -> Case:
        source = self._populated(size)
        directory = fresh_dir("sqlite-rss")
        target = directory / "copy.sqlite3"
        extras: dict[str, float] = {}
        measured: dict[str, float] = {}

        def run() -> Any:
            with PeakMemory() as memory:
                start = _clock()
                self._backup_to(source, target)
                extras["backup_s"] = _clock() - start
            measured["value"] = memory.extra
            extras.update(memory.extras())
            return target

        def check(path: Path) -> None:
            extras["file_mib"] = _mib(path.stat().st_size)

        return Case(run, 1, check, extras, measured, cleanup=lambda: remove(directory))

    def memory_per_row(self, size: int, ops: int) -> Case:
        conn = self._conn()
        extras: dict[str, float] = {}
        measured: dict[str, float] = {}

        def insert_all() -> None:
            for i in range(1, size + 1):
                r = row(i)
                conn.execute(_INSERT_AUTO, (r["name"], r["age"], r["dept"]))
            conn.commit()

        def run() -> int:
            return _growth_per_row(insert_all, size, measured, extras)

        def check(done: int) -> None:
            count = self._count(conn)
            expect(count == done, f"{count} rows after {done} inserts")

        return Case(run, 1, check, extras, measured)

    def _wal(self, policy: str, ops: int) -> Case:
        directory: Path | None = None
        if policy == "memory":
            conn = self.sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            directory = fresh_dir(f"sqlite-wal-{policy}")
            conn = self.sqlite3.connect(
                directory / "db.sqlite3", isolation_level=None, check_same_thread=False
            )
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            expect(str(mode).lower() == "wal", f"journal_mode is {mode}")
            conn.execute(f"PRAGMA synchronous={SQLITE_SYNC[policy]}")
        conn.execute(_CREATE)
        execute = conn.execute

        def insert(values: tuple[Any, ...]) -> Any:
            return execute(_INSERT_AUTO, values)  # autocommit: one transaction per insert

        values = [(r["name"], r["age"], r["dept"]) for r in make_rows(ops)]
        writers = Writers(insert, values, 1)
        extras: dict[str, float] = {}

        def run() -> int:
            start = _clock()
            done = writers.run()
            extras.update(writers.extras(_clock() - start))
            return done

        def check(done: int) -> None:
            count = int(conn.execute("SELECT count(*) FROM users").fetchone()[0])
            expect(done == ops == count, f"{done} inserts, {count} rows")

        def cleanup() -> None:
            conn.close()
            if directory is not None:
                remove(directory)

        return Case(run, ops, check, extras, cleanup=cleanup)

    def wal_memory_1t(self, size: int, ops: int) -> Case:
        return self._wal("memory", size)

    def wal_always_1t(self, size: int, ops: int) -> Case:
        return self._wal("always", size)

    def wal_everysec_1t(self, size: int, ops: int) -> Case:
        return self._wal("everysec", size)

    def wal_off_1t(self, size: int, ops: int) -> Case:
        return self._wal("off", size)


def _backup_files(directory: Path) -> list[Path]:
    # Snapshots and deltas (a backup directory also holds its timeline objects).
    return [
        p for p in directory.iterdir() if p.name.startswith(("dictdb_backup_", "dictdb_delta_"))
    ]
