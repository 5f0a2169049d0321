"""Golden files: backups written by past versions of the format must keep loading, exactly.

`tests/data/golden/` holds, for format versions 1 and 2, a backup directory per kind (JSON,
pickle, each plain and zstd): a full snapshot at LSN 18 and deltas up to LSN 28 and 35.
`tests/data/golden/make_golden.py` wrote them (version 1 with the code of commit f6e2409) and
says how. The states they must give back are written out below by hand, not derived from the
files or from the script, and compared type for type (``1 == 1.0 == True`` and
``Decimal("1.1") == Decimal("1.10")`` do not pass for each other here).

The files are never rewritten: each test reads a copy in its temporary directory.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import pickle
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
import zstandard

from dictdb import DictDB, RestoreError, restore
from dictdb.storage.persist import apply_delta

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
VERSIONS = (1, 2)
KINDS = ("json", "json-zst", "pickle", "pickle-zst")
CASES = [(version, kind) for version in VERSIONS for kind in KINDS]
CASE_IDS = [f"v{version}-{kind}" for version, kind in CASES]
SUFFIXES = {
    "json": ".json",
    "json-zst": ".json.zst",
    "pickle": ".pickle",
    "pickle-zst": ".pickle.zst",
}
#: The LSN of the full snapshot, then of each delta's end.
FULL_LSN, DELTA_1_LSN, DELTA_2_LSN = 18, 28, 35

# -- the expected states, by hand ------------------------------------------------------------

UTC = dt.UTC
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
ODD_OFFSET = dt.timezone(dt.timedelta(hours=-8, seconds=-1))

SCALARS = {
    "id": 1,
    "none": None,
    "yes": True,
    "no": False,
    "int": -7,
    "int64_max": 9223372036854775807,
    "int64_min": -9223372036854775808,
    "big": 1606938044258990275541962092341162602522202993782792835301376,
    "negative_big": -1208925819614629174706177,
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
TEMPORAL = {
    "id": 2,
    "date": dt.date(2024, 2, 29),
    "naive_fold": dt.datetime(2021, 11, 7, 1, 30, fold=1),
    "naive_micro": dt.datetime(2024, 1, 1, 12, 30, 45, 123456),
    "utc": dt.datetime(2024, 1, 1, tzinfo=UTC),
    "plus_0530": dt.datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=PLUS_0530),
    "odd_offset": dt.datetime(1, 1, 1, 12, tzinfo=ODD_OFFSET),
    "max": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    "min_date": dt.date(1, 1, 1),
}
EXACT = {
    "id": 3,
    "dec": Decimal("1.10"),
    "negative_zero_dec": Decimal("-0E-7"),
    "big_dec": Decimal("123456789012345678901234567890.000001"),
    "exp_dec": Decimal("1E+5"),
    "uuid": UUID("12345678-1234-5678-1234-567812345678"),
    "bytes": b"\x00\xffbin",
    "empty_bytes": b"",
}
TAG_LIKE = {
    "id": 4,
    "$int": "5",
    "x": {"$bytes": "AA=="},
    "y": [{"$dict": {}}],
    "z": {"$": {"$": None}},
}
NESTED = {
    "id": 5,
    "l": [[], {}, [{"k": [b"x", dt.date(2000, 1, 1), Decimal("2"), UUID(int=1)]}]],
    "deep": {"a": {"b": {"c": [dt.datetime(2020, 5, 17, 8, 0, tzinfo=UTC)]}}},
}
OTHER_KEYS = {
    "k": {"id": "k", "kind": "str key"},
    b"\x00k": {"id": b"\x00k", "kind": "bytes key"},
    UUID(int=7): {"id": UUID(int=7), "kind": "uuid key"},
    dt.date(2024, 1, 1): {"id": dt.date(2024, 1, 1), "kind": "date key"},
    dt.datetime(2024, 1, 1, 8, 30): {
        "id": dt.datetime(2024, 1, 1, 8, 30),
        "kind": "naive datetime key",
    },
    dt.datetime(2024, 1, 1, 8, 30, tzinfo=PLUS_0530): {
        "id": dt.datetime(2024, 1, 1, 8, 30, tzinfo=PLUS_0530),
        "kind": "aware datetime key",
    },
    -(2**80): {"id": -(2**80), "kind": "big negative key"},
}
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
    "pk": "int",
}


def person(pk: int, name: str, age: int, **changes: Any) -> dict[str, Any]:
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
        "ref": UUID("ffffffff-ffff-ffff-ffff-ffffffffffff"),
        "pk": pk,
    }
    row.update(changes)
    return row


def table(pk: str, schema: Any, next_pk: int, rows: dict[Any, Any]) -> dict[str, Any]:
    return {"primary_key": pk, "schema": schema, "next_pk": next_pk, "records": rows}


#: The state after LSN 18 (the full snapshot), in the order `list_tables` gives.
STATE_FULL = {
    "values": table(
        "id",
        None,
        6,
        {1: SCALARS, 2: TEMPORAL, 3: EXACT, 4: TAG_LIKE, 5: NESTED, **OTHER_KEYS},
    ),
    "people": table(
        "pk",
        PEOPLE_SCHEMA,
        3,
        {
            1: person(1, "Alice", 30),
            2: person(2, "Bob", 25, active=False, tags=[]),
        },
    ),
    "doomed": table("id", None, 2, {1: {"id": 1, "x": 1}}),
}
#: After LSN 28 (the first delta).
STATE_DELTA_1 = {
    "values": table(
        "id",
        None,
        7,
        {
            1: {**SCALARS, "str": "changed", "new": Decimal("3.14")},
            2: {"id": 2, "date": dt.date(1999, 12, 31)},  # deleted, then inserted with less
            4: TAG_LIKE,
            5: NESTED,
            **OTHER_KEYS,
            "k": {"id": "k", "kind": "str key", "extra": [None]},
            6: {"id": 6, "note": "auto key"},
        },
    ),
    "people": table(
        "pk",
        PEOPLE_SCHEMA,
        4,
        {
            1: person(1, "Alice", 31, tags=[]),
            2: person(2, "Bob", 25, active=False, tags=[]),
            3: person(3, "Chloé", 41, score=-2.5e-8, meta={}),
        },
    ),
    "doomed": table("id", None, 2, {1: {"id": 1, "x": 1}}),
    "fresh": table("code", None, 1, {"a": {"code": "a", "v": [1, {"$int": 2}]}}),
}
_VALUES_2 = {k: v for k, v in STATE_DELTA_1["values"]["records"].items() if k != -(2**80)}
#: After LSN 35 (the second delta): "doomed" dropped and created again, with a schema.
STATE_DELTA_2 = {
    "values": table(
        "id",
        None,
        18446744073709551617,
        {**_VALUES_2, 2**64: {"id": 18446744073709551616, "v": "key past 64 bits"}},
    ),
    "people": table(
        "pk",
        PEOPLE_SCHEMA,
        4,
        {
            1: person(1, "Alice", 31, tags=[]),
            3: person(3, "Chloé", 41, score=-2.5e-8, meta={}),
        },
    ),
    "fresh": table(
        "code",
        None,
        1,
        {
            "a": {"code": "a", "v": [1, {"$int": 2}]},
            "b": {"code": "b", "v": {"$": None}},
        },
    ),
    "doomed": table("id", {"n": "int", "id": "int"}, 2, {1: {"n": 1, "id": 1}}),
}
STATES = {FULL_LSN: STATE_FULL, DELTA_1_LSN: STATE_DELTA_1, DELTA_2_LSN: STATE_DELTA_2}
#: What each delta's `apply_delta` returns: rows upserted plus keys deleted.
TOUCHED = (8, 5)

# -- helpers -------------------------------------------------------------------------------


def exact(value: Any) -> Any:
    """*value* as a hashable tree that tells apart what ``==`` does not: the exact type of
    every value and container, the repr of scalars (-0.0, Decimal exponents, datetime fold
    and offset), dict members in any order."""
    t = type(value)
    if t is dict:
        return ("dict", frozenset((exact(k), exact(v)) for k, v in value.items()))
    if t is list:
        return ("list", tuple(exact(v) for v in value))
    return (f"{t.__module__}.{t.__qualname__}", repr(value))


def view(state: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A database's `to_dict` (or an expected state) with rows and keys made `exact`."""
    return {
        name: {
            "primary_key": t["primary_key"],
            "schema": t["schema"],
            "next_pk": exact(t["next_pk"]),
            "records": {exact(k): exact(row) for k, row in t["records"].items()},
        }
        for name, t in state.items()
    }


