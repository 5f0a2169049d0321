"""What a backup directory holds: files by name pattern, their headers, chains by LSN.

A *chain* is a full snapshot and the deltas that follow it without a gap
(``delta.from_lsn == previous end + 1``), up to the next full snapshot of the same history.
Chains are found by LSN, never by the wall-clock stamps in file names. Names follow the seed:
``dictdb_backup_<sec>_<usec>.<ext>`` and ``dictdb_delta_<sec>_<usec>.<ext>``, ``<ext>`` one
of ``json``, ``pickle``, each optionally followed by ``.zst``. Anything else in the directory
(``.tmp`` leftovers of interrupted writes included) is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import attrs

from dictdb.errors import CorruptFileError
from dictdb.storage.persist import read_header, read_lineage
from dictdb.storage.target import Entry, LocalDirectory, Located, Place, Target, as_target

NAME_PATTERN: Final = re.compile(
    r"^dictdb_(?P<kind>backup|delta)_(?P<sec>\d+)_(?P<usec>\d{6})"
    r"\.(?P<fmt>json|pickle)(?P<zst>\.zst)?$"
)


@attrs.frozen
class BackupFile:
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
    #: The target holding the file (None: the local directory of `path`).
    target: Target | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def where(self) -> Located:
        """Where to read the file from."""
        target = LocalDirectory(self.path.parent) if self.target is None else self.target
        return Located(target, self.path.name)

    @property
    def is_full(self) -> bool:
        """Whether this is a full snapshot."""
        return self.kind == "full"

    def describe(self) -> str:
        """A short description: kind, LSN range, name."""
        if self.is_full:
            return f"full @{self.last_lsn} {self.path.name}"
        return f"delta {self.first_lsn}..{self.last_lsn} {self.path.name}"


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
        files: readable snapshot and delta files, by LSN.
        unreadable: files named like backups whose header cannot be read, with the reason.
        chains: the chains, oldest first.
        orphans: deltas that no full snapshot leads to.
    """

    files: tuple[BackupFile, ...]
    unreadable: tuple[tuple[Path, str], ...]
    chains: tuple[Chain, ...]
    orphans: tuple[BackupFile, ...]


def backup_name(kind: str, file_format: str, compression: str | None, stamp: float) -> str:
    """The seed's file name for a backup written at *stamp* (epoch seconds)."""
    sec = int(stamp)
    usec = min(round((stamp - sec) * 1_000_000), 999_999)
    prefix = "dictdb_backup" if kind == "full" else "dictdb_delta"
    return f"{prefix}_{sec}_{usec:06d}.{file_format}" + (".zst" if compression else "")


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
    return BackupFile(
        path, str(kind), first, last, last_ts, written, size, lineage, parent, where.target
    )


def backup_entries(target: Target) -> list[Entry]:
    """Regular objects of *target* (after symlinks) named like snapshots or deltas, sorted by
    name: a directory, FIFO or device named so is no backup (and a FIFO would block a read)."""
    return sorted(
        (e for e in target.list() if e.regular and NAME_PATTERN.match(e.name)),
        key=lambda e: e.name,
    )


def scan(place: Place, *, exclude: Iterable[Path] = ()) -> Catalog:
    """Read the headers of every backup file in *place* and group them into chains.

    Args:
        place: the backup directory, or a storage target.
        exclude: files to leave out (e.g. found damaged).

    Raises:
        FileNotFoundError: a local directory that does not exist.
    """
    target = as_target(place)
    local = target.local_directory()
    if local is not None and not local.is_dir():
        raise FileNotFoundError(f"backup directory {local} does not exist")
    skip = set(exclude)
    files: list[BackupFile] = []
    unreadable: list[tuple[Path, str]] = []
    for entry in backup_entries(target):
        where = Located(target, entry.name)
        path = where.path
        if path in skip:
            continue
        try:
            files.append(_describe(where, entry.size))
        except CorruptFileError as exc:
            unreadable.append((path, exc.reason))
        except OSError as exc:
            unreadable.append((path, f"cannot read: {exc}"))
    files.sort(key=lambda f: (f.last_lsn, 0 if f.is_full else 1, f.first_lsn))
    deltas_by_first: dict[int, list[BackupFile]] = {}
    for f in files:
        if not f.is_full:
            deltas_by_first.setdefault(f.first_lsn, []).append(f)
    chains: list[Chain] = []
    used: set[Path] = set()
    full_lsns = {(f.lineage, f.last_lsn) for f in files if f.is_full}
    for full in (f for f in files if f.is_full):
        deltas: list[BackupFile] = []
        nxt = full.last_lsn + 1
        # A chain ends where a newer full snapshot of its history starts the next one.
        while nxt in deltas_by_first and (deltas == [] or (full.lineage, nxt - 1) not in full_lsns):
            candidates = deltas_by_first[nxt]
            step = max(candidates, key=lambda d: d.last_lsn)
            deltas.append(step)
            nxt = step.last_lsn + 1
        chains.append(Chain(full, tuple(deltas)))
        used.update(d.path for d in deltas)
    orphans = tuple(f for f in files if not f.is_full and f.path not in used)
    return Catalog(tuple(files), tuple(unreadable), tuple(chains), orphans)


def overlaps(files: Iterable[BackupFile]) -> list[tuple[BackupFile, BackupFile]]:
    """Pairs of deltas whose LSN ranges intersect without being the same range."""
    deltas = sorted((f for f in files if not f.is_full), key=lambda f: (f.first_lsn, f.last_lsn))
    found: list[tuple[BackupFile, BackupFile]] = []
    for a, b in pairwise(deltas):
        if b.first_lsn <= a.last_lsn and (a.first_lsn, a.last_lsn) != (b.first_lsn, b.last_lsn):
            found.append((a, b))
    return found


def as_document(catalog: Catalog) -> dict[str, Any]:
    """A plain description of a catalog (for ``dictdb ls --json`` and logs)."""

    def one(f: BackupFile) -> dict[str, Any]:
        return {
            "file": f.path.name,
            "kind": f.kind,
            "first_lsn": f.first_lsn,
            "last_lsn": f.last_lsn,
            "last_op_ts": f.last_op_ts,
            "written_ts": f.written_ts,
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
    }
