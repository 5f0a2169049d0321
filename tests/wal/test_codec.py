"""The codec pipeline: values ⇄ plain trees ⇄ JSON/pickle bytes ⇄ zstd, and its refusals."""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import math
import pickle
import random
import subprocess
import sys
import uuid
import zoneinfo
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import wal
from tests import strategies as s
from wal import CodecError, Operation, UnsupportedValueError, converter, from_plain, to_plain
from wal.codec import (
    JSON,
    PICKLE,
    PICKLE_BLOB_END,
    Codec,
    compress,
    decompress,
    pickle_blob_head,
    read_pickle_blob,
)

REPO = Path(__file__).resolve().parents[2]

CODECS = [
    Codec("json"),
    Codec("pickle"),
    Codec("json", "zstd"),
    Codec("pickle", "zstd"),
]
CODEC_IDS = ["json", "pickle", "json+zstd", "pickle+zstd"]


def same(a: Any, b: Any) -> bool:
    """Equal *and* of the same type all the way down (-0.0 is not 0.0; offsets must match)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if type(a) is decimal.Decimal:
        return a.as_tuple() == b.as_tuple()
    if type(a) is dt.datetime:
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and type(a.tzinfo) is type(b.tzinfo)
            and a.utcoffset() == b.utcoffset()
        )
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    return bool(a == b)


def roundtrip(codec: Codec, value: Any) -> Any:
    return from_plain(codec.decode(codec.encode(to_plain(value))))


# -- the helper itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (0.0, -0.0),
        (1, True),
        (1, 1.0),
        (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
        (decimal.Decimal("0"), decimal.Decimal("-0")),
        (
            dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC),
            dt.datetime(2024, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        ),
        (dt.datetime(2024, 1, 1), dt.date(2024, 1, 1)),
        ([1], [1.0]),
        ({"a": 0.0}, {"a": -0.0}),
    ],
)
def test_same_tells_apart_values_that_compare_equal(a: Any, b: Any) -> None:
    assert (False, False) == (same(a, b), same(b, a))


# -- stage 1: values -----------------------------------------------------------------------


@given(s.domain_values())
def test_from_plain_inverts_to_plain_type_for_type(value: Any) -> None:
    assert same(value, from_plain(to_plain(value)))


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@given(value=s.domain_values())
def test_every_domain_value_survives_bytes_and_compression(codec: Codec, value: Any) -> None:
    assert same(value, roundtrip(codec, value))


@given(s.records())
def test_a_plain_tree_is_standard_json(record: dict[str, Any]) -> None:
    tree = to_plain(record)
    assert tree == json.loads(json.dumps(tree, allow_nan=False))


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        -0.0,
        math.inf,
        -math.inf,
        2**63 - 1,
        2**63,
        -(2**63),
        -(2**63) - 1,
        2**64,
        10**100,
        decimal.Decimal("-0"),
        decimal.Decimal("1.500"),
        decimal.Decimal("1E-30"),
        decimal.Decimal("1E+3"),
        dt.datetime(1, 1, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(-dt.timedelta(hours=23))),
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=30))),
        dt.date(1, 1, 1),
        uuid.UUID(int=0),
        b"",
        b"\x00\xff",
        "",
        "$date",
        [],
        {},
    ],
    ids=repr,
)
@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
def test_edge_values_survive_every_codec(codec: Codec, value: Any) -> None:
    assert same(value, roundtrip(codec, value))
    assert same([value], roundtrip(codec, [value]))


@pytest.mark.parametrize(
    "user_dict",
    [
        {"$date": "x"},
        {"$dict": {"a": 1}},
        {"$dict": "x"},
        {"$int": "5"},
        {"$bytes": 1},
        {"$unknown": None},
        {"$": {"$": {"$": 1}}},
        {"$datetime": "2024-01-01T00:00:00"},
    ],
    ids=repr,
)
@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
def test_user_dicts_shaped_like_tags_come_back_as_dicts(
    codec: Codec, user_dict: dict[str, Any]
) -> None:
    assert same(user_dict, roundtrip(codec, user_dict))
    assert same({"k": user_dict}, roundtrip(codec, {"k": user_dict}))


@pytest.mark.parametrize(
    "nan",
    [
        float("nan"),
        -float("nan"),
        decimal.Decimal("NaN"),
        decimal.Decimal("-NaN"),
        decimal.Decimal("sNaN"),
        [1, float("nan")],
        {"a": {"b": decimal.Decimal("NaN")}},
    ],
    ids=repr,
)
def test_nan_is_refused_as_float_and_as_decimal(nan: Any) -> None:
    with pytest.raises(UnsupportedValueError):
        to_plain(nan)
    with pytest.raises(UnsupportedValueError):
        wal.own_value(nan)


NESTED_OUT_OF_DOMAIN = [
    ({1, 2}, ""),
    ((1, 2), ""),
    ({"tags": [1, 2, {3}]}, "tags[2]"),
    ({"a": {"b": (1,)}}, "a.b"),
    ([0, [1, object()]], "[1][1]"),
    ({"when": dt.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))}, "when"),
    ({"level": [s.Color.RED]}, "level[0]"),
    ({"doc": s.SubDict(a=1)}, "doc"),
    ({"x": [{"y": frozenset()}]}, "x[0].y"),
    ({"f": float("nan")}, "f"),
]


NESTED_IDS = [f"{i}:{path or 'top'}" for i, (_, path) in enumerate(NESTED_OUT_OF_DOMAIN)]


@pytest.mark.parametrize(("value", "path"), NESTED_OUT_OF_DOMAIN, ids=NESTED_IDS)
def test_own_value_refuses_out_of_domain_values_naming_their_path(value: Any, path: str) -> None:
    with pytest.raises(UnsupportedValueError) as info:
        wal.own_value(value)
    assert path == info.value.path


@pytest.mark.parametrize(("value", "path"), NESTED_OUT_OF_DOMAIN, ids=NESTED_IDS)
def test_to_plain_refuses_out_of_domain_values(value: Any, path: str) -> None:
    with pytest.raises(UnsupportedValueError):
        to_plain(value)


@pytest.mark.parametrize(
    ("value", "path"), [p for p in NESTED_OUT_OF_DOMAIN if p[1]], ids=lambda v: str(v)[:20]
)
def test_to_plain_error_path_names_the_nested_location(value: Any, path: str) -> None:
    with pytest.raises(UnsupportedValueError) as info:
        to_plain(value)
    assert path == info.value.path


@given(s.out_of_domain_values())
def test_any_out_of_domain_value_is_refused_by_both_entry_points(value: Any) -> None:
    with pytest.raises(UnsupportedValueError):
        to_plain(value)
    with pytest.raises(UnsupportedValueError):
        wal.own_value(value)


@pytest.mark.parametrize("value", [{1: "a"}, {"a": {None: 1}}, [{b"k": 1}]], ids=repr)
def test_dict_keys_must_be_str(value: Any) -> None:
    with pytest.raises(UnsupportedValueError):
        to_plain(value)
    with pytest.raises(UnsupportedValueError):
        wal.own_value(value)


@given(s.domain_values())
def test_own_value_returns_an_equal_copy_sharing_no_container(value: Any) -> None:
    owned = wal.own_value(value)
    assert same(value, owned)

    def containers(v: Any) -> list[int]:
        if type(v) is list:
            return [id(v), *(i for x in v for i in containers(x))]
        if type(v) is dict:
            return [id(v), *(i for x in v.values() for i in containers(x))]
        return []

    assert set() == set(containers(value)) & set(containers(owned))


@pytest.mark.parametrize(
    "tree",
    [
        {"$int": "12a"},
        {"$int": ""},
        {"$float": "nan"},
        {"$float": 1.0},
        {"$decimal": "NaN"},
        {"$decimal": "abc"},
        {"$bytes": "!!!"},
        {"$date": "2024-13-01"},
        {"$datetime": "yesterday"},
        {"$uuid": "not-a-uuid"},
        {"$dict": [1]},
        {"$nope": 1},
        [{"$int": None}],
    ],
    ids=repr,
)
def test_malformed_tags_are_refused_with_codec_error(tree: Any) -> None:
    with pytest.raises(CodecError):
        from_plain(tree)


# -- stage 3: bytes, and the restricted unpickler ------------------------------------------


def test_pickle_referencing_a_global_is_refused() -> None:
    with pytest.raises(CodecError):
        PICKLE.loads(pickle.dumps(dt.datetime.now()))


def test_hand_made_reduce_payload_is_refused_before_calling_anything() -> None:
    payload = b"cbuiltins\nlist\n(cbuiltins\nrange\n(I3\ntRtR."
    assert [0, 1, 2] == pickle.loads(payload)  # what an ordinary unpickler would do
    with pytest.raises(CodecError):
        PICKLE.loads(payload)


@pytest.mark.parametrize(
    "tree",
    [(1, 2), {1, 2}, frozenset({1}), bytearray(b"x"), {1: "a"}, [{"a": (1,)}], b"raw", 1j],
    ids=repr,
)
def test_pickle_holding_a_non_plain_value_is_refused(tree: Any) -> None:
    with pytest.raises(CodecError):
        PICKLE.loads(pickle.dumps(tree, protocol=5))


def test_bytes_after_the_end_of_a_pickle_stream_are_refused() -> None:
    with pytest.raises(CodecError):
        PICKLE.loads(pickle.dumps([1, "a"], protocol=5) + b"\x00")


@pytest.mark.parametrize("data", [b"", b"\x80\x05", b"not a pickle", b"\x80\x05K"], ids=repr)
def test_malformed_pickle_bytes_are_refused_with_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        PICKLE.loads(data)


@pytest.mark.parametrize("data", [b"", b"{", b"[1,]", b"\xff"], ids=repr)
def test_malformed_json_bytes_are_refused_with_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        JSON.loads(data)


_BOMB_PROBE = """
import json, resource, sys, time
from wal import CodecError
from wal.codec import PICKLE
limit = 4 << 30  # a failed guard gets MemoryError here instead of exhausting the machine
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
payload = bytes.fromhex(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    PICKLE.loads(payload)
    outcome = "loaded"
except CodecError:
    outcome = "CodecError"
except BaseException as exc:
    outcome = type(exc).__name__
elapsed = time.perf_counter() - start
grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"outcome": outcome, "elapsed": elapsed, "grown_kib": grown_kib}))
"""


def _run_probe(script: str, payload: bytes) -> str:
    # What *script* prints, run in a fresh process with the payload's hex as its argument.
    proc = subprocess.run(
        [sys.executable, "-c", script, payload.hex()],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        check=True,
    )
    return proc.stdout.strip()


def _probe(payload: bytes) -> dict[str, Any]:
    # `PICKLE.loads(payload)` in a fresh process: its outcome, time and peak RSS growth.
    result: dict[str, Any] = json.loads(_run_probe(_BOMB_PROBE, payload))
    return result


def test_reduce_bomb_fails_fast_without_allocating() -> None:
    """A tiny pickle asking for ``list(bytes(10**9))`` is refused before anything is built."""
    payload = b"\x80\x02cbuiltins\nlist\n(cbuiltins\nbytes\n(I1000000000\ntRtR."
    assert len(payload) < 64
    result = _probe(payload)
    assert "CodecError" == result["outcome"]
    assert result["elapsed"] < 1.0
    assert result["grown_kib"] < 50 * 1024


def _loads_within(data: bytes, seconds: float) -> str:
    code = (
        "import sys\n"
        "from wal import CodecError\n"
        "from wal.codec import PICKLE\n"
        "try:\n"
        "    PICKLE.loads(bytes.fromhex(sys.argv[1]))\n"
        "    print('loaded')\n"
        "except CodecError:\n"
        "    print('CodecError')\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, data.hex()],
            capture_output=True,
            text=True,
            timeout=seconds,
            cwd=REPO,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    return proc.stdout.strip() or proc.stderr.strip().splitlines()[-1]


def test_self_referencing_pickle_is_refused_promptly() -> None:
    looped: list[Any] = []
    looped.append(looped)
    data = pickle.dumps(looped, protocol=5)
    assert len(data) < 20
    assert "CodecError" == _loads_within(data, 3.0)


def test_pickle_of_shared_containers_is_refused_promptly() -> None:
    """A ~400-byte DAG of 2**60 paths must not be walked path by path."""
    tree: list[Any] = []
    for _ in range(60):
        tree = [tree, tree]
    data = pickle.dumps(tree, protocol=5)
    assert len(data) < 1000
    assert "CodecError" == _loads_within(data, 3.0)


# -- stage 4: compression --------------------------------------------------------------------


def test_decompress_accepts_a_frame_of_exactly_max_size() -> None:
    data = b"0123456789" * 100
    assert data == decompress(compress(data), max_size=len(data))


def test_decompress_refuses_a_frame_whose_header_claims_more_than_max_size() -> None:
    data = b"x" * 1001
    with pytest.raises(CodecError):
        decompress(compress(data), max_size=1000)


def _with_claimed_size(frame: bytes, claimed: int) -> bytes:
    """Rewrite the Frame_Content_Size field of a zstd frame header (RFC 8878 §3.1.1.1)."""
    descriptor = frame[4]
    fcs_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    pos = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    width = {0: 1 if single_segment else 0, 1: 2, 2: 4, 3: 8}[fcs_flag]
    assert width, "the frame records no content size"
    value = claimed - 256 if fcs_flag == 1 else claimed
    return frame[:pos] + value.to_bytes(width, "little") + frame[pos + width :]


@pytest.mark.parametrize(
    ("size", "claimed", "max_size"),
    [
        (2_048_000, 1000, 10_000),  # claims little, would produce far past max_size
        (2_048_000, 1000, 10**8),  # claims little, produces more, still under max_size
        (100_000, 100_005, 10**8),  # claims more than it holds
        (100_000, 99_999, 10**8),  # claims one byte less
        (10_240, 10_239, 10**8),
    ],
)
def test_decompress_refuses_a_frame_that_lies_about_its_size(
    size: int, claimed: int, max_size: int
) -> None:
    data = bytes(range(256)) * (size // 256)
    frame = _with_claimed_size(compress(data), claimed)
    with pytest.raises(CodecError):
        decompress(frame, max_size=max_size)


@pytest.mark.parametrize(
    "data",
    [b"", b"not zstd", b"\x28\xb5\x2f\xfd", b"\x28\xb5\x2f\xfd\x00\x00\x00\x00"],
    ids=repr,
)
def test_decompress_refuses_what_is_not_a_zstd_frame(data: bytes) -> None:
    with pytest.raises(CodecError):
        decompress(data, max_size=1 << 20)


@pytest.mark.parametrize("cut", [1, 5, 1000, 200_000])
def test_decompress_refuses_a_truncated_frame(cut: int) -> None:
    data = random.Random(cut).randbytes(300_000)
    frame = compress(data)
    with pytest.raises(CodecError):
        decompress(frame[:-cut], max_size=1 << 20)


def test_decompress_refuses_trailing_garbage_after_the_frame() -> None:
    frame = compress(b"abc" * 1000)
    with pytest.raises(CodecError):
        decompress(frame + b"garbage", max_size=1 << 20)


def test_codec_refuses_unknown_format_and_compression() -> None:
    with pytest.raises(CodecError):
        Codec("yaml")
    with pytest.raises(CodecError):
        Codec("json", "gzip")
    assert "pickle" == Codec("PICKLE").file_format


# -- stage 2: documents (cattrs) -------------------------------------------------------------


def operations() -> st.SearchStrategy[Operation]:
    return st.builds(
        wal.make_operation,
        lsn=st.integers(1, 2**62),
        ts=st.floats(0, 4e9),
        kind=st.sampled_from(sorted(wal.KINDS)),
        table=st.text(min_size=1, max_size=10),
        key=st.none() | s.primary_keys(),
        after=st.none() | s.records(),
        before=st.none() | s.records(),
        meta=st.none() | st.dictionaries(st.text(max_size=5), s.domain_values(4), max_size=3),
    )


def same_operation(a: Operation, b: Operation) -> bool:
    return type(a) is type(b) and all(same(x, y) for x, y in zip(a, b, strict=True))


@given(operations())
def test_converter_roundtrips_operations(op: Operation) -> None:
    doc = converter.unstructure(op)
    assert same_operation(op, converter.structure(doc, Operation))
    assert ("meta" in doc) == (op.meta is not None)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
@given(op=operations())
def test_operations_survive_documents_bytes_and_compression(codec: Codec, op: Operation) -> None:
    doc = converter.unstructure(op)
    assert same_operation(op, converter.structure(codec.decode(codec.encode(doc)), Operation))


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"ts": 1.0, "kind": "insert", "table": "t"},
        {"lsn": 0, "ts": 1.0, "kind": "insert", "table": "t"},
        {"lsn": "1", "ts": 1.0, "kind": "insert", "table": "t"},
        {"lsn": 1, "ts": "now", "kind": "insert", "table": "t"},
        {"lsn": 1, "ts": 1.0, "kind": "insert", "table": 5},
        {"lsn": 1, "ts": 1.0, "kind": "insert", "table": "t", "after": {"$int": "x"}},
    ],
    ids=repr,
)
def test_converter_refuses_malformed_documents(doc: Any) -> None:
    with pytest.raises(CodecError):
        converter.structure(doc, Operation)


@given(st.datetimes(timezones=s.sub_second_or_named_timezones()))
def test_datetimes_whose_timezone_iso_8601_cannot_carry_are_refused(value: Any) -> None:
    """A named timezone or a sub-second offset would not come back exactly: refused."""
    with pytest.raises(UnsupportedValueError):
        wal.own_value(value)
    with pytest.raises(UnsupportedValueError):
        to_plain(value)


#: A LONG_BINPUT of index 2**31 - 1: the C unpickler sizes its memo to twice the index, 2**32
#: slots (32 GB), before it stores anything.
MEMO_BOMB: bytes = b"\x80\x02}r\xff\xff\xff\x7f."


@pytest.mark.parametrize(
    "stream",
    [
        b"]p0\n.",  # PUT (protocol 0)
        b"\x80\x02]q\x00.",  # BINPUT
        MEMO_BOMB,  # LONG_BINPUT
        b"\x80\x04]\x94.",  # MEMOIZE
        b"\x80\x02]q\x00h\x00\x86.",  # BINGET
    ],
    ids=["PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "BINGET"],
)
def test_a_pickle_stream_with_a_memo_opcode_is_refused_before_decoding(stream: bytes) -> None:
    # These pickles never hold one; an index in one sizes the C unpickler's memo.
    with pytest.raises(CodecError, match="uses the memo"):
        PICKLE.load_stream(io.BytesIO(stream))
    with pytest.raises(CodecError, match="uses the memo"):
        PICKLE.loads(stream)


def test_a_pickle_stream_is_decoded_after_its_scan_and_read_up_to_its_end() -> None:
    header = {"format": "dictdb", "n": [1, 2.5, None, {"k": "v"}]}
    data = PICKLE.dumps(header) + b"after"
    stream = io.BytesIO(data)
    assert header == PICKLE.load_stream(stream)
    assert b"after" == stream.read()
    with pytest.raises(CodecError, match="unknown opcode 0xff"):
        PICKLE.load_stream(io.BytesIO(b"\x80\x05\xff."))
    with pytest.raises(CodecError, match="truncated"):
        PICKLE.load_stream(io.BytesIO(data[: data.index(b".")]))


_PLAIN_PICKLE_PROBE = """
import pickle, resource, sys
limit = 4 << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    pickle.loads(bytes.fromhex(sys.argv[1]))
    print("loaded")
