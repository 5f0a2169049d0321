"""Write the golden backup files that `tests/dictdb/test_golden.py` must keep loading.

Each directory ``v<version>/<format>[-zst]/`` is a backup directory written by a
`BackupManager` in incremental mode: one full snapshot and two deltas
(``dictdb_backup_*`` then ``dictdb_delta_*``), in JSON or pickle, plain or zstd. The scenario
below touches every value type of the domain (None, bool, int including ints past 64 bits,
float including -0.0 and the infinities, str, list, dict including ``$``-named members that
look like codec tags, datetime naive/aware/fold, date, Decimal, UUID, bytes), keys of every
primary-key type, a table with a schema naming every schema type, and in the deltas updates,
a row deleted and re-inserted without some of its fields (a delta upsert is the full
after-image), auto keys, a key past 64 bits (``next_pk`` follows), tables created, dropped, and
dropped then created again. The expected states are written out by hand in the test, not
derived from these files.

The files are committed and never regenerated in CI: they stand for what a dictdb of that
format version wrote, and every later dictdb must keep reading them. A run replaces the four
directories of the version asked for; the script refuses a `dictdb` that writes another
version. When the format changes to version 3, add 3 to ``--version`` and the test, and keep
the directories of 1 and 2 as they are. Run from the repository root; a temporary worktree
gives the script the old code (it is not committed).

Version 2 (the pickle body is JSON in one pickled bytes object) was made with commit c28b82e,
the last before the layered redesign of issue 16 (any dictdb that writes version 2 will do,
without PYTHONPATH for the checked-out one)::

    git worktree add --detach /tmp/dictdb-v2 c28b82e
    PYTHONPATH=/tmp/dictdb-v2 python tests/data/golden/make_golden.py --version 2
    git worktree remove /tmp/dictdb-v2

Version 1 (the pickle body a pickled tree; JSON files as in version 2 but for the number) was
written up to commit f6e2409, the parent of a20fc8c ("Pickle files, format version 2"), and
made with that commit's code::

    git worktree add --detach /tmp/dictdb-v1 f6e2409
    PYTHONPATH=/tmp/dictdb-v1 python tests/data/golden/make_golden.py --version 1
    git worktree remove /tmp/dictdb-v1

The script uses only the public API that both versions share (`DictDB`, table methods,
`BackupManager`, `restore`), checks that the `dictdb` it imported writes the version asked
for, and that `restore` of each directory gives back the state it wrote. File names hold the
time of writing, so a regenerated directory differs in names and timestamps, not in content.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import math
import pickle
import shutil
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import zstandard

HERE = Path(__file__).resolve().parent
#: The directory of each (format, compression) pair under ``v<version>/``.
KINDS: dict[str, tuple[str, str | None]] = {
    "json": ("json", None),
    "json-zst": ("json", "zstd"),
    "pickle": ("pickle", None),
    "pickle-zst": ("pickle", "zstd"),
}

UTC = dt.UTC
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
ODD_OFFSET = dt.timezone(dt.timedelta(hours=-8, seconds=-1))
PEOPLE_SCHEMA = {
    "name": "str",
    "age": "int",
    "score": "float",
    "active": "bool",
    "tags": "list",
    "meta": "dict",
    "photo": "bytes",
    "seen": "datetime",
    "born": "date",
    "balance": "Decimal",
    "ref": "UUID",
}


def scalars_row() -> dict[str, Any]:
    return {
        "id": 1,
        "none": None,
        "yes": True,
        "no": False,
        "int": -7,
        "int64_max": 2**63 - 1,
        "int64_min": -(2**63),
        "big": 2**200,
        "negative_big": -(2**80) - 1,
        "float": 1.5,
        "negative_zero": -0.0,
        "tiny": 5e-324,
        "inf": math.inf,
        "negative_inf": -math.inf,
        "str": 'héllo ☃ \x00 "q" \\',
        "empty_str": "",
        "list": [1, "a", None, [2.5, []]],
        "dict": {"a": 1, "nested": {"b": [True]}},
        "empty_dict": {},
    }


def temporal_row() -> dict[str, Any]:
    return {
        "id": 2,
        "date": dt.date(2024, 2, 29),
        "naive_fold": dt.datetime(2021, 11, 7, 1, 30, fold=1),
        "naive_micro": dt.datetime(2024, 1, 1, 12, 30, 45, 123456),
        "utc": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "plus_0530": dt.datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=PLUS_0530),
        "odd_offset": dt.datetime(1, 1, 1, 12, tzinfo=ODD_OFFSET),
        "max": dt.datetime.max,
        "min_date": dt.date.min,
    }


def exact_row() -> dict[str, Any]:
    return {
        "id": 3,
        "dec": Decimal("1.10"),
        "negative_zero_dec": Decimal("-0E-7"),
        "big_dec": Decimal("123456789012345678901234567890.000001"),
        "exp_dec": Decimal("1E+5"),
        "uuid": UUID("12345678-1234-5678-1234-567812345678"),
        "bytes": b"\x00\xffbin",
        "empty_bytes": b"",
    }


def tag_like_row() -> dict[str, Any]:
    return {
        "id": 4,
        "$int": "5",
        "x": {"$bytes": "AA=="},
        "y": [{"$dict": {}}],
        "z": {"$": {"$": None}},
    }


def nested_row() -> dict[str, Any]:
    return {
        "id": 5,
        "l": [[], {}, [{"k": [b"x", dt.date(2000, 1, 1), Decimal("2"), UUID(int=1)]}]],
        "deep": {"a": {"b": {"c": [dt.datetime(2020, 5, 17, 8, 0, tzinfo=UTC)]}}},
    }


def other_key_rows() -> list[dict[str, Any]]:
    return [
        {"id": "k", "kind": "str key"},
        {"id": b"\x00k", "kind": "bytes key"},
        {"id": UUID(int=7), "kind": "uuid key"},
        {"id": dt.date(2024, 1, 1), "kind": "date key"},
        {"id": dt.datetime(2024, 1, 1, 8, 30), "kind": "naive datetime key"},
        {"id": dt.datetime(2024, 1, 1, 8, 30, tzinfo=PLUS_0530), "kind": "aware datetime key"},
        {"id": -(2**80), "kind": "big negative key"},
    ]


def person(name: str, age: int, **changes: Any) -> dict[str, Any]:
    row = {
        "name": name,
        "age": age,
        "score": 0.1,
        "active": True,
        "tags": ["a", 1],
        "meta": {"k": Decimal("0.5")},
        "photo": b"\x89PNG",
        "seen": dt.datetime(2024, 3, 1, 9, 0, tzinfo=UTC),
        "born": dt.date(1990, 7, 14),
        "balance": Decimal("-12.50"),
        "ref": UUID(int=2**128 - 1),
    }
    row.update(changes)
    return row


def full_scenario(db: Any) -> None:
    """The state of the full snapshot: LSN 1-18 (a batch insert is one operation per row)."""
    values = db.create_table("values", primary_key="id")
    people = db.create_table("people", primary_key="pk", schema=PEOPLE_SCHEMA)
    doomed = db.create_table("doomed", primary_key="id")
    values.insert(
        [
            scalars_row(),
            temporal_row(),
            exact_row(),
            tag_like_row(),
            nested_row(),
            *other_key_rows(),
        ]
    )
    people.insert([person("Alice", 30), person("Bob", 25, active=False, tags=[])])
    doomed.insert({"x": 1})


def delta_1(db: Any) -> None:
    """The first delta: LSN 19-28."""
    values, people = db.get_table("values"), db.get_table("people")
    values.update({"str": "changed", "new": Decimal("3.14")}, where=values.id == 1)  # 19
    values.delete(where=values.id == 3)  # 20
    values.delete(where=values.id == 2)  # 21: re-inserted below without most of its fields
    values.insert({"id": 2, "date": dt.date(1999, 12, 31)})  # 22
    values.insert({"note": "auto key"})  # 23: key 6
    values.upsert({"id": "k", "extra": [None]})  # 24: merged into the existing row
    people.update({"age": 31, "tags": []}, where=people.name == "Alice")  # 25
    people.insert(person("Chloé", 41, score=-2.5e-8, meta={}))  # 26: key 3
    fresh = db.create_table("fresh", primary_key="code")  # 27
    fresh.insert({"code": "a", "v": [1, {"$int": 2}]})  # 28


def delta_2(db: Any) -> None:
    """The second delta: LSN 29-35."""
    values, people, fresh = db.get_table("values"), db.get_table("people"), db.get_table("fresh")
    db.drop_table("doomed")  # 29
    again = db.create_table("doomed", primary_key="id", schema={"n": "int"})  # 30
    again.insert({"n": 1})  # 31: key 1 again, in the new table
    values.insert({"id": 2**64, "v": "key past 64 bits"})  # 32: next_pk becomes 2**64 + 1
    values.delete(where=values.id == -(2**80))  # 33
    people.delete(where=people.pk == 2)  # 34
    fresh.upsert({"code": "b", "v": {"$": None}})  # 35


def header_version(path: Path) -> int:
    """The format version in a file's header, read without dictdb (our own files only)."""
    data = path.read_bytes()
    if path.suffix == ".zst":
        data = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 24)
    if ".json" in path.name:
        return int(orjson.loads(data)["version"])
    header = NoGlobals(io.BytesIO(data)).load()
    return int(header["version"])


