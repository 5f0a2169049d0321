"""Hostile and damaged reference DictDB files: refused by name, nothing run, memory bounded.

A reference (legacy) file has no checksum, so damage that still parses cannot be detected;
everything else must be: any bytes under a legacy name make `DictDB.load` (and `apply_delta`)
either load or raise `CorruptFileError` naming the file, never another exception, never a
hang. The pickle reader runs no code: the pickles below are assembled opcode by opcode
(`pickletools` names them) to call ``os.system``, ``eval`` and the like, to abuse the memo,
sharing, DUP and nesting, or to claim huge lengths. Where memory is at stake the load runs in
a child process under an address-space cap (`tests.dictdb.legacy_support.load_capped`).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dictdb import CorruptFileError, DictDB
from dictdb.storage import persist
from tests.dictdb.legacy_support import LEGACY, load_capped

pytestmark = pytest.mark.usefixtures("quiet_dictdb_logs")  # tests/dictdb/conftest.py

PICKLE_NAME = "dictdb_backup_1700000000_000000.pickle"
JSON_NAME = "dictdb_backup_1700000000_000000.json"
GOLDEN_PICKLE = LEGACY / "snapshots" / PICKLE_NAME
GOLDEN_JSON = LEGACY / "snapshots" / JSON_NAME


# -- a pickle assembler --------------------------------------------------------------------------

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
PROTO5 = b"\x80\x05"
MARK = b"("
STOP = b"."
NONE = b"N"
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
EMPTY_TUPLE = b")"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
SETITEM = b"s"
SETITEMS = b"u"
APPEND = b"a"
APPENDS = b"e"
LIST = b"l"
TUPLE = b"t"
REDUCE = b"R"
BUILD = b"b"
NEWOBJ = b"\x81"
NEWOBJ_EX = b"\x92"
STACK_GLOBAL = b"\x93"
DUP = b"2"
POP = b"0"
OBJ = b"o"


def text(s: str) -> bytes:
    """BINUNICODE *s*."""
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def short(s: str) -> bytes:
    """SHORT_BINUNICODE *s* (protocol 4)."""
    data = s.encode()
    return b"\x8c" + bytes([len(data)]) + data


def integer(n: int) -> bytes:
    """BININT *n*."""
    return b"J" + struct.pack("<i", n)


def glob(module: str, name: str) -> bytes:
    """GLOBAL *module*.*name*."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def put(index: int) -> bytes:
    """LONG_BINPUT *index*."""
    return b"r" + struct.pack("<I", index)


def get(index: int) -> bytes:
    """LONG_BINGET *index*."""
    return b"j" + struct.pack("<I", index)


def call(func: bytes, *args: bytes) -> bytes:
    """*func* called with *args* through REDUCE."""
    return func + MARK + b"".join(args) + TUPLE + REDUCE


DB_CLASS = glob("dictdb.storage.database", "DictDB")
TABLE_CLASS = glob("dictdb.core.table", "Table")


def state(*items: tuple[str, bytes]) -> bytes:
    """A dict of str keys to the objects *items* build."""
    return EMPTY_DICT + MARK + b"".join(text(k) + v for k, v in items) + SETITEMS


def table_object(
    name: str = "t",
    value: bytes = text("x"),
    extra: tuple[tuple[str, bytes], ...] = (),
    table_class: bytes = TABLE_CLASS + EMPTY_TUPLE + NEWOBJ,
) -> bytes:
    """The reference's Table *name* holding one row ``{"id": 1, "v": <value>}``."""
    row = state(("id", integer(1)), ("v", value))
    records = EMPTY_DICT + MARK + integer(1) + row + SETITEMS
    fields = (
        ("table_name", text(name)),
        ("primary_key", text("id")),
        ("records", records),
        ("schema", NONE),
        ("_next_pk", integer(2)),
        *extra,
    )
    return table_class + state(*fields) + BUILD


