"""Damaged, truncated, hostile and half-written files: always refused, never a different db.

A file that does not verify raises `CorruptFileError` naming it. A flipped byte that still
loads (one the format ignores) must give back exactly the original database. Writes that fail
at any step leave no file under the final name, no temp file, and an older file intact.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import io
import json
import os
import pickle
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from dictdb import DictDB
from dictdb.errors import CorruptFileError
from dictdb.storage import persist
from dictdb.storage._files import seal
from dictdb.storage._pickle import pickle_blob_head
from dictdb.storage.target import locate
from tests.dictdb._scripts.load_capped import load_in_child
from tests.dictdb._scripts.strict import db_diff
from tests.dictdb.test_persist import as_version_1, encode, fast_pickle
from tests.dictdb.test_pickle import MEMO_BOMB

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "_scripts"


def accounts() -> DictDB:
    db = DictDB()
    schema = {"owner": str, "balance": decimal.Decimal}
    db.create_table("accounts", "id", schema).insert(
        [
            {"owner": "alice", "balance": decimal.Decimal("1000.00")},
            {"owner": "bob", "balance": decimal.Decimal("-5")},
        ]
    )
    db.create_table("log").insert(
        [
            {"msg": "opened", "at": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)},
            {"n": 1, "blob": b"\x00\x01"},
            {"n": 2.5, "tags": ["a", {"$k": None}]},
        ]
    )
    return db


class Kind:
    """One kind of file: its bytes, how to load it, and the database it must give back."""

    def __init__(self, name: str, data: bytes, base: Path | None, expected: DictDB) -> None:
        self.name = name
        self.data = data
        self.base = base
        self.expected = (expected.lsn, expected.to_dict())

    def load(self, path: Path) -> DictDB:
        if self.base is None:
            return DictDB.load(path)
        db = DictDB.load(self.base)
        persist.apply_delta(db, path)
        return db

    def check(self, path: Path, data: bytes, *, may_load: bool) -> str | None:
        """None when *data* is refused properly (or, if allowed, loads identically)."""
        path.write_bytes(data)
        try:
            db = self.load(path)
        except CorruptFileError as exc:
            if exc.path != str(path) or str(path) not in str(exc):
                return f"error names {exc.path!r}, not the file"
            return None
        except Exception as exc:
            return f"{type(exc).__name__} instead of CorruptFileError: {exc}"
        if not may_load:
            return "a damaged file loaded"
        if (db.lsn, []) != (self.expected[0], db_diff(self.expected[1], db.to_dict())):
            return "a damaged file loaded as a DIFFERENT database"
        return None


KIND_NAMES = [
    "full.json",
    "full.pickle",
    "full.json.zst",
    "delta.json",
    "delta.pickle",
    "small.json",
    "small.pickle",
    "full.v1.pickle",
    "delta.v1.pickle",
    "small.v1.pickle",
]


def version_1_of(data: bytes) -> bytes:
    """A pickle file's content as format version 1 wrote it (the body a pickled tree)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.pickle"
        path.write_bytes(data)
        doc = persist.read_document(path)
    return seal(encode(as_version_1(doc), "pickle"), "pickle", None)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Kind]:
    folder = tmp_path_factory.mktemp("originals")
    db = accounts()
    base = persist.save(db, folder / "base.json")
    out = {
        "full.json": Kind("full.json", base.read_bytes(), None, db),
        "full.pickle": Kind(
            "full.pickle", persist.save(db, folder / "f.pickle", "pickle").read_bytes(), None, db
        ),
        "full.json.zst": Kind(
            "full.json.zst", persist.save(db, folder / "f.json.zst").read_bytes(), None, db
        ),
    }
    empty = DictDB()
    for fmt in ("json", "pickle"):  # small enough to be cut at every byte
        small = persist.save(empty, folder / f"small.{fmt}", fmt)
        assert len(small.read_bytes()) <= 300
        out[f"small.{fmt}"] = Kind(f"small.{fmt}", small.read_bytes(), None, empty)
    twin = accounts()  # the same state, for a pickle delta of the same range
    persist.save(twin, folder / "twin.json")
    for each in (db, twin):
        each.get_table("accounts").upsert({"id": 1, "balance": decimal.Decimal("9000.00")})
        each.get_table("log").delete()
        each.get_table("log").insert({"n": 3})
        each.create_table("new").insert({"id": "k", "v": dt.date(2024, 2, 29)})
        each.drop_table("log")
    delta_json = persist.save_delta(db, folder / "d.json")
    delta_pickle = persist.save_delta(twin, folder / "d.pickle", "pickle")
    assert delta_json is not None
    assert delta_pickle is not None
    out["delta.json"] = Kind("delta.json", delta_json.read_bytes(), base, db)
    out["delta.pickle"] = Kind("delta.pickle", delta_pickle.read_bytes(), base, db)
    for name in ("full", "delta", "small"):  # files of format version 1 still load
        kind = out[f"{name}.pickle"]
        version_1 = Kind(f"{name}.v1.pickle", version_1_of(kind.data), kind.base, empty)
        version_1.expected = kind.expected
        out[version_1.name] = version_1
    return out