class NoGlobals(pickle.Unpickler):
    """An unpickler for plain data: a file header names no class."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global {module}.{name} in a header")


def write(version: int, kind: str) -> Path:
    from dictdb import BackupManager, DictDB, restore

    file_format, compression = KINDS[kind]
    out = HERE / f"v{version}" / kind
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    db = DictDB()
    manager = BackupManager(
        db,
        out,
        file_format=file_format,
        compression=compression,
        incremental=True,
        min_backup_interval=0,
    )
    full_scenario(db)
    cuts = [(db.lsn, db.to_dict())]
    written = [manager.backup_full()]
    for step in (delta_1, delta_2):
        step(db)
        cuts.append((db.lsn, db.to_dict()))
        written.append(manager.backup_delta())
    for path in written:
        assert path is not None, "a backup failed"
        assert path.parent == out, path
        found = header_version(path)
        if found != version:
            sys.exit(f"{path.name}: the dictdb imported writes version {found}, not {version}")
    for lsn, state in cuts:
        restored = restore(out, lsn=lsn)
        assert (lsn, state) == (restored.lsn, restored.to_dict())
    print(f"  cuts at LSN {[lsn for lsn, _ in cuts]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", type=int, required=True, choices=(1, 2))
    args = parser.parse_args()
    import dictdb

    print(f"writing version {args.version} with {Path(dictdb.__file__).parent}")
    for kind in KINDS:
        out = write(args.version, kind)
        for path in sorted(out.iterdir()):
            print(f"  {path.relative_to(HERE)}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
