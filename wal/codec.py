"""Serialization as a pipeline: unstructure → bytes → compress, reversed on read.

Stages, each usable alone:

1. **Values** (`to_plain` / `from_plain`): the value domain is None, bool, int, float, str,
   bytes, list, dict (str keys), `datetime.datetime` (naive or with a fixed-offset
   `datetime.timezone`), `datetime.date`, `decimal.Decimal`, `uuid.UUID`. Values JSON cannot
   carry are written as one-key *tag* objects::

       {"$bytes": "<base64>"}      {"$date": "2024-01-31"}      {"$uuid": "<hex with dashes>"}
       {"$datetime": "<ISO 8601, microseconds, offset if aware>"}  {"$decimal": "<str(d)>"}
       {"$datetime_fold": "<same>"}  (a datetime with fold=1: ISO 8601 has no place for it)
       {"$int": "<decimal digits>"}   (ints outside the signed 64-bit range)
       {"$float": "inf" | "-inf"}     (NaN is outside the domain: it is not equal to itself)
       {"$dict": {...}}             (a user dict with one key starting with "$", escaped)

   Tags are exact: every value comes back with its type and value (``-0.0`` included).
2. **Documents** (`converter`): a cattrs converter that unstructures `Operation` records to
   plain dicts and back, values going through stage 1.
3. **Bytes** (`JSON`, `PICKLE`): plain trees to bytes. JSON is standard JSON (orjson). The
   pickle container holds the same plain tree, written without the memo; it is read by an
   unpickler that resolves no global at all, after a pass that admits only the opcodes a plain
   tree needs, with lengths the bytes back (no memo: its indexes size the unpickler's memo; no
   DUP; nothing that reaches code), so bytes can only build a tree of lists, dicts and scalars
   of their own size, then checked to be one JSON carries exactly. `pickle_blob_head` /
   `read_pickle_blob` make and read a pickle stream holding one bytes object, with no unpickler
   at all (the body of dictdb's pickle files).
4. **Compression** (`compress` / `decompress`): zstandard frames, decompression bounded by a
   caller-given maximum size.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import decimal
import io
import math
import pickle
import pickletools
import uuid
from collections.abc import Iterable
from typing import Any, Final

import cattrs
import orjson
import zstandard

from wal.errors import CodecError, UnsupportedValueError
from wal.operation import Operation, make_operation

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_INF: Final = math.inf

#: Scalar types stored as they are in a plain tree.
_PLAIN_SCALARS: Final = frozenset({str, bool, type(None)})
#: Immutable scalar types of the domain that need no further check.
_SHARED_SCALARS: Final = frozenset({str, bool, type(None), int, bytes, _dt.date, uuid.UUID})
_NAN_REASON: Final = (
    "NaN is refused: it is not equal to itself, so no copy of it could be verified; "
    "store None instead"
)


#: How deep lists and dicts may nest in a value (``[[1]]``: 2), a record counting as one
#: (``{"a": [[1]]}``: 3). Deeper values are refused at the mutation, so that every stored
#: value can be written: a plain tree can be twice as deep as its value (``{"$dict": {...}}``
#: around each dict whose one key starts with ``$``), the files add a few levels, and orjson
#: encodes ~250 levels at most. Readers refuse deeper values too, well before Python's
#: recursion limit.
MAX_NESTING: Final = 100
_NESTING_REASON: Final = f"lists and dicts nest more than {MAX_NESTING} deep"


def _describe(path: str) -> str:
    return path or "<value>"


def _refuse(path: str, value: Any, reason: str) -> UnsupportedValueError:
    return UnsupportedValueError(path, type(value).__name__, f"{_describe(path)}: {reason}")


def own_value(value: Any, path: str = "", depth: int = 0) -> Any:
    """Check that *value* lies in the value domain and return an owned copy of it.

    Lists and dicts are copied all the way down; scalars are immutable and shared.

    Args:
        value: the value to check.
        path: where the value sits, for error messages (e.g. ``"tags[2]"``).
        depth: the containers already around the value (a record's field: 1, the record).

    Returns:
        A deep copy of the containers, sharing the (immutable) scalars.

    Raises:
        UnsupportedValueError: the value, or one nested in it, is outside the domain
            (including containers nested deeper than `MAX_NESTING`).
    """
    t = type(value)
    if t in _SHARED_SCALARS:
        return value
    if t is float:
        if value != value:
            raise _refuse(path, value, _NAN_REASON)
        return value
    if t is list or t is dict:
        if depth == MAX_NESTING:
            raise _refuse(path, value, _NESTING_REASON)
        if t is list:
            return [own_value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        out = {}
        for k, item in value.items():
            if type(k) is not str:
                raise _refuse(path, k, f"dict keys must be str, got {type(k).__name__} {k!r}")
            out[k] = own_value(item, f"{path}.{k}" if path else k, depth + 1)
        return out
    if t is _dt.datetime:
        tz = value.tzinfo
        if tz is not None:
            if type(tz) is not _dt.timezone:
                raise _refuse(
                    path,
                    value,
                    "datetime tzinfo must be None or a fixed-offset datetime.timezone "
                    f"(got {type(tz).__name__}); convert it with .astimezone(timezone.utc)",
                )
            offset = tz.utcoffset(None)
            # ISO 8601 keeps neither a timezone's name nor (as Python 3.11 parses it) a
            # sub-second offset: refuse what could not come back exactly.
            if (
                offset.microseconds
                or tz != _dt.timezone(offset)
                or (tz.tzname(None) != _dt.timezone(offset).tzname(None))
            ):
                raise _refuse(
                    path,
                    value,
                    f"datetime tzinfo {tz!r} cannot be stored exactly: use an unnamed "
                    "timezone(timedelta(...)) with a whole-second offset, or timezone.utc",
                )
        return value
    if t is decimal.Decimal:
        if value.is_nan():
            raise _refuse(path, value, _NAN_REASON)
        return value
    raise _refuse(
        path,
        value,
        f"type {t.__module__}.{t.__qualname__} is outside the value domain "
        "(None, bool, int, float, str, bytes, list, dict, datetime, date, Decimal, UUID)",
    )


def _is_flat_plain(value: dict[Any, Any]) -> bool:
    # A flat dict of str keys and JSON-exact scalars, not looking like a tag.
    for k, v in value.items():
        if type(k) is not str:
            return False
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if not _INT64_MIN <= v <= _INT64_MAX:
                return False
        elif t is not float or not -_INF < v < _INF:
            return False
    return not (len(value) == 1 and next(iter(value)).startswith("$"))


def to_plain(value: Any) -> Any:
    """Unstructure a domain value into a JSON-compatible tree (tags where needed).

    Raises:
        UnsupportedValueError: the value is outside the domain; ``path`` names where.
    """
    try:
        return _to_plain(value)
    except UnsupportedValueError:
        own_value(value)  # walks again with paths, to raise naming the nested location
        raise


def plain_items(items: Iterable[dict[str, Any]]) -> list[Any]:
    """`to_plain` of each dict of *items* (flat plain ones are returned as they are, without
    the per-call overhead: the batch form costs about half per row).

    Raises:
        UnsupportedValueError: as `to_plain`.
    """
    flat = _is_flat_plain
    return [item if type(item) is dict and flat(item) else to_plain(item) for item in items]


def _to_plain(value: Any) -> Any:
    t = type(value)
    if t in _PLAIN_SCALARS:
        return value
    if t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
        return {"$int": str(value)}
    if t is float:
        if -_INF < value < _INF:
            return value
        if value != value:
            raise _refuse("", value, _NAN_REASON)
        return {"$float": "inf" if value > 0 else "-inf"}
    if t is dict:
        if _is_flat_plain(value):
            return value  # nothing to tag: the dict is its own plain tree
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise UnsupportedValueError(
                    "", type(k).__name__, f"dict keys must be str, got {type(k).__name__}"
                )
            out[k] = _to_plain(v)
        if len(out) == 1 and next(iter(out)).startswith("$"):
            return {"$dict": out}
        return out
    if t is list:
        return [_to_plain(v) for v in value]
    if t is _dt.datetime:
        own_value(value)
        text = value.isoformat(timespec="microseconds")
        return {"$datetime_fold": text} if value.fold else {"$datetime": text}
    if t is _dt.date:
        return {"$date": value.isoformat()}
    if t is decimal.Decimal:
        if value.is_nan():
            raise _refuse("", value, _NAN_REASON)
        return {"$decimal": str(value)}
    if t is uuid.UUID:
        return {"$uuid": str(value)}
    if t is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    own_value(value)  # raises with the domain description
    raise AssertionError("unreachable")  # pragma: no cover


def _untag(tag: str, payload: Any, depth: int) -> Any:
    if tag == "$dict":  # outside the try: a CodecError from within is a ValueError too
        if type(payload) is not dict:
            raise CodecError("$dict tag must hold an object")
        if depth == MAX_NESTING:
            raise CodecError(_NESTING_REASON)
        return {k: from_plain(v, depth + 1) for k, v in payload.items()}
    try:
        if type(payload) is not str:
            raise CodecError(f"{tag} tag must hold a string, got {type(payload).__name__}")
        if tag == "$datetime":
            return _dt.datetime.fromisoformat(payload)
        if tag == "$datetime_fold":
            return _dt.datetime.fromisoformat(payload).replace(fold=1)
        if tag == "$date":
            return _dt.date.fromisoformat(payload)
        if tag == "$decimal":
            number = decimal.Decimal(payload)
            if number.is_nan():
                raise CodecError("a $decimal tag may not hold NaN")
            return number
        if tag == "$uuid":
            return uuid.UUID(payload)
        if tag == "$bytes":
            return base64.b64decode(payload, validate=True)
        if tag == "$int":
            if not payload.lstrip("-").isdigit():
                raise CodecError(f"bad $int payload {payload[:40]!r}")
            return int(payload)
        if tag == "$float":
            if payload not in ("inf", "-inf"):
                raise CodecError(f"bad $float payload {payload[:40]!r}")
            return float(payload)
    except (ValueError, decimal.InvalidOperation, binascii.Error) as exc:
        raise CodecError(f"bad {tag} payload {str(payload)[:40]!r}: {exc}") from None
    raise CodecError(f"unknown tag {tag!r}")


def from_plain(obj: Any, depth: int = 0) -> Any:
    """Structure a plain tree made by `to_plain` back into domain values.

    Args:
        obj: the plain tree.
        depth: the containers already around it (tags add none).

    Raises:
        CodecError: a malformed tag, a type a plain tree cannot hold, or a value whose lists
            and dicts nest deeper than `MAX_NESTING`.
    """
    t = type(obj)
    if t in _PLAIN_SCALARS or t is int or t is float:
        return obj
    if t is dict:
        if len(obj) == 1:
            k = next(iter(obj))
            if type(k) is str and k.startswith("$"):
                return _untag(k, obj[k], depth)
        if depth == MAX_NESTING:
            raise CodecError(_NESTING_REASON)
        out = {}
        for k, v in obj.items():
            if type(k) is not str:
                raise CodecError(f"a plain tree's dict keys must be str, got {type(k).__name__}")
            out[k] = from_plain(v, depth + 1)
        return out
    if t is list:
        if depth == MAX_NESTING:
            raise CodecError(_NESTING_REASON)
        return [from_plain(v, depth + 1) for v in obj]
    raise CodecError(f"a plain tree cannot hold {t.__name__}")


# ---------------------------------------------------------------------------------------------
# Stage 2: documents (cattrs)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()

    def unstructure_op(op: Operation) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "lsn": op.lsn,
            "ts": op.ts,
            "kind": op.kind,
            "table": op.table,
            "key": to_plain(op.key),
            "after": to_plain(op.after),
            "before": to_plain(op.before),
        }
        if op.meta is not None:
            doc["meta"] = to_plain(op.meta)
        return doc

    def structure_op(doc: Any, _: Any) -> Operation:
        if type(doc) is not dict:
            raise CodecError(f"an operation must be an object, got {type(doc).__name__}")
        try:
            lsn, ts, kind, table = doc["lsn"], doc["ts"], doc["kind"], doc["table"]
        except KeyError as exc:
            raise CodecError(f"operation lacks field {exc.args[0]!r}") from None
        if type(lsn) is not int or lsn < 1:
            raise CodecError(f"operation lsn must be a positive int, got {lsn!r}")
        if type(ts) not in (int, float) or type(kind) is not str or type(table) is not str:
            raise CodecError(f"operation {lsn}: malformed ts/kind/table")
        return make_operation(
            lsn,
            float(ts),
            kind,
            table,
            from_plain(doc.get("key")),
            from_plain(doc.get("after")),
            from_plain(doc.get("before")),
            from_plain(doc.get("meta")),
        )

    conv.register_unstructure_hook(Operation, unstructure_op)
    conv.register_structure_hook(Operation, structure_op)
    return conv


#: The converter for journal documents; `converter.unstructure(op)` / `.structure(d, Operation)`.
converter: Final = _make_converter()


# ---------------------------------------------------------------------------------------------
# Stage 3: bytes


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Builds only what pickle can express without globals: containers and scalars."""

    def find_class(self, module: str, name: str) -> Any:
        # Unreached behind `_scan_plain_opcodes` (no opcode that names a global passes it);
        # kept as the second of two locks.
        raise CodecError(f"pickle data may not reference {module}.{name}: only plain data loads")


class _BytesCodec:
    """Plain tree ⇄ bytes for one container format."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def dumps(self, tree: Any) -> bytes:
        """Encode a plain tree.

        Raises:
            CodecError: the tree holds something the format cannot carry.
        """
        try:
            if self.name == "json":
                return orjson.dumps(tree)
            buffer = io.BytesIO()
            pickler = pickle.Pickler(buffer, protocol=5)
            # No memo: a shared object is written once per reference, so files never hold
            # shared references (which the reader refuses). Plain trees have no cycles.
            pickler.fast = True
            pickler.dump(tree)
            return buffer.getvalue()
        except (TypeError, ValueError, pickle.PicklingError) as exc:
            raise CodecError(f"cannot encode as {self.name}: {exc}") from None

    def loads(self, data: bytes | bytearray, *, check: bool = True) -> Any:
        """Decode bytes into a plain tree.

        Args:
            data: the encoded bytes.
            check: for pickle, walk the result to make sure it holds only plain data
                (dicts with str keys, lists, str, int, float, bool, None). A caller that checks
                what it uses itself may skip the walk; no global can be resolved either way.

        Raises:
            CodecError: malformed or hostile bytes.
        """
        if self.name == "json":
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise CodecError(f"invalid JSON: {exc}") from None
        stream = io.BytesIO(data)
        tree = self.load_stream(stream, check=check)
        if stream.tell() != len(data):
            raise CodecError("bytes after the end of the pickle stream")
        return tree

    def load_stream(self, stream: io.BytesIO, *, check: bool = True) -> Any:
        """Decode one pickle stream from *stream* (which may hold more after it).

        Every opcode is read first, in Python (~3.5x the decoding time: 0.27 s for 100,000
        rows of 5 fields, against 1.0 s for `pickletools.genops`), and only those a plain tree
        pickled with protocol 5 and no memo needs are admitted, each length within the bytes.
        The memo above all: the pickles this codec writes hold none (`Pickler.fast`), and the
        index of one sizes the C unpickler's memo, so that 9 bytes could ask for 32 GB.

        Args:
            stream: the bytes, read from the current position.
            check: as for `loads`.

        Raises:
            CodecError: malformed or hostile bytes (or this codec is not pickle).
        """
        if self.name != "pickle":
            raise CodecError("load_stream reads pickle streams only")
        _scan_plain_opcodes(stream)
        try:
            tree = _NoGlobalsUnpickler(stream).load()
        except CodecError:
            raise
        except Exception as exc:  # any malformed pickle stream, whatever the opcode
            raise CodecError(f"invalid pickle data: {type(exc).__name__}: {exc}") from None
        if check:
            check_plain(tree)
        return tree


#: The opcodes a plain tree pickled with protocol 5 and no memo needs, by code: the bytes of
#: argument that follow (fixed), or (negative) the width of the length that follows.
_PLAIN_OPCODES: Final = {
    **dict.fromkeys(b"}](esuaN\x88\x89", 0),  # EMPTY_DICT/LIST, MARK, SET/APPEND(S), NONE...
    0x80: 1,  # PROTO
    0x95: 8,  # FRAME (its length is checked too)
    0x4A: 4,  # BININT
    0x4B: 1,  # BININT1
    0x4D: 2,  # BININT2
    0x47: 8,  # BINFLOAT
    0x8C: -1,  # SHORT_BINUNICODE
    0x58: -4,  # BINUNICODE
    0x8D: -8,  # BINUNICODE8
    0x8A: -1,  # LONG1
}
_STOP: Final = 0x2E
_OPCODE_NAMES: Final = {ord(op.code): op.name for op in pickletools.opcodes}
_MEMO_OPCODES: Final = frozenset(
    {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET"}
)


def _scan_plain_opcodes(stream: io.BytesIO) -> None:
    # Every opcode of the pickle stream at *stream*'s position, up to its STOP, must be one of
    # `_PLAIN_OPCODES` and every length must lie within the stream: the unpickler then builds
    # a tree of plain data of the stream's size. Refused: the memo (an index sizes the C
    # unpickler's memo: 9 bytes ask for 32 GB), DUP (one object reached twice, 1 byte a time,
    # would make every later walk quadratic), and all that reaches code or globals.
    data = stream.getbuffer()
    try:
        at, size = stream.tell(), len(data)
        while at < size:
            code = data[at]
            at += 1
            if code == _STOP:
                return
            width = _PLAIN_OPCODES.get(code)
            if width is None:
                raise CodecError(_refusal(code))
            if width >= 0:
                if code == 0x95 and at + 8 + int.from_bytes(data[at : at + 8], "little") > size:
                    break
                at += width
            else:
                length = int.from_bytes(data[at : at - width], "little")
                at += length - width
        raise CodecError("invalid pickle data: truncated (no STOP within the data)")
    finally:
        data.release()


def _refusal(code: int) -> str:
    # Why an opcode outside `_PLAIN_OPCODES` is refused.
    name = _OPCODE_NAMES.get(code, f"the unknown opcode {code:#04x}")
    if name in _MEMO_OPCODES:
        return f"pickle data uses the memo ({name}): these never do"
    if name == "DUP":
        return "pickle data shares an object (DUP): these never do"
    return f"pickle data uses {name}, which plain data never needs"


#: How deep a plain tree may nest: as deep as orjson reads.
MAX_TREE_DEPTH: Final = 1024


def check_plain(tree: Any) -> None:
    """Check that *tree* is a plain tree: what JSON carries exactly, as `to_plain` makes it.

    Dicts with str keys, lists, str (valid Unicode: no lone surrogate), int in the signed
    64-bit range, finite float, bool and None, nested at most `MAX_TREE_DEPTH` deep, every
    container reached once (shared or cyclic references, which pickle can express, are
    refused: later walks stay linear in the file's size).

    Raises:
        CodecError: anything else.
    """
    stack = [(tree, 0)]
    seen: set[int] = set()
    while stack:
        obj, depth = stack.pop()
        t = type(obj)
        if t is dict or t is list:
            if id(obj) in seen:
                raise CodecError("shared or cyclic references are not plain data")
            if depth == MAX_TREE_DEPTH:
                raise CodecError(f"plain data nests more than {MAX_TREE_DEPTH} deep")
            seen.add(id(obj))
            if t is dict:
                for k, v in obj.items():
                    if type(k) is not str:
                        raise CodecError(
                            f"pickle data holds a non-str dict key of {type(k).__name__}"
                        )
                    _check_text(k)
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in obj)
        elif t is str:
            _check_text(obj)
        elif t is int:
            if not _INT64_MIN <= obj <= _INT64_MAX:
                raise CodecError("plain data holds an int outside 64 bits (tagged as $int)")
        elif t is float:
            if not -_INF < obj < _INF:
                raise CodecError("plain data holds a float that is not finite")
        elif not (t is bool or obj is None):
            raise CodecError(f"pickle data holds a {t.__name__}: only plain data is allowed")


def _check_text(text: str) -> None:
    # A str that UTF-8 (and so JSON) can carry: no lone surrogate.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CodecError("plain data holds a str with a lone surrogate") from None


#: How a pickle stream holding one bytes object opens: PROTO 5, then BINBYTES8 (its 8-byte
#: little-endian length follows).
_BLOB_OPEN: Final = b"\x80\x05\x8e"
_BLOB_HEAD_SIZE: Final = len(_BLOB_OPEN) + 8
#: How it ends: STOP.
PICKLE_BLOB_END: Final = b"."


def pickle_blob_head(size: int) -> bytes:
    """The start of a pickle stream holding one bytes object of *size* bytes: the stream is
    this, the bytes, then `PICKLE_BLOB_END`. Any unpickler reads it as that bytes object;
    `read_pickle_blob` reads it without one."""
    if not 0 <= size < 1 << 64:
        raise CodecError(f"a pickled bytes object cannot hold {size} bytes")
    return _BLOB_OPEN + size.to_bytes(8, "little")


def read_pickle_blob(data: bytes | bytearray | memoryview, start: int) -> tuple[memoryview, int]:
    """The bytes object of the pickle stream at offset *start* of *data* (a view, not a
    copy), and the offset just after that stream.

    No unpickler runs: only the exact layout `pickle_blob_head` writes is accepted, and its
    length must lie within *data*, so nothing is allocated on a file's word.

    Raises:
        CodecError: anything else at *start*.
    """
    head = bytes(data[start : start + _BLOB_HEAD_SIZE])
    if len(head) < _BLOB_HEAD_SIZE or not head.startswith(_BLOB_OPEN):
        raise CodecError("expected a pickled bytes object (PROTO 5, BINBYTES8)")
    begin = start + _BLOB_HEAD_SIZE
    end = begin + int.from_bytes(head[len(_BLOB_OPEN) :], "little")
    if end >= len(data) or data[end : end + 1] != PICKLE_BLOB_END:
        raise CodecError("the pickled bytes object is truncated or not followed by STOP")
    return memoryview(data)[begin:end], end + 1


JSON: Final = _BytesCodec("json")
PICKLE: Final = _BytesCodec("pickle")
BYTES_CODECS: Final = {"json": JSON, "pickle": PICKLE}


def bytes_codec(name: str) -> _BytesCodec:
    """The bytes codec for a format name (``"json"`` or ``"pickle"``, any case).

    Raises:
        CodecError: an unknown format.
    """
    try:
        return BYTES_CODECS[name.lower()]
    except (KeyError, AttributeError):
        raise CodecError(f"unknown format {name!r}: use 'json' or 'pickle'") from None


# ---------------------------------------------------------------------------------------------
# Stage 4: compression

ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"


def compress(data: bytes | bytearray | memoryview, level: int = 3) -> bytes:
    """Compress into one zstandard frame that records its content size."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)


def decompress(data: bytes | bytearray, max_size: int) -> bytes:
    """Decompress a zstandard frame, refusing to produce more than *max_size* bytes.

    The frame must state its content size and fill *data* exactly (its blocks are walked
    first); the output is allocated once, at the stated size, and a frame that would produce
    more or less than it states is refused.

    Raises:
        CodecError: not a zstd frame, corrupt, or larger than *max_size* once decompressed.
    """
    if not data.startswith(ZSTD_MAGIC):
        raise CodecError("not a zstandard frame")
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as exc:
        raise CodecError(f"corrupt zstandard frame header: {exc}") from None
    size = params.content_size
    if size == zstandard.CONTENTSIZE_UNKNOWN:
        raise CodecError("zstandard frame does not state its content size")
    if size > max_size:
        raise CodecError(f"zstandard frame claims {size} bytes, over the {max_size} limit")
    if _frame_end(data) != len(data):
        raise CodecError("bytes after the end of the zstandard frame")
    try:
        out: bytes = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise CodecError(f"corrupt zstandard data: {exc}") from None
    if len(out) != size:
        raise CodecError(f"zstandard frame holds {len(out)} bytes, not its stated {size}")
    return out


def _frame_end(data: bytes | bytearray) -> int:
    # Where the zstandard frame at the start of *data* ends: its header, then each block's
    # 3-byte header (bit 0: last; bits 1-2: type, 1 = RLE holds 1 byte; the rest: size),
    # then a 4-byte checksum if the header's descriptor says so (bit 2).
    try:
        at = zstandard.frame_header_size(data)
    except zstandard.ZstdError as exc:
        raise CodecError(f"corrupt zstandard frame header: {exc}") from None
    last = False
    while not last:
        head = data[at : at + 3]
        if len(head) < 3:
            raise CodecError("truncated zstandard frame")
        word = int.from_bytes(head, "little")
        last, kind, length = bool(word & 1), (word >> 1) & 3, word >> 3
        if kind == 3:
            raise CodecError("corrupt zstandard data: a block of the reserved type")
        at += 3 + (1 if kind == 1 else length)
    at += 4 if data[4] & 4 else 0
    if at > len(data):
        raise CodecError("truncated zstandard frame")
    return at


class Codec:
    """The whole pipeline for one format: plain tree → bytes → optional zstd.

    Args:
        file_format: ``"json"`` or ``"pickle"``.
        compression: None or ``"zstd"``.
        max_decompressed: the largest decompressed size accepted on read.
    """

    __slots__ = ("bytes_codec", "compression", "max_decompressed")

    def __init__(
        self, file_format: str, compression: str | None = None, max_decompressed: int = 1 << 34
    ) -> None:
        self.bytes_codec = bytes_codec(file_format)
        if compression not in (None, "zstd"):
            raise CodecError(f"unknown compression {compression!r}: use None or 'zstd'")
        self.compression = compression
        self.max_decompressed = max_decompressed

    @property
    def file_format(self) -> str:
        """``"json"`` or ``"pickle"``."""
        return self.bytes_codec.name

    def encode(self, tree: Any) -> bytes:
        """Plain tree → bytes (compressed when configured)."""
        data = self.bytes_codec.dumps(tree)
        return compress(data) if self.compression else data

    def decode(self, data: bytes | bytearray) -> Any:
        """Bytes → plain tree.

        Raises:
            CodecError: malformed, hostile or oversized input.
        """
        if self.compression:
            data = decompress(data, self.max_decompressed)
        return self.bytes_codec.loads(data)
