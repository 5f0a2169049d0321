"""The reference DictDB 1.x pickle snapshot: read by a pickle machine of our own, written back.

The reference saves ``pickle.dump(db)`` of its ``dictdb.storage.database.DictDB``, whose state
is ``{"tables": {name: <dictdb.core.table.Table>}}``; each table's state (its
``__getstate__``) is ``{"table_name", "primary_key", "records": {key: record}, "schema": None
| {field: <builtins type>}, "_next_pk"}``. Protocol 4 (5 from Python 3.14), with the memo.

Reading (`read_reference_pickle`) never runs the standard unpickler. A small machine here
executes the opcodes plain data needs, and these only:

- globals: exactly ``dictdb.storage.database.DictDB`` and ``dictdb.core.table.Table``, each
  mapped to an inert marker, and ``builtins.int``/``str``/``float``/``bool``/``list``/``dict``
  mapped to the *name* of the type (a str token, never the callable). Any other global is
  refused with its name; nothing is imported.
- NEWOBJ with no arguments on a marker makes a `Holder`; BUILD with a dict sets its state,
  once. REDUCE, INST, OBJ, NEWOBJ_EX, persistent ids, extensions, buffers and DUP are
  refused: a reference snapshot never needs them, and they are how pickles run code.
- the memo is a dict (an index costs nothing before it is used); a GET of an index never put
  is refused.

So the machine builds objects in proportion to the bytes it reads. The memo lets one object
be reached many times (the reference's pickles share every repeated str that way), and so a
few bytes could describe an exponentially large tree: `walk_budget` gives the caller the
number of visits a walk of the result may make, proportional to the file's size, and the
caller refuses a tree that needs more. Containers nest within the machine's stack (bounded by
the opcodes), and the caller's walk bounds depth.

Every refusal is a `wal.CodecError`; the caller names the file.

Writing (`write_reference_pickle`) uses the standard pickler on plain data, with the two
reference classes written as globals by hand and found by the pickler in its memo (so that no
class of that path needs to exist here).
"""

from __future__ import annotations

import copyreg
import io
import pickle
import struct
from collections.abc import Mapping
from typing import IO, Any, Final

from wal import CodecError

#: The reference's classes, by (module, name).
REFERENCE_DB: Final = ("dictdb.storage.database", "DictDB")
REFERENCE_TABLE: Final = ("dictdb.core.table", "Table")
#: The builtin types a reference schema may name.
SCHEMA_TYPE_NAMES: Final = frozenset({"int", "str", "float", "bool", "list", "dict"})


