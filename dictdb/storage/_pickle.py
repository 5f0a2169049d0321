"""The pickle container of dictdb's pickle files: plain trees and blobs, read defensively.

A pickle file (`dictdb.storage.persist`) holds pickle streams of two shapes, both protocol 5:

- A *plain tree* (a dict of the file's header; in version 1, the body too): dicts with str
  keys, lists, str, ints within 64 bits, finite floats, bool and None, what JSON carries
  exactly. `PICKLE.dumps` writes it without the memo (`Pickler.fast`), so that it uses only
  these opcodes: PROTO, FRAME, EMPTY_DICT, EMPTY_LIST, MARK, SETITEM(S), APPEND(S), NONE,
  NEWTRUE, NEWFALSE, BININT, BININT1, BININT2, LONG1, BINFLOAT, SHORT_BINUNICODE,
  BINUNICODE, BINUNICODE8, and STOP at its end.
- A *blob* (the body of a version-2 file: a JSON object), one bytes object::

      80 05           PROTO 5
      8e <8 bytes>    BINBYTES8, its length N, unsigned little-endian
      <N bytes>       the bytes
      2e              STOP

  `pickle_blob_head` writes what comes before the bytes; `read_pickle_blob` reads the bytes
  back as a view, with no unpickler at all.

Reading a plain tree (`PICKLE.load_stream`), in three locks:

1. Every opcode is scanned first, in Python, and only those above are admitted, each length
   within the bytes. Refused: the memo (an index sizes the C unpickler's memo: 9 bytes could
   ask for 32 GB), DUP (one object reached twice, 1 byte at a time: every later walk would be
   quadratic), and everything that names a global or calls code.
2. The unpickler resolves no global at all.
3. The tree is walked (`check_plain`): a tree JSON carries exactly, nested at most
   `MAX_TREE_DEPTH` deep, every container reached once, no str with a lone surrogate.

So bytes can only build a tree of lists, dicts and scalars of their own size. Every refusal is
a `wal.CodecError`.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from typing import Any, Final

from wal import CodecError

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_INF: Final = float("inf")


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Builds only what pickle can express without globals: containers and scalars."""

    def find_class(self, module: str, name: str) -> Any:
        # Unreached behind `_scan_plain_opcodes` (no opcode that names a global passes it);
        # kept as the second of two locks.
        raise CodecError(f"pickle data may not reference {module}.{name}: only plain data loads")


class PlainPickle:
    """Plain tree ⇄ one pickle stream (see the module docstring); stateless: use `PICKLE`."""

    __slots__ = ()

    def dumps(self, tree: Any) -> bytes:
        """Encode a plain tree as one pickle stream, with no memo.

        Raises:
            CodecError: the tree holds something pickle cannot carry.
        """
        try:
            buffer = io.BytesIO()
            pickler = pickle.Pickler(buffer, protocol=5)
            # No memo: a shared object is written once per reference, so files never hold
            # shared references (which the reader refuses). Plain trees have no cycles.
            pickler.fast = True
            pickler.dump(tree)
            return buffer.getvalue()
        except (TypeError, ValueError, pickle.PicklingError) as exc:
            raise CodecError(f"cannot encode as pickle: {exc}") from None

    def load_stream(self, stream: io.BytesIO, *, check: bool = True) -> Any:
        """Decode one pickle stream from *stream*, leaving it just after the stream's STOP.

        Every opcode is scanned first, in Python (~3.5x the decoding time: 0.27 s for
        100,000 rows of 5 fields, against 1.0 s for `pickletools.genops`), then the
        unpickler runs.

        Args:
            stream: the bytes, read from the current position (more may follow).
            check: walk the result (`check_plain`). A caller that checks what it uses itself
                may skip the walk; no global can be resolved either way.

        Raises:
            CodecError: malformed or hostile bytes.
        """
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


#: The pickle container (`PlainPickle`).
PICKLE: Final = PlainPickle()


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
