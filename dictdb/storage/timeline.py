"""Timelines: which history of a backup target is which, decided by history, never by a clock.

Every history that writes backups into a target is a *timeline*, numbered from 1 up. A
database restored to a point its history went past, that then backs up into the same target,
forks: its timeline takes one more than the highest the target holds, and records its parent
timeline and the fork LSN (the last operation the two share). "Newest" means the highest
timeline, then the highest LSN on it: wall-clock times are only shown, never compared.

A timeline is a small sealed object beside the backups, ``dictdb_timeline_<8 digits>.json``
(the checksum trailer of `dictdb.storage._files`)::

    {"format": "dictdb", "version": 2, "type": "timeline", "timeline": 2,
     "lineage": "<32 hex>", "parent": {"timeline": 1, "lineage": "<32 hex>", "lsn": 50},
     "timestamp": <epoch>, "checksum": "sha256:<64 hex>"}

``parent`` is null for a root. Snapshots and deltas carry their history's ``lineage`` (and
``timeline``, its number in the target they were written to); a file belongs to the timeline
whose lineage it carries. A target's objects are created with ``overwrite=False``: two
writers that fork at once take two numbers, never one.

Targets written before timelines hold no timeline objects: their histories are numbered from
the files (a lineage's files by their latest write time, the parent links from the headers),
which is what restore did before; the first writer that registers a timeline there records
those numbers as objects first, so they never change again.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import orjson

from dictdb._atomic import write_atomic
from dictdb.errors import CorruptFileError
from dictdb.storage._files import seal, unseal
from dictdb.storage.target import Entry, Target
from wal import MAX_TS, NotRegularFileError, brief, read_regular

#: Names of timeline objects.
TIMELINE_PATTERN: Final = re.compile(r"^dictdb_timeline_(?P<number>\d{8})\.json$")
#: The largest timeline number (the name has eight digits).
MAX_TIMELINE: Final = 99_999_999
_LINEAGE: Final = re.compile("[0-9a-f]{32}")
_FIELDS: Final = frozenset(
    {"format", "version", "type", "timeline", "lineage", "parent", "timestamp", "checksum"}
)
#: How many numbers a writer tries past a taken one before giving up (a racing writer).
_CLAIM_TRIES: Final = 64


@attrs.frozen
class Timeline:
    """One history of a target.

    Attributes:
        number: its number in the target (1 for the first).
        lineage: the history's identity (files carry it); None for files that predate it.
        parent: the timeline it forked from, None for a root.
        fork_lsn: the last LSN it shares with its parent (None for a root).
        created_ts: when it was registered (shown only).
        recorded: whether a timeline object records it (False: numbered from the files of
            a target written before timelines).
    """

    number: int
    lineage: str | None
    parent: int | None = None
    fork_lsn: int | None = None
    created_ts: float = 0.0
    recorded: bool = True


def timeline_name(number: int) -> str:
    """The object name of timeline *number*."""
    return f"dictdb_timeline_{number:08d}.json"


def encode(tl: Timeline, parent_lineage: str | None) -> bytes:
    """The sealed bytes of a timeline object."""
    parent = (
        None
        if tl.parent is None
        else {"timeline": tl.parent, "lineage": parent_lineage, "lsn": tl.fork_lsn}
    )
    body = orjson.dumps(
        {
            "format": "dictdb",
            "version": 2,
            "type": "timeline",
            "timeline": tl.number,
            "lineage": tl.lineage,
            "parent": parent,
            "timestamp": tl.created_ts,
        }
    )
    return seal(body[:-1], "json", None)


def read_timeline(target: Target, name: str) -> tuple[Timeline, str | None]:
    """Read and verify timeline object *name*; returns it and its parent's lineage.

    Raises:
        CorruptFileError: damaged, or not a timeline of the number its name says.
        OSError: it cannot be read (FileNotFoundError: it is gone).
    """
    path = target.describe(name)
    match = TIMELINE_PATTERN.match(name)
    if match is None:
        raise CorruptFileError(path, "not a timeline name")
    with target.open(name) as handle:
        data = handle.read(1 << 16)
    payload = unseal(path, data, "json", False)
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CorruptFileError(path, f"not a valid json document: {exc}") from None
    return _from_document(path, doc, int(match["number"]))


def _from_document(path: Path, doc: Any, number: int) -> tuple[Timeline, str | None]:
    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(path, f"malformed timeline: {what}")

    if type(doc) is not dict or doc.get("format") != "dictdb" or doc.get("type") != "timeline":
        raise bad("not a dictdb timeline object")
    if doc.keys() - _FIELDS:
        raise bad(f"unexpected member {brief(min(doc.keys() - _FIELDS))}")
    if doc.get("version") != 2:
        raise bad(f"version {brief(doc.get('version'))}")
    if doc.get("timeline") != number or type(doc.get("timeline")) is not int:
        raise bad(f"number {brief(doc.get('timeline'))} in an object named for {number}")
    lineage = doc.get("lineage")
    if lineage is not None and (type(lineage) is not str or not _LINEAGE.fullmatch(lineage)):
        raise bad(f"lineage {brief(lineage)}")
    ts: Any = doc.get("timestamp")
    if type(ts) not in (int, float) or not 0 <= ts < MAX_TS:
        raise bad(f"timestamp {brief(ts)}")
    parent = doc.get("parent")
    if parent is None:
        return Timeline(number, lineage, None, None, float(ts)), None
    if type(parent) is not dict or parent.keys() != {"timeline", "lineage", "lsn"}:
        raise bad(f"parent {brief(parent)}")
    p_number, p_lineage, lsn = parent["timeline"], parent["lineage"], parent["lsn"]
    if type(p_number) is not int or not 1 <= p_number < number:
        raise bad(f"parent timeline {brief(p_number)} (a parent is older than its child)")
    if p_lineage is not None and (type(p_lineage) is not str or not _LINEAGE.fullmatch(p_lineage)):
        raise bad(f"parent lineage {brief(p_lineage)}")
    if type(lsn) is not int or not 0 <= lsn < 1 << 63:
        raise bad(f"fork lsn {brief(lsn)}")
    return Timeline(number, lineage, p_number, lsn, float(ts)), p_lineage


@attrs.frozen
class History:
    """The timelines of a target, and what each may take from its ancestors.

    Attributes:
        timelines: by number.
        unreadable: timeline objects that could not be read, with the reason.
    """

    timelines: Mapping[int, Timeline]
    unreadable: tuple[tuple[Path, str], ...] = ()

    @property
    def recorded(self) -> bool:
        """Whether timeline objects number the target (else it predates timelines)."""
        return any(t.recorded for t in self.timelines.values())

    def newest(self) -> Timeline | None:
        """The highest timeline."""
        return self.timelines[max(self.timelines)] if self.timelines else None

    def of_lineage(self, lineage: str | None) -> Timeline | None:
        """The timeline a file of *lineage* belongs to, if any."""
        found = [t for t in self.timelines.values() if t.lineage == lineage]
        return max(found, key=lambda t: t.number) if found else None

    def caps(self, number: int) -> dict[str | None, float]:
        """Lineage → the last LSN timeline *number* may take from it: its own files without
        limit, each ancestor's up to the fork point below it."""
        caps: dict[str | None, float] = {}
        cap = float("inf")
        tl: Timeline | None = self.timelines.get(number)
        seen: set[int] = set()
        while tl is not None and tl.number not in seen:
            seen.add(tl.number)
            caps.setdefault(tl.lineage, cap)
            if tl.parent is None or tl.fork_lsn is None:
                break
            cap = min(cap, tl.fork_lsn)
            tl = self.timelines.get(tl.parent)
        return caps

    def children(self, number: int) -> list[Timeline]:
        """The timelines that forked from *number*, in number order."""
        return sorted(
            (t for t in self.timelines.values() if t.parent == number), key=lambda t: t.number
        )


