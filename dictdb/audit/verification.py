"""Verification of everything a backup directory holds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from dictdb.audit._common import Progress, iso, log_dir
from dictdb.errors import CorruptFileError, RestoreError
from dictdb.storage import persist
from dictdb.storage.catalog import Catalog, LegacyFile, scan
from dictdb.storage.restore import replanning
from dictdb.storage.target import Target, as_target
from dictdb.storage.timeline import read_log_lineage
from wal import (
    RecoveryError,
    WALError,
    iter_wal,
)


@attrs.frozen
class Finding:
    """One problem found: the file and what is wrong."""

    path: str
    reason: str


@attrs.frozen
class TimelineWindow:
    """One timeline of a directory, as `verify` found it.

    Attributes:
        number: the timeline's number (highest: the newest).
        parent: the timeline it forked from (None for a root).
        fork_lsn: the last LSN it shares with its parent.
        restorable: LSN ranges of its own files (and log) that rebuild exactly.
        newest: whether `restore` follows it by default.
    """

    number: int
    parent: int | None
    fork_lsn: int | None
    restorable: tuple[tuple[int, int], ...]
    newest: bool


@attrs.frozen
class VerifyReport:
    """What `verify` checked and found.

    Attributes:
        files_checked: snapshot and delta files read and verified.
        segments_checked: log segments read.
        findings: problems, each naming a file.
        restorable: LSN ranges that can be rebuilt exactly, as ``(first, last)`` (every
            timeline's, merged).
        timelines: each timeline's own chains and window (a fork is information, not a
            finding).
        notes: information: entries ignored (not regular files, files of no timeline here).
    """

    files_checked: int
    segments_checked: int
    findings: tuple[Finding, ...]
    restorable: tuple[tuple[int, int], ...]
    timelines: tuple[TimelineWindow, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No findings."""
        return not self.findings


def verify(
    backup_dir: str | Path | Target,
    *,
    progress: Progress | None = None,
    storage_options: dict[str, Any] | None = None,
) -> VerifyReport:
    """Check everything a directory holds.

    Every file's checksum and format; LSN contiguity per chain; each chain rebuilt step by
    step with its digest checked after every step; the log's segments (checksums, continuity,
    a torn tail reported); which LSN ranges can be rebuilt, per timeline. A file that
    retention deletes while it is read makes the check start over.
    """
    target = as_target(backup_dir, storage_options)
    return replanning(lambda: _verify_once(target, progress), target, lambda r: r.ok)


