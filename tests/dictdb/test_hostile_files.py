"""Hostile files, checksum-valid and crafted: refused promptly, in bounded memory, by name.

Each case comes from a red-team reproduction. A file that cannot be trusted makes `load`,
`read_document`, `read_header` and `apply_delta` raise `CorruptFileError` naming it: never
another exception (TypeError, ValueError from an int too long to print, OverflowError,
RecursionError), never a hang, never a database silently different from the file's.
`restore` never returns a database past its target and raises only `RestoreError`.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import crc32c
import orjson
import pytest
import zstandard

from dictdb import DictDB, RestoreError, plan_restore, restore
from dictdb.errors import CorruptFileError, DictDBError
from dictdb.storage import _digest as digest
from dictdb.storage import _files as files
from dictdb.storage import persist
from dictdb.storage._files import seal
from dictdb.storage._pickle import PICKLE_BLOB_END, pickle_blob_head
from tests.dictdb._scripts.load_capped import load_in_child
from tests.dictdb._scripts.strict import db_diff
from tests.dictdb.test_persist import encode, fast_pickle
from tests.dictdb.test_persist_faults import accounts, delta_document
from wal.framing import MAX_PAYLOAD, encode_frame, encode_header, segment_name
from wal.recovery import RecoveryError

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "_scripts"

pytestmark = pytest.mark.usefixtures("quiet_dictdb_logs")  # tests/dictdb/conftest.py

#: A huge int: 5,001 digits, past `str(int)`'s limit (4,300 digits).
HUGE = 10**5000
#: The sum of an empty digest entry, as dictdb writes it.
ZERO_SUM = "0" * 16


def refusal(path: Path, read: Callable[[Path], object]) -> CorruptFileError:
    """The `CorruptFileError` that *read* raises on *path* (any other exception, or none,
    fails the test), checked to name the file."""
    with pytest.raises(CorruptFileError) as info:
        read(path)
    assert str(path) == info.value.path
    return info.value


def with_crc(fields: dict[str, Any]) -> dict[str, Any]:
    """*fields* ending with the header CRC dictdb computes (0 when orjson cannot encode
    them: `load` does not check that CRC, `read_header` does)."""
    fields = {k: v for k, v in fields.items() if k != "header_crc"}
    try:
        crc = zlib.crc32(orjson.dumps(fields))
    except orjson.JSONEncodeError:
        crc = 0
    return {**fields, "header_crc": crc}


def header(kind: str = "full", version: int = 2, **changes: Any) -> dict[str, Any]:
    """A well-formed header of *kind* (a full at LSN 3, or a delta of LSN 1..1), with
    *changes* applied (members added or replaced) and its CRC."""
    fields: dict[str, Any] = {"format": "dictdb", "version": version, "type": kind}
    if kind == "full":
        fields.update(lsn=3, timestamp=1e9, last_op_ts=1e9)
    else:
        fields.update(timestamp=1e9, from_lsn=1, to_lsn=1, last_op_ts=1e9)
    fields.update(lineage=None, parent=None)
    fields.update(changes)
    return with_crc(fields)


def pickle_file(head: dict[str, Any], body: dict[str, Any]) -> bytes:
    """A sealed pickle file: the *head* dict pickled, then *body*: as JSON in a pickled bytes
    object (version 2), or pickled as a tree (a header of version 1)."""
    if head.get("version") == 1:
        return seal(fast_pickle(head) + fast_pickle(body), "pickle", None)
    blob = orjson.dumps(body)
    stream = fast_pickle(head) + pickle_blob_head(len(blob)) + blob + PICKLE_BLOB_END
    return seal(stream, "pickle", None)


def json_file(doc: dict[str, Any]) -> bytes:
    """A sealed JSON file holding *doc* (its checksum member, if any, replaced)."""
    return seal(encode(doc, "json"), "json", None)


def table(records: list[Any], special: list[Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A full snapshot's table document keyed by ``id``, with *changes* applied."""
    doc = {"primary_key": "id", "schema": None, "next_pk": 100, "records": records}
    return {**doc, "special": special or [], **changes}


def digest_of(records: list[Any]) -> list[Any]:
    """The stored digest of a table whose records are these plain trees."""
    return digest.to_document({"t": digest.of_plain_records(records)})["t"]