def cuts(size: int) -> list[int]:
    """Prefix lengths: every one for small files, else ~60 spread out plus the last 100."""
    if size <= 300:
        return list(range(size))
    spread = range(0, size, max(1, size // 60))
    return sorted(set(spread) | set(range(max(0, size - 100), size)))


def offsets(size: int) -> list[int]:
    """Byte offsets to damage: all of them up to 1500 bytes, else ~500 plus the last 100."""
    if size <= 1500:
        return list(range(size))
    return sorted(set(range(0, size, size // 500)) | set(range(size - 100, size)))


@pytest.mark.parametrize("kind_name", KIND_NAMES)
def test_the_originals_load_back_exactly(
    kinds: dict[str, Kind], kind_name: str, tmp_path: Path
) -> None:
    kind = kinds[kind_name]
    path = tmp_path / kind.name.replace("full", "x").replace("delta", "y")
    path.write_bytes(kind.data)
    db = kind.load(path)
    assert (kind.expected[0], []) == (db.lsn, db_diff(kind.expected[1], db.to_dict()))


@pytest.mark.parametrize("kind_name", KIND_NAMES)
def test_every_truncation_is_refused_naming_the_file(
    kinds: dict[str, Kind], kind_name: str, tmp_path: Path
) -> None:
    kind = kinds[kind_name]
    path = tmp_path / kind.name
    failures = {}
    for cut in cuts(len(kind.data)):
        problem = kind.check(path, kind.data[:cut], may_load=False)
        if problem:
            failures[cut] = problem
    assert failures == {}


@pytest.mark.parametrize("kind_name", KIND_NAMES)
def test_every_flipped_byte_is_refused_or_loads_the_same_database(
    kinds: dict[str, Kind], kind_name: str, tmp_path: Path
) -> None:
    kind = kinds[kind_name]
    path = tmp_path / kind.name
    failures = {}
    for offset in offsets(len(kind.data)):
        for mask in (0xFF, 0x01):
            data = bytearray(kind.data)
            data[offset] ^= mask
            problem = kind.check(path, bytes(data), may_load=True)
            if problem:
                failures[(offset, mask)] = problem
    assert failures == {}


@pytest.mark.parametrize("kind_name", KIND_NAMES)
def test_trailing_garbage_is_refused(
    kinds: dict[str, Kind], kind_name: str, tmp_path: Path
) -> None:
    kind = kinds[kind_name]
    path = tmp_path / kind.name
    problems = [kind.check(path, kind.data + extra, may_load=False) for extra in (b"\n", b"x")]
    assert problems == [None, None]


# -- hostile files -------------------------------------------------------------------------


def reduce_bomb(n: int) -> bytes:
    """A protocol-2 pickle computing ``list(bytes(n))`` through REDUCE (49 bytes)."""
    return (
        b"\x80\x02c__builtin__\nlist\nc__builtin__\nbytes\nJ"
        + n.to_bytes(4, "little")
        + b"\x85R\x85R."
    )


def test_the_reduce_bomb_really_is_one() -> None:
    assert pickle.loads(reduce_bomb(10)) == [0] * 10


def zstd_frame_claiming(size: int) -> bytes:
    """A zstd frame header declaring *size* bytes of content, then one empty last block."""
    return b"\x28\xb5\x2f\xfd\xc0\x00" + size.to_bytes(8, "little") + b"\x01\x00\x00"


def test_the_lying_zstd_frame_claims_a_terabyte() -> None:
    assert zstandard.get_frame_parameters(zstd_frame_claiming(2**40)).content_size == 2**40


def test_hostile_files_are_refused_without_allocating(tmp_path: Path) -> None:
    v1_head = fast_pickle({"format": "dictdb", "version": 1, "type": "full"})
    v2_head = fast_pickle({"format": "dictdb", "version": 2, "type": "full"})
    files = {
        "bomb.pickle": seal(reduce_bomb(10**9), "pickle", None),
        "bytes-claim.pickle": seal(
            b"\x80\x05\x8e" + (2**40).to_bytes(8, "little") + b"xx.", "pickle", None
        ),
        "class.pickle": seal(fast_pickle(dt.datetime.now()), "pickle", None),
        "terabyte.json.zst": zstd_frame_claiming(2**40),
        # Checksum-valid bodies after a valid header: a memo index asking for 32 GB (in version
        # 1, the body is a pickled tree; in version 2, it must be a pickled bytes object), a
        # REDUCE bomb, a bytes object claiming 2**62 bytes.
        "memo-v1.pickle": seal(v1_head + MEMO_BOMB, "pickle", None),
        "memo-v2.pickle": seal(v2_head + MEMO_BOMB, "pickle", None),
        "bomb-v1.pickle": seal(v1_head + reduce_bomb(10**9), "pickle", None),
        "blob-claim.pickle": seal(v2_head + pickle_blob_head(2**62) + b"{}.", "pickle", None),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    started = time.monotonic()
    results = load_in_child(tmp_path, list(files))
    elapsed = time.monotonic() - started
    assert {name: ("CorruptFileError", name) for name in files} == {
        name: (r["error"], r["path"]) for name, r in results.items()
    }
    assert "over the" in results["terabyte.json.zst"]["reason"]
    assert "uses STACK_GLOBAL" in results["class.pickle"]["reason"]
    assert "uses the memo" in results["memo-v1.pickle"]["reason"]
    assert "expected a pickled bytes object" in results["memo-v2.pickle"]["reason"]
    assert "uses GLOBAL" in results["bomb-v1.pickle"]["reason"]
    assert "truncated" in results["blob-claim.pickle"]["reason"]
    assert max(r["growth_kb"] for r in results.values()) < 50 * 1024
    assert elapsed < 20


def test_a_pickle_document_holding_a_class_instance_is_refused(tmp_path: Path) -> None:
    doc = {"format": "dictdb", "version": 1, "type": "full", "when": dt.datetime(2024, 1, 1)}
    path = tmp_path / "inject.pickle"
    path.write_bytes(seal(fast_pickle(doc), "pickle", None))
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path)
    assert str(path) == info.value.path


@pytest.mark.parametrize(
    "tree",
    [[1, 2, 3], {"format": "dictdb"}, {"format": "dictdb", "version": 1, "type": "full"}],
    ids=["a-list", "no-version", "no-body"],
)
def test_a_pickle_of_plain_data_that_is_not_a_snapshot_is_refused(
    tmp_path: Path, tree: Any
) -> None:
    path = tmp_path / "plain.pickle"
    path.write_bytes(seal(fast_pickle(tree), "pickle", None))
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path)
    assert str(path) == info.value.path


def _duplicate_first_record(table: dict[str, Any]) -> None:
    table["records"].append(dict(table["records"][0]))
    if 0 in table["special"]:
        table["special"].append(len(table["records"]) - 1)


@pytest.mark.parametrize("fmt", ["json", "pickle"])
@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda t: t["records"][0].update(balance="x"), "expects type"),
        (lambda t: t["records"][0].update(id=999.5), "primary key"),
        (_duplicate_first_record, "duplicate"),
        (lambda t: t.update(next_pk=1), "next_pk"),
    ],
    ids=["schema", "float-key", "duplicate-key", "counter-behind"],
)
def test_a_checksum_valid_full_with_rows_that_break_the_tables_rules_is_refused(
    tmp_path: Path, fmt: str, change: Callable[[dict[str, Any]], Any], why: str
) -> None:
    doc = persist.read_document(persist.save(accounts(), tmp_path / f"good.{fmt}", fmt))
    change(doc["tables"]["accounts"])
    path = tmp_path / f"lying.{fmt}"
    path.write_bytes(seal(encode(doc, fmt), fmt, None))
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path)
    assert str(path) == info.value.path
    assert why in info.value.reason