except BaseException as exc:
    print(type(exc).__name__)
"""


def test_the_memo_bomb_really_is_one() -> None:
    # An ordinary unpickler, capped at 4 GB of address space, fails to allocate its memo.
    assert len(MEMO_BOMB) == 9
    assert "MemoryError" == _run_probe(_PLAIN_PICKLE_PROBE, MEMO_BOMB)


def test_the_memo_bomb_fails_fast_without_allocating() -> None:
    result = _probe(MEMO_BOMB)
    assert "CodecError" == result["outcome"]
    assert result["elapsed"] < 1.0
    assert result["grown_kib"] < 50 * 1024


# -- a pickled bytes object, read with no unpickler ---------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 255, 70_000])
def test_a_pickled_blob_is_a_pickle_of_its_bytes_and_reads_back_as_a_view(size: int) -> None:
    blob = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    stream = pickle_blob_head(size) + blob + PICKLE_BLOB_END
    assert blob == pickle.loads(stream)  # any unpickler reads it
    data = b"before" + stream + b"after"
    view, end = read_pickle_blob(data, len(b"before"))
    assert (blob, b"after") == (bytes(view), data[end:])
    assert view.obj is data  # not a copy


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "expected a pickled bytes object"),
        (b"\x80\x05\x8e\x03\x00\x00", "expected a pickled bytes object"),  # cut in the length
        (pickle.dumps(b"abc", protocol=5), "expected a pickled bytes object"),  # other opcodes
        (b"\x80\x04\x8e" + (3).to_bytes(8, "little") + b"abc.", "expected"),  # protocol 4
        (b"\x80\x05\x8e" + (3).to_bytes(8, "little") + b"abc", "truncated"),  # no STOP
        (b"\x80\x05\x8e" + (3).to_bytes(8, "little") + b"abcd", "not followed by STOP"),
        (b"\x80\x05\x8e" + (4).to_bytes(8, "little") + b"abc.", "truncated"),  # STOP eaten
        (b"\x80\x05\x8e" + (2**64 - 1).to_bytes(8, "little") + b"abc.", "truncated"),
    ],
    ids=[
        "empty",
        "short-head",
        "pickler",
        "protocol-4",
        "no-stop",
        "no-stop-after",
        "long",
        "huge",
    ],
)
def test_anything_but_the_exact_pickled_blob_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        read_pickle_blob(data, 0)


def test_a_pickled_blob_head_refuses_an_impossible_size() -> None:
    with pytest.raises(CodecError):
        pickle_blob_head(-1)
    with pytest.raises(CodecError):
        pickle_blob_head(2**64)


# -- nesting -------------------------------------------------------------------------------------


def escaped_dicts(levels: int) -> Any:
    """*levels* dicts nested in each other, each with one key starting with ``$`` (so each is
    escaped by a ``$dict`` tag: the plain tree is twice as deep), bytes at the bottom."""
    value: Any = b"\x00"
    for _ in range(levels):
        value = {"$k": value}
    return value


def test_a_value_as_deep_as_the_limit_round_trips_through_json_at_its_deepest() -> None:
    value = escaped_dicts(wal.MAX_NESTING)
    assert value == wal.own_value(value)
    plain = to_plain(value)
    assert value == from_plain(orjson.loads(orjson.dumps(plain)))
    # The deepest document holding it: the plain tree inside a row, in a file's tables.
    document = {"tables": {"t": {"records": [{"id": 1, "v": plain}], "special": [0]}}}
    assert document == orjson.loads(orjson.dumps(document))


@pytest.mark.parametrize(
    "value",
    [escaped_dicts(wal.MAX_NESTING + 1), [escaped_dicts(wal.MAX_NESTING)]],
    ids=["dicts", "list-of-dicts"],
)
def test_a_value_one_level_deeper_than_the_limit_is_refused_both_ways(value: Any) -> None:
    with pytest.raises(UnsupportedValueError, match=f"nest more than {wal.MAX_NESTING} deep"):
        wal.own_value(value)
    with pytest.raises(UnsupportedValueError, match="nest more than"):
        wal.own_value(escaped_dicts(wal.MAX_NESTING), "field", depth=1)  # inside a record
    # to_plain of an unchecked value still works; a reader refuses it.
    with pytest.raises(CodecError, match=f"nest more than {wal.MAX_NESTING} deep"):
        from_plain(to_plain(value))


def test_a_plain_tree_nested_a_thousand_deep_is_refused_without_recursion_error() -> None:
    for text in (b"[" * 1000 + b"]" * 1000, b'{"$dict":' * 1000 + b"{}" + b"}" * 1000):
        with pytest.raises(CodecError, match="nest more than"):
            from_plain(orjson.loads(text))
    deep: Any = None
    for _ in range(10**5):
        deep = [deep]
    with pytest.raises(UnsupportedValueError, match="nest more than"):
        wal.own_value(deep)
