"""Write the legacy golden files: what the reference DictDB 1.11.0 (PyPI ``dctdb``) writes.

Runs under the reference's python only, and uses only the reference's own API (`DictDB`,
`Table`, `dictdb.storage.persist.save` and ``save_delta``), with file names in its
`BackupManager`'s naming (``dictdb_backup_<sec>_<usec>.<ext>``, ``dictdb_delta_<sec>_<usec>
.json``) at fixed, increasing times (each ``<usec>`` a multiple of 1/64 s, so that the name's
time is the same float however it is computed)::

    benchmarks/.venvs/reference/bin/python tests/data/legacy/make_legacy.py tests/data/legacy

(``python -c 'from benchmarks._runner import ensure_reference_venv as e; print(e())'`` builds
that venv when it is missing.) It writes, under OUTDIR:

- ``snapshots/``: one JSON and one pickle snapshot of every value type the reference stores in
  each format (str with non-ASCII, ints past 64 bits and negative, floats with -0.0, the
  infinities and NaN, bool, None, nested lists and dicts, dicts whose one key looks like one of
  our codec tags; the pickle adds bytes, tuple, set, frozenset, a bytes primary key, a list
  shared by two rows, a dict with keys that are not str), over a table with a schema, tables
  without, int and str primary keys, empty tables.
- ``chain-json/``, ``chain-pickle/``: a backup directory each (full snapshots in that format,
  deltas in JSON as the reference always writes them): full, deltas with inserts, updates and
  deletes, a second full, more deltas. They hold the reference's defects on purpose: a table
  created after a full (its rows in a delta, skipped on restore: A2), a row deleted and
  re-inserted without a field in one window (A3), deletes of keys the base does not hold, a
  delta repeating what the full before it holds (a full does not reset tracking: A13), a table
  dropped after a full (the delta does not say so), tuples turned to lists in deltas (A7).
- ``refused/``: files the reference writes that our reader must refuse (a tuple or float
  primary key, a datetime the reference cannot read back itself, a row breaking its schema,
  a row whose key is not its record's key, a row without its key).
- ``expected.json``: per file (path relative to OUTDIR), the tables as the reference sees them
  after following the seed guide's recipe up to that file (the newest full at or before it,
  then the later deltas up to it, in name order): ``tables`` with each delta upsert replacing
  its row (what `dictdb.restore` must give), and ``reference_tables`` only where the
  reference's own `apply_delta` (a ``dict.update`` merge, defect A3) sees something else. Per
  refused file, the table it should be refused for (null: the file as a whole). Values JSON
  cannot carry are tagged one-key objects: ``$bytes`` (base64), ``$tuple``, ``$set``,
  ``$frozenset`` (sorted when orderable), ``$float`` (``nan``, ``inf``, ``-inf``), and
  ``$dict`` for a dict whose one key starts with ``$``.

The output is deterministic (the script re-executes itself with ``PYTHONHASHSEED=0``, which
fixes the reference's set iteration order in deltas and pickles) except the wall-clock
``timestamp`` member the reference writes into each delta. The same module is the reference
side of `tests/dictdb/test_legacy_reference.py`: ``make_legacy.py --serve`` answers one JSON
command per line on stdin (see `serve`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]

#: Seconds since the epoch of the first file; later files follow at fixed offsets.
BASE = 1_700_000_000


def _reference() -> Any:
    """The reference's `dictdb` package, checked to be dctdb 1.11.0 and not ours."""
    import importlib.metadata

    import dictdb

    where = Path(dictdb.__file__).resolve()
    if where.parent == REPO / "dictdb":
        sys.exit(f"this script needs the reference DictDB, not {where}: see the docstring")
    found = importlib.metadata.version("dctdb")
    if found != "1.11.0":
        sys.exit(f"this script needs dctdb 1.11.0, found {found}")
    dictdb.logger.remove()  # the reference logs every insert to stderr by default (B8)
    return dictdb


# -- the tagged JSON form of the reference's values ------------------------------------------