def test_a_terabyte_zstd_claim_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "claim.json.zst"
    path.write_bytes(zstd_frame_claiming(2**40))
    started = time.monotonic()
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path)
    assert time.monotonic() - started < 1.0
    assert (str(path), True) == (info.value.path, "claims" in info.value.reason)


def delta_document(tmp_path: Path) -> tuple[DictDB, dict[str, Any]]:
    live = accounts()
    base = persist.save(live, tmp_path / "base.json")
    live.get_table("log").insert({"n": 9})
    delta = persist.save_delta(live, tmp_path / "delta.json")
    assert delta is not None
    return DictDB.load(base), persist.read_document(delta)


def delete_absent(table: dict[str, Any], lsn: int) -> None:
    """A delta table that deletes a key the base does not hold (its audit trail kept whole)."""
    table["deletes"] = [424242]
    for column, value in zip(table["changed"].values(), (lsn, 0.0, None), strict=True):
        column.append(value)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d.pop("type"), "unknown file type None"),
        (lambda d: d.update(type="incremental"), "unknown file type 'incremental'"),
        (lambda d: d.update(version=persist.VERSION + 1), "is newer"),
        (lambda d: d.update(version="1"), "malformed version"),
        (lambda d: d.update(format="other"), "not a dictdb file"),
        (lambda d: d.update(from_lsn="7"), "from_lsn"),
        (lambda d: d.update(digest={"log": [1]}), "digest"),
        (lambda d: d.update(ddl={}), "ddl"),
        (lambda d: delete_absent(d["tables"]["log"], d["to_lsn"]), "not there"),
        (lambda d: d["tables"].update(ghost={"upserts": [], "deletes": []}), "ghost"),
        (lambda d: d["tables"]["log"]["changed"].update(lsn=[]), "one entry per upsert"),
        (lambda d: d["tables"]["log"].update(changed=[]), "must hold lsn, ts and meta"),
        (lambda d: d["tables"]["log"]["changed"].update(lsn=[10**6]), "from_lsn..to_lsn"),
        (lambda d: d["tables"]["log"]["changed"].update(ts=["noon"]), "times must be"),
        (lambda d: d["tables"]["log"]["changed"].update(meta=[{"$bytes": "%"}]), "meta:"),
    ],
    ids=[
        "no-type",
        "bad-type",
        "future-version",
        "str-version",
        "not-ours",
        "str-lsn",
        "bad-digest",
        "bad-ddl",
        "delete-absent",
        "no-table",
        "changed-short",
        "changed-not-columns",
        "changed-lsn-outside",
        "changed-ts-not-number",
        "changed-bad-meta-tag",
    ],
)
def test_a_checksum_valid_delta_with_a_bad_header_or_body_is_refused_with_the_reason(
    tmp_path: Path, change: Callable[[dict[str, Any]], Any], why: str
) -> None:
    db, doc = delta_document(tmp_path)
    change(doc)
    path = tmp_path / "lying.json"
    path.write_bytes(seal(encode(doc, "json"), "json", None))
    before = (db.lsn, db.to_dict())
    with pytest.raises(CorruptFileError) as info:
        persist.apply_delta(db, path)
    assert (str(path), True) == (info.value.path, why in info.value.reason), info.value.reason
    assert (before[0], []) == (db.lsn, db_diff(before[1], db.to_dict()))