def empty_delta(tmp_path: Path, name: str, **changes: Any) -> Path:
    """A version-2 pickle delta of LSN 1..1 changing nothing, *changes* in its header: it
    applies to a new `DictDB` (at LSN 0) when *changes* are harmless."""
    path = tmp_path / name
    path.write_bytes(
        pickle_file(header("delta", **changes), {"ddl": [], "tables": {}, "digest": {}})
    )
    return path


def apply_to_new(path: Path) -> object:
    """`apply_delta` of *path* to a new, empty database."""
    return persist.apply_delta(DictDB(), path)


READERS: dict[str, Callable[[Path], object]] = {
    "load": DictDB.load,
    "read_document": persist.read_document,
    "apply_delta": apply_to_new,
}


# -- F1: zstd frames decompressing past the limit ---------------------------------------------


def rle_frame(size: int, declared: int | None = None) -> bytes:
    """A zstd frame of RLE blocks producing *size* spaces (4 bytes on disk per 128 KiB of
    output), its header declaring *declared* bytes (default: *size*, the truth). Window
    128 KiB (not single-segment), content size in 8 bytes."""
    claim = size if declared is None else declared
    block = 1 << 17
    sizes = [block] * (size // block) + ([size % block] if size % block else [])
    parts = [b"\x28\xb5\x2f\xfd", bytes([0xC0, 7 << 3]), claim.to_bytes(8, "little")]
    for n, length in enumerate(sizes):
        last = n == len(sizes) - 1
        parts.append(((length << 3) | 2 | last).to_bytes(3, "little") + b" ")
    return b"".join(parts)


def streamed_size(frame: bytes) -> int:
    """How many bytes *frame* decompresses to, counted a MiB at a time (never held whole)."""
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frame))
    total = 0
    while chunk := reader.read(1 << 20):
        total += len(chunk)
    return total


def test_a_zstd_frame_declaring_one_byte_over_the_limit_is_refused_at_once(
    tmp_path: Path,
) -> None:
    # Honest RLE blocks for all MAX_DECOMPRESSED + 1 bytes, ~4 bytes per 128 KiB on disk. Run
    # in a capped child: decompressing it anyway would take the limit (16 GiB) in memory.
    size = files.MAX_DECOMPRESSED + 1
    frame = rle_frame(size)
    assert zstandard.get_frame_parameters(frame).content_size == size
    assert len(frame) < size // 30_000 + 100
    (tmp_path / "over.json.zst").write_bytes(frame)
    result = load_in_child(tmp_path, ["over.json.zst"])["over.json.zst"]
    assert ("CorruptFileError", "over.json.zst") == (result["error"], result["path"]), result
    assert result["seconds"] < 1.0
    assert result["growth_kb"] < 50 * 1024


def test_the_decompression_limit_is_read_at_every_load_and_is_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = accounts()
    path = persist.save(db, tmp_path / "a.json.zst")
    size = zstandard.get_frame_parameters(path.read_bytes()).content_size
    monkeypatch.setattr(files, "MAX_DECOMPRESSED", size - 1)
    refusal(path, DictDB.load)
    monkeypatch.setattr(files, "MAX_DECOMPRESSED", size)
    assert [] == db_diff(db.to_dict(), DictDB.load(path).to_dict())


#: The limit the capped child sets for the frames of junk below, and how much they hold.
CAPPED_LIMIT = 256 << 20
JUNK = 200 << 20


def test_a_zstd_frame_of_200_mib_of_junk_is_refused_holding_its_output_once(
    tmp_path: Path,
) -> None:
    # Under the (lowered) limit, so decompressed, then refused (no checksum trailer): without
    # a second copy of the output on the way (the output went through a BytesIO: 400 MiB).
    frame = rle_frame(JUNK)
    assert streamed_size(frame) == JUNK
    assert len(frame) < 10_000
    (tmp_path / "junk.json.zst").write_bytes(frame)
    result = load_in_child(tmp_path, ["junk.json.zst"], CAPPED_LIMIT)["junk.json.zst"]
    assert ("CorruptFileError", "junk.json.zst") == (result["error"], result["path"]), result
    assert result["growth_kb"] < 1.5 * JUNK / 1024