def legacy_pickle(
    value: bytes = text("x"),
    table: bytes | None = None,
    db_extra: tuple[tuple[str, bytes], ...] = (),
    db_class: bytes = DB_CLASS + EMPTY_TUPLE + NEWOBJ,
    proto: bytes = PROTO2,
) -> bytes:
    """A reference pickle snapshot of table ``t`` whose row ``1`` has field ``v`` = *value*
    (or holding *table* as ``t``), with *db_extra* added to the DictDB's state."""
    tables = EMPTY_DICT + text("t") + (table_object(value=value) if table is None else table)
    tables += SETITEM
    return proto + db_class + state(("tables", tables), *db_extra) + BUILD + STOP


def write(tmp_path: Path, data: bytes, name: str = PICKLE_NAME) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def load(path: Path) -> DictDB:
    return DictDB.load(path, "json" if path.suffix == ".json" else "pickle")


def refused(path: Path) -> CorruptFileError:
    """The `CorruptFileError` loading *path* raises (anything else fails), naming it."""
    with pytest.raises(CorruptFileError) as info:
        load(path)
    assert str(path) == info.value.path
    assert path.name in str(info.value)
    return info.value


def outcome(path: Path, read: Callable[[Path], object] = load) -> str:
    """``loaded`` or ``refused`` (a `CorruptFileError` naming *path*); anything else is
    reported as the exception's type and message."""
    try:
        read(path)
    except CorruptFileError as exc:
        return "refused" if exc.path == str(path) else f"refused naming {exc.path}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "loaded"


def test_the_assembled_pickle_is_a_reference_snapshot_our_reader_loads(tmp_path: Path) -> None:
    # So that every refusal below is the hostile part's doing, not the assembler's.
    db = load(write(tmp_path, legacy_pickle()))
    assert {1: {"id": 1, "v": "x"}} == db.to_dict()["t"]["records"]
    db = load(write(tmp_path, legacy_pickle(value=shared(3, lambda g: g + g + TUPLE2))))
    assert [[[[], []], [[], []]], [[[], []], [[], []]]] == db.to_dict()["t"]["records"][1]["v"]


# -- code execution -------------------------------------------------------------------------------


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[Path]:
    """A file that only running the hostile payload creates; checked absent afterwards."""
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "the pickle ran code"


def payloads(sentinel: Path) -> dict[str, bytes]:
    """Callables a pickle may try to reach, each called to create *sentinel*."""
    shell = text(f"touch {sentinel}")
    source = text(f"open({str(sentinel)!r}, 'w').close()")
    return {
        "os.system": call(glob("os", "system"), shell),
        "posix.system": call(glob("posix", "system"), shell),
        "builtins.eval": call(glob("builtins", "eval"), source),
        "builtins.exec": call(glob("builtins", "exec"), source),
        "stack global builtins.exec": call(
            short("builtins") + short("exec") + STACK_GLOBAL, source
        ),
        "builtins.getattr": call(
            call(glob("builtins", "getattr"), call(glob("builtins", "__import__"), text("os"))),
            text("system"),
        )
        + shell
        + TUPLE1
        + REDUCE,
        "builtins.__import__": call(glob("builtins", "__import__"), text("os")),
        "subprocess.getoutput": call(glob("subprocess", "getoutput"), shell),
        "INST os.system": MARK + shell + b"ios\nsystem\n",
        "OBJ os.system": MARK + glob("os", "system") + shell + OBJ,
    }


@pytest.mark.parametrize(
    "where",
    ["top", "value", "table"],
    ids=["as-the-file", "as-a-record-value", "as-a-table"],
)
@pytest.mark.parametrize("payload", sorted(payloads(Path("x"))))
def test_a_pickle_calling_code_is_refused_and_nothing_runs(
    payload: str, where: str, tmp_path: Path, sentinel: Path
) -> None:
    code = payloads(sentinel)[payload]
    if where == "top":
        data = PROTO2 + code + STOP
    elif where == "value":
        data = legacy_pickle(value=code)
    else:
        data = legacy_pickle(table=code)
    refused(write(tmp_path, data))


def test_a_pickle_naming_a_module_never_imports_it(tmp_path: Path) -> None:
    # ``this`` prints the Zen of Python when imported: a global must not even import.
    if "this" in sys.modules:
        pytest.skip("module 'this' already imported in this process")
    refused(write(tmp_path, legacy_pickle(value=glob("this", "s"))))
    refused(write(tmp_path, PROTO4 + short("this") + short("s") + STACK_GLOBAL + STOP))
    assert "this" not in sys.modules