def test_a_checksum_valid_full_whose_content_breaks_its_digest_is_refused_naming_the_table(
    tmp_path: Path,
) -> None:
    doc = persist.read_document(persist.save(accounts(), tmp_path / "good.json"))
    doc["tables"]["accounts"]["records"][0]["owner"] = "mallory"
    path = tmp_path / "lying.json"
    path.write_bytes(seal(encode(doc, "json"), "json", None))
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path)
    assert str(path) == info.value.path
    assert "digest" in info.value.reason
    assert "accounts" in info.value.reason
    assert "log" not in info.value.reason


def test_a_checksum_valid_version_1_pickle_full_holding_nan_is_refused(tmp_path: Path) -> None:
    # A pickled tree can carry NaN (JSON, and so version 2's body, cannot).
    doc = persist.read_document(persist.save(accounts(), tmp_path / "good.pickle", "pickle"))
    doc["tables"]["log"]["records"][1]["n"] = float("nan")
    path = tmp_path / "nan.pickle"
    path.write_bytes(seal(encode(as_version_1(doc), "pickle"), "pickle", None))
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path)
    assert (str(path), True) == (info.value.path, "not finite" in info.value.reason)


def test_a_file_with_another_format_inside_is_refused(tmp_path: Path) -> None:
    json_file = persist.save(accounts(), tmp_path / "a.json")
    path = tmp_path / "a.pickle"
    path.write_bytes(json_file.read_bytes())
    with pytest.raises(CorruptFileError):
        DictDB.load(path)
    zst = tmp_path / "b.json"
    zst.write_bytes(persist.save(accounts(), tmp_path / "b.json.zst").read_bytes())
    with pytest.raises(CorruptFileError, match=r"not named \.zst"):
        DictDB.load(zst)


def test_a_pickle_file_is_two_pickles_the_header_and_the_body_as_json_bytes(
    tmp_path: Path,
) -> None:
    db = accounts()
    pickled = persist.save(db, tmp_path / "a.pickle")
    with pickled.open("rb") as handle:
        header = pickle.load(handle)  # any unpickler reads it
        body = pickle.load(handle)
        trailer = handle.read()
    assert (header["version"], type(body)) == (persist.VERSION, bytes)
    assert trailer.startswith(b"\n#dictdb-sha256:")
    document = {**header, **json.loads(body)}
    expected = persist.read_document(persist.save(db, tmp_path / "a.json"))
    for doc in (document, expected):
        for volatile in ("timestamp", "header_crc", "checksum"):
            doc.pop(volatile, None)
    assert expected == document


