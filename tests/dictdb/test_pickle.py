"""The pickle container of dictdb's files: plain trees and blobs, and what it refuses."""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import datetime as dt
import io
import json
import pickle
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given

from dictdb.storage._pickle import PICKLE, PICKLE_BLOB_END, pickle_blob_head, read_pickle_blob
from tests import strategies as s
from wal import CodecError, to_plain

REPO = Path(__file__).resolve().parents[2]


def load(data: bytes) -> Any:
    """The plain tree of the pickle stream *data*, which it must fill exactly."""
    stream = io.BytesIO(data)
    tree = PICKLE.load_stream(stream)
    assert len(data) == stream.tell()
    return tree


# -- plain trees ---------------------------------------------------------------------------


@given(s.domain_values())
def test_the_plain_tree_of_any_domain_value_survives_the_container_exactly(value: Any) -> None:
    tree = to_plain(value)
    # orjson's text tells apart what == does not: 0.0 and -0.0, 1 and 1.0 and True.
    assert orjson.dumps(tree) == orjson.dumps(load(PICKLE.dumps(tree)))


# -- refusals, and the restricted unpickler ---------------------------------------------


def test_pickle_referencing_a_global_is_refused() -> None:
    with pytest.raises(CodecError):
        load(pickle.dumps(dt.datetime.now()))


def test_hand_made_reduce_payload_is_refused_before_calling_anything() -> None:
    payload = b"cbuiltins\nlist\n(cbuiltins\nrange\n(I3\ntRtR."
    assert [0, 1, 2] == pickle.loads(payload)  # what an ordinary unpickler would do
    with pytest.raises(CodecError):
        load(payload)


@pytest.mark.parametrize(
    "tree",
    [(1, 2), {1, 2}, frozenset({1}), bytearray(b"x"), {1: "a"}, [{"a": (1,)}], b"raw", 1j],
    ids=repr,
)
def test_pickle_holding_a_non_plain_value_is_refused(tree: Any) -> None:
    with pytest.raises(CodecError):
        load(pickle.dumps(tree, protocol=5))


@pytest.mark.parametrize("data", [b"", b"\x80\x05", b"not a pickle", b"\x80\x05K"], ids=repr)
def test_malformed_pickle_bytes_are_refused_with_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        load(data)


_BOMB_PROBE = """
import json, resource, sys, time
import io
from dictdb.storage._pickle import PICKLE
from wal import CodecError
limit = 4 << 30  # a failed guard gets MemoryError here instead of exhausting the machine
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
payload = bytes.fromhex(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    PICKLE.load_stream(io.BytesIO(payload))
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
    # `PICKLE.load_stream` of *payload* in a fresh process: its outcome, time and peak RSS growth.
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
        "import io, sys\n"
        "from dictdb.storage._pickle import PICKLE\n"
        "from wal import CodecError\n"
        "try:\n"
        "    PICKLE.load_stream(io.BytesIO(bytes.fromhex(sys.argv[1])))\n"
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
        load(stream)


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