def test_a_zstd_frame_decompressing_past_its_declared_size_is_refused_within_its_claim(
    tmp_path: Path,
) -> None:
    # It declares 1 MiB and holds 200 MiB of RLE blocks: all of it was decompressed first.
    frame = rle_frame(JUNK, declared=1 << 20)
    assert zstandard.get_frame_parameters(frame).content_size == 1 << 20
    (tmp_path / "lying.json.zst").write_bytes(frame)
    result = load_in_child(tmp_path, ["lying.json.zst"], CAPPED_LIMIT)["lying.json.zst"]
    assert ("CorruptFileError", "lying.json.zst") == (result["error"], result["path"]), result
    assert result["growth_kb"] < 50 * 1024


# -- F2: a version-1 body sharing one record many times with DUP ------------------------------


def raw_text(text: str) -> bytes:
    """The pickle opcode of a short str (SHORT_BINUNICODE)."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def raw_dict(items: list[tuple[bytes, bytes]]) -> bytes:
    """The pickle opcodes of a dict of these (key, value) opcodes (EMPTY_DICT MARK ...
    SETITEMS)."""
    return b"}(" + b"".join(key + value for key, value in items) + b"u"


def dup_body(fields: int, copies: int) -> bytes:
    """A version-1 body (a pickled tree, no memo) whose table ``t`` lists one record of
    *fields* fields *copies* times: the record once, then DUP (1 byte) for every copy."""
    one = b"J\x01\x00\x00\x00"  # BININT 1
    record = raw_dict([(raw_text("id"), one)] + [(raw_text(f"k{j}"), b"N") for j in range(fields)])
    records = b"](" + record + b"2" * (copies - 1) + b"e"  # EMPTY_LIST MARK ... DUP ... APPENDS
    tdoc = raw_dict(
        [
            (raw_text("primary_key"), raw_text("id")),
            (raw_text("schema"), b"N"),
            (raw_text("next_pk"), b"J\x02\x00\x00\x00"),
            (raw_text("records"), records),
            (raw_text("special"), b"]"),
        ]
    )
    tables = raw_dict([(raw_text("t"), tdoc)])
    return b"\x80\x04" + raw_dict([(raw_text("tables"), tables), (raw_text("digest"), b"}")]) + b"."


def test_a_version_1_body_sharing_one_record_by_dup_is_refused_at_once(tmp_path: Path) -> None:
    # 5,000 fields x 15,000 copies in ~70 KB: walking every copy took seconds (r02: 179 KB,
    # 40 s) before the duplicate keys were noticed.
    fields, copies = 5_000, 15_000
    body = dup_body(fields, copies)
    tree = pickle.loads(body)
    rows = tree["tables"]["t"]["records"]
    assert (copies, fields + 1, True) == (len(rows), len(rows[0]), rows[0] is rows[-1])
    path = tmp_path / "dup.pickle"
    path.write_bytes(seal(fast_pickle(header(version=1)) + body, "pickle", None))
    assert path.stat().st_size < 100_000
    started = time.monotonic()
    error = refusal(path, DictDB.load)
    assert time.monotonic() - started < 1.0
    assert "DUP" in error.reason


# -- F3: a version-2 pickle header carrying what belongs to the body --------------------------

#: Rows smuggled into the header (a pickled tree), and the rows JSON would have made of them
#: (the digest, computed over these, then matches what the loader hashes).
SMUGGLED: dict[str, tuple[list[Any], list[Any]]] = {
    "inf-and-nan": (
        [{"id": 1, "x": float("inf")}, {"id": 2, "y": float("nan")}],
        [{"id": 1, "x": None}, {"id": 2, "y": None}],
    ),
    "int-past-64-bits": ([{"id": 1, "x": 2**70}], [{"id": 1, "x": 0}]),
    "lone-surrogate": ([{"id": 1, "x": "\ud800"}], [{"id": 1, "x": ""}]),
}


@pytest.mark.parametrize("reader", ["load", "read_document"])
@pytest.mark.parametrize("rows", list(SMUGGLED))
def test_a_version_2_pickle_header_carrying_the_tables_is_refused(
    tmp_path: Path, rows: str, reader: str
) -> None:
    # The header is a pickled tree, which can hold what the JSON body cannot; loaded as if
    # orjson had decoded it, inf/NaN loaded (then saved as null: a different database).
    smuggled, seen = SMUGGLED[rows]
    head = header(tables={"t": table(smuggled)})
    path = tmp_path / "smuggled.pickle"
    path.write_bytes(pickle_file(head, {"digest": {"t": digest_of(seen)}}))
    refusal(path, READERS[reader])


def _digest_in_header(doc: dict[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    head["digest"] = doc["digest"]
    return {"tables": doc["tables"]}


def _unknown_member_in_header(doc: dict[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    head["note"] = "not a header field"
    return {"tables": doc["tables"], "digest": doc["digest"]}


@pytest.mark.parametrize("reader", ["load", "read_document"])
@pytest.mark.parametrize(
    "move", [_digest_in_header, _unknown_member_in_header], ids=["digest", "unknown-member"]
)
def test_a_version_2_pickle_header_holding_a_member_that_is_no_header_field_is_refused(
    tmp_path: Path,
    move: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
    reader: str,
) -> None:
    # Header fields: format, version, type, lsn, timestamp, last_op_ts, from_lsn, to_lsn,
    # lineage, parent, header_crc. Anything else is refused, even where it would merge.
    doc = persist.read_document(persist.save(accounts(), tmp_path / "good.pickle"))
    head = {k: doc[k] for k in list(doc)[: list(doc).index("tables")]}
    body = move(doc, head)
    path = tmp_path / "moved.pickle"
    path.write_bytes(pickle_file(with_crc(head), body))
    refusal(path, READERS[reader])


# -- F4: version-1 bodies the checks above the unpickler must see -----------------------------

V1_BODIES: dict[str, dict[str, Any]] = {
    **{
        f"table-named-{name}": {"tables": {key: table([])}, "digest": {key: [0, ZERO_SUM]}}
        for name, key in [("5", 5), ("a-tuple", ("a", 1)), ("bytes", b"x"), ("None", None)]
    },
    "lone-surrogate-in-a-plain-record": {
        "tables": {"t": table([{"id": 1, "x": "\ud800"}])},
        "digest": {"t": [1, ZERO_SUM]},
    },
    "lone-surrogate-in-a-special-record": {
        "tables": {"t": table([{"id": 1, "x": "\ud800"}], [0])},
        "digest": {"t": [1, ZERO_SUM]},
    },
    "5001-digit-int-in-a-special-record": {
        "tables": {"t": table([{"id": 1, "x": HUGE}], [0])},
        "digest": {"t": [1, ZERO_SUM]},
    },
}


@pytest.mark.parametrize("body", list(V1_BODIES))
def test_a_version_1_pickle_body_holding_what_no_snapshot_holds_is_refused(
    tmp_path: Path, body: str
) -> None:
    # The body is a pickled tree, read without the check JSON gets for free: table names
    # that are not str loaded (and the database could not be saved again); a lone surrogate
    # or a 5,001-digit int raised TypeError / ValueError.
    path = tmp_path / "v1.pickle"
    path.write_bytes(pickle_file(header(version=1), V1_BODIES[body]))
    refusal(path, DictDB.load)


# -- F5/F6: numbers too large to print or to convert ------------------------------------------


def _full_with(**changes: Any) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / "full.pickle"
        path.write_bytes(pickle_file(header(**changes), {"tables": {}, "digest": {}}))
        return path

    return build


def _delta_with(**changes: Any) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        return empty_delta(folder, "delta.pickle", **changes)

    return build


def _negative_next_pk(folder: Path) -> Path:
    path = folder / "next_pk.pickle"
    body = {
        "tables": {"t": table([{"id": 1}], next_pk=-HUGE)},
        "digest": {"t": digest_of([{"id": 1}])},
    }
    path.write_bytes(pickle_file(header(version=1), body))
    return path


def _long_digest_sum(kind: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        head = header(kind)
        body: dict[str, Any] = {"tables": {}, "digest": {"t": [0, "f" * 100_000]}}
        if kind == "delta":
            body = {"ddl": [], **body}
        path = folder / f"{kind}.json"
        path.write_bytes(json_file({**head, **body}))
        return path

    return build


HUGE_CASES: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "version": (_full_with(version=HUGE), ["load", "read_document"]),
    "negative-version": (_full_with(version=-HUGE), ["load", "read_document"]),
    "type": (_full_with(type=HUGE), ["load", "read_document"]),
    "negative-lsn": (_full_with(lsn=-HUGE), ["load"]),
    "lineage": (_full_with(lineage=HUGE), ["load"]),
    "parent": (_full_with(parent=[HUGE, 1]), ["load"]),
    "negative-next_pk": (_negative_next_pk, ["load"]),
    "full-last_op_ts-1e400": (_full_with(last_op_ts=10**400), ["load"]),
    "delta-last_op_ts-1e400": (_delta_with(last_op_ts=10**400), ["apply_delta"]),
    "full-digest-sum-of-100k-digits": (_long_digest_sum("full"), ["load"]),
    "delta-digest-sum-of-100k-digits": (_long_digest_sum("delta"), ["apply_delta"]),
    "to_lsn-after-a-gap": (_delta_with(from_lsn=99, to_lsn=HUGE), ["apply_delta"]),
    "to_lsn": (_delta_with(to_lsn=HUGE), ["apply_delta"]),
}


@pytest.mark.parametrize(
    ("case", "reader"),
    [(case, reader) for case, (_, readers) in HUGE_CASES.items() for reader in readers],
)
def test_a_number_too_large_to_print_or_to_convert_is_refused(
    tmp_path: Path, case: str, reader: str
) -> None:
    # Pickle carries ints of any size, and a JSON digest sum is hex of any length: a message
    # quoting one raised ValueError (int->str limit), float() of one OverflowError; and a
    # delta to LSN 10**5000 applied, and every later save failed.
    path = HUGE_CASES[case][0](tmp_path)
    refusal(path, READERS[reader])


# -- F7: a header whose LSN is infinite, in a backup directory ---------------------------------


def infinite_lsn_files(folder: Path) -> dict[str, Path]:
    """A pickle full whose header says lsn = inf and a pickle delta of inf..inf, both with a
    header CRC that verifies (orjson writes inf as null), in *folder*."""
    full = folder / "dictdb_backup_2000_000000.pickle"
    full.write_bytes(pickle_file(header(lsn=float("inf")), {"tables": {}, "digest": {}}))
    delta = empty_delta(
        folder, "dictdb_delta_3000_000000.pickle", from_lsn=float("inf"), to_lsn=float("inf")
    )
    return {"full": full, "delta": delta}


@pytest.mark.parametrize("kind", ["full", "delta"])
def test_read_header_refuses_a_header_whose_lsn_is_infinite(tmp_path: Path, kind: str) -> None:
    refusal(infinite_lsn_files(tmp_path)[kind], persist.read_header)


@pytest.mark.parametrize("kind", ["full", "delta"])
def test_restore_beside_a_file_claiming_an_infinite_lsn_uses_the_good_snapshot(
    tmp_path: Path, kind: str
) -> None:
    # int(inf) raised OverflowError while scanning the directory, whatever the target.
    good = DictDB()
    good.create_table("t")
    assert good.lsn == 1
    persist.save(good, tmp_path / "dictdb_backup_1000_000000.json")
    bad = infinite_lsn_files(tmp_path)
    (bad["delta" if kind == "full" else "full"]).unlink()
    restored = restore(tmp_path, lsn=1)
    assert (1, []) == (restored.lsn, db_diff(good.to_dict(), restored.to_dict()))
    try:  # the newest state: the good one, or refused (the bad file is newer)
        newest = restore(tmp_path)
    except RestoreError:
        pass
    else:
        assert (1, []) == (newest.lsn, db_diff(good.to_dict(), newest.to_dict()))
    try:
        plan = plan_restore(tmp_path)
    except RestoreError:
        pass
    else:
        assert (1, "dictdb_backup_1000_000000.json") == (plan.lsn, plan.files[0].path.name)


# -- F8: checksum-valid JSON fulls of the wrong shapes -----------------------------------------

JSON_TABLES: dict[str, dict[str, Any]] = {
    "schema-type-a-list": table([{"id": 1}], schema={"id": []}),
    "schema-type-an-object": table([{"id": 1}], schema={"id": {}}),
    "special-position-a-list": table([{"id": 1}], [[0]]),
    "special-record-an-int-tag": table([{"$int": "5"}], [0]),
    "special-record-a-decimal-tag": table([{"$decimal": "1"}], [0]),
}


@pytest.mark.parametrize("tdoc", list(JSON_TABLES))
def test_a_json_full_whose_table_has_the_wrong_shape_is_refused(tmp_path: Path, tdoc: str) -> None:
    # Each raised TypeError (unhashable type; a tag decoded into a row that is no dict).
    path = tmp_path / "shape.json"
    path.write_bytes(json_file({**header(), "tables": {"t": JSON_TABLES[tdoc]}, "digest": {}}))
    refusal(path, DictDB.load)


# -- F9: header fields nested 1,020 lists deep -------------------------------------------------

DEEP = b"[" * 1020 + b"]" * 1020
MARK = "@@deep@@"


def deep_json(doc: dict[str, Any], where: list[str]) -> bytes:
    """*doc* sealed as JSON with the member at path *where* nested 1,020 lists deep (orjson
    reads 1,024 levels)."""
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = MARK
    data = encode(doc, "json")
    assert data.count(f'"{MARK}"'.encode()) == 1
    return seal(data.replace(f'"{MARK}"'.encode(), DEEP), "json", None)


FULL_DEEP: list[tuple[str, str]] = [
    *[
        (field, "load")
        for field in ("type", "version", "lsn", "last_op_ts", "lineage", "parent", "primary_key")
    ],
    ("type", "read_document"),
    ("version", "read_document"),
]


@pytest.mark.parametrize(("field", "reader"), FULL_DEEP)
def test_a_json_full_with_a_field_nested_a_thousand_deep_is_refused(
    tmp_path: Path, field: str, reader: str
) -> None:
    # The error message quoted the value with !r: RecursionError.
    doc = persist.read_document(persist.save(accounts(), tmp_path / "good.json"))
    where = ["tables", "log", "primary_key"] if field == "primary_key" else [field]
    path = tmp_path / "deep.json"
    path.write_bytes(deep_json(doc, where))
    refusal(path, READERS[reader])


@pytest.mark.parametrize("field", ["from_lsn", "to_lsn", "last_op_ts", "primary_key"])
def test_a_json_delta_with_a_field_nested_a_thousand_deep_is_refused(
    tmp_path: Path, field: str
) -> None:
    db, doc = delta_document(tmp_path)
    where = ["tables", "log", "primary_key"] if field == "primary_key" else [field]
    path = tmp_path / "deep.json"
    path.write_bytes(deep_json(doc, where))
    before = (db.lsn, db.to_dict())
    refusal(path, lambda p: persist.apply_delta(db, p))
    assert (before[0], []) == (db.lsn, db_diff(before[1], db.to_dict()))


# -- F10: a JSON member repeated after the body ------------------------------------------------


def lsn_repeated_after_digest(path: Path) -> Path:
    """Reseal the JSON snapshot *path* with ``"lsn":500`` appended after its digest: JSON
    objects may repeat a member, and the last one wins where the whole file is parsed, while
    `read_header` stops at ``tables`` and sees the first."""
    data = path.read_bytes()
    path.write_bytes(seal(data[: data.rindex(b',"checksum":')] + b',"lsn":500', "json", None))
    return path


def three_operations() -> DictDB:
    db = DictDB()
    db.create_table("t").insert([{"a": 1}, {"a": 2}])
    assert db.lsn == 3
    return db


def test_a_json_snapshot_whose_header_and_content_disagree_on_its_lsn_is_refused(
    tmp_path: Path,
) -> None:
    path = lsn_repeated_after_digest(persist.save(three_operations(), tmp_path / "a.json"))
    assert 3 == persist.read_header(path)["lsn"]
    refusal(path, DictDB.load)


@pytest.mark.parametrize("older_copy", [False, True], ids=["alone", "with-an-older-copy"])
def test_restore_to_an_lsn_never_returns_a_database_past_it_when_a_file_repeats_its_lsn(
    tmp_path: Path, older_copy: bool
) -> None:
    # The plan read LSN 3 from the header; the load read 500 and restore(lsn=3) returned it.
    db = three_operations()
    if older_copy:
        persist.save(db, tmp_path / "dictdb_backup_500_000000.json")
    lsn_repeated_after_digest(persist.save(db, tmp_path / "dictdb_backup_1000_000000.json"))
    try:
        restored = restore(tmp_path, lsn=3)
    except RestoreError:
        return
    assert (3, []) == (restored.lsn, db_diff(db.to_dict(), restored.to_dict()))


# -- F11: a FIFO named like a backup -----------------------------------------------------------


def release(fifo: Path) -> None:
    """Wake whatever is blocked opening or reading *fifo*: a writer opens it and goes away
    (readers then see its end)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:  # no reader waiting
        if exc.errno != errno.ENXIO:
            raise
        return
    os.close(fd)