class Marker:
    """An inert stand-in for one of the reference's classes: it only names it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<reference class {self.name}>"


class Holder:
    """An inert object of a reference class: its marker and the state BUILD gave it."""

    __slots__ = ("marker", "state")

    def __init__(self, marker: Marker) -> None:
        self.marker = marker
        self.state: dict[Any, Any] | None = None


class TypeName(str):
    """A builtin type named in a reference schema (a str, never the callable)."""

    __slots__ = ()


_MARKERS: Final = {
    REFERENCE_DB: Marker("DictDB"),
    REFERENCE_TABLE: Marker("Table"),
}

_MARK: Final = object()
_unpack_float = struct.Struct(">d").unpack_from
#: The largest LONG1/LONG4 payload read (bytes): ints this wide (~2,400 decimal digits) are
#: well past any key or value, and Python refuses to print longer ones (4,300 digits).
_MAX_LONG_BYTES: Final = 1024


def walk_budget(size: int) -> int:
    """How many values a walk of a tree decoded from *size* bytes may visit.

    Without shared containers a tree has fewer values than its pickle has bytes; sharing (the
    memo) is allowed up to four times that.
    """
    return 4 * size + 4096


def read_reference_pickle(data: bytes | memoryview) -> Any:
    """Run the opcodes of one pickle stream (see the module docstring) and return its object.

    Raises:
        CodecError: an opcode or a global outside what a reference snapshot needs, malformed
            or truncated data, bytes after the stream.
    """
    return _Machine(bytes(data)).run()


class _Machine:
    """The pickle machine: a stack, a mark stack and a memo; see the module docstring."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}

    # -- reading the bytes -----------------------------------------------------------------

    def take(self, n: int) -> bytes:
        end = self.at + n
        if n < 0 or end > len(self.data):
            raise CodecError("invalid pickle data: truncated")
        chunk = self.data[self.at : end]
        self.at = end
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def text(self, n: int) -> str:
        try:
            return self.take(n).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise CodecError(f"invalid pickle data: a str is not UTF-8: {exc}") from None

    # -- the stack -------------------------------------------------------------------------

    def pop(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) == self.marks[-1]):
            raise CodecError("invalid pickle data: the stack is empty")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) == self.marks[-1]):
            raise CodecError("invalid pickle data: the stack is empty")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise CodecError("invalid pickle data: no MARK")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def put(self, index: int) -> None:
        self.memo[index] = self.top()

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise CodecError(f"invalid pickle data: memo index {index} was never put")
        self.stack.append(self.memo[index])

    # -- running ---------------------------------------------------------------------------

    def run(self) -> Any:
        data = self.data
        size = len(data)
        stack = self.stack
        memo = self.memo
        marks = self.marks
        handlers = _HANDLERS
        while self.at < size:
            at = self.at
            code = data[at]
            # The opcodes of every record, inline (same checks as their handlers).
            if code == 0x94:  # MEMOIZE
                if not stack or (marks and len(stack) == marks[-1]):
                    raise CodecError("invalid pickle data: the stack is empty")
                memo[len(memo)] = stack[-1]
                self.at = at + 1
                continue
            if code == 0x8C:  # SHORT_BINUNICODE
                end = at + 2 + (data[at + 1] if at + 1 < size else size)
                if end > size:
                    raise CodecError("invalid pickle data: truncated")
                try:
                    stack.append(data[at + 2 : end].decode("utf-8", "surrogatepass"))
                except UnicodeDecodeError as exc:
                    raise CodecError(f"invalid pickle data: a str is not UTF-8: {exc}") from None
                self.at = end
                continue
            if code == 0x68:  # BINGET
                if at + 1 >= size or data[at + 1] not in memo:
                    raise CodecError("invalid pickle data: a memo index that was never put")
                stack.append(memo[data[at + 1]])
                self.at = at + 2
                continue
            if code == 0x4B:  # BININT1
                if at + 1 >= size:
                    raise CodecError("invalid pickle data: truncated")
                stack.append(data[at + 1])
                self.at = at + 2
                continue
            self.at = at + 1
            handler = handlers.get(code)
            if handler is None:
                raise CodecError(_refusal(code))
            if handler(self):
                if len(self.stack) != 1 or self.marks:
                    raise CodecError("invalid pickle data: STOP with a malformed stack")
                if self.at != len(data):
                    raise CodecError("invalid pickle data: bytes after STOP")
                return self.stack[0]
        raise CodecError("invalid pickle data: truncated (no STOP)")

    def setitems(self, target: Any, items: list[Any]) -> None:
        if type(target) is not dict or len(items) % 2:
            raise CodecError("invalid pickle data: SETITEMS on something else than a dict")
        for i in range(0, len(items), 2):
            key = items[i]
            try:
                target[key] = items[i + 1]
            except TypeError:
                raise CodecError(
                    f"invalid pickle data: an unhashable dict key of {type(key).__name__}"
                ) from None

    def global_(self, module: str, name: str) -> Any:
        marker = _MARKERS.get((module, name))
        if marker is not None:
            return marker
        if module == "builtins" and name in SCHEMA_TYPE_NAMES:
            return TypeName(name)
        raise CodecError(
            f"the pickle references {module}.{name}, which is not allowed: a reference "
            f"snapshot loads only {'.'.join(REFERENCE_DB)}, {'.'.join(REFERENCE_TABLE)} and "
            "schema types"
        )


def _op_proto(m: _Machine) -> None:
    if m.uint(1) > 5:
        raise CodecError("invalid pickle data: unsupported protocol")


def _op_frame(m: _Machine) -> None:
    size = m.uint(8)
    if m.at + size > len(m.data):
        raise CodecError("invalid pickle data: truncated frame")


def _op_stop(m: _Machine) -> bool:
    return True


def _op_mark(m: _Machine) -> None:
    m.marks.append(len(m.stack))


def _op_pop(m: _Machine) -> None:
    m.pop()


def _push(value: Any) -> Any:
    def op(m: _Machine) -> None:
        m.stack.append(value)

    return op


def _op_empty_dict(m: _Machine) -> None:
    m.stack.append({})


def _op_empty_list(m: _Machine) -> None:
    m.stack.append([])


def _op_empty_set(m: _Machine) -> None:
    m.stack.append(set())