def assert_state(db: DictDB, lsn: int) -> None:
    expected = STATES[lsn]
    assert lsn == db.lsn
    assert list(expected) == db.list_tables()
    assert view(expected) == view(db.to_dict())


def golden_copy(tmp_path: Path, version: int, kind: str) -> list[Path]:
    """A copy of a golden directory: its full snapshot, then its two deltas."""
    source = GOLDEN / f"v{version}" / kind
    target = tmp_path / f"v{version}-{kind}"
    shutil.copytree(source, target)
    full = sorted(target.glob("dictdb_backup_*"))
    deltas = sorted(target.glob("dictdb_delta_*"))
    assert (1, 2) == (len(full), len(deltas)), sorted(target.iterdir())
    files = [*full, *deltas]
    assert all(p.name.endswith(SUFFIXES[kind]) for p in files)
    return files


class NoGlobals(pickle.Unpickler):
    """An unpickler for plain data: a file header names no class."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global {module}.{name} in a header")


def header(path: Path) -> dict[str, Any]:
    """A golden file's header, read without dictdb (zstd frame, then JSON or the first
    pickle stream)."""
    data = path.read_bytes()
    if path.suffix == ".zst":
        data = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 20)
    if ".json" in path.name:
        doc: dict[str, Any] = orjson.loads(data)
        return doc
    head: dict[str, Any] = NoGlobals(io.BytesIO(data)).load()
    return head


# -- the tests -------------------------------------------------------------------------------


def test_the_expected_states_are_exact() -> None:
    # The comparison itself tells apart what == confuses, or the golden tests prove less.
    assert view({"t": table("id", None, 1, {1: {"v": 1}})}) != view(
        {"t": table("id", None, 1, {1: {"v": True}})}
    )
    assert exact(Decimal("1.1")) != exact(Decimal("1.10"))
    assert exact(0.0) != exact(-0.0)
    assert exact(1) != exact(1.0)
    assert exact(dt.datetime(2021, 11, 7, 1, 30)) != exact(dt.datetime(2021, 11, 7, 1, 30, fold=1))
    assert exact(dt.datetime(2024, 1, 1, tzinfo=UTC)) != exact(dt.datetime(2024, 1, 1))
    assert exact({"a": [1]}) == exact({"a": [1]})


def test_the_golden_files_are_small() -> None:
    total = sum(p.stat().st_size for p in GOLDEN.rglob("*") if p.is_file())
    assert total < 200_000


@pytest.mark.parametrize(("version", "kind"), CASES, ids=CASE_IDS)
def test_each_golden_file_is_of_its_version_kind_and_range(
    tmp_path: Path, version: int, kind: str
) -> None:
    full, delta_1, delta_2 = golden_copy(tmp_path, version, kind)
    heads = [header(full), header(delta_1), header(delta_2)]
    assert [version] * 3 == [h["version"] for h in heads]
    assert ["full", "delta", "delta"] == [h["type"] for h in heads]
    assert FULL_LSN == heads[0]["lsn"]
    assert [(FULL_LSN + 1, DELTA_1_LSN), (DELTA_1_LSN + 1, DELTA_2_LSN)] == [
        (h["from_lsn"], h["to_lsn"]) for h in heads[1:]
    ]


@pytest.mark.parametrize(("version", "kind"), CASES, ids=CASE_IDS)
def test_a_golden_full_snapshot_loads_to_its_state(tmp_path: Path, version: int, kind: str) -> None:
    full, _, _ = golden_copy(tmp_path, version, kind)
    assert_state(DictDB.load(full), FULL_LSN)
    assert_state(DictDB.load(str(full), file_format=kind.partition("-")[0]), FULL_LSN)


@pytest.mark.parametrize(("version", "kind"), CASES, ids=CASE_IDS)
def test_golden_deltas_apply_onto_their_golden_base(
    tmp_path: Path, version: int, kind: str
) -> None:
    full, delta_1, delta_2 = golden_copy(tmp_path, version, kind)
    db = DictDB.load(full)
    assert TOUCHED[0] == apply_delta(db, delta_1)
    assert_state(db, DELTA_1_LSN)
    assert TOUCHED[1] == apply_delta(db, str(delta_2))
    assert_state(db, DELTA_2_LSN)


@pytest.mark.parametrize(("version", "kind"), CASES, ids=CASE_IDS)
def test_a_golden_delta_out_of_turn_is_refused_and_changes_nothing(
    tmp_path: Path, version: int, kind: str
) -> None:
    full, _, delta_2 = golden_copy(tmp_path, version, kind)
    db = DictDB.load(full)
    with pytest.raises(Exception, match=r"(?i)\blsn\b"):
        apply_delta(db, delta_2)
    assert_state(db, FULL_LSN)


@pytest.mark.parametrize(("version", "kind"), CASES, ids=CASE_IDS)
def test_restore_of_a_golden_directory_gives_the_state_at_each_cut(
    tmp_path: Path, version: int, kind: str
) -> None:
    directory = golden_copy(tmp_path, version, kind)[0].parent
    assert_state(restore(directory), DELTA_2_LSN)
    for lsn in STATES:
        assert_state(restore(directory, lsn=lsn), lsn)
    # Without a log, a target between two files stops at the boundary before it.
    assert_state(restore(str(directory), lsn=DELTA_1_LSN + 3), DELTA_1_LSN)
    with pytest.raises(RestoreError):
        restore(directory, lsn=FULL_LSN - 1)  # before the earliest point it can rebuild


@pytest.mark.parametrize(("version", "kind"), CASES, ids=CASE_IDS)
def test_a_golden_state_written_again_by_this_dictdb_reads_back_the_same(
    tmp_path: Path, version: int, kind: str
) -> None:
    # Loading an old file and saving it now (a migration) keeps every value as it was.
    db = restore(golden_copy(tmp_path, version, kind)[0].parent)
    fmt = kind.partition("-")[0]
    again = db.save(tmp_path / f"again.{fmt}", fmt, "zstd" if kind.endswith("zst") else None)
    assert_state(DictDB.load(again), DELTA_2_LSN)