def outcomes_within(
    seconds: float, fifo: Path, calls: dict[str, Callable[[], object]]
) -> dict[str, object]:
    """Run *calls* at once, each in a thread: what each returned or raised, or the string
    ``"hung"`` for one still running after *seconds* (the FIFO is then released so that the
    thread can end)."""
    results: dict[str, object] = {}

    def run(name: str, call: Callable[[], object]) -> None:
        try:
            results[name] = call()
        except Exception as exc:
            results[name] = exc

    threads = {
        name: threading.Thread(target=run, args=(name, call), daemon=True)
        for name, call in calls.items()
    }
    for thread in threads.values():
        thread.start()
    deadline = time.monotonic() + seconds
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = {name for name, thread in threads.items() if thread.is_alive()}
    ends = time.monotonic() + 5
    while any(t.is_alive() for t in threads.values()) and time.monotonic() < ends:
        release(fifo)
        time.sleep(0.05)
    return {name: "hung" if name in hung else results.get(name) for name in calls}


@pytest.fixture
def fifo_dir(tmp_path: Path) -> Iterator[tuple[Path, DictDB]]:
    """A backup directory: a good full snapshot, and a FIFO named like a newer one."""
    db = three_operations()
    persist.save(db, tmp_path / "dictdb_backup_1000_000000.json")
    fifo = tmp_path / "dictdb_backup_2000_000000.json"
    os.mkfifo(fifo)
    yield tmp_path, db
    release(fifo)


