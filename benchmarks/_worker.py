"""Benchmark worker: runs ONE workload of ONE implementation in its own process.

Usage::

    python -m benchmarks._worker IMPL WORKLOAD SIZE REPEAT [OPS]
    python path/to/benchmarks/_worker.py IMPL WORKLOAD SIZE REPEAT [OPS]   # same thing

IMPL is ``ours``, ``reference`` (both import ``dictdb``; which one is decided by the
interpreter and ``sys.path`` the parent chose) or ``sqlite3``. OPS is the number of
timed operations for query/update workloads (ignored by the insert workloads, whose
operation count is SIZE). REPEAT 0 only prepares once: it builds the workload's on-disk
fixture (under ``$DICTDB_BENCH_SCRATCH``) for later workers to reuse.

The worker prints exactly one JSON line on stdout and exits 0, even when the workload
fails or is not supported (the status says so). Besides the standard library it imports
only its sibling modules ``_wcommon`` and ``_wstorage`` (standard library only as well),
never the rest of the ``benchmarks`` package: the reference worker runs with ``python -I``
outside the repository so that ``import dictdb`` resolves to the reference installation.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

if __package__:  # python -m benchmarks._worker
    from benchmarks import _wstorage
    from benchmarks._wcommon import (
        RANGE_LOW,
        TABLE,
        Case,
        NotSupportedError,
        expect,
        make_rows,
        range_count,
        rss_mib,
        spread,
    )
else:  # python -I path/to/benchmarks/_worker.py: the directory is not on sys.path
    sys.path.append(str(Path(__file__).resolve().parent))
    import _wstorage
    from _wcommon import (
        RANGE_LOW,
        TABLE,
        Case,
        NotSupportedError,
        expect,
        make_rows,
        range_count,
        rss_mib,
        spread,
    )


# --------------------------------------------------------------------------- dictdb


class DictDBBench(_wstorage.DictDBStorage):
    """Workloads for ``dictdb`` (ours and the reference share the public API)."""

    def __init__(self, impl: str) -> None:
        self.impl = impl
        import dictdb

        self.module: ModuleType = dictdb
        paths = list(getattr(dictdb, "__path__", []))  # namespace packages have no __file__
        self.module_file = str(getattr(dictdb, "__file__", None) or (paths[0] if paths else "?"))
        self.version = str(getattr(dictdb, "__version__", "?"))
        if impl == "reference":
            # The reference installs a DEBUG stderr handler (loguru) on import: silence it.
            self.module.logger.remove()
            # Distributed as `dctdb`: its own __version__ looks up `dictdb` and says 0.0.0.
            from importlib.metadata import PackageNotFoundError, version

            with contextlib.suppress(PackageNotFoundError):
                self.version = version("dctdb")

    # -- helpers (untimed) ---------------------------------------------------

    def _table(self, **db_kwargs: Any) -> tuple[Any, Any]:
        db = self.module.DictDB(**db_kwargs)
        db.create_table(TABLE, primary_key="id")
        return db, db.get_table(TABLE)

    def _api(self, obj: Any, name: str) -> Any:
        """A bound method, looked up on the class (tables turn unknown attributes into fields)."""
        if not callable(getattr(type(obj), name, None)):
            raise NotSupportedError("not implemented", f"{type(obj).__name__}.{name}() is missing")
        return getattr(obj, name)

    def _field(self, table: Any, name: str) -> None:
        try:
            getattr(table, name)
        except AttributeError as exc:
            raise NotSupportedError("not implemented", f"field access t.{name}: {exc}") from exc

    def _populated(self, size: int) -> tuple[Any, Any, list[Any]]:
        db, t = self._table()
        pks = t.insert(make_rows(size))
        expect(isinstance(pks, list) and len(pks) == size, "bulk insert returned no pk list")
        return db, t, pks

    def _create_index(self, t: Any, column: str, **kwargs: Any) -> float:
        create_index = self._api(t, "create_index")
        start = time.perf_counter()
        try:
            create_index(column, **kwargs)
        except NotImplementedError as exc:
            raise NotSupportedError("not implemented", f"create_index: {exc}") from exc
        return time.perf_counter() - start

    @staticmethod
    def _count(t: Any) -> int | None:
        for name in ("count", "size"):
            method = getattr(t, name, None)
            if callable(method):
                return int(method())
        try:
            return len(t)
        except TypeError:
            return None

    # -- workloads -------------------------------------------------------------

    def _insert_row(self, size: int, indexed: bool = False, **db_kwargs: Any) -> Case:
        _db, t = self._table(**db_kwargs)
        if indexed:
            create_index = self._api(t, "create_index")
            create_index("name")
            create_index("age", index_type="sorted")
        insert = self._api(t, "insert")
        rows = make_rows(size)

        def run() -> Any:
            pk = None
            for r in rows:
                pk = insert(r)
            return pk

        def check(last_pk: Any) -> None:
            expect(last_pk is not None, "insert returned no primary key")
            count = self._count(t)
            expect(count in (None, size), f"table holds {count} rows, expected {size}")

        return Case(run, size, check)

    def insert_row(self, size: int, ops: int) -> Case:
        return self._insert_row(size)

    def insert_row_indexed(self, size: int, ops: int) -> Case:
        return self._insert_row(size, indexed=True)

    def insert_row_journaled(self, size: int, ops: int) -> Case:
        if self.impl != "ours":
            raise NotSupportedError("n/a", "retain_journal is specific to ours")
        return self._insert_row(size, retain_journal=True)

    def _insert_bulk(self, size: int, explicit_keys: bool) -> Case:
        _db, t = self._table()
        insert = self._api(t, "insert")
        rows = make_rows(size, explicit_keys=explicit_keys)

        def check(pks: Any) -> None:
            expect(isinstance(pks, list) and len(pks) == size, "bulk insert pk list")

        return Case(lambda: insert(rows), size, check)

    def insert_bulk(self, size: int, ops: int) -> Case:
        return self._insert_bulk(size, explicit_keys=False)

    def insert_bulk_explicit_keys(self, size: int, ops: int) -> Case:
        return self._insert_bulk(size, explicit_keys=True)

    def upsert_update(self, size: int, ops: int) -> Case:
        _db, t, pks = self._populated(size)
        upsert = self._api(t, "upsert")
        payloads = [{"id": k, "age": 5} for k in spread(pks, ops)]

        def run() -> Any:
            result = None
            for p in payloads:
                result = upsert(p)
            return result

        def check(result: Any) -> None:
            expect(isinstance(result, tuple) and result[1] == "updated", f"upsert -> {result}")

        return Case(run, len(payloads), check)

    def update_by_key(self, size: int, ops: int) -> Case:
        _db, t, pks = self._populated(size)
        update = self._api(t, "update")
        self._field(t, "id")
        keys = spread(pks, ops)

        def run() -> Any:
            total = 0
            for k in keys:
                total += update({"age": 1}, where=t.id == k)
            return total

        return Case(run, len(keys), lambda n: expect(n == len(keys), f"{n} rows updated"))

    def _select_eq(self, size: int, ops: int, index: bool) -> Case:
        _db, t, _pks = self._populated(size)
        select = self._api(t, "select")
        self._field(t, "name")
        extras = {"index_build_s": self._create_index(t, "name")} if index else {}
        names = [f"user{i}" for i in spread(list(range(1, size + 1)), ops)]

        def run() -> Any:
            result = None
            for name in names:
                result = select(where=t.name == name)
            return result

        def check(result: Any) -> None:
            expect(isinstance(result, list) and len(result) == 1, "equality select")

        return Case(run, len(names), check, extras)

    def select_eq_scan(self, size: int, ops: int) -> Case:
        return self._select_eq(size, ops, index=False)

    def select_eq_hash(self, size: int, ops: int) -> Case:
        return self._select_eq(size, ops, index=True)

    def select_range_sorted(self, size: int, ops: int) -> Case:
        _db, t, _pks = self._populated(size)
        select = self._api(t, "select")
        self._field(t, "age")
        extras = {"index_build_s": self._create_index(t, "age", index_type="sorted")}
        expected = range_count(size)

        def run() -> Any:
            result = None
            for _ in range(ops):
                result = select(where=t.age >= RANGE_LOW)
            return result

        def check(result: Any) -> None:
            got = len(result) if isinstance(result, list) else None
            expect(got == expected, f"range select returned {got} rows, expected {expected}")

        return Case(run, ops, check, extras)


# --------------------------------------------------------------------------- sqlite3

INSERT_AUTO = "INSERT INTO users (name, age, dept) VALUES (?, ?, ?)"
INSERT_KEYED = "INSERT INTO users (id, name, age, dept) VALUES (?, ?, ?, ?)"
UPSERT = (
    "INSERT INTO users (id, age) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET age = excluded.age"
)
UPDATE = "UPDATE users SET age = ? WHERE id = ?"
SELECT_EQ = "SELECT id, name, age, dept FROM users WHERE name = ?"
SELECT_RANGE = "SELECT id, name, age, dept FROM users WHERE age >= ?"


def sqlite_tuples(size: int) -> list[tuple[str, int, str]]:
    return [(r["name"], r["age"], r["dept"]) for r in make_rows(size)]


class SQLiteBench(_wstorage.SQLiteStorage):
    """Equivalent workloads on stdlib ``sqlite3`` with an in-memory database.

    Writes run with Python's default (deferred) transaction handling: per-row ``execute``
    calls and ONE ``commit`` at the end, all inside the timed section.
    """

    def __init__(self, impl: str) -> None:
        import sqlite3

        self.impl = impl
        self.sqlite3 = sqlite3
        self.module_file = str(sqlite3.__file__)
        self.version = sqlite3.sqlite_version

    def _conn(self) -> Any:
        conn = self.sqlite3.connect(":memory:")
        conn.execute(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, dept TEXT)"
        )
        return conn

    def _populated(self, size: int) -> Any:
        conn = self._conn()
        conn.executemany(INSERT_AUTO, sqlite_tuples(size))
        conn.commit()
        return conn

    @staticmethod
    def _count(conn: Any) -> int:
        return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])

    @staticmethod
    def _index(conn: Any, column: str) -> float:
        start = time.perf_counter()
        conn.execute(f"CREATE INDEX idx_{column} ON users ({column})")
        conn.commit()
        return time.perf_counter() - start

    def insert_row(self, size: int, ops: int) -> Case:
        conn = self._conn()
        rows = sqlite_tuples(size)

        def run() -> Any:
            execute = conn.execute
            pk = None
            for r in rows:
                pk = execute(INSERT_AUTO, r).lastrowid
            conn.commit()
            return pk

        return Case(run, size, lambda pk: expect(pk == size == self._count(conn), "count"))

    def insert_row_journaled(self, size: int, ops: int) -> Case:
        raise NotSupportedError("n/a", "retain_journal is specific to ours")

    def insert_row_indexed(self, size: int, ops: int) -> Case:
        conn = self._conn()
        self._index(conn, "name")
        self._index(conn, "age")
        return self.insert_row(size, ops)

    def insert_bulk(self, size: int, ops: int) -> Case:
        conn = self._conn()
        rows = sqlite_tuples(size)

        def run() -> Any:
            conn.executemany(INSERT_AUTO, rows)
            conn.commit()

        return Case(run, size, lambda _: expect(self._count(conn) == size, "count"))

    def insert_bulk_explicit_keys(self, size: int, ops: int) -> Case:
        conn = self._conn()
        rows = [
            (r["id"], r["name"], r["age"], r["dept"]) for r in make_rows(size, explicit_keys=True)
        ]

        def run() -> Any:
            conn.executemany(INSERT_KEYED, rows)
            conn.commit()

        return Case(run, size, lambda _: expect(self._count(conn) == size, "count"))

    def upsert_update(self, size: int, ops: int) -> Case:
        conn = self._populated(size)
        keys = spread(list(range(1, size + 1)), ops)

        def run() -> Any:
            execute = conn.execute
            changed = 0
            for k in keys:
                changed += execute(UPSERT, (k, 5)).rowcount
            conn.commit()
            return changed

        return Case(run, len(keys), lambda n: expect(n == len(keys), f"{n} upserts"))

    def update_by_key(self, size: int, ops: int) -> Case:
        conn = self._populated(size)
        keys = spread(list(range(1, size + 1)), ops)

        def run() -> Any:
            execute = conn.execute
            total = 0
            for k in keys:
                total += execute(UPDATE, (1, k)).rowcount
            conn.commit()
            return total

        return Case(run, len(keys), lambda n: expect(n == len(keys), f"{n} rows updated"))

    def _select_eq(self, size: int, ops: int, index: bool) -> Case:
        conn = self._populated(size)
        extras = {"index_build_s": self._index(conn, "name")} if index else {}
        names = [(f"user{i}",) for i in spread(list(range(1, size + 1)), ops)]

        def run() -> Any:
            execute = conn.execute
            result = None
            for name in names:
                result = execute(SELECT_EQ, name).fetchall()
            return result

        return Case(run, len(names), lambda r: expect(len(r) == 1, "equality select"), extras)

    def select_eq_scan(self, size: int, ops: int) -> Case:
        return self._select_eq(size, ops, index=False)

    def select_eq_hash(self, size: int, ops: int) -> Case:
        return self._select_eq(size, ops, index=True)

    def select_range_sorted(self, size: int, ops: int) -> Case:
        conn = self._populated(size)
        extras = {"index_build_s": self._index(conn, "age")}
        expected = range_count(size)

        def run() -> Any:
            execute = conn.execute
            result = None
            for _ in range(ops):
                result = execute(SELECT_RANGE, (RANGE_LOW,)).fetchall()
            return result

        return Case(run, ops, lambda r: expect(len(r) == expected, "range select"), extras)


# --------------------------------------------------------------------------- driver

WORKLOADS: tuple[str, ...] = (
    "insert_row",
    "insert_row_journaled",
    "insert_row_indexed",
    "insert_bulk",
    "insert_bulk_explicit_keys",
    "upsert_update",
    "update_by_key",
    "select_eq_scan",
    "select_eq_hash",
    "select_range_sorted",
    *_wstorage.WORKLOADS,
)


def last_error_line(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return lines[-1].strip() if lines else repr(exc)


def _run_cleanup(case: Case | None) -> None:
    if case is not None and case.cleanup is not None:
        with contextlib.suppress(Exception):
            case.cleanup()


def measure(impl: str, workload: str, size: int, repeat: int, ops: int) -> dict[str, Any]:
    """Run *repeat* repetitions; with ``repeat == 0`` only prepare once (builds fixtures)."""
    out: dict[str, Any] = {
        "impl": impl,
        "workload": workload,
        "size": size,
        "repeat": repeat,
        "python": platform.python_version(),
        "executable": sys.executable,
    }
    if workload not in WORKLOADS:
        return {**out, "status": "error", "message": f"unknown workload {workload!r}"}
    phase = "import"
    case: Case | None = None
    try:
        bench: DictDBBench | SQLiteBench
        bench = SQLiteBench(impl) if impl == "sqlite3" else DictDBBench(impl)
        out.update(module=bench.module_file, version=bench.version)
        out["rss_after_import_mib"] = rss_mib()
        method = workload.replace(".", "_")
        if not callable(getattr(type(bench), method, None)):
            raise NotSupportedError("n/a", f"{workload} does not apply to {impl}")
        prepare: Callable[[int, int], Case] = getattr(bench, method)
        runs: list[float] = []
        extras: dict[str, list[float]] = {}
        case_ops = 0
        if repeat == 0:
            phase = "prepare"
            case = prepare(size, ops)
            _run_cleanup(case)
            case = None
        for _ in range(repeat):
            phase = "prepare"
            case = prepare(size, ops)
            gc.collect()  # collect before timing; the GC stays enabled while timing
            phase = "run"
            start = time.perf_counter()
            result = case.run()
            elapsed = time.perf_counter() - start
            phase = "check"
            if case.check is not None:
                case.check(result)
            runs.append(case.measured.get("value", elapsed))
            case_ops = case.ops
            for key, value in case.extras.items():
                extras.setdefault(key, []).append(float(value))
            phase = "cleanup"
            _run_cleanup(case)
            del case, result
            case = None
        out.update(status="ok", runs_s=runs, ops=case_ops, extras=extras)
    except NotSupportedError as exc:
        out.update(status=exc.status, message=str(exc))
    except NotImplementedError as exc:
        out.update(status="not implemented", message=last_error_line(exc))
    except AttributeError as exc:
        if phase in ("import", "prepare"):
            out.update(status="not implemented", message=f"{phase}: {last_error_line(exc)}")
        else:
            out.update(status="error", message=f"{phase}: {last_error_line(exc)}")
        traceback.print_exc(file=sys.stderr)
    except Exception as exc:
        out.update(status="error", message=f"{phase}: {last_error_line(exc)}")
        traceback.print_exc(file=sys.stderr)
    finally:
        _run_cleanup(case)
    out["peak_rss_mib"] = rss_mib()
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    impl, workload, size, repeat = args[0], args[1], int(args[2]), int(args[3])
    ops = int(args[4]) if len(args) == 5 else 1000
    print(json.dumps(measure(impl, workload, size, repeat, ops)), flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Leftover threads (a failed workload's writers) must not keep the process alive.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