def test_version_1_pickle_files_hold_a_pickled_tree(kinds: dict[str, Kind], tmp_path: Path) -> None:
    # The kinds the tables above check as version 1 are: a header of version 1, then a tree.
    for name in ("full.v1.pickle", "delta.v1.pickle", "small.v1.pickle"):
        path = tmp_path / name
        path.write_bytes(kinds[name].data)
        with path.open("rb") as handle:
            header, body = pickle.load(handle), pickle.load(handle)
        assert (name, 1, dict) == (name, header["version"], type(body))
        assert (name, 1) == (name, persist.read_header(path)["version"])


def stream_end(data: bytes) -> int:
    """Where the first pickle stream in *data* ends."""
    stream = io.BytesIO(data)
    pickle.load(stream)
    return stream.tell()


@pytest.mark.parametrize("version", [1, 2])
def test_a_pickle_body_not_of_its_header_version_is_refused(tmp_path: Path, version: int) -> None:
    doc = persist.read_document(persist.save(accounts(), tmp_path / "good.pickle"))
    streams = {1: encode(as_version_1(doc), "pickle"), 2: encode(doc, "pickle")}
    header = stream_end(streams[version])
    body = stream_end(streams[3 - version])
    path = tmp_path / "mixed.pickle"
    path.write_bytes(seal(streams[version][:header] + streams[3 - version][body:], "pickle", None))
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path)
    assert str(path) == info.value.path
    assert "not a valid pickle document" in info.value.reason


def test_a_version_2_pickle_body_holding_nan_is_refused(tmp_path: Path) -> None:
    # JSON has no NaN, so version 2's body cannot carry one even when checksum-valid.
    doc = persist.read_document(persist.save(accounts(), tmp_path / "good.pickle"))
    good = encode(doc, "pickle")
    assert b'"n":2.5' in good
    path = tmp_path / "nan.pickle"
    path.write_bytes(seal(good.replace(b'"n":2.5', b'"n":NaN'), "pickle", None))
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path)
    assert (str(path), True) == (info.value.path, "not a valid pickle" in info.value.reason)


def with_deep_row(doc: dict[str, Any], fmt: str, levels: int) -> bytes:
    """*doc* encoded with its first record (or upsert) of table ``log`` replaced by a row
    whose field nests *levels* lists deep (beyond what orjson writes), marked special."""
    table = doc["tables"]["log"]
    rows = table["records"] if "records" in table else table["upserts"]
    rows[0] = "@@deep@@"
    if "special" in table and 0 not in table["special"]:
        table["special"].append(0)
    deep = b'{"id":1,"x":' + b"[" * levels + b"]" * levels + b"}"
    if fmt == "json":
        return encode(doc, "json").replace(b'"@@deep@@"', deep)
    body = encode(doc, "pickle")
    start = stream_end(body)
    blob = bytes(body[start + 11 : -1]).replace(b'"@@deep@@"', deep)
    return body[:start] + pickle_blob_head(len(blob)) + blob + b"."


@pytest.mark.parametrize("fmt", ["json", "pickle"])
@pytest.mark.parametrize("kind", ["full", "delta"])
def test_a_checksum_valid_file_nesting_a_value_too_deep_is_refused(
    tmp_path: Path, fmt: str, kind: str
) -> None:
    # JSON lets values nest 1,024 deep; the domain, MAX_NESTING (100): no RecursionError.
    if kind == "full":
        doc = persist.read_document(persist.save(accounts(), tmp_path / f"good.{fmt}"))
        base = None
    else:
        base, doc = delta_document(tmp_path)
    path = tmp_path / f"deep.{fmt}"
    path.write_bytes(seal(with_deep_row(doc, fmt, 1000), fmt, None))

    def read() -> object:
        return DictDB.load(path) if base is None else persist.apply_delta(base, path)

    with pytest.raises(CorruptFileError) as info:
        read()
    assert (str(path), True) == (info.value.path, "nest more than" in info.value.reason)


def test_a_version_1_pickle_nesting_a_value_a_hundred_thousand_deep_is_refused(
    tmp_path: Path,
) -> None:
    doc = as_version_1(persist.read_document(persist.save(accounts(), tmp_path / "g.pickle")))
    n = 10**5
    deep = b"\x80\x05}\x8c\x02id\x4b\x01s\x8c\x01x" + b"]" * n + b"a" * (n - 1) + b"s."
    assert pickle.loads(deep)["id"] == 1  # a row whose field nests 100,000 lists deep
    doc["tables"]["log"]["records"][0] = "@@deep@@"
    assert 0 in doc["tables"]["log"]["special"]  # it held a datetime
    data = encode(doc, "pickle")
    header = data[: stream_end(data)]
    body = io.BytesIO()
    pickler = pickle.Pickler(body, protocol=2)  # no frames: their lengths would change
    pickler.fast = True
    pickler.dump(pickle.loads(data[len(header) :]))
    marker = b"X\x08\x00\x00\x00@@deep@@"  # BINUNICODE "@@deep@@"
    assert body.getvalue().count(marker) == 1
    path = tmp_path / "deep.pickle"
    crafted = header + body.getvalue().replace(marker, deep[2:-1])
    path.write_bytes(seal(crafted, "pickle", None))
    with pytest.raises(CorruptFileError) as info:
        DictDB.load(path)
    assert (str(path), True) == (info.value.path, "nests more than 1024 deep" in info.value.reason)