def _ordered(items: Any) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:
        return list(items)


def tag(value: Any) -> Any:
    """*value* (as the reference holds it) in JSON: tagged where JSON cannot carry it."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return {"$float": "nan"}
        if math.isinf(value):
            return {"$float": "inf" if value > 0 else "-inf"}
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return {"$tuple": [tag(v) for v in value]}
    if isinstance(value, frozenset):
        return {"$frozenset": [tag(v) for v in _ordered(value)]}
    if isinstance(value, set):
        return {"$set": [tag(v) for v in _ordered(value)]}
    if isinstance(value, list):
        return [tag(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return {"$pairs": [[tag(k), tag(v)] for k, v in value.items()]}
        out = {k: tag(v) for k, v in value.items()}
        if len(out) == 1 and next(iter(out)).startswith("$"):
            return {"$dict": out}
        return out
    return {"$repr": repr(value)}


def tag_row(row: dict[str, Any]) -> dict[str, Any]:
    """A record, field by field (never wrapped as ``$dict``: rows are always dicts)."""
    return {field: tag(value) for field, value in row.items()}


def untag(value: Any) -> Any:
    """The reference's value for a tagged JSON *value* (the inverse of `tag`)."""
    if isinstance(value, list):
        return [untag(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        if key == "$bytes":
            return base64.b64decode(inner)
        if key == "$tuple":
            return tuple(untag(v) for v in inner)
        if key == "$set":
            return {untag(v) for v in inner}
        if key == "$frozenset":
            return frozenset(untag(v) for v in inner)
        if key == "$float":
            return float(inner)
        if key == "$dict":
            return {k: untag(v) for k, v in inner.items()}
    return {k: untag(v) for k, v in value.items()}


def view(db: Any, pickled: Any = None) -> dict[str, Any]:
    """Every table of a reference database: key, schema (type names) and tagged rows; with
    the database *pickled* (as it was when saved), each table's ``_next_pk`` its pickle holds
    (the reference's own load ignores it: A19)."""
    out: dict[str, Any] = {}
    for name, table in db.tables.items():
        schema = table.schema
        out[name] = {
            "primary_key": table.primary_key,
            "schema": None if schema is None else {f: t.__name__ for f, t in schema.items()},
            "rows": [tag_row(row) for row in table.records.values()],
        }
        if pickled is not None:
            out[name]["pickled_next_pk"] = pickled.tables[name]._next_pk
    return out


# -- the golden files ---------------------------------------------------------------------------


def stamp(seconds: int, usec: int) -> str:
    """The ``<sec>_<usec>`` of a file name."""
    return f"{BASE + seconds}_{usec:06d}"


def name_time(name: str) -> tuple[int, int]:
    """The ``(sec, usec)`` of a backup file name: the order the seed guide's recipe means."""
    sec, usec = name.split(".", maxsplit=1)[0].split("_")[2:4]
    return int(sec), int(usec)


def full_name(seconds: int, usec: int, ext: str) -> str:
    return f"dictdb_backup_{stamp(seconds, usec)}.{ext}"


def delta_name(seconds: int, usec: int) -> str:
    return f"dictdb_delta_{stamp(seconds, usec)}.json"


def snapshot_db(ref: Any, pickled: bool) -> Any:
    """Every value type the reference stores in JSON (and, *pickled*, in pickle)."""
    db = ref.DictDB()
    people = ref.Table(
        "people",
        primary_key="id",
        schema={
            "id": int,
            "name": str,
            "age": int,
            "score": float,
            "active": bool,
            "tags": list,
            "meta": dict,
        },
    )
    db.tables["people"] = people  # the reference's create_table takes no schema (B9)
    people.insert(
        [
            {
                "name": "Zoë Ørsted",
                "age": 41,
                "score": 3.25,
                "active": True,
                "tags": ["a", ["nested", 1]],
                "meta": {"k": {"deep": [None, False]}},
            },
            {
                "name": "李雷 🙂",
                "age": -7,
                "score": -0.0,
                "active": False,
                "tags": [],
                "meta": {},
            },
            {
                "name": "",
                "age": 2**70,
                "score": 1e308,
                "active": True,
                "tags": [5e-324, -(2**65)],
                "meta": {"": "empty key", "a b": "spaced"},
            },
            {
                "id": 10,
                "name": 'tab\tquote"back\\slash\nnl\u0000nul',
                "age": 0,
                "score": float("inf"),
                "active": False,
                "tags": [float("-inf")],
                "meta": {"x": 1.5},
            },
        ]
    )
    db.create_table("things", primary_key="code")
    things = db.get_table("things")
    things.insert(
        [
            {"code": "plain", "none": None, "yes": True, "no": False, "n": -(2**65)},
            {"code": "floats", "f": 0.1, "neg": -2.5e-8, "nan": float("nan"), "whole": 2.0},
            {"code": "tag-like", "b": {"$bytes": "AAAA"}, "i": {"$int": "5"}, "d": {"$": None}},
            {"code": "deep", "v": [[[[[[[[[[{"level": 10}]]]]]]]]]]},
            {"code": "é", "mixed": [1, "two", 3.0, None, True, {"k": []}]},
        ]
    )
    db.create_table("counters")
    counters = db.get_table("counters")
    counters.insert([{"v": "one"}, {"v": "two"}, {"v": "three"}])
    counters.delete(where=counters.id == 2)
    counters.insert({"id": 2**64, "v": "key past 64 bits"})
    counters.insert({"id": -5, "v": "negative key"})
    db.create_table("empty")
    db.tables["empty_schema"] = ref.Table("empty_schema", schema={"x": str})
    if pickled:
        db.create_table("pickled")
        pickled_table = db.get_table("pickled")
        shared = [1, 2, 3]
        pickled_table.insert(
            [
                {"b": b"\x00\xffbytes", "empty": b""},
                {"t": (1, "two", (3.5, None)), "e": ()},
                {"s": {3, 1, 2}, "fs": frozenset({"b", "a", "c"}), "es": set()},
                {"nested": [(1, 2), {"inner": {4, 5}}], "nan": (float("nan"),)},
                {"shared": shared, "again": shared},
                {"shared": shared},
                {"m": {1: "a", 2.5: "b", False: "c", None: "d"}},
            ]
        )
        db.create_table("blobs", primary_key="h")
        db.get_table("blobs").insert([{"h": b"\x01\x02", "v": 1}, {"h": b"", "v": 2}])
    return db


def write_snapshots(ref: Any, out: Path, expected: dict[str, Any]) -> None:
    folder = out / "snapshots"
    folder.mkdir()
    for ext in ("json", "pickle"):
        db = snapshot_db(ref, pickled=ext == "pickle")
        path = folder / full_name(0, 0, ext)
        ref.storage.persist.save(db, path, ext)
        loaded = ref.DictDB.load(str(path), ext)
        tables = view(loaded, db if ext == "pickle" else None)
        expected[f"snapshots/{path.name}"] = {"tables": tables}


#: The chain's files: (kind, seconds after BASE, microseconds); usec multiples of 1/64 s.
CHAIN = [
    ("full", 0, 0),
    ("delta", 60, 250_000),
    ("delta", 120, 500_000),
    ("full", 180, 750_000),
    ("delta", 240, 125_000),
    ("delta", 300, 62_500),
]


def chain_steps(ref: Any, db: Any, pickled: bool) -> list[Callable[[], None]]:
    """The changes made before each file of `CHAIN`."""

    def t(name: str) -> Any:
        return db.get_table(name)

    def before_full_1() -> None:
        db.create_table("users")
        db.tables["items"] = ref.Table(
            "items", primary_key="sku", schema={"sku": str, "qty": int, "price": float}
        )
        db.create_table("scratch", primary_key="key")
        users = t("users")
        first: dict[str, Any] = {"name": "Ann", "email": "ann@x", "tags": ["a"]}
        if pickled:
            first["coords"] = (1.5, -2.0)  # a tuple; the delta that updates the row has a list
        users.insert([first, {"name": "Bob", "email": "bob@x"}, {"name": "Chloé", "email": None}])
        users.insert({"name": "Dan"})
        t("items").insert(
            [{"sku": "A-1", "qty": 3, "price": 9.5}, {"sku": "B-2", "qty": 0, "price": 0.0}]
        )
        t("scratch").insert({"key": "k1", "v": {"nested": [1, [2, [3]]]}})

    def before_delta_1() -> None:
        users = t("users")
        users.insert({"name": "Eve", "email": "eve@x"})  # id 5
        users.update({"email": "ann@new"}, where=users.id == 1)
        users.delete(where=users.id == 4)
        t("items").upsert({"sku": "A-1", "qty": 4, "price": 9.5})
        t("items").upsert({"sku": "C-3", "qty": 7, "price": 1.25})
        db.create_table("late")  # A2: its rows are in the delta, the restored base lacks it
        t("late").insert({"note": "created after full 1"})

    def before_delta_2() -> None:
        users = t("users")
        users.delete(where=users.id == 2)
        users.insert({"id": 2, "name": "Bob"})  # A3: no email now; the delete is not recorded
        users.insert({"id": 50, "name": "temp"})
        users.delete(where=users.id == 50)  # a delete of a key no base holds
        t("items").update({"qty": 0}, where=t("items").sku == "C-3")
        t("scratch").upsert({"key": "k2", "v": "ünïcode ✓"})

    def before_full_2() -> None:
        users = t("users")
        users.update({"name": "Eve Adams"}, where=users.id == 5)
        users.delete(where=users.id == 3)  # delta 3 deletes it again (A13: not reset)
        t("late").insert({"note": "second"})

    def before_delta_3() -> None:
        users = t("users")
        users.insert({"name": "Finn", "big": 2**70})  # id 51
        users.update({"tags": ["a", "b"], "email": None}, where=users.id == 1)
        t("items").delete(where=t("items").sku == "B-2")
        db.drop_table("scratch")  # no delta says so: a restore keeps it

    def before_delta_4() -> None:
        users = t("users")
        users.upsert({"id": 51, "name": "Finn", "big": -(2**70)})
        t("late").delete(where=t("late").id == 1)
        users.insert({"name": "Gus"})  # id 52

    return [
        before_full_1,
        before_delta_1,
        before_delta_2,
        before_full_2,
        before_delta_3,
        before_delta_4,
    ]


def replay(ref: Any, folder: Path, upto: str, fmt: str) -> tuple[Any, Any]:
    """The seed guide's recipe up to the file *upto*: the newest full at or before it, then the
    deltas after that full up to *upto*, in name order. Returns (rows with each delta upsert
    replacing its row, the reference's own `apply_delta` result)."""
    names = sorted(
        (p.name for p in folder.iterdir() if name_time(p.name) <= name_time(upto)),
        key=name_time,
    )
    base = [n for n in names if n.startswith("dictdb_backup_")][-1]
    deltas = [n for n in names if n.startswith("dictdb_delta_") and name_time(n) > name_time(base)]
    merged = ref.DictDB.load(str(folder / base), fmt)
    for name in deltas:
        ref.storage.persist.apply_delta(merged, folder / name)
    replaced = view(ref.DictDB.load(str(folder / base), fmt))
    for name in deltas:
        doc = json.loads((folder / name).read_text(encoding="utf-8"))
        for table_name, changes in doc["tables"].items():
            if table_name not in replaced:
                continue  # as the reference does (A2)
            table = replaced[table_name]
            key = table["primary_key"]
            rows = {json.dumps(row[key]): row for row in table["rows"]}
            for row in changes["upserts"]:
                rows[json.dumps(tag(row[key]))] = tag_row(row)
            for pk in changes["deletes"]:
                rows.pop(json.dumps(tag(pk)), None)
            table["rows"] = list(rows.values())
    return replaced, view(merged)


def write_chain(ref: Any, out: Path, fmt: str, expected: dict[str, Any]) -> None:
    folder = out / f"chain-{fmt}"
    folder.mkdir()
    db = ref.DictDB()
    counters: dict[str, dict[str, int]] = {}
    for step, (kind, seconds, usec) in zip(
        chain_steps(ref, db, fmt == "pickle"), CHAIN, strict=True
    ):
        step()
        if kind == "full":
            path = folder / full_name(seconds, usec, fmt)
            ref.storage.persist.save(db, path, fmt)
            if fmt == "pickle":
                counters[path.name] = {n: t._next_pk for n, t in db.tables.items()}
        else:
            path = folder / delta_name(seconds, usec)
            assert ref.storage.persist.save_delta(db, path), f"{path.name}: nothing changed"
    for path in sorted(folder.iterdir()):
        replaced, merged = replay(ref, folder, path.name, fmt)
        for name, counter in counters.get(path.name, {}).items():
            replaced[name]["pickled_next_pk"] = counter
        entry: dict[str, Any] = {"tables": replaced}
        if _comparable(merged) != _comparable(replaced):
            entry["reference_tables"] = merged
        expected[f"{folder.name}/{path.name}"] = entry


def _comparable(tables: dict[str, Any]) -> dict[str, Any]:
    """*tables* with rows keyed by primary key, for a comparison that ignores row order."""
    out = {}
    for name, table in tables.items():
        key = table["primary_key"]
        rows = {json.dumps(row[key]): row for row in table["rows"]}
        out[name] = {**table, "rows": rows}
    return out


def write_refused(ref: Any, out: Path, expected: dict[str, Any]) -> None:
    """Files the reference writes that our reader must refuse, and the table to blame."""
    folder = out / "refused"
    folder.mkdir()

    def one_table(name: str, pk: str = "id", schema: Any = None) -> tuple[Any, Any]:
        db = ref.DictDB()
        db.tables[name] = ref.Table(name, primary_key=pk, schema=schema)
        return db, db.tables[name]

    cases: list[tuple[str, str, str | None, Any]] = []

    db, table = one_table("pairs")
    table.insert({"id": (1, 2), "v": "tuple key"})
    cases.append(("tuple_pk.pickle", "pickle", "pairs", db))

    db, table = one_table("floaty")
    table.insert({"id": 1.5, "v": "float key"})
    cases.append(("float_pk.json", "json", "floaty", db))

    db, table = one_table("when")
    table.insert({"at": dt.datetime(2024, 1, 2, 3, 4, 5)})  # the reference cannot read it (A11)
    cases.append(("datetime.pickle", "pickle", None, db))

    for ext in ("json", "pickle"):
        db, table = one_table("typed", schema={"id": int, "age": int})
        table.insert({"age": 30})
        table.insert({"age": "thirty"}, skip_validation=True)  # A12
        cases.append((f"schema_violation.{ext}", ext, "typed", db))

    db, table = one_table("moved")
    record: dict[str, Any] = {"v": "x"}
    table.insert(record)
    record["id"] = 999  # rows are stored by reference (B3): its key is 1, its id 999
    cases.append(("key_mismatch.pickle", "pickle", "moved", db))

    db, table = one_table("keyless")
    record = {"v": "x"}
    table.insert(record)
    del record["id"]
    cases.append(("missing_pk.pickle", "pickle", "keyless", db))

    for name, ext, blamed, db in cases:
        ref.storage.persist.save(db, folder / name, ext)
        expected[f"refused/{name}"] = {"table": blamed}


def generate(out: Path) -> None:
    ref = _reference()
    import dictdb.storage.persist  # noqa: F401  (reached as ref.storage.persist)

    for sub in ("snapshots", "chain-json", "chain-pickle", "refused"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    refused: dict[str, Any] = {}
    write_snapshots(ref, out, files)
    write_chain(ref, out, "json", files)
    write_chain(ref, out, "pickle", files)
    write_refused(ref, out, refused)
    doc = {
        "about": "written by make_legacy.py with dctdb 1.11.0; see its docstring",
        "files": files,
        "refused": refused,
    }
    text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    (out / "expected.json").write_text(text, encoding="utf-8")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.suffix != ".py")
    print(f"wrote {len(files)} golden and {len(refused)} refused files, {total} bytes in all")


# -- the reference side of tests/dictdb/test_legacy_reference.py -----------------------------


def build(ref: Any, spec: dict[str, Any]) -> Any:
    """A reference database from a tagged *spec*: table → {primary_key, schema, rows}."""
    db = ref.DictDB()
    for name, table in spec.items():
        schema = table["schema"]
        types = None if schema is None else {f: _TYPES[t] for f, t in schema.items()}
        db.tables[name] = ref.Table(name, primary_key=table["primary_key"], schema=types)
        for row in table["rows"]:
            db.tables[name].insert({f: untag(v) for f, v in row.items()})
    return db


_TYPES = {"int": int, "str": str, "float": float, "bool": bool, "list": list, "dict": dict}


def serve() -> None:
    """Answer one JSON command per line of stdin, one JSON line each on stdout.

    Commands (``op``):
    - ``save``: build `spec` (see `build`) and save it to `path` in `format`; answers ``{}``.
    - ``load``: `DictDB.load` of `path` in `format`; answers ``{"tables": view}`` or
      ``{"error": "Type: message"}``.
    - ``chain``: in the directory `dir`, a `BackupManager` (incremental, `format`) backs up
      the database built from `spec` (``backup_full``), then runs `steps`, each
      ``["insert"|"upsert", table, row]``, ``["update", table, key, changes]``,
      ``["delete", table, key]``, ``["full"]`` or ``["delta"]`` (a write the reference
      refuses for a duplicate or missing key changes nothing and is passed over); answers
      the live view (``tables``) and, by the name of each file written, the view then
      (``files``).
    """
    ref = _reference()
    import dictdb.storage.persist  # noqa: F401

    for line in sys.stdin:
        command = json.loads(line)
        try:
            answer = _answer(ref, command)
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer, allow_nan=False) + "\n")
        sys.stdout.flush()