def read_history(target: Target, entries: Iterable[Entry], files: Iterable[Any] = ()) -> History:
    """The timelines of *target*: its timeline objects, or (none there) the histories its
    *files* (`BackupFile`s) show, numbered as restore did before timelines."""
    timelines: dict[int, Timeline] = {}
    unreadable: list[tuple[Path, str]] = []
    for entry in entries:
        if not entry.regular or not TIMELINE_PATTERN.match(entry.name):
            continue
        try:
            tl, _ = read_timeline(target, entry.name)
        except CorruptFileError as exc:
            unreadable.append((target.describe(entry.name), exc.reason))
            continue
        except OSError as exc:
            unreadable.append((target.describe(entry.name), f"cannot read: {exc}"))
            continue
        timelines[tl.number] = tl
    if timelines or unreadable:
        if unreadable:
            _recover_from_headers(timelines, files)
        return History(timelines, tuple(unreadable))
    return History(_numbered_from_files(files))


def _recover_from_headers(timelines: dict[int, Timeline], files: Iterable[Any]) -> None:
    # A damaged timeline object: its timeline is rebuilt from what its files' headers say
    # (each carries its timeline number, lineage and parent link, sealed by the header CRC).
    known = {t.lineage for t in timelines.values()}
    found: dict[int, Any] = {}
    for f in files:
        number = getattr(f, "timeline", None)
        if number is None or f.lineage in known or number in timelines:
            continue
        found.setdefault(number, f)
    by_lineage = {t.lineage: t.number for t in timelines.values()}
    by_lineage.update({f.lineage: n for n, f in found.items()})
    for number, f in found.items():
        parent = f.parent
        p_number = None if parent is None else by_lineage.get(parent[0])
        if p_number is not None and p_number >= number:
            p_number = None
        timelines[number] = Timeline(
            number,
            f.lineage,
            p_number,
            None if p_number is None or parent is None else parent[1],
            f.written_ts,
        )