def test_a_pickle_header_holding_what_no_header_holds_is_refused_by_read_header(
    tmp_path: Path,
) -> None:
    # A header CRC could not even be computed over it (orjson writes no int past 64 bits).
    header = {"format": "dictdb", "version": 2, "type": "full", "timestamp": 2**100}
    path = tmp_path / "h.pickle"
    path.write_bytes(seal(fast_pickle(header), "pickle", None))
    with pytest.raises(CorruptFileError) as info:
        persist.read_header(path)
    assert (str(path), True) == (info.value.path, "outside 64 bits" in info.value.reason)


# -- failures in the middle of an atomic write -------------------------------------------------

#: The calls `write_atomic` makes, patched on the `os` module.
TARGETS = ("write", "fsync", "replace", "link", "unlink")


class _Handle:
    """A file object whose `write` goes through a counting hook."""

    def __init__(self, real: Any, hook: Callable[[], None]) -> None:
        self._real, self._hook = real, hook

    def write(self, data: bytes) -> int:
        self._hook()
        return int(self._real.write(data))

    def __enter__(self) -> _Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def inject(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int], dict[str, int]]:
    """``inject(target, n)``: make the *n*-th call of *target* raise OSError (0: never);
    returns the live call counts of every target."""

    def arm(target: str, fail_at: int) -> dict[str, int]:
        counts = dict.fromkeys(TARGETS, 0)

        def hook(name: str) -> None:
            counts[name] += 1
            if name == target and counts[name] == fail_at:
                raise OSError(28, f"injected failure of {name} #{fail_at}")

        def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
            def patched(*args: Any, **kwargs: Any) -> Any:
                hook(name)
                return real(*args, **kwargs)

            return patched

        for name in ("fsync", "replace", "link", "unlink"):
            monkeypatch.setattr(os, name, wrap(name, getattr(os, name)))
        real_fdopen = os.fdopen

        def fdopen(*args: Any, **kwargs: Any) -> _Handle:
            return _Handle(real_fdopen(*args, **kwargs), lambda: hook("write"))

        monkeypatch.setattr(os, "fdopen", fdopen)
        return counts

    return arm


def _save_new(db: DictDB, folder: Path) -> Path:
    return persist.save(db, folder / "snap.json")


def _save_over(db: DictDB, folder: Path) -> Path:
    return persist.save(db, folder / "old.json")


def _save_delta(db: DictDB, folder: Path) -> Path:
    path = persist.save_delta(db, folder / "delta.json")
    assert path is not None
    return path


SCENARIOS: dict[str, Callable[[DictDB, Path], Path]] = {
    "save-new": _save_new,
    "save-over": _save_over,
    "delta": _save_delta,
}
#: How many times one write calls each target, per scenario (checked below).
CALLS = {
    "save-new": {"write": 1, "fsync": 2, "replace": 1, "link": 0, "unlink": 0},
    "save-over": {"write": 1, "fsync": 2, "replace": 1, "link": 1, "unlink": 1},
    "delta": {"write": 1, "fsync": 2, "replace": 0, "link": 1, "unlink": 1},
}
#: Calls made once the new file is already published under its final name.
AFTER_PUBLISH = {"save-new": {("fsync", 2)}, "save-over": {("fsync", 2)}}
AFTER_PUBLISH["delta"] = {("fsync", 2), ("unlink", 1)}


def prepared(folder: Path) -> DictDB:
    """A database with a base snapshot, an older file ``old.json`` and pending changes."""
    db = accounts()
    persist.save(db, folder / "base.json")
    persist.save(accounts(), folder / "old.json")
    db.get_table("accounts").insert({"owner": "carol", "balance": decimal.Decimal(1)})
    return db


def fault_cases() -> Iterator[Any]:
    for scenario, calls in CALLS.items():
        for target, count in calls.items():
            for n in range(1, count + 1):
                yield pytest.param(scenario, target, n, id=f"{scenario}-{target}{n}")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_one_write_makes_the_calls_the_fault_sweep_covers(
    tmp_path: Path, scenario: str, inject: Callable[[str, int], dict[str, int]]
) -> None:
    db = prepared(tmp_path)
    counts = inject("none", 0)
    SCENARIOS[scenario](db, tmp_path)
    assert CALLS[scenario] == counts