def test_restore_ignores_a_fifo_named_like_a_backup(fifo_dir: tuple[Path, DictDB]) -> None:
    # Opening the FIFO for its header blocked forever.
    folder, db = fifo_dir
    fifo = folder / "dictdb_backup_2000_000000.json"
    restored = outcomes_within(10, fifo, {"restore": lambda: restore(folder)})["restore"]
    assert isinstance(restored, DictDB), restored
    assert (db.lsn, []) == (restored.lsn, db_diff(db.to_dict(), restored.to_dict()))


def test_a_fifo_named_like_a_backup_is_refused_by_read_header_and_load(
    fifo_dir: tuple[Path, DictDB],
) -> None:
    folder, _ = fifo_dir
    fifo = folder / "dictdb_backup_2000_000000.json"
    calls: dict[str, Callable[[], object]] = {
        "read_header": lambda: persist.read_header(fifo),
        "load": lambda: DictDB.load(fifo),
    }
    outcomes = outcomes_within(10, fifo, calls)
    summary = {
        name: (type(v).__name__, getattr(v, "path", None)) if isinstance(v, Exception) else v
        for name, v in outcomes.items()
    }
    expected = ("CorruptFileError", str(fifo))
    assert {"read_header": expected, "load": expected} == summary


# -- the durable log, the audit tools and the command line (second red-team round) -------------