OTHER_GLOBALS = {
    "collections.OrderedDict": glob("collections", "OrderedDict") + EMPTY_TUPLE + NEWOBJ,
    "BackupManager": glob("dictdb.storage.backup", "BackupManager") + EMPTY_TUPLE + NEWOBJ,
    "builtins.bytes": glob("builtins", "bytes"),
    "builtins.type": glob("builtins", "type"),
    "builtins.set": glob("builtins", "set"),
    "builtins.int called": call(glob("builtins", "int"), text("5")),
    "builtins.list called": call(glob("builtins", "list"), text("abc")),
    "builtins.int as a value": glob("builtins", "int"),
    "DictDB as a value": DB_CLASS,
    "datetime": call(glob("datetime", "datetime"), integer(2024), integer(1), integer(2)),
    "copyreg._reconstructor": call(
        glob("copyreg", "_reconstructor"),
        glob("dictdb.core.table", "Table"),
        glob("builtins", "object"),
        NONE,
    ),
}


@pytest.mark.parametrize("name", sorted(OTHER_GLOBALS))
def test_a_pickle_value_from_any_other_global_or_call_is_refused(name: str, tmp_path: Path) -> None:
    refused(write(tmp_path, legacy_pickle(value=OTHER_GLOBALS[name])))


ALLOWED_CLASS_ABUSE = {
    "REDUCE on DictDB": legacy_pickle(db_class=DB_CLASS + EMPTY_TUPLE + REDUCE),
    "REDUCE on Table": legacy_pickle(
        table=table_object(table_class=TABLE_CLASS + EMPTY_TUPLE + REDUCE)
    ),
    "NEWOBJ with arguments": legacy_pickle(db_class=DB_CLASS + text("a") + TUPLE1 + NEWOBJ),
    "NEWOBJ_EX on Table": legacy_pickle(
        table=table_object(table_class=TABLE_CLASS + EMPTY_TUPLE + EMPTY_DICT + NEWOBJ_EX)
    ),
    "INST DictDB": PROTO2 + MARK + b"idictdb.storage.database\nDictDB\n" + STOP,
    "a Table as the file": PROTO2 + table_object() + STOP,
    "a Table as a record value": legacy_pickle(value=table_object()),
    "a DictDB as a record value": legacy_pickle(value=DB_CLASS + EMPTY_TUPLE + NEWOBJ),
    "a DictDB as a table": legacy_pickle(table=DB_CLASS + EMPTY_TUPLE + NEWOBJ + state() + BUILD),
    "a list as the file (A18 C)": PROTO2 + EMPTY_LIST + MARK + integer(1) + APPENDS + STOP,
    "a dict as the file": PROTO2 + state(("tables", EMPTY_DICT)) + STOP,
    "a DictDB never built": PROTO2 + DB_CLASS + EMPTY_TUPLE + NEWOBJ + STOP,
    "a Table never built": legacy_pickle(table=TABLE_CLASS + EMPTY_TUPLE + NEWOBJ),
}


@pytest.mark.parametrize("name", sorted(ALLOWED_CLASS_ABUSE))
def test_the_two_reference_classes_are_only_ever_inert_holders(name: str, tmp_path: Path) -> None:
    refused(write(tmp_path, ALLOWED_CLASS_ABUSE[name]))