def _numbered_from_files(files: Iterable[Any]) -> dict[int, Timeline]:
    # Before timelines, the history of the most recently written file was restored: number
    # lineages by their latest write, so that the highest is that one, and link parents.
    latest: dict[str | None, float] = {}
    parents: dict[str | None, tuple[str, int]] = {}
    for f in files:
        latest[f.lineage] = max(latest.get(f.lineage, 0.0), f.written_ts)
        if f.parent is not None:
            parents[f.lineage] = f.parent
    order = sorted(latest, key=lambda lineage: (latest[lineage], str(lineage)))
    number_of = {lineage: i for i, lineage in enumerate(order, 1)}
    timelines: dict[int, Timeline] = {}
    for lineage, number in number_of.items():
        parent = parents.get(lineage)
        p_number = None if parent is None else number_of.get(parent[0])
        if p_number is not None and p_number >= number:
            p_number = None  # a parent written after its child: a root, as before
        timelines[number] = Timeline(
            number,
            lineage,
            p_number,
            None if p_number is None or parent is None else parent[1],
            latest[lineage],
            recorded=False,
        )
    return timelines


def register(
    target: Target,
    history: History,
    lineage: str,
    parent: tuple[str, int] | None,
    *,
    clock: Any = time.time,
) -> int:
    """The number of *lineage*'s timeline in *target*, registering it (and, in a target
    written before timelines, the histories its files show) when it has none.

    A new timeline takes one more than the highest the target holds; its parent is the
    timeline of *parent*'s lineage when the target holds it (else it is a root here).

    Raises:
        OSError: a timeline object cannot be written.
        CorruptFileError: the target holds no free timeline number.
    """
    known = history.of_lineage(lineage)
    if known is not None and known.recorded:
        return known.number
    timelines = dict(history.timelines)
    if not history.recorded:
        # Record the numbers restore used so far before adding one: they never change again.
        for tl in sorted(timelines.values(), key=lambda t: t.number):
            parent_lineage = None if tl.parent is None else timelines[tl.parent].lineage
            with contextlib.suppress(FileExistsError):  # another writer recorded it first
                _claim(target, attrs.evolve(tl, recorded=True), parent_lineage)
        if known is not None:
            return known.number
    p_tl = None if parent is None else history.of_lineage(parent[0])
    number = max(timelines, default=0) + 1
    for _ in range(_CLAIM_TRIES):
        if number > MAX_TIMELINE:
            break
        tl = Timeline(
            number,
            lineage,
            None if p_tl is None else p_tl.number,
            None if p_tl is None or parent is None else parent[1],
            float(clock()),
        )
        try:
            _claim(target, tl, None if p_tl is None else p_tl.lineage)
        except FileExistsError:
            # Another writer took the number: ours unless that writer is this history too.
            try:
                other, _ = read_timeline(target, timeline_name(number))
            except (CorruptFileError, OSError):
                other = None
            if other is not None and other.lineage == lineage:
                return number
            number += 1
            continue
        return number
    raise CorruptFileError(target.describe(), "no free timeline number")