def log_dir(root: Path, first: int, items: list[Any]) -> Path:
    """*root* holding a durable log (``wal/``) of one segment from LSN *first*: one frame of
    the flat batch *items* (8 values per operation)."""
    segments = root / "wal"
    segments.mkdir(parents=True)
    frame = encode_frame(orjson.dumps(items))
    (segments / segment_name(first)).write_bytes(encode_header(first) + frame)
    return root


def logged(lsn: int, kind: str, table: str, key: Any = None, after: Any = None) -> list[Any]:
    """One operation as the log holds it (no before-image, no meta, at time 1.0)."""
    return [lsn, 1.0, kind, table, key, after, None, None]


CREATE_T = logged(1, "create", "t", after={"primary_key": "id", "schema": None})


@pytest.mark.parametrize("field", [1.0, True, {"$decimal": "1.000"}], ids=repr)
def test_a_logged_row_whose_key_field_has_another_type_than_its_key_is_refused(
    tmp_path: Path, field: Any
) -> None:
    # 1.0 == True == Decimal(1) == 1: accepted, it restored a database whose own snapshot
    # could not be loaded (a primary key of a refused type).
    root = log_dir(tmp_path / "d", 1, CREATE_T + logged(2, "insert", "t", 1, {"id": field}))
    with pytest.raises(RestoreError, match="after-image must be a record whose 'id' is 1"):
        restore(root)
    with pytest.raises(DictDBError, match="after-image"):
        DictDB.open(root)