BUILD_ABUSE = {
    # A18 B: BUILD could set any attribute on the reference's objects.
    "DictDB gets get_table": legacy_pickle(db_extra=(("get_table", text("users")),)),
    "DictDB gets __class__": legacy_pickle(db_extra=(("__class__", DB_CLASS),)),
    "Table gets indexes": table_object(extra=(("indexes", EMPTY_DICT),)),
    "Table gets _lock": table_object(extra=(("_lock", NONE),)),
    "Table gets a non-str attribute": table_object(extra=())[:-1]
    + MARK
    + integer(5)
    + NONE
    + SETITEMS
    + BUILD,
    "Table lacks records": TABLE_CLASS
    + EMPTY_TUPLE
    + NEWOBJ
    + state(("table_name", text("t")), ("primary_key", text("id")), ("schema", NONE))
    + BUILD,
    "Table built twice": table_object() + state(("records", EMPTY_DICT)) + BUILD,
    "Table built with (state, slots)": TABLE_CLASS
    + EMPTY_TUPLE
    + NEWOBJ
    + NONE
    + state(("table_name", text("t")))
    + TUPLE2
    + BUILD,
    "Table named otherwise than its key": table_object(name="other"),
    "records not a dict": TABLE_CLASS
    + EMPTY_TUPLE
    + NEWOBJ
    + state(
        ("table_name", text("t")),
        ("primary_key", text("id")),
        ("records", EMPTY_LIST),
        ("schema", NONE),
    )
    + BUILD,
    "schema naming a callable": TABLE_CLASS
    + EMPTY_TUPLE
    + NEWOBJ
    + state(
        ("table_name", text("t")),
        ("primary_key", text("id")),
        ("records", EMPTY_DICT),
        ("schema", state(("id", glob("builtins", "eval")))),
    )
    + BUILD,
    "schema naming bytes (the reference whitelists it)": TABLE_CLASS
    + EMPTY_TUPLE
    + NEWOBJ
    + state(
        ("table_name", text("t")),
        ("primary_key", text("id")),
        ("records", EMPTY_DICT),
        ("schema", state(("id", glob("builtins", "bytes")))),
    )
    + BUILD,
    "a primary key that is not a str": TABLE_CLASS
    + EMPTY_TUPLE
    + NEWOBJ
    + state(
        ("table_name", text("t")),
        ("primary_key", integer(1)),
        ("records", EMPTY_DICT),
        ("schema", NONE),
    )
    + BUILD,
}


@pytest.mark.parametrize("name", sorted(BUILD_ABUSE))
def test_build_setting_unexpected_state_is_refused(name: str, tmp_path: Path) -> None:
    data = BUILD_ABUSE[name]
    if not data.startswith(PROTO2):  # a table: wrap it in the DictDB
        data = legacy_pickle(table=data)
    refused(write(tmp_path, data))


OPCODES_NEVER_NEEDED = {
    "PERSID": PROTO2 + b"P1\n" + STOP,
    "BINPERSID": PROTO2 + text("1") + b"Q" + STOP,
    "EXT1": PROTO2 + b"\x82\x01" + STOP,
    "EXT2": PROTO2 + b"\x83\x01\x00" + STOP,
    "EXT4": PROTO2 + b"\x84\x01\x00\x00\x00" + STOP,
    "NEXT_BUFFER": PROTO5 + b"\x97" + STOP,
    "READONLY_BUFFER": PROTO5 + b"\x96" + b"\x01\x00\x00\x00\x00\x00\x00\x00x" + b"\x98" + STOP,
    "BYTEARRAY8 value": legacy_pickle(value=b"\x96" + struct.pack("<Q", 1) + b"x", proto=PROTO5),
    "an unknown opcode": PROTO2 + b"\xff" + STOP,
    "bytes after STOP": legacy_pickle() + b"junk",
    "two streams": legacy_pickle() + legacy_pickle(),
    "no STOP": legacy_pickle()[:-1],
    "an empty file": b"",
    "PROTO 6": b"\x80\x06" + NONE + STOP,
}


@pytest.mark.parametrize("name", sorted(OPCODES_NEVER_NEEDED))
def test_opcodes_a_reference_snapshot_never_needs_are_refused(name: str, tmp_path: Path) -> None:
    refused(write(tmp_path, OPCODES_NEVER_NEEDED[name]))


# -- memo, sharing, nesting, lengths ---------------------------------------------------------------


def shared(levels: int, build: Callable[[bytes], bytes]) -> bytes:
    """A value of *levels* levels, each holding the previous one twice through the memo: a
    tree of 2**levels leaves in a few bytes per level."""
    out = EMPTY_LIST + put(0) + POP
    for level in range(1, levels + 1):
        out += build(get(level - 1)) + put(level) + POP
    return out + get(levels)


def dup_shared(levels: int) -> bytes:
    """The same through DUP: each level a tuple of the previous one twice."""
    return EMPTY_LIST + (DUP + TUPLE2) * levels