def _answer(ref: Any, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op == "save":
        ref.storage.persist.save(build(ref, command["spec"]), command["path"], command["format"])
        return {}
    if op == "load":
        return {"tables": view(ref.DictDB.load(command["path"], command["format"]))}
    if op == "chain":
        db = build(ref, command["spec"])
        manager = ref.BackupManager(
            db, command["dir"], file_format=command["format"], incremental=True
        )
        folder = Path(command["dir"])
        files: dict[str, Any] = {}
        for step in [["full"], *command["steps"]]:
            before = set(folder.iterdir())
            try:
                _step(db, manager, step)
            except (ref.DuplicateKeyError, ref.RecordNotFoundError):
                continue
            for path in set(folder.iterdir()) - before:
                files[path.name] = view(db)
        if manager.consecutive_failures:
            return {"error": f"{manager.consecutive_failures} backups failed"}
        return {"tables": view(db), "files": files}
    raise ValueError(f"unknown op {op!r}")


def _step(db: Any, manager: Any, step: list[Any]) -> None:
    kind = step[0]
    if kind in ("full", "delta"):
        time.sleep(0.002)  # file names are the wall clock to the microsecond (A13 E)
        (manager.backup_full if kind == "full" else manager.backup_delta)()
        return
    table = db.get_table(step[1])
    if kind == "insert":
        table.insert(untag(step[2]))
    elif kind == "upsert":
        table.upsert(untag(step[2]))
    else:
        where = getattr(table, table.primary_key) == untag(step[2])
        if kind == "update":
            table.update(untag(step[3]), where=where)
        else:
            table.delete(where=where)


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":  # fixes set order in deltas and pickles
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    if sys.argv[1:] == ["--serve"]:
        serve()
    elif len(sys.argv) == 2:
        generate(Path(sys.argv[1]).resolve())
    else:
        sys.exit(f"usage: {sys.argv[0]} OUTDIR | --serve")


if __name__ == "__main__":
    main()