@pytest.mark.parametrize("entry", ["fifo", "directory", "device"])
def test_a_log_segment_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, entry: str
) -> None:
    # A FIFO blocked restore and open forever, /dev/zero was read until memory ran out.
    root = tmp_path / "d"
    (root / "wal").mkdir(parents=True)
    path = root / "wal" / segment_name(1)
    if entry == "fifo":
        os.mkfifo(path)
    elif entry == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    outcome: dict[str, BaseException | None] = {}

    def attempt(name: str, call: Callable[[], object]) -> None:
        try:
            call()
            outcome[name] = None
        except BaseException as exc:
            outcome[name] = exc

    threads = [
        threading.Thread(target=attempt, args=("restore", lambda: restore(root)), daemon=True),
        threading.Thread(target=attempt, args=("open", lambda: DictDB.open(root)), daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    if any(thread.is_alive() for thread in threads) and entry == "fifo":
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # let a blocked reader finish
    assert ["open", "restore"] == sorted(outcome), "a reader hung"
    assert isinstance(outcome["restore"], RestoreError), outcome["restore"]
    assert isinstance(outcome["open"], RecoveryError), outcome["open"]
    assert "not a regular file" in str(outcome["open"])


def test_a_compressed_log_frame_claiming_more_than_a_payload_is_refused_unread(
    tmp_path: Path,
) -> None:
    # 64 KB on disk claiming 2 GiB of operations: decompressed (up to 8 payloads' worth), it
    # took 4 GB of memory, and crashed orjson when the address space ran short.
    root = tmp_path / "d"
    (root / "wal").mkdir(parents=True)
    payload = rle_frame(MAX_PAYLOAD + 1)
    crc = crc32c.crc32c(payload, crc32c.crc32c(b"\x01"))  # of the flags byte and the payload
    frame_head = struct.pack(">IBI", len(payload), 1, crc)  # length, flags (zstd), CRC-32C
    after = encode_frame(orjson.dumps(CREATE_T))  # a valid record after it: damage, not a tear
    (root / "wal" / segment_name(1)).write_bytes(encode_header(1) + frame_head + payload + after)
    started = time.monotonic()
    with pytest.raises(RestoreError, match="over the"):
        restore(root)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"ddl": [], "tables": [], "digest": {}}, "tables must be an object"),
        ({"ddl": [], "tables": {"t": {"upserts": [5]}}, "digest": {}}, "upserts must be"),
        ({"ddl": [{"op": "drop"}], "tables": {}, "digest": {}}, "ddl must list"),
        ({"ddl": [], "tables": {"t": {"upserts": [{"$int": "x"}]}}, "digest": {}}, "$int"),
    ],
    ids=["tables-list", "upsert-int", "ddl-without-table", "bad-tag"],
)
def test_the_audit_tools_refuse_a_chained_delta_of_the_wrong_shape_by_name(
    tmp_path: Path, body: dict[str, Any], why: str
) -> None:
    # They trusted the body after `read_document`: AttributeError, KeyError, a bare CodecError.
    from dictdb import audit
    from dictdb.cli import main

    root = tmp_path / "d"
    root.mkdir()
    db = DictDB()
    db.create_table("t").insert({"id": 1})
    base = persist.read_header(persist.save(db, root / "dictdb_backup_1000_000000.json"))
    head = header(
        "delta",
        from_lsn=base["lsn"] + 1,
        to_lsn=base["lsn"] + 1,
        timestamp=2.0,
        last_op_ts=2.0,
        lineage=base["lineage"],
        parent=base["parent"],
    )
    delta = root / "dictdb_delta_2000_000000.json"
    delta.write_bytes(json_file({**head, **body}))
    error = refusal(delta, lambda _: audit.history(root, "t", 1))
    assert why in error.reason
    assert 1 == main(["log", str(root)])  # a one-line error, no traceback
    if why != "$int":  # `inspect` summarizes the body without decoding its values
        assert 1 == main(["inspect", str(delta)])