#: Values for one record that no honest file holds, each in a few bytes to a few MiB.
BOMBS: dict[str, bytes] = {
    "memo: lists of lists, 2**60 leaves": shared(60, lambda g: EMPTY_LIST + MARK + g + g + APPENDS),
    "memo: tuples of tuples, 2**60 leaves": shared(60, lambda g: g + g + TUPLE2),
    "memo: dicts of dicts, 2**60 leaves": shared(
        60, lambda g: EMPTY_DICT + MARK + text("a") + g + text("b") + g + SETITEMS
    ),
    "memo: a list holding itself": EMPTY_LIST + put(0) + get(0) + APPEND,
    "memo: a dict holding itself": EMPTY_DICT + put(0) + text("me") + get(0) + SETITEM,
    "DUP: tuples of tuples, 2**60 leaves": dup_shared(60),
    "DUP: a list holding itself": EMPTY_LIST + DUP + APPEND,
    "memo: a GET never put": get(5),
    "memo: BINGET never put": b"h\x07",
    "memo: LONG_BINGET 2**32 - 1": get(2**32 - 1),
    "nesting: 100k lists by MARK/LIST": MARK * 100_000 + LIST * 100_000,
    "nesting: 100k lists by APPEND": EMPTY_LIST * 100_000 + APPEND * 99_999,
    "nesting: 100k tuples": EMPTY_TUPLE + TUPLE1 * 100_000,
    "nesting: 100k dicts": (EMPTY_DICT + text("k")) * 100_000 + NONE + SETITEM * 100_000,
    "nesting: 100k MARKs left open": MARK * 100_000 + EMPTY_LIST,
    "nesting: 101 lists": EMPTY_LIST * 101 + APPEND * 100,
    "LONG4 claiming 2 GiB": b"\x8b" + struct.pack("<i", 2**31 - 1) + b"\x01" * 16,
    "LONG4 of 1 MiB": b"\x8b" + struct.pack("<i", 1 << 20) + b"\xff" * (1 << 20),
    "LONG4 negative length": b"\x8b" + struct.pack("<i", -5) + b"\x01" * 16,
    "BINUNICODE8 claiming 2**62 bytes": b"\x8d" + struct.pack("<Q", 2**62) + b"abc",
    "BINBYTES8 claiming 2**62 bytes": b"\x8e" + struct.pack("<Q", 2**62) + b"abc",
    "BINUNICODE claiming 4 GiB": b"X" + struct.pack("<I", 2**32 - 1) + b"abc",
}

#: The same as whole files: a memo index put far away, FRAME and BINPUT floods.
BOMB_FILES: dict[str, bytes] = {
    **{name: legacy_pickle(value=v, proto=PROTO4) for name, v in BOMBS.items()},
    "memo: LONG_BINPUT 2**32 - 1": legacy_pickle(value=text("x") + put(2**32 - 1)),
    "memo: 200k puts of one str": legacy_pickle(value=text("x") + put(0) * 200_000),
    "memo: 200k distinct indexes": legacy_pickle(
        value=text("x") + b"".join(put(i) for i in range(200_000))
    ),
    "FRAME claiming 2**62 bytes": PROTO4 + b"\x95" + struct.pack("<Q", 2**62) + NONE + STOP,
}


@pytest.mark.parametrize("name", sorted(BOMB_FILES))
def test_a_memo_sharing_nesting_or_length_bomb_never_escapes_as_another_exception(
    name: str, tmp_path: Path
) -> None:
    # In-process: refused by name, or loaded; never RecursionError, MemoryError, ValueError.
    assert outcome(write(tmp_path, BOMB_FILES[name])) in ("refused", "loaded")


def test_memo_sharing_nesting_and_length_bombs_are_refused_in_bounded_memory_and_time(
    tmp_path: Path,
) -> None:
    # One child process for all (capped address space); listed from least to most memory, as
    # the peak only grows. The honest-but-odd ones (a far memo index, many puts of one
    # object, a 1 MiB int) may load; none may take more than its file's worth of memory.
    names = {f"{i:02d}.pickle": name for i, name in enumerate(sorted(BOMB_FILES))}
    for file, name in names.items():
        write(tmp_path, BOMB_FILES[name], file)
    results = load_capped(tmp_path, sorted(names), "pickle")
    may_load = {
        "memo: LONG_BINPUT 2**32 - 1",
        "memo: 200k puts of one str",
        "memo: 200k distinct indexes",
        "nesting: 101 lists",  # refused for its depth (our domain nests 100 deep at most)
        "LONG4 of 1 MiB",
    }
    report = {}
    for file, name in names.items():
        r = results[file]
        allowed = {"CorruptFileError"} | ({None} if name in may_load else set())
        named = r["path"] is None or Path(r["path"]).name == file
        ok = r["error"] in allowed and named and r["seconds"] < 5
        if not ok:
            report[name] = r
    assert {} == report
    assert max(r["growth_kb"] for r in results.values()) < 400 * 1024