def _verify_once(target: Target, progress: Progress | None) -> VerifyReport:
    from dictdb.storage.catalog import overlaps

    catalog = scan(target)
    findings: list[Finding] = [
        Finding(str(p), r) for p, r in (*catalog.unreadable, *catalog.history.unreadable)
    ]
    for a, b in overlaps(catalog.files):
        findings.append(Finding(str(b.path), f"overlaps {a.path.name} (LSN {b.first_lsn})"))
    restorable: list[tuple[int, int]] = []
    by_timeline: dict[int | None, list[tuple[int, int]]] = {}
    total = len(catalog.files) + 1
    done = 0
    checked = 0
    chained: set[Path] = set()
    for chain in catalog.chains:
        try:
            db = persist.load(chain.full.where)
            checked += 1
        except FileNotFoundError:
            raise  # retention removed it since the listing: verify again
        except (CorruptFileError, OSError) as exc:
            findings.append(Finding(str(chain.full.path), _reason(exc)))
            done += len(chain.files)
            continue
        done += 1
        if progress is not None:
            progress(done, total)
        reached = chain.full.last_lsn
        for delta in chain.deltas:
            try:
                persist.apply_delta(db, delta.where)
                checked += 1
                reached = delta.last_lsn
                chained.add(delta.path)
            except FileNotFoundError:
                raise  # retention removed it since the listing: verify again
            except (CorruptFileError, OSError) as exc:
                findings.append(Finding(str(delta.path), _reason(exc)))
                break
            finally:
                done += 1
                if progress is not None:
                    progress(done, total)
        restorable.append((chain.full.last_lsn, reached))
        window = (chain.full.last_lsn, reached)
        by_timeline.setdefault(catalog.timeline_of(chain.full), []).append(window)
    for orphan in catalog.orphans:
        findings.append(
            Finding(
                str(orphan.path),
                f"no full snapshot leads to this delta (LSN {orphan.first_lsn}..{orphan.last_lsn}):"
                " a gap before it",
            )
        )
    for f in catalog.files:
        if not f.is_full and f.path not in chained and f not in catalog.orphans:
            try:
                persist.read_document(f.where)
            except FileNotFoundError:
                raise  # retention removed it since the listing: verify again
            except (CorruptFileError, OSError) as exc:
                if not any(x.path == str(f.path) for x in findings):
                    findings.append(Finding(str(f.path), _reason(exc)))
    segments_checked = 0
    wal_dir = log_dir(target)
    if wal_dir is not None:
        try:
            segments: list[Any] = []
            torn = None
            for segment, _ops, seg_torn in iter_wal(wal_dir):  # one segment in memory at a time
                segments.append(segment)
                torn = seg_torn or torn
            segments_checked = len(segments)
            if torn is not None:
                findings.append(
                    Finding(str(torn.segment), f"torn tail at offset {torn.offset}: {torn.reason}")
                )
            if segments:
                first, last = segments[0].first_lsn, segments[-1].last_lsn
                owner = _log_timeline(catalog, wal_dir)
                own = by_timeline.get(owner, [])
                if first == 1 or any(lo <= first - 1 <= hi for lo, hi in own or restorable):
                    restorable.append((max(first - 1, 0), last))
                    by_timeline.setdefault(owner, []).append((max(first - 1, 0), last))
        except RecoveryError as exc:
            findings.append(Finding(exc.segment, f"offset {exc.offset}: {exc.reason}"))
        except WALError as exc:
            findings.append(Finding(str(wal_dir), str(exc)))
    legacy_checked, legacy_notes = _verify_legacy(catalog.legacy, findings)
    checked += legacy_checked
    if progress is not None:
        progress(total, total)
    history = catalog.history
    newest = history.newest()
    windows = tuple(
        TimelineWindow(
            tl.number,
            tl.parent,
            tl.fork_lsn,
            _merge(by_timeline.get(tl.number, [])),
            newest is not None and tl.number == newest.number,
        )
        for tl in sorted(history.timelines.values(), key=lambda t: t.number)
    )
    notes = (
        tuple(f"{path}: ignored: {reason}" for path, reason in (*catalog.ignored, *catalog.strays))
        + tuple(
            f"timeline {w.number} forked from timeline {w.parent} after LSN {w.fork_lsn}"
            for w in windows
            if w.parent is not None
        )
        + legacy_notes
    )
    return VerifyReport(
        checked, segments_checked, tuple(findings), _merge(restorable), windows, notes
    )


def _verify_legacy(
    files: Sequence[LegacyFile], findings: list[Finding]
) -> tuple[int, tuple[str, ...]]:
    """Replay the reference DictDB's files as its guide restores them (each full, then the
    deltas after it); a damaged one is a finding, and the deltas after it up to the next full
    cannot be checked. Returns the files read and the notes."""
    if not files:
        return 0, ()
    notes: list[str] = []
    engine: Any = None
    checked = 0
    for f in files:
        if not f.is_full and engine is None:
            notes.append(
                f"{f.path}: not checked: no full snapshot before it, or a damaged file between"
            )
            continue
        try:
            if f.is_full:
                engine = persist.load(f.where)
            else:
                persist.apply_delta(engine, f.where)
            checked += 1
        except FileNotFoundError:
            raise  # retention removed it since the listing: verify again
        except (CorruptFileError, OSError) as exc:
            findings.append(Finding(str(f.path), _reason(exc)))
            engine = None
    first, last = files[0].stamp, files[-1].stamp
    notes.append(
        f"{len(files)} reference DictDB 1.x files ({iso(first)} .. {iso(last)}): "
        "restorable by time only; they carry no checksum, so damage that still parses cannot "
        "be detected (`python -m dictdb migrate` converts them)"
    )
    return checked, tuple(notes)


def _log_timeline(catalog: Catalog, wal_dir: Path) -> int | None:
    # The timeline the durable log belongs to (its recorded lineage), else the newest.
    try:
        recorded = read_log_lineage(wal_dir)
    except CorruptFileError:
        recorded = None
    tl = None if recorded is None else catalog.history.of_lineage(recorded[0])
    if tl is None:
        tl = catalog.history.newest()
    return None if tl is None else tl.number


def _reason(exc: BaseException) -> str:
    if isinstance(exc, CorruptFileError | RestoreError):
        return exc.reason
    return str(exc)


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)