def _op_additems(m: _Machine) -> None:
    items = m.pop_mark()
    target = m.top()
    if type(target) is not set:
        raise CodecError("invalid pickle data: ADDITEMS on something else than a set")
    try:
        target.update(items)
    except TypeError:
        raise CodecError("invalid pickle data: an unhashable set item") from None


def _op_frozenset(m: _Machine) -> None:
    try:
        m.stack.append(frozenset(m.pop_mark()))
    except TypeError:
        raise CodecError("invalid pickle data: an unhashable frozenset item") from None


def _op_tuple(m: _Machine) -> None:
    m.stack.append(tuple(m.pop_mark()))


def _tuple_n(n: int) -> Any:
    def op(m: _Machine) -> None:
        items = [m.pop() for _ in range(n)]
        m.stack.append(tuple(reversed(items)))

    return op


def _op_setitem(m: _Machine) -> None:
    value = m.pop()
    key = m.pop()
    m.setitems(m.top(), [key, value])


def _op_setitems(m: _Machine) -> None:
    items = m.pop_mark()
    m.setitems(m.top(), items)


def _op_append(m: _Machine) -> None:
    value = m.pop()
    target = m.top()
    if type(target) is not list:
        raise CodecError("invalid pickle data: APPEND on something else than a list")
    target.append(value)


def _op_appends(m: _Machine) -> None:
    items = m.pop_mark()
    target = m.top()
    if type(target) is not list:
        raise CodecError("invalid pickle data: APPENDS on something else than a list")
    target.extend(items)


def _int_op(size: int, signed: bool) -> Any:
    def op(m: _Machine) -> None:
        m.stack.append(int.from_bytes(m.take(size), "little", signed=signed))

    return op


def _long_op(width: int) -> Any:
    def op(m: _Machine) -> None:
        size = m.uint(width)
        if size > _MAX_LONG_BYTES:
            raise CodecError(f"the pickle holds an int of {size} bytes (at most 1024 are read)")
        m.stack.append(int.from_bytes(m.take(size), "little", signed=True))

    return op


def _op_binfloat(m: _Machine) -> None:
    m.stack.append(_unpack_float(m.take(8))[0])


def _unicode_op(width: int) -> Any:
    def op(m: _Machine) -> None:
        m.stack.append(m.text(m.uint(width)))

    return op


def _bytes_op(width: int) -> Any:
    def op(m: _Machine) -> None:
        m.stack.append(m.take(m.uint(width)))

    return op


def _put_op(width: int) -> Any:
    def op(m: _Machine) -> None:
        m.put(m.uint(width))

    return op


def _get_op(width: int) -> Any:
    def op(m: _Machine) -> None:
        m.get(m.uint(width))

    return op


def _op_global(m: _Machine) -> None:
    module = m.take(_line_length(m)).decode("ascii", "replace")
    m.take(1)
    name = m.take(_line_length(m)).decode("ascii", "replace")
    m.take(1)
    m.stack.append(m.global_(module, name))


def _line_length(m: _Machine) -> int:
    end = m.data.find(b"\n", m.at, m.at + 256)
    if end < 0:
        raise CodecError("invalid pickle data: a GLOBAL name is not terminated")
    return end - m.at


def _op_stack_global(m: _Machine) -> None:
    name = m.pop()
    module = m.pop()
    if type(module) is not str or type(name) is not str:
        raise CodecError("invalid pickle data: STACK_GLOBAL needs two str")
    m.stack.append(m.global_(module, name))


def _op_newobj(m: _Machine) -> None:
    args = m.pop()
    cls = m.pop()
    if type(cls) is not Marker:
        raise CodecError(f"the pickle instantiates {_what(cls)}: only the reference's classes")
    if args != ():
        raise CodecError(f"the pickle passes arguments to the reference's {cls.name}")
    m.stack.append(Holder(cls))


def _op_build(m: _Machine) -> None:
    state = m.pop()
    target = m.top()
    if type(target) is not Holder:
        raise CodecError(f"the pickle sets the state of {_what(target)}")
    if target.state is not None or type(state) is not dict:
        raise CodecError(
            f"the pickle sets the reference {target.marker.name}'s state twice or not as a dict"
        )
    target.state = state


def _what(obj: Any) -> str:
    if type(obj) is TypeName:
        return f"builtins.{obj}"
    return f"a {type(obj).__name__}"