def test_a_pickle_nesting_101_deep_is_refused_naming_the_file(tmp_path: Path) -> None:
    refused(write(tmp_path, legacy_pickle(value=BOMBS["nesting: 101 lists"])))


def test_a_pickle_dict_whose_keys_collide_as_json_text_is_refused(tmp_path: Path) -> None:
    # {1: "a", "1": "b"}: converting the int key to its JSON text ("1") would silently drop
    # one of the two values.
    value = EMPTY_DICT + MARK + integer(1) + text("a") + text("1") + text("b") + SETITEMS
    refused(write(tmp_path, legacy_pickle(value=value)))


def test_a_pickle_set_of_unhashable_items_is_refused(tmp_path: Path) -> None:
    value = b"\x8f" + MARK + EMPTY_LIST + b"\x90"  # EMPTY_SET, ADDITEMS [[]]
    refused(write(tmp_path, legacy_pickle(value=value, proto=PROTO4)))


# -- damage at every byte -----------------------------------------------------------------------


def test_every_truncation_of_a_legacy_pickle_is_refused_naming_it(tmp_path: Path) -> None:
    data = GOLDEN_PICKLE.read_bytes()
    path = tmp_path / PICKLE_NAME
    outcomes = {}
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        outcomes[cut] = outcome(path)
    assert {"refused"} == set(outcomes.values()), {
        k: v for k, v in outcomes.items() if v != "refused"
    }


@pytest.mark.parametrize("mask", [0xFF, 0x01])
@pytest.mark.parametrize("which", ["pickle", "json"])
def test_a_legacy_snapshot_with_any_byte_flipped_is_refused_by_name_or_loads(
    which: str, mask: int, tmp_path: Path
) -> None:
    # No checksum: a flip that still parses loads (what it changed cannot be told).
    golden, name = (GOLDEN_PICKLE, PICKLE_NAME) if which == "pickle" else (GOLDEN_JSON, JSON_NAME)
    data = golden.read_bytes()
    path = tmp_path / name
    outcomes = {}
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] ^= mask
        path.write_bytes(damaged)
        outcomes[at] = outcome(path)
    assert set(outcomes.values()) <= {"refused", "loaded"}, {
        k: v for k, v in outcomes.items() if v not in ("refused", "loaded")
    }


def test_every_truncation_of_a_legacy_json_snapshot_is_refused_naming_it(tmp_path: Path) -> None:
    # Only the trailing newline may go: what is left is the whole document.
    data = GOLDEN_JSON.read_bytes()
    path = tmp_path / JSON_NAME
    outcomes = {}
    for cut in range(len(data.rstrip())):
        path.write_bytes(data[:cut])
        outcomes[cut] = outcome(path)
    assert {"refused"} == set(outcomes.values()), {
        k: v for k, v in outcomes.items() if v != "refused"
    }
    path.write_bytes(data.rstrip())
    assert "loaded" == outcome(path)


# -- damaged JSON ---------------------------------------------------------------------------------


def snapshot(records: Any, schema: Any = None, primary_key: Any = "id") -> str:
    """A legacy JSON snapshot of table ``t``."""
    table = {"primary_key": primary_key, "schema": schema, "records": records}
    return json.dumps({"tables": {"t": table}})