def _claim(target: Target, tl: Timeline, parent_lineage: str | None) -> None:
    writer = target.create(timeline_name(tl.number), overwrite=False)
    try:
        writer.write(encode(tl, parent_lineage))
    except BaseException:
        writer.discard()
        raise
    writer.publish()


#: Beside a durable database's log segments: the history the log belongs to.
LOG_LINEAGE: Final = "LINEAGE"


def log_lineage_bytes(lineage: str, parent: tuple[str, int] | None) -> bytes:
    """The sealed record of which history a log belongs to (`LOG_LINEAGE`)."""
    body = orjson.dumps({"lineage": lineage, "parent": None if parent is None else list(parent)})
    return seal(body[:-1], "json", None)


def write_log_lineage(wal_dir: Path, lineage: str, parent: tuple[str, int] | None) -> None:
    """Record, atomically, which history the log in *wal_dir* belongs to (a durable database
    keeps its lineage across reopens, and restore uses the log only on that history)."""
    write_atomic(wal_dir / LOG_LINEAGE, log_lineage_bytes(lineage, parent))


def read_log_lineage(wal_dir: Path) -> tuple[str, tuple[str, int] | None] | None:
    """The history the log in *wal_dir* belongs to, or None for a log that predates the
    record (it then belongs to whatever history is restored, as before).

    Raises:
        CorruptFileError: the record is damaged.
    """
    path = wal_dir / LOG_LINEAGE
    try:
        data = read_regular(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except NotRegularFileError:
        raise CorruptFileError(path, "not a regular file") from None
    return parse_log_lineage(path, data)


def parse_log_lineage(path: Path, data: bytes) -> tuple[str, tuple[str, int] | None]:
    """Verify and decode a `LOG_LINEAGE` record read from *path*.

    Raises:
        CorruptFileError: damaged.
    """
    try:
        doc = orjson.loads(unseal(path, data, "json", False))
    except orjson.JSONDecodeError as exc:
        raise CorruptFileError(path, f"not a valid json document: {exc}") from None
    if type(doc) is not dict:
        raise CorruptFileError(path, "not a lineage record")
    lineage, parent = read_lineage(path, doc)
    if lineage is None:
        raise CorruptFileError(path, "malformed lineage None")
    return lineage, parent


def read_lineage(path: Path, doc: Mapping[str, Any]) -> tuple[str | None, tuple[str, int] | None]:
    """The ``lineage`` (32 hex digits, or None in files that predate it) and ``parent``
    (``[lineage, LSN]`` or None) members of a header or record, checked.

    Raises:
        CorruptFileError: either is malformed.
    """
    lineage = doc.get("lineage")
    parent = doc.get("parent")
    if lineage is not None and (type(lineage) is not str or not _LINEAGE.fullmatch(lineage)):
        raise CorruptFileError(path, f"malformed lineage {brief(lineage)}")
    if parent is None:
        return lineage, None
    if (
        type(parent) is not list
        or len(parent) != 2
        or type(parent[0]) is not str
        or not _LINEAGE.fullmatch(parent[0])
        or type(parent[1]) is not int
        or not 0 <= parent[1] < 1 << 63
    ):
        raise CorruptFileError(path, f"malformed parent {brief(parent)}")
    return lineage, (parent[0], parent[1])
