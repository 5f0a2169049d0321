"""What a backup directory holds: files by name pattern, their headers, chains by LSN.

A *chain* is a full snapshot and the deltas that follow it without a gap
(``delta.from_lsn == previous end + 1``), up to the next full snapshot of the same history.
Chains are found by LSN, never by the wall-clock stamps in file names
(`dictdb.storage.names`). Files of the reference DictDB 1.x, named alike, are listed apart
(`Catalog.legacy`). Anything else in the directory (``.tmp`` leftovers of interrupted writes
included) is ignored.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import attrs

from dictdb.errors import CorruptFileError, LegacyFileError
from dictdb.storage.names import NAME_PATTERN, backup_name, name_kind, name_stamp
from dictdb.storage.persist import read_header
from dictdb.storage.target import Entry, LocalDirectory, Located, Place, Target, as_target
from dictdb.storage.timeline import TIMELINE_PATTERN, History, read_history, read_lineage

log = logging.getLogger("dictdb")


class _Listed:
    """What every listed file offers: where to read it, and whether it is a full snapshot."""

    __slots__ = ()
    path: Path
    kind: str
    target: Target | None

    @property
    def where(self) -> Located:
        """Where to read the file from."""
        target = LocalDirectory(self.path.parent) if self.target is None else self.target
        return Located(target, self.path.name)

    @property
    def is_full(self) -> bool:
        """Whether this is a full snapshot."""
        return self.kind == "full"


@attrs.frozen
class BackupFile(_Listed):
    """One snapshot or delta file, described by its header.

    Attributes:
        path: the file.
        kind: ``"full"`` or ``"delta"``.
        first_lsn: a delta's first operation; a full's LSN + 1 (what it is the state before).
        last_lsn: the LSN of the state the file leads to.
        last_op_ts: the time of operation ``last_lsn`` (0.0 for an empty history).
        written_ts: when the file was written.
        size: bytes on disk.
        lineage: the history the file belongs to (None in files that predate lineages).
        parent: (lineage, LSN) that history forked from, when it did.
        timeline: the timeline number its header records (None in files that predate them).
    """

    path: Path
    kind: str
    first_lsn: int
    last_lsn: int
    last_op_ts: float
    written_ts: float
    size: int
    lineage: str | None = None
    parent: tuple[str, int] | None = None
    timeline: int | None = None
    #: The target holding the file (None: the local directory of `path`).
    target: Target | None = attrs.field(default=None, eq=False, repr=False)

    def describe(self) -> str:
        """A short description: kind, LSN range, name."""
        if self.is_full:
            return f"full @{self.last_lsn} {self.path.name}"
        return f"delta {self.first_lsn}..{self.last_lsn} {self.path.name}"


@attrs.frozen
class LegacyFile(_Listed):
    """A file of the reference DictDB 1.x (`dictdb.storage.legacy`): no header, so only its
    name says what it is and when it was written.

    Attributes:
        path: the file.
        kind: ``"full"`` or ``"delta"``, from the name.
        stamp: the time in its name (epoch seconds): the only order the reference's files have.
        size: bytes on disk.
    """

    path: Path
    kind: str
    stamp: float
    size: int
    target: Target | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class Chain:
    """A full snapshot and the deltas chained to it by LSN, in order."""

    full: BackupFile
    deltas: tuple[BackupFile, ...]

    @property
    def last_lsn(self) -> int:
        """The LSN the chain reaches."""
        return self.deltas[-1].last_lsn if self.deltas else self.full.last_lsn

    @property
    def files(self) -> tuple[BackupFile, ...]:
        """The full, then the deltas."""
        return (self.full, *self.deltas)

    @property
    def size(self) -> int:
        """Bytes on disk for the whole chain."""
        return sum(f.size for f in self.files)


@attrs.frozen
class Catalog:
    """Everything a directory holds.

    Attributes:
        files: readable snapshot and delta files of the target's timelines, by LSN.
        unreadable: files named like backups whose header cannot be read, with the reason.
        chains: the chains (a full and the deltas of its history after it), oldest first.
        orphans: deltas that no full snapshot leads to.
        history: the target's timelines.
        strays: readable files that belong to no timeline of the target (another database's
            history copied in), with the reason; never restored from.
        ignored: entries named like backups that are not regular files (a FIFO, a device, a
            directory, a symlink), with the reason; never read.
        legacy: files of the reference DictDB 1.x, by name time (see `LegacyFile`).
    """

    files: tuple[BackupFile, ...]
    unreadable: tuple[tuple[Path, str], ...]
    chains: tuple[Chain, ...]
    orphans: tuple[BackupFile, ...]
    history: History = attrs.field(factory=lambda: History({}))
    strays: tuple[tuple[Path, str], ...] = ()
    ignored: tuple[tuple[Path, str], ...] = ()
    legacy: tuple[LegacyFile, ...] = ()

    def timeline_of(self, f: BackupFile) -> int | None:
        """The number of the timeline *f* belongs to."""
        tl = self.history.of_lineage(f.lineage)
        return None if tl is None else tl.number


def next_free_name(target: Target, kind: str, fmt: str, comp: str | None, stamp: float) -> str:
    """A name for a new file that no object of *target* has (one microsecond later if so)."""
    taken = {e.name for e in target.list()}
    micro = int(stamp * 1_000_000)
    while True:
        name = backup_name(kind, fmt, comp, micro / 1_000_000)
        if name not in taken:
            return name
        micro += 1


def _describe(where: Located, size: int) -> BackupFile:
    path = where.path
    header = read_header(where)
    kind = header.get("type")
    try:
        written = float(header["timestamp"])
        last_ts = float(header["last_op_ts"])
        if kind == "full":
            lsn = int(header["lsn"])
            first, last = lsn + 1, lsn
        elif kind == "delta":
            first, last = int(header["from_lsn"]), int(header["to_lsn"])
        else:
            raise CorruptFileError(path, f"unknown file type {kind!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(path, f"malformed header: {exc}") from None
    if not 0 < first <= last + 1 or (kind == "delta" and first > last):
        raise CorruptFileError(path, f"impossible LSN range {first}..{last}")
    lineage, parent = read_lineage(path, header)
    timeline = header.get("timeline")
    return BackupFile(
        path,
        str(kind),
        first,
        last,
        last_ts,
        written,
        size,
        lineage,
        parent,
        timeline if type(timeline) is int else None,
        where.target,
    )


def backup_entries(target: Target) -> list[Entry]:
    """Regular objects of *target* named like snapshots or deltas, sorted by name (a
    symlink, directory, FIFO or device named so is no backup: see `scan`)."""
    return sorted(
        (e for e in target.list() if e.regular and NAME_PATTERN.match(e.name)),
        key=lambda e: e.name,
    )


def scan(
    place: Place,
    *,
    exclude: Iterable[Path] = (),
    storage_options: dict[str, Any] | None = None,
) -> Catalog:
    """Read the headers of every backup file in *place* and group them into chains.

    Entries named like backups that are not regular files are never read (`Catalog.ignored`);
    files of no timeline of the target are set aside (`Catalog.strays`); each is named in a
    warning. A file that vanishes between the listing and its read (retention) makes the
    listing stale: the target is listed again, a bounded number of times.

    Args:
        place: the backup directory, or a storage target.
        exclude: files to leave out (e.g. found damaged).
        storage_options: for a URL, passed to fsspec.

    Raises:
        FileNotFoundError: a local directory that does not exist.
    """
    target = as_target(place, storage_options)
    local = target.local_directory()
    if local is not None and not local.is_dir():
        if local.exists():
            raise NotADirectoryError(f"{local} is not a directory")
        raise FileNotFoundError(f"backup directory {local} does not exist")
    skip = set(exclude)
    listing = None
    for _ in range(_RESCANS):
        listing = _read_listing(target, skip)
        if listing is not None:
            break
    if listing is None:
        # Files kept vanishing (retention pruning as fast as we list): use what is there.
        listing = _read_listing(target, skip, tolerate=True)
        assert listing is not None
    entries, files, unreadable, ignored, legacy = listing
    history = read_history(target, entries, files)
    strays: list[tuple[Path, str]] = []
    kept: list[BackupFile] = []
    for f in files:
        tl = history.of_lineage(f.lineage)
        if tl is None:
            strays.append((f.path, "belongs to no timeline of this target (another history)"))
        elif f.timeline is not None and history.recorded and f.timeline != tl.number:
            strays.append(
                (f.path, f"says timeline {f.timeline}, but its history is timeline {tl.number}")
            )
        else:
            kept.append(f)
    for path, reason in (*ignored, *strays, *history.unreadable):
        log.warning("dictdb: ignoring %s: %s", path, reason)
    files = sorted(kept, key=lambda f: (f.last_lsn, 0 if f.is_full else 1, f.first_lsn))
    chains, orphans = _chains(files)
    return Catalog(
        tuple(files),
        tuple(unreadable),
        chains,
        orphans,
        history,
        tuple(strays),
        tuple(ignored),
        tuple(sorted(legacy, key=lambda f: (f.stamp, f.path.name))),
    )


#: How many times `scan` lists again when a listed file vanishes before its header is read.
_RESCANS: Final = 5

_Listing = tuple[
    list[Entry],
    list[BackupFile],
    list[tuple[Path, str]],
    list[tuple[Path, str]],
    list[LegacyFile],
]


def _read_listing(target: Target, skip: set[Path], *, tolerate: bool = False) -> _Listing | None:
    # One listing and the headers of its backup files; None when a file vanished meanwhile.
    entries = sorted(target.list(), key=lambda e: e.name)
    ignored: list[tuple[Path, str]] = []
    wanted: list[tuple[Located, int]] = []
    for entry in entries:
        named = NAME_PATTERN.match(entry.name) or TIMELINE_PATTERN.match(entry.name)
        if named and not entry.regular:
            path = target.describe(entry.name)
            ignored.append((path, f"a {entry.kind}, not a regular file: never read"))
            continue
        if not entry.regular or not NAME_PATTERN.match(entry.name):
            continue
        where = Located(target, entry.name)
        if where.path not in skip:
            wanted.append((where, entry.size))
    files: list[BackupFile] = []
    unreadable: list[tuple[Path, str]] = []
    legacy: list[LegacyFile] = []
    sizes = {where.name: size for where, size in wanted}
    for where, outcome in _headers(target, wanted):
        if isinstance(outcome, BackupFile):
            files.append(outcome)
        elif isinstance(outcome, LegacyFileError):
            kind, stamp = name_kind(where.name), name_stamp(where.name)
            assert kind is not None  # listed by NAME_PATTERN
            assert stamp is not None
            legacy.append(LegacyFile(where.path, kind, stamp, sizes[where.name], where.target))
        elif isinstance(outcome, CorruptFileError):
            unreadable.append((where.path, outcome.reason))
        elif isinstance(outcome, FileNotFoundError):
            # Gone since the listing (retention): the listing is stale, and files written
            # since may be missing from it too; list again.
            if not tolerate:
                return None
        else:
            unreadable.append((where.path, f"cannot read: {outcome}"))
    return entries, files, unreadable, ignored, legacy


#: Headers read at once from a remote target (each read is a round trip).
_REMOTE_READS: Final = 8


def _headers(
    target: Target, wanted: list[tuple[Located, int]]
) -> list[tuple[Located, BackupFile | OSError | CorruptFileError]]:
    # Each file's header, or the error reading it; a remote target's in parallel.
    def one(item: tuple[Located, int]) -> tuple[Located, BackupFile | OSError | CorruptFileError]:
        where, size = item
        try:
            return where, _describe(where, size)
        except (CorruptFileError, OSError) as exc:
            return where, exc

    if target.local_directory() is not None or len(wanted) < 2:
        return [one(item) for item in wanted]
    with ThreadPoolExecutor(_REMOTE_READS, thread_name_prefix="dictdb-scan") as pool:
        return list(pool.map(one, wanted))


def _chains(files: list[BackupFile]) -> tuple[tuple[Chain, ...], tuple[BackupFile, ...]]:
    # Each full snapshot and the deltas of its own history that follow it without a gap, up
    # to the next full snapshot of that history; the deltas no full leads to.
    deltas_by_first: dict[tuple[str | None, int], list[BackupFile]] = {}
    for f in files:
        if not f.is_full:
            deltas_by_first.setdefault((f.lineage, f.first_lsn), []).append(f)
    chains: list[Chain] = []
    used: set[Path] = set()
    full_lsns = {(f.lineage, f.last_lsn) for f in files if f.is_full}
    for full in (f for f in files if f.is_full):
        deltas: list[BackupFile] = []
        nxt = full.last_lsn + 1
        while (full.lineage, nxt) in deltas_by_first and (
            not deltas or (full.lineage, nxt - 1) not in full_lsns
        ):
            step = max(deltas_by_first[full.lineage, nxt], key=lambda d: d.last_lsn)
            deltas.append(step)
            nxt = step.last_lsn + 1
        chains.append(Chain(full, tuple(deltas)))
        used.update(d.path for d in deltas)
    orphans = tuple(f for f in files if not f.is_full and f.path not in used)
    return tuple(chains), orphans


def overlaps(files: Iterable[BackupFile]) -> list[tuple[BackupFile, BackupFile]]:
    """Pairs of deltas of one history whose LSN ranges intersect without being the same range
    (deltas of two timelines past their fork point cover the same LSNs by design)."""
    deltas = sorted(
        (f for f in files if not f.is_full),
        key=lambda f: (str(f.lineage), f.first_lsn, f.last_lsn),
    )
    found: list[tuple[BackupFile, BackupFile]] = []
    for a, b in pairwise(deltas):
        if (
            a.lineage == b.lineage
            and b.first_lsn <= a.last_lsn
            and (a.first_lsn, a.last_lsn) != (b.first_lsn, b.last_lsn)
        ):
            found.append((a, b))
    return found


def iso_utc(ts: float) -> str:
    """*ts* (epoch seconds) as ISO 8601 in UTC, to the microsecond: how documents and the
    audit tools write times (beside the epoch seconds: machines read either)."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="microseconds")