def deep(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


JSON_DAMAGE: dict[str, str | bytes] = {
    "not JSON": "tables: t",
    "binary junk": b"\x00\x01\x02\xff\xfe",
    "an empty file": "",
    "a JSON list": "[]",
    "tables not an object": '{"tables": []}',
    "tables a string": '{"tables": "t"}',
    "tables null": '{"tables": null}',
    "a table not an object": '{"tables": {"t": [1]}}',
    "a table without records": '{"tables": {"t": {"primary_key": "id", "schema": null}}}',
    "records not a list": snapshot({"1": {"id": 1}}),
    "records null": snapshot(None),
    "a record not an object": snapshot([[1, 2]]),
    "a record a string": snapshot(["id"]),
    "a record without its primary key": snapshot([{"name": "a"}]),
    "a null primary key": snapshot([{"id": None}]),
    "a float primary key": snapshot([{"id": 1.5}]),
    "a bool primary key": snapshot([{"id": True}]),
    "a list primary key": snapshot([{"id": [1]}]),
    "an object primary key": snapshot([{"id": {"a": 1}}]),
    "a primary key field not a str": snapshot([{"id": 1}], primary_key=1),
    "a primary key field null": snapshot([{"id": 1}], primary_key=None),
    "duplicate primary keys": snapshot([{"id": 1, "v": "a"}, {"id": 1, "v": "b"}]),
    "duplicate member names in a record": (
        '{"tables": {"t": {"primary_key": "id", "schema": null, '
        '"records": [{"id": 1, "v": "a", "v": "b"}]}}}'
    ),
    "duplicate member names in a record's key": (
        '{"tables": {"t": {"primary_key": "id", "schema": null, "records": [{"id": 1, "id": 2}]}}}'
    ),
    "duplicate table names": (
        '{"tables": {"t": {"primary_key": "id", "schema": null, "records": [{"id": 1}]}, '
        '"t": {"primary_key": "id", "schema": null, "records": []}}}'
    ),
    "an unknown schema type name": snapshot([{"id": 1}], schema={"id": "int", "v": "datetime"}),
    "a schema type name of ours, not the reference's": snapshot([], schema={"id": "Decimal"}),
    "a schema type named like a callable": snapshot([], schema={"id": "__import__"}),
    "a schema type not a str": snapshot([], schema={"id": 1}),
    "a schema not an object": snapshot([], schema=["id"]),
    "a row breaking its schema": snapshot([{"id": 1, "v": "x"}], schema={"id": "int", "v": "int"}),
    "a row lacking a schema field": snapshot([{"id": 1}], schema={"id": "int", "v": "int"}),
    "a row with a field outside its schema": snapshot([{"id": 1, "w": 2}], schema={"id": "int"}),
    "a number past float range (1e400)": snapshot([{"id": 1, "v": 1e400}]).replace(
        "Infinity", "1e400"
    ),
    "a negative number past float range": snapshot([{"id": 1, "v": -1e400}]).replace(
        "-Infinity", "-1e400"
    ),
    "a 100,000-digit int": snapshot([{"id": 1, "v": 0}]).replace('"v": 0', '"v": ' + "9" * 100_000),
    "a 100,000-digit key": snapshot([{"id": 0}]).replace('"id": 0', '"id": ' + "9" * 100_000),
    "100k nested lists, unclosed": '{"tables": ' + "[" * 100_000,
    "100k nested lists in a value": snapshot([{"id": 1, "v": 0}]).replace(
        '"v": 0', '"v": ' + deep(100_000)
    ),
    "100k nested objects in a value": snapshot([{"id": 1, "v": 0}]).replace(
        '"v": 0', '"v": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000
    ),
    "101 nested lists in a value": snapshot([{"id": 1, "v": 0}]).replace(
        '"v": 0', '"v": ' + deep(101)
    ),
    "invalid UTF-8 in a string": b'{"tables": {"t": {"primary_key": "id", "schema": null, '
    b'"records": [{"id": 1, "v": "\xff\xfe"}]}}}',
    "a UTF-16 file": snapshot([{"id": 1}]).encode("utf-16"),
    "trailing data": snapshot([{"id": 1}]) + "\n{}",
    "a second document": snapshot([{"id": 1}]) + snapshot([{"id": 2}]),
}


@pytest.mark.parametrize("name", sorted(JSON_DAMAGE))
def test_a_damaged_or_hostile_legacy_json_snapshot_is_refused_naming_it(
    name: str, tmp_path: Path
) -> None:
    content = JSON_DAMAGE[name]
    data = content.encode() if isinstance(content, str) else content
    refused(write(tmp_path, data, JSON_NAME))


def test_damaged_legacy_json_is_refused_in_bounded_memory_and_time(tmp_path: Path) -> None:
    # The big ones in a capped child (huge numbers, deep nesting), as snapshots and deltas.
    names = {
        "a 100,000-digit int": "digits",
        "a 100,000-digit key": "key",
        "100k nested lists, unclosed": "unclosed",
        "100k nested lists in a value": "lists",
        "100k nested objects in a value": "objects",
    }
    for name, file in names.items():
        write(tmp_path, str(JSON_DAMAGE[name]).encode(), f"{file}.json")
    results = load_capped(tmp_path, [f"{f}.json" for f in names.values()], "json")
    deltas = {
        "delta-digits.json": '{"type": "delta", "timestamp": 1, "tables": {"t": {"upserts": '
        '[{"id": 1, "v": ' + "9" * 100_000 + "}]}}}",
        "delta-lists.json": '{"type": "delta", "timestamp": 1, "tables": {"t": {"upserts": '
        '[{"id": 1, "v": ' + deep(100_000) + "}]}}}",
        "delta-unclosed.json": '{"type": "delta", "tables": ' + "{" * 100_000,
    }
    for file, content in deltas.items():
        write(tmp_path, content.encode(), file)
    results.update(load_capped(tmp_path, sorted(deltas), "delta"))
    report = {
        k: r
        for k, r in results.items()
        if r["error"] != "CorruptFileError" or Path(r["path"]).name != k or r["seconds"] > 5
    }
    assert {} == report
    assert max(r["growth_kb"] for r in results.values()) < 400 * 1024


def test_a_legacy_string_with_a_lone_surrogate_is_refused_or_loads_into_a_savable_database(
    tmp_path: Path,
) -> None:
    # Python's json reads "\ud800" as a lone surrogate; dictdb's own files must still hold it.
    path = write(tmp_path, snapshot([{"id": 1, "v": "\ud800"}]).encode(), JSON_NAME)
    result = outcome(path)
    assert result in ("refused", "loaded")
    if result == "loaded":
        db = load(path)
        saved = persist.save(db, tmp_path / "ours" / "snap.json")
        assert db.to_dict() == DictDB.load(saved).to_dict()


def test_a_legacy_json_with_nan_and_infinity_tokens_loads_them_as_none_and_infinities(
    tmp_path: Path,
) -> None:
    text_ = '{"tables": {"t": {"primary_key": "id", "schema": null, "records": '
    text_ += '[{"id": 1, "a": NaN, "b": Infinity, "c": -Infinity, "d": [NaN]}]}}}'
    db = load(write(tmp_path, text_.encode(), JSON_NAME))
    row = db.to_dict()["t"]["records"][1]
    assert {"id": 1, "a": None, "b": float("inf"), "c": float("-inf"), "d": [None]} == row


def test_a_legacy_json_naming_no_tables_loads_an_empty_database(tmp_path: Path) -> None:
    db = load(write(tmp_path, b'{"tables": {}}', JSON_NAME))
    assert [] == db.list_tables()


def test_a_legacy_json_with_a_row_of_tag_like_members_keeps_them_as_dicts(tmp_path: Path) -> None:
    # Legacy files have no tags: {"$bytes": ...} is a user's dict, not bytes.
    value = {"$bytes": "AAAA", "$date": "2024-01-01"}
    records = [{"id": 1, "a": {"$bytes": "AAAA"}, "b": {"$datetime": "x"}, "c": value}]
    db = load(write(tmp_path, snapshot(records).encode(), JSON_NAME))
    assert records[0] == db.to_dict()["t"]["records"][1]


def test_a_legacy_delta_reaching_a_hostile_pickle_name_is_read_as_json_only(
    tmp_path: Path,
) -> None:
    # A delta is always JSON (A7): pickle bytes under a delta name are refused, never run.
    path = write(
        tmp_path,
        PROTO2 + call(glob("os", "system"), text("true")) + STOP,
        "dictdb_delta_1700000001_000000.json",
    )
    assert "refused" == outcome(path, lambda p: persist.apply_delta(DictDB(), p))