#: The opcodes admitted, by code, beside the four `_Machine.run` executes inline (BININT1,
#: SHORT_BINUNICODE, MEMOIZE, BINGET: those of every record).
_HANDLERS: Final[dict[int, Any]] = {
    0x80: _op_proto,
    0x95: _op_frame,
    ord("."): _op_stop,
    ord("("): _op_mark,
    ord("0"): _op_pop,
    ord("N"): _push(None),
    0x88: _push(True),
    0x89: _push(False),
    ord("}"): _op_empty_dict,
    ord("]"): _op_empty_list,
    ord(")"): _push(()),
    0x8F: _op_empty_set,
    0x90: _op_additems,
    0x91: _op_frozenset,
    ord("t"): _op_tuple,
    0x85: _tuple_n(1),
    0x86: _tuple_n(2),
    0x87: _tuple_n(3),
    ord("s"): _op_setitem,
    ord("u"): _op_setitems,
    ord("a"): _op_append,
    ord("e"): _op_appends,
    ord("J"): _int_op(4, True),
    ord("M"): _int_op(2, False),
    0x8A: _long_op(1),
    0x8B: _long_op(4),
    ord("G"): _op_binfloat,
    ord("X"): _unicode_op(4),
    0x8D: _unicode_op(8),
    ord("C"): _bytes_op(1),
    ord("B"): _bytes_op(4),
    0x8E: _bytes_op(8),
    ord("q"): _put_op(1),
    ord("r"): _put_op(4),
    ord("j"): _get_op(4),
    ord("c"): _op_global,
    0x93: _op_stack_global,
    0x81: _op_newobj,
    ord("b"): _op_build,
}

_NAMES: Final = {
    ord("R"): "REDUCE",
    ord("i"): "INST",
    ord("o"): "OBJ",
    0x92: "NEWOBJ_EX",
    ord("2"): "DUP",
    ord("P"): "PERSID",
    ord("Q"): "BINPERSID",
    0x82: "EXT1",
    0x83: "EXT2",
    0x84: "EXT4",
    0x96: "BYTEARRAY8",
    0x97: "NEXT_BUFFER",
    0x98: "READONLY_BUFFER",
}


def _refusal(code: int) -> str:
    name = _NAMES.get(code)
    if name is None:
        return f"the pickle uses opcode {code:#04x}, which a reference snapshot never needs"
    return f"the pickle uses {name}, which a reference snapshot never needs"


# -- writing -----------------------------------------------------------------------------------


class _Written:
    """An object written as an instance of one of the reference's classes, with *state*."""

    __slots__ = ("state",)

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state


class _DBClass(_Written):
    """Written as the global ``dictdb.storage.database.DictDB`` (see `write_reference_pickle`)."""

    __slots__ = ()


class _TableClass(_Written):
    """Written as the global ``dictdb.core.table.Table``."""

    __slots__ = ()


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _Written):
            return copyreg.__newobj__, (type(obj),), obj.state  # type: ignore[attr-defined]
        return NotImplemented


def _global_bytes(module: str, name: str) -> bytes:
    out = bytearray()
    for part in (module, name):
        raw = part.encode("ascii")
        out += b"\x8c" + bytes([len(raw)]) + raw
    return bytes(out) + b"\x93"


def write_reference_pickle(tables: Mapping[str, dict[str, Any]], out: IO[bytes]) -> None:
    """Write a reference snapshot of *tables* (name → the reference table state: table_name,
    primary_key, records, schema as builtin types, _next_pk) to *out*.

    The stream opens with the two globals, each put in the memo; the standard pickler (C,
    protocol 4, what the reference itself writes) then writes the rest and finds the two
    classes in its memo, so it writes them as memo gets.
    """
    out.write(b"\x80\x04")
    out.write(_global_bytes(*REFERENCE_DB) + b"q\x00")  # BINPUT 0
    out.write(_global_bytes(*REFERENCE_TABLE) + b"q\x01")  # BINPUT 1
    out.write(b"0" * 2)  # POP both: they stay in the memo
    pickler = _Pickler(out, protocol=4)
    pickler.memo = {id(_DBClass): (0, _DBClass), id(_TableClass): (1, _TableClass)}
    state = {"tables": {name: _TableClass(t) for name, t in tables.items()}}
    pickler.dump(_DBClass(state))


def dumps_reference_pickle(tables: Mapping[str, dict[str, Any]]) -> bytes:
    """`write_reference_pickle` into bytes."""
    buffer = io.BytesIO()
    write_reference_pickle(tables, buffer)
    return buffer.getvalue()