def as_document(catalog: Catalog) -> dict[str, Any]:
    """A plain description of a catalog (for ``dictdb ls --json`` and logs)."""

    def one(f: BackupFile) -> dict[str, Any]:
        return {
            "file": f.path.name,
            "kind": f.kind,
            "timeline": catalog.timeline_of(f),
            "first_lsn": f.first_lsn,
            "last_lsn": f.last_lsn,
            "last_op_ts": f.last_op_ts,
            "last_op_time": iso_utc(f.last_op_ts),
            "written_ts": f.written_ts,
            "written_time": iso_utc(f.written_ts),
            "size": f.size,
        }

    return {
        "chains": [
            {
                "full": one(c.full),
                "deltas": [one(d) for d in c.deltas],
                "last_lsn": c.last_lsn,
                "size": c.size,
            }
            for c in catalog.chains
        ],
        "orphans": [one(f) for f in catalog.orphans],
        "unreadable": [{"file": p.name, "reason": r} for p, r in catalog.unreadable],
        "timelines": [
            {
                "timeline": tl.number,
                "parent": tl.parent,
                "fork_lsn": tl.fork_lsn,
                "newest": tl is catalog.history.newest(),
                "chains": [
                    i
                    for i, c in enumerate(catalog.chains)
                    if catalog.timeline_of(c.full) == tl.number
                ],
            }
            for tl in sorted(catalog.history.timelines.values(), key=lambda t: t.number)
        ],
        "ignored": [{"file": p.name, "reason": r} for p, r in (*catalog.ignored, *catalog.strays)],
        "legacy": [
            {
                "file": f.path.name,
                "kind": f.kind,
                "stamp": f.stamp,
                "time": iso_utc(f.stamp),
                "size": f.size,
            }
            for f in catalog.legacy
        ],
    }
