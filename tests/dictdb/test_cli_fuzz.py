"""The ``dictdb`` command under random arguments: hypothesis drives `dictdb.cli.main(argv)`
in-process (and a few cases as ``python -m dictdb`` subprocesses) for every command, with odd
paths (a file where a directory is expected, a FIFO, nonexistent, unreadable, undecodable
names, URLs), odd times (garbage, huge, negative, NaN/inf, ISO variants), odd LSNs and flags
in wrong combinations, against small real backup directories made once per module.

The property, whatever the arguments: the exit code is a documented one (0, 1, 2, 130); no
traceback is printed; every line on stderr starts with ``dictdb:``, and an error is one line.
The directories the commands read are never changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dictdb import BackupManager, DictDB, cli

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
LEGACY = ROOT / "tests" / "data" / "legacy" / "chain-json"

#: The exit codes `dictdb.cli` documents.
EXIT_CODES = (0, 1, 2, 130)

COMMANDS = ("ls", "verify", "inspect", "restore", "history", "diff", "log", "migrate", "export")


# -- the directories, made once -------------------------------------------------------------------


class World:
    """The module's directories: real backups, damaged ones, and hostile entries."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.durable = root / "durable"  # DictDB.open + BackupManager: log, full, deltas
        self.snap = root / "snap"  # in-memory DictDB + BackupManager: full, deltas, no log
        self.damaged = root / "damaged"  # a copy of durable with a byte flipped in a delta
        self.garbage = root / "garbage"  # files named like backups holding garbage
        self.legacy = root / "legacy"  # the reference DictDB's files
        self.empty = root / "empty"
        self.locked = root / "locked"  # mode 000 (still readable when the tests run as root)
        self.file = root / "a file"
        self.fifo = root / "fifo"
        self.times: list[float] = []  # times between the operations of `durable`
        self.last_lsn = 0

    def build(self) -> None:
        self.times.append(_now())
        db = DictDB.open(self.durable, fsync="off")
        manager = BackupManager(db, self.durable, incremental=True)
        try:
            with db.audit(actor="alice", reason="setup"):
                users = db.create_table("users")
                users.insert([{"name": "ann", "v": 0}, {"name": "bob", "v": 0}])
            manager.backup_full()
            for i in range(1, 4):
                self.times.append(_now())
                with db.audit(actor="bob", reason=f"step {i}"):
                    users.update({"v": i}, where=users.id == 1)
                    if i == 2:
                        db.create_table("orders", primary_key="ref").insert({"ref": "o1"})
                        users.delete(where=users.id == 2)
                manager.backup_delta()
            users.insert({"name": "carl"})  # in the log only
            self.last_lsn = db.lsn
        finally:
            manager.stop(final_backup=False)
            db.close()
        self.times.append(_now())
        memory = DictDB()
        manager = BackupManager(memory, self.snap, incremental=True)
        t = memory.create_table("t")
        t.insert({"a": 1})
        manager.backup_full()
        t.update({"a": 2})
        manager.backup_delta()
        shutil.copytree(self.durable, self.damaged)
        delta = sorted(self.damaged.glob("dictdb_delta_*"))[0]
        data = bytearray(delta.read_bytes())
        data[len(data) // 2] ^= 0x20
        delta.write_bytes(bytes(data))
        self.garbage.mkdir()
        (self.garbage / "dictdb_backup_1700000000_000000.json").write_text("{not json")
        (self.garbage / "dictdb_delta_1700000001_000000.json").write_bytes(b"\x00" * 64)
        (self.garbage / "dictdb_backup_1700000002_000000.pickle").write_bytes(b"\x80\x05garbage")
        (self.garbage / "dictdb_timeline_2.json").write_text("[]")
        shutil.copytree(LEGACY, self.legacy)
        self.empty.mkdir()
        self.locked.mkdir()
        self.locked.chmod(0)
        self.file.write_text("not a directory\n")
        os.mkfifo(self.fifo)

    def fingerprint(self) -> list[tuple[str, int, int]]:
        """Name, size and mtime of everything the commands only read."""
        out = []
        for place in (self.durable, self.snap, self.damaged, self.garbage, self.legacy):
            for p in sorted(place.rglob("*")):
                st_ = p.stat()
                out.append((str(p), st_.st_size, st_.st_mtime_ns))
        return out


def _now() -> float:
    import time

    time.sleep(0.002)
    return time.time()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = World(tmp_path_factory.mktemp("cli-fuzz"))
    built.build()
    yield built
    built.locked.chmod(0o700)


# -- strategies ------------------------------------------------------------------------------------

#: Paths given relative to the per-example scratch directory (the current directory).
SCRATCH_PATHS = (
    "nonexistent",
    "missing/parent/out.json",
    "scratch file/child",  # under a regular file: ENOTDIR
    "x" * 300,  # ENAMETOOLONG
    "",
    ".",
    "-",
    "with space",
    "new\nline",
    "tab\there",
    "\udcff\udcfe",  # an undecodable name, as Python decodes it from argv
    "émoji-🙂",
    "scratch fifo",
    "scratch file",
    "out.json",
    "out.pickle",
    "memory://fuzz",
    "bogus://x",
    "file:///nonexistent/dir",
)


def read_paths(world: World) -> st.SearchStrategy[str]:
    """Directories and files a reading command may be pointed at."""
    fixed = [
        world.durable,
        world.snap,
        world.damaged,
        world.garbage,
        world.legacy,
        world.empty,
        world.locked,
        world.file,
        world.fifo,
        world.durable / "wal",
        world.durable / "wal" / "LINEAGE",
        sorted(world.durable.glob("dictdb_backup_*"))[0],
        sorted(world.durable.glob("dictdb_delta_*"))[0],
        sorted(world.damaged.glob("dictdb_delta_*"))[0],
        sorted(world.legacy.glob("dictdb_backup_*"))[0],
        sorted(world.garbage.glob("dictdb_*"))[0],
        world.durable / "nonexistent",
    ]
    return st.one_of(
        st.sampled_from([str(p) for p in fixed]),
        st.sampled_from([str(world.durable)]),  # weight on the directory that works
        st.just(f"file://{world.durable}"),
        st.sampled_from(SCRATCH_PATHS),
        st.just(".."),
        relative_text(),
    )


def relative_text() -> st.SearchStrategy[str]:
    """Random text that stays inside the current directory as a path."""
    return st.text(max_size=12).filter(lambda s: not s.startswith("/") and ".." not in s)


def write_paths() -> st.SearchStrategy[str]:
    """Where a writing command may be told to write: always inside the scratch directory."""
    return st.one_of(st.sampled_from(SCRATCH_PATHS), relative_text())


TIME_WORDS = (
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "1e308",
    "-1e308",
    "1e400",
    "1e-400",
    "0",
    "-0",
    "-1",
    "1_000",
    "0x10",
    "\u0663\u0662",  # Arabic-Indic digits: float() takes them
    " 5 ",
    "",
    " ",
    "now",
    "yesterday",
    "lsn:3",
    "2026-11-27",
    "2026-11-27T10:00:00",
    "2026-11-27T10:00:00Z",
    "2026-11-27 10:00:00+00:00",
    "2026-11-27T10:00:00.123456789+00:00",
    "2026-11-27T10:00:00+14:00",
    "2026-11-27T10:00:00-23:59",
    "2026-11-27T10:00:00+24:00",
    "2026-13-01T00:00:00",
    "2026-02-30",
    "0001-01-01",
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59",
    "9999-12-31T23:59:59-14:00",
    "20261127T100000",
    "2026-W48-5",
    "T10:00",
    "10:00",
    "\x00",
)


def times(world: World) -> st.SearchStrategy[str]:
    """Texts given where a time is expected."""
    iso = st.builds(
        lambda d, tz, spec, sep: d.replace(tzinfo=tz).isoformat(sep=sep, timespec=spec),
        st.datetimes(),
        st.one_of(
            st.none(),
            st.just(dt.UTC),
            st.timedeltas(
                min_value=dt.timedelta(hours=-23, minutes=-59),
                max_value=dt.timedelta(hours=23, minutes=59),
            ).map(dt.timezone),
        ),
        st.sampled_from(["auto", "seconds", "milliseconds", "microseconds", "hours"]),
        st.sampled_from(["T", " "]),
    )
    return st.one_of(
        st.sampled_from(TIME_WORDS),
        st.sampled_from(world.times).map(repr),
        st.sampled_from(world.times).map(
            lambda t: dt.datetime.fromtimestamp(t, dt.UTC).isoformat()
        ),
        st.floats().map(repr),
        st.integers().map(str),
        iso,
        st.text(max_size=20),
    )


def lsn_texts() -> st.SearchStrategy[str]:
    """Texts given where an LSN (or a timeline number) is expected."""
    return st.one_of(
        st.integers(min_value=0, max_value=12).map(str),
        st.integers().map(str),
        st.integers(min_value=10**18, max_value=10**40).map(str),
        st.sampled_from(["abc", "1.5", "0x10", "", "-0", "+3", " 7", "\u0663", "1_0", "1e3"]),
    )


def points(world: World) -> st.SearchStrategy[str]:
    """A diff/log point: a time, or ``lsn:N`` with any N."""
    return st.one_of(times(world), lsn_texts().map(lambda n: f"lsn:{n}"))


def flag(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """``--name VALUE``, ``--name=VALUE``, or the flag with its value missing."""
    return st.one_of(
        values.map(lambda v: [name, v]),
        values.map(lambda v: [f"{name}={v}"]),
        st.just([name]),
    )


def optional(*parts: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[list[str]]]:
    """Each part or not, in any order."""
    chosen = st.tuples(*(st.one_of(st.just([]), p) for p in parts))
    return chosen.map(lambda t: [x for x in t if x]).flatmap(st.permutations)


def switch(name: str) -> st.SearchStrategy[list[str]]:
    return st.just([name])


def _flatten(head: list[str], rest: list[list[str]]) -> list[str]:
    return head + [arg for part in rest for arg in part]


def command_argv(world: World, command: str) -> st.SearchStrategy[list[str]]:
    """Plausible argv for *command* with random values, options in any order."""
    src = read_paths(world)
    key_type = flag("--key-type", st.sampled_from(["auto", "int", "str", "uuid", "float", ""]))
    fmt = flag("--format", st.sampled_from(["json", "pickle", "csv", ""]))
    keys = st.one_of(
        st.sampled_from(["1", "2", "3", "-1", "o1", "0", "99999999999999999999999"]),
        st.uuids().map(str),
        st.text(max_size=8),
    )
    tables = st.one_of(st.sampled_from(["users", "orders", "t", "nope", ""]), st.text(max_size=8))
    if command in ("ls", "verify", "inspect"):
        heads = src.map(lambda p: [command, p])
        rest = optional(switch("--json"))
    elif command == "restore":
        heads = src.map(lambda p: [command, p])
        rest = optional(
            flag("--at", times(world)),
            flag("--lsn", lsn_texts()),
            flag("--timeline", lsn_texts()),
            flag("--out", write_paths()),
            fmt,
            switch("--dry-run"),
            switch("--json"),
        )
    elif command == "history":
        heads = st.tuples(src, tables, keys).map(lambda t: [command, *t])
        rest = optional(key_type, switch("--json"))
    elif command == "diff":
        heads = src.map(lambda p: [command, p])
        rest = optional(
            flag("--from", points(world)), flag("--to", points(world)), switch("--json")
        )
    elif command == "log":
        heads = src.map(lambda p: [command, p])
        rest = optional(
            flag("--from", points(world)),
            flag("--to", points(world)),
            flag("--table", tables),
            flag("--key", keys),
            key_type,
            switch("--json"),
        )
    elif command == "migrate":
        heads = st.tuples(src, write_paths()).map(lambda t: [command, *t])
        rest = optional(
            fmt,
            flag("--compression", st.sampled_from(["zstd", "gzip", ""])),
            switch("--force"),
            switch("--json"),
        )
    elif command == "export":
        heads = src.map(lambda p: [command, p])
        rest = optional(
            switch("--legacy"),
            flag("--out", write_paths()),
            flag("--at", times(world)),
            flag("--lsn", lsn_texts()),
            fmt,
            switch("--force"),
            switch("--json"),
        )
    else:  # pragma: no cover - every command is listed
        raise AssertionError(command)
    return st.builds(_flatten, heads, rest)


#: Tokens thrown in anywhere: every flag of every command, help, unknown flags, separators.
NOISE = (
    "--json",
    "--at",
    "--lsn",
    "--out",
    "--from",
    "--to",
    "--dry-run",
    "--force",
    "--legacy",
    "--timeline",
    "--table",
    "--key",
    "--key-type",
    "--format",
    "--compression",
    "--dir",
    "--help",
    "-h",
    "--bogus",
    "-x",
    "--",
    "-",
    "--json=1",
    "--dry-run=yes",
)


def mangled(argv: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    """*argv*, sometimes with an element dropped, a noise token inserted, or cut short."""

    @st.composite
    def build(draw: st.DrawFn) -> list[str]:
        args = list(draw(argv))
        how = draw(st.sampled_from(["as is", "as is", "drop", "insert", "cut"]))
        if how == "drop" and len(args) > 1:
            del args[draw(st.integers(1, len(args) - 1))]
        elif how == "insert":
            token = draw(st.one_of(st.sampled_from(NOISE), st.text(max_size=6)))
            args.insert(draw(st.integers(0, len(args))), token)
        elif how == "cut":
            args = args[: draw(st.integers(0, len(args)))]
        return args

    return build()


# -- running the command ---------------------------------------------------------------------------


class Outcome:
    """What one run of the command did."""

    def __init__(self, argv: list[str], code: Any, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.code = code
        self.stdout = stdout
        self.stderr = stderr


@contextlib.contextmanager
def scratch(world: World) -> Iterator[Path]:
    """A fresh current directory holding a FIFO and a file, removed afterwards."""
    place = Path(tempfile.mkdtemp(dir=world.root, prefix="scratch-"))
    (place / "scratch file").write_text("a file\n")
    (place / "scratch\nfile").write_text("a file named with a newline\n")
    os.mkfifo(place / "scratch fifo")
    try:
        with contextlib.chdir(place), mock.patch.object(tempfile, "tempdir", str(place)):
            yield place
    finally:
        shutil.rmtree(place, ignore_errors=True)


def run_in_process(world: World, argv: list[str]) -> Outcome:
    """`dictdb.cli.main(argv)` in a scratch directory, stdout and stderr captured; an
    exception escaping `main` is what a user would see as a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with scratch(world), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: Any = cli.main(argv)
        except BaseException as exc:  # any escape is the finding
            code = f"raised {type(exc).__name__}: {exc}"
            err.write(f"Traceback (escaped main): {exc!r}\n")
    return Outcome(argv, code, out.getvalue(), err.getvalue())


def check(outcome: Outcome) -> None:
    """The property: a documented exit code, no traceback, errors one ``dictdb:`` line."""
    # Lines as a terminal shows them: "\n" ends one (str.splitlines would also split on
    # \x1c-\x1e, \x85, \u2028..., which a terminal prints in the line).
    lines = outcome.stderr.split("\n")
    if lines[-1] == "":
        lines.pop()
    errors = [line for line in lines if not line.startswith("dictdb: warning:")]
    facts = {
        "exit code documented": outcome.code in EXIT_CODES,
        "no traceback": "Traceback" not in outcome.stderr,
        "every stderr line starts with dictdb:": all(line.startswith("dictdb:") for line in lines),
        "at most one error line": len(errors) <= 1,
        "a usage error says so in one line": outcome.code != 2 or len(errors) == 1,
    }
    failed = [name for name, ok in facts.items() if not ok]
    assert not failed, (failed, outcome.argv, outcome.code, outcome.stderr[-2000:])


def check_random(outcome: Outcome) -> None:
    """`check`, for the random runs."""
    check(outcome)


# -- the properties --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_any_arguments_give_a_documented_exit_and_a_one_line_error(
    world: World, command: str
) -> None:
    """For each command, random arguments built around its own options."""
    before = world.fingerprint()

    @given(argv=mangled(command_argv(world, command)))
    def prop(argv: list[str]) -> None:
        check_random(run_in_process(world, argv))

    prop()
    assert before == world.fingerprint()


@given(data=st.data())
def test_random_tokens_in_any_order_never_escape(world: World, data: st.DataObject) -> None:
    """argv of random tokens: commands, flags of any command, paths, times, LSNs, text."""
    token = st.one_of(
        st.sampled_from((*COMMANDS, "demo", "help", "")),
        st.sampled_from(NOISE),
        read_paths(world),
        times(world),
        lsn_texts(),
        st.text(max_size=10),
    )
    argv = data.draw(st.lists(token, max_size=7))
    check_random(run_in_process(world, argv))


@settings(max_examples=8)
@given(directory=st.one_of(write_paths(), st.sampled_from(["scratch fifo", "scratch file"])))
def test_demo_with_any_dir_never_escapes(world: World, directory: str) -> None:
    """``demo --dir`` with odd places: built, or refused with one line."""
    check_random(run_in_process(world, ["demo", "--dir", directory]))


# -- odd cases, named: in-process and as real processes (what a shell passes, bytes and all) ------

#: argv templates: ``{durable}``, ``{legacy}``, ``{fifo}``, ``{file}`` name the module's
#: places; bytes are passed as they are (a name that is not UTF-8 decodes to surrogates).
ODD_CASES: dict[str, list[str | bytes]] = {
    "ls an undecodable name": ["ls", b"\xff\xfe-undecodable"],
    "ls --json an undecodable name": ["ls", b"\xff-undecodable", "--json"],
    "verify a FIFO": ["verify", "{fifo}"],
    "inspect a FIFO": ["inspect", "{fifo}"],
    "inspect a file of no format": ["inspect", "{file}"],
    "restore --at nan": ["restore", "{durable}", "--at", "nan", "--dry-run"],
    "restore --at=-1e308": ["restore", "{durable}", "--at=-1e308", "--dry-run"],
    "restore --at year 1": ["restore", "{durable}", "--at", "0001-01-01", "--dry-run"],
    "restore --lsn huge": ["restore", "{durable}", "--lsn", "99999999999999999999999", "--dry-run"],
    "restore --out an undecodable name --json": [
        "restore",
        "{durable}",
        "--lsn",
        "2",
        "--out",
        b"\xff.json",
        "--json",
    ],
    "history a non-UUID key as uuid": ["history", "{durable}", "users", "1", "--key-type", "uuid"],
    "diff negative and non-numeric LSNs": [
        "diff",
        "{durable}",
        "--from",
        "lsn:-1",
        "--to",
        "lsn:x",
    ],
    "log from 1e400": ["log", "{durable}", "--from", "1e400", "--table", "users"],
    "export over a FIFO": ["export", "{durable}", "--legacy", "--out", "scratch fifo"],
    "export --out an undecodable name --json": [
        "export",
        "{durable}",
        "--legacy",
        "--out",
        b"\xff.json",
        "--json",
    ],
    "migrate into an undecodable name --json": ["migrate", "{legacy}", b"dest-\xff", "--json"],
    "a newline in an unknown flag": ["ls", "{durable}", "--a\nb"],
    "demo --dir a file named with a newline": ["demo", "--dir", "scratch\nfile"],
    "demo --dir under a file, with a newline": ["demo", "--dir", "scratch file/x\ny"],
    "no command": [],
}

#: Cases that fail the property today, each with what happens (reported to the owner).


def odd_argv(world: World, name: str) -> list[str | bytes]:
    places = {
        "{durable}": str(world.durable),
        "{legacy}": str(world.legacy),
        "{fifo}": str(world.fifo),
        "{file}": str(world.file),
    }
    out: list[str | bytes] = []
    for arg in ODD_CASES[name]:
        if isinstance(arg, str):
            for mark, place in places.items():
                arg = arg.replace(mark, place)
        out.append(arg)
    return out


def odd_case(name: str) -> Any:
    return pytest.param(name, id=name)


def run_process(world: World, argv: list[str | bytes]) -> Outcome:
    with scratch(world) as place:
        result = subprocess.run(
            [sys.executable.encode(), b"-m", b"dictdb", *map(os.fsencode, argv)],
            capture_output=True,
            env=ENV,
            cwd=place,
            timeout=60,
            check=False,
        )
    stderr = result.stderr.decode("utf-8", "backslashreplace")
    stdout = result.stdout.decode("utf-8", "backslashreplace")
    return Outcome([os.fsdecode(a) for a in argv], result.returncode, stdout, stderr)


@pytest.mark.parametrize("name", [odd_case(n) for n in ODD_CASES])
def test_odd_case_in_process(world: World, name: str) -> None:
    check(run_in_process(world, [os.fsdecode(a) for a in odd_argv(world, name)]))


@pytest.mark.parametrize("name", [odd_case(n) for n in ODD_CASES])
def test_odd_case_as_a_process(world: World, name: str) -> None:
    """The same property as a process sees it: bytes argv, a real stdout encoding."""
    check(run_process(world, odd_argv(world, name)))