@pytest.mark.parametrize(("scenario", "target", "n"), list(fault_cases()))
def test_a_write_failing_at_any_step_leaves_no_file_no_temp_and_the_old_file_intact(
    tmp_path: Path,
    scenario: str,
    target: str,
    n: int,
    inject: Callable[[str, int], dict[str, int]],
) -> None:
    db = prepared(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    pending = len(db.journal)
    inject(target, n)
    with pytest.raises(OSError, match="injected"):
        SCENARIOS[scenario](db, tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == sorted(after)  # no final name, no .tmp leftover
    assert before == after  # the older files are intact
    assert pending == len(db.journal)  # nothing released


def test_a_snapshot_written_in_many_pieces_fails_cleanly_at_any_of_its_writes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    inject: Callable[[str, int], dict[str, int]],
) -> None:
    # A large snapshot is written piece by piece (rows CHUNK at a time, joined into pieces of
    # PIECE_FLOOR bytes): both made small here,
    # so that a tiny table takes many writes, and each of them fails in turn.
    from dictdb.storage import _digest as digest
    from dictdb.storage import _files as files

    monkeypatch.setattr(digest, "CHUNK", 2)
    monkeypatch.setattr(files, "PIECE_FLOOR", 1)
    db = DictDB()
    db.create_table("t")
    db.get_table("t").insert([{"v": i} for i in range(7)])
    counts = inject("none", 0)
    persist.save(db, tmp_path / "probe.json")
    writes = counts["write"]
    assert writes >= 10  # header, 4 chunks and their commas, trailer...
    (tmp_path / "probe.json").unlink()
    for n in range(1, writes + 1):
        inject("write", n)
        with pytest.raises(OSError, match=f"injected failure of write #{n}$"):
            persist.save(db, tmp_path / "snap.json")
        assert list(tmp_path.iterdir()) == []  # no final name, no temp file
    inject("none", 0)
    persist.save(db, tmp_path / "snap.json")
    assert db_diff(db.to_dict(), persist.load(tmp_path / "snap.json").to_dict()) == []


# -- few, large pieces: a backup thread must not give the GIL away for every small buffer ------


class _CountingSha256:
    """hashlib.sha256 that records the size of every `update`, and in which thread."""

    calls: ClassVar[list[tuple[int, str]]] = []

    def __init__(self, data: bytes = b"") -> None:
        self._real = _REAL_SHA256(data)

    def update(self, data: Any) -> None:
        _CountingSha256.calls.append((len(data), threading.current_thread().name))
        self._real.update(data)

    def hexdigest(self) -> str:
        return str(self._real.hexdigest())


_REAL_SHA256 = hashlib.sha256


@pytest.mark.parametrize("zstd", [False, True])
def test_a_large_snapshot_is_hashed_and_written_in_pieces_of_at_least_the_floor(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    inject: Callable[[str, int], dict[str, int]],
    zstd: bool,
) -> None:
    # Each hash update or write of a large buffer releases the GIL, and each release costs a
    # backup thread up to a switch interval against a busy writer: so the rows, encoded a
    # few at a time, are gathered into pieces of PIECE_FLOOR bytes before hashing/writing;
    # and a helper thread hashes and writes them while the next ones are encoded.
    from dictdb.storage import _digest as digest
    from dictdb.storage import _files as files

    floor = 4096
    monkeypatch.setattr(digest, "CHUNK", 10)
    monkeypatch.setattr(files, "PIECE_FLOOR", floor)
    _CountingSha256.calls = []
    db = DictDB()
    db.create_table("t").insert([{"name": f"user{i}", "age": i % 90} for i in range(3000)])
    counts = inject("none", 0)
    with monkeypatch.context() as patch:
        patch.setattr(hashlib, "sha256", _CountingSha256)
        path = persist.save(db, tmp_path / "snap.json", compression="zstd" if zstd else None)
    sizes = [size for size, _ in _CountingSha256.calls]
    assert len(sizes) > 10  # the snapshot is large against the floor
    assert all(size >= floor for size in sizes[:-1])  # only the last piece may be smaller
    threads = {name for _, name in _CountingSha256.calls[:-1]}
    if zstd:
        assert counts["write"] == 1  # one compressed frame, written at the end
        assert threads == {threading.current_thread().name}
    else:
        total = path.stat().st_size
        assert counts["write"] == len(sizes)  # the trailer rides with the last piece
        assert counts["write"] <= total // floor + 1
        assert threads == {"dictdb-write"}  # the helper: it overlaps the encoding
    assert db_diff(db.to_dict(), persist.load(path).to_dict()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_failure_while_encoding_a_streamed_snapshot_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The helper thread is already writing the temp file when the encoder fails.
    from dictdb.storage import _digest as digest
    from dictdb.storage import _files as files

    monkeypatch.setattr(digest, "CHUNK", 10)
    monkeypatch.setattr(files, "PIECE_FLOOR", 1024)
    db = DictDB()
    db.create_table("t").insert([{"v": i} for i in range(2000)])
    old = persist.save(db, tmp_path / "snap.json")
    before = old.read_bytes()
    db.get_table("t").insert({"v": -1})
    real = digest.json_array
    written: list[int] = []

    def failing(chunks: Any, out: Any, *rest: Any) -> None:
        def rows() -> Iterator[Any]:
            for n, chunk in enumerate(chunks):
                if n == 150:
                    written.extend(p.stat().st_size for p in tmp_path.glob(".*.tmp"))
                    raise RuntimeError("encoder failed")
                yield chunk

        real(rows(), out, *rest)

    monkeypatch.setattr(digest, "json_array", failing)
    with pytest.raises(RuntimeError, match="encoder failed"):
        persist.save(db, tmp_path / "snap.json", as_base=False)
    assert len(written) == 1  # one temp file, being written
    assert written[0] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["snap.json"]  # no temp file left
    assert old.read_bytes() == before


@given(st.lists(st.binary(max_size=300), max_size=40), st.integers(1, 600))
def test_pieces_hand_on_exactly_what_was_appended_in_pieces_of_at_least_the_floor(
    items: list[bytes], floor: int
) -> None:
    from dictdb.storage import _files as files

    real, files.PIECE_FLOOR = files.PIECE_FLOOR, floor  # type: ignore[misc]
    try:
        parts: list[Any] = []
        pieces = files.Pieces(parts.append)
        sources = [bytearray(item) for item in items]
        for n, source in enumerate(sources):
            pieces.append(memoryview(source) if n % 2 else source)
        parts = [bytes(part) for part in parts]
        for source in sources:  # what was copied does not change with its source
            source[:] = b"x" * len(source)
        rest = bytes(pieces.rest())
    finally:
        files.PIECE_FLOOR = real  # type: ignore[misc]
    assert b"".join([*parts, rest]) == b"".join(items)
    assert all(len(part) >= floor for part in parts)
    assert len(rest) < floor
    assert bytes(pieces.rest()) == b""


def test_a_large_buffer_between_pieces_is_handed_on_uncopied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dictdb.storage import _files as files

    monkeypatch.setattr(files, "PIECE_FLOOR", 4)
    parts: list[Any] = []
    pieces = files.Pieces(parts.append)
    big = b"0123456789"
    pieces.append(big)  # no piece begun: handed on as it is
    pieces.append(b"ab")
    pieces.append(big)  # a piece begun: copied behind it, so no piece is under the floor
    assert parts[0] is big
    assert [b"ab" + big] == [bytes(p) for p in parts[1:]]


@given(
    st.lists(st.binary(max_size=200), max_size=30),
    st.integers(1, 500),
    st.sampled_from(["json", "pickle"]),
    st.sampled_from([None, "zstd"]),
)
def test_a_sealed_file_holds_exactly_the_sealed_content(
    items: list[bytes], floor: int, file_format: str, compression: str | None
) -> None:
    from dictdb.storage import _files as files

    real, files.PIECE_FLOOR = files.PIECE_FLOOR, floor  # type: ignore[misc]
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "f"
            with files.SealedFile(locate(path), file_format, compression) as sealed:
                sealed.out.extend(items)
            data = path.read_bytes()
            assert os.listdir(folder) == ["f"]
    finally:
        files.PIECE_FLOOR = real  # type: ignore[misc]
    assert data == files.seal(b"".join(items), file_format, compression)


# -- file names --------------------------------------------------------------------------------


def test_a_relative_name_is_written_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = accounts()
    assert Path("plain.json") == persist.save(db, "plain.json")
    assert Path("plain.json.zst") == persist.save(db, "plain.json", compression="zstd")
    assert ["plain.json", "plain.json.zst"] == sorted(p.name for p in tmp_path.iterdir())
    assert [] == db_diff(db.to_dict(), DictDB.load("plain.json.zst").to_dict())


def test_a_pickle_header_using_the_memo_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    # A damaged byte can turn into a LONG_BINPUT whose index makes the unpickler size its
    # memo to tens of GB (seen in a flipped-byte test); headers are read before any checksum.
    from dictdb.storage.persist import read_header

    header = b"\x80\x05}r\x07\x00\x00\x00."  # a dict memoized at slot 7
    path = tmp_path / "dictdb_backup_1_000000.pickle"
    path.write_bytes(seal(header + fast_pickle({"tables": {}}), "pickle", None))
    with pytest.raises(CorruptFileError, match="uses the memo") as info:
        read_header(path)
    assert str(path) == info.value.path
    with pytest.raises(CorruptFileError, match="uses the memo"):
        DictDB.load(path)
