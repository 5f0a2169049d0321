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
    list_segments,
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
class Window:
    """A range of points that can be rebuilt exactly: from LSN `first` to LSN `last`, and the
    times of those two points (None where no file or log record says it; 0.0 is the empty
    database before any operation)."""

    first: int
    last: int
    first_ts: float | None
    last_ts: float | None


@attrs.frozen
class VerifyReport:
    """What `verify` checked and found.

    Attributes:
        files_checked: snapshot and delta files read and verified (reference DictDB files
            included: read, not verifiable).
        segments_checked: log segments read.
        findings: problems, each naming a file.
        restorable: LSN ranges that can be rebuilt exactly, as ``(first, last)`` (every
            timeline's, merged).
        timelines: each timeline's own chains and window (a fork is information, not a
            finding).
        notes: information: entries ignored (not regular files, files of no timeline here).
        warnings: what needs no repair by hand but deserves a look: a torn log tail (the
            normal trace of a crash, cut aside when the database reopens).
        files_found: backup files the directory holds (readable or not).
        windows: `restorable` with the times of each end.
    """

    files_checked: int
    segments_checked: int
    findings: tuple[Finding, ...]
    restorable: tuple[tuple[int, int], ...]
    timelines: tuple[TimelineWindow, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[Finding, ...] = ()
    files_found: int = 0
    windows: tuple[Window, ...] = ()

    @property
    def ok(self) -> bool:
        """No findings (warnings allowed)."""
        return not self.findings

    def as_document(self) -> dict[str, Any]:
        """The whole report as plain data (``dictdb verify --json``)."""

        def window(w: Window) -> dict[str, Any]:
            return {
                "first_lsn": w.first,
                "last_lsn": w.last,
                "first_time": None if w.first_ts is None else iso(w.first_ts),
                "last_time": None if w.last_ts is None else iso(w.last_ts),
            }

        return {
            "ok": self.ok,
            "files_found": self.files_found,
            "files_checked": self.files_checked,
            "segments_checked": self.segments_checked,
            "findings": [{"file": f.path, "reason": f.reason} for f in self.findings],
            "warnings": [{"file": f.path, "reason": f.reason} for f in self.warnings],
            "restorable": [window(w) for w in self.windows],
            "timelines": [
                {
                    "timeline": t.number,
                    "parent": t.parent,
                    "fork_lsn": t.fork_lsn,
                    "restorable": [list(r) for r in t.restorable],
                    "newest": t.newest,
                }
                for t in self.timelines
            ],
            "notes": list(self.notes),
        }


def verify(
    backup_dir: str | Path | Target,
    *,
    progress: Progress | None = None,
    storage_options: dict[str, Any] | None = None,
) -> VerifyReport:
    """Check everything a directory holds.

    Every file's checksum and format; LSN contiguity per chain; each chain rebuilt step by
    step with its digest checked after every step; the log's segments (checksums, continuity;
    a torn tail is a warning, not damage); which LSN ranges can be rebuilt, per timeline, with
    their times. A directory with nothing to verify (no dictdb file, no log, no reference
    DictDB file) is a finding: a check that passes on nothing would reassure nobody. A file
    that retention deletes while it is read makes the check start over.

    Args:
        backup_dir: the directory or URL.
        progress: called with (bytes read, bytes in all) as files are verified.
        storage_options: for a URL, passed to fsspec.
    """
    target = as_target(backup_dir, storage_options)
    return replanning(lambda: _verify_once(target, progress), target, lambda r: r.ok)


def _verify_once(target: Target, progress: Progress | None) -> VerifyReport:
    from dictdb.storage.catalog import overlaps

    catalog = scan(target)
    findings: list[Finding] = [
        Finding(str(p), r) for p, r in (*catalog.unreadable, *catalog.history.unreadable)
    ]
    warnings: list[Finding] = []
    for a, b in overlaps(catalog.files):
        findings.append(Finding(str(b.path), f"overlaps {a.path.name} (LSN {b.first_lsn})"))
    restorable: list[tuple[int, int]] = []
    by_timeline: dict[int | None, list[tuple[int, int]]] = {}
    times: dict[int, float] = {0: 0.0}  # LSN -> the time of that point, where known
    wal_dir = log_dir(target)
    log_sizes = _segment_sizes(wal_dir)
    total = (
        sum(f.size for f in catalog.files) + sum(f.size for f in catalog.legacy) + sum(log_sizes)
    )
    done = 0

    def step(size: int) -> None:
        nonlocal done
        done += size
        if progress is not None:
            progress(min(done, total), total)

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
            step(chain.size)
            continue
        step(chain.full.size)
        times[chain.full.last_lsn] = chain.full.last_op_ts
        reached = chain.full.last_lsn
        for i, delta in enumerate(chain.deltas):
            try:
                persist.apply_delta(db, delta.where)
                checked += 1
                reached = delta.last_lsn
                times[reached] = delta.last_op_ts
                chained.add(delta.path)
            except FileNotFoundError:
                raise  # retention removed it since the listing: verify again
            except (CorruptFileError, OSError) as exc:
                findings.append(Finding(str(delta.path), _reason(exc)))
                step(sum(d.size for d in chain.deltas[i:]))
                break
            step(delta.size)
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
                checked += 1
            except FileNotFoundError:
                raise  # retention removed it since the listing: verify again
            except (CorruptFileError, OSError) as exc:
                if not any(x.path == str(f.path) for x in findings):
                    findings.append(Finding(str(f.path), _reason(exc)))
            step(f.size)
    segments_checked = 0
    if wal_dir is not None:
        segments: list[Any] = []
        last_op: tuple[int, float] | None = None
        try:
            for segment, ops, torn in iter_wal(wal_dir):  # one segment in memory at a time
                segments.append(segment)
                step(log_sizes[len(segments) - 1] if len(segments) <= len(log_sizes) else 0)
                if ops:
                    last_op = (ops[-1].lsn, ops[-1].ts)
                if torn is not None:
                    warnings.append(
                        Finding(
                            str(torn.segment),
                            f"torn tail at offset {torn.offset} ({torn.size} bytes: "
                            f"{torn.reason}): the trace of a crash, cut aside when the "
                            "database reopens",
                        )
                    )
        except RecoveryError as exc:
            findings.append(Finding(exc.segment, f"offset {exc.offset}: {exc.reason}"))
            if exc.before:
                last_op = (exc.before[-1].lsn, exc.before[-1].ts)
        except WALError as exc:
            findings.append(Finding(str(wal_dir), str(exc)))
        segments_checked = len(segments)
        if segments or last_op is not None:
            first = segments[0].first_lsn if segments else 1
            last = last_op[0] if last_op is not None else first - 1
            if last_op is not None:
                times[last_op[0]] = last_op[1]
            owner = _log_timeline(catalog, wal_dir)
            own = by_timeline.get(owner, [])
            if first == 1 or any(lo <= first - 1 <= hi for lo, hi in own or restorable):
                restorable.append((max(first - 1, 0), last))
                by_timeline.setdefault(owner, []).append((max(first - 1, 0), last))
    legacy_checked, legacy_notes = _verify_legacy(catalog.legacy, findings)
    checked += legacy_checked
    step(sum(f.size for f in catalog.legacy))
    found = len(catalog.files) + len(catalog.unreadable) + len(catalog.legacy)
    if not found and not segments_checked and not catalog.history.timelines:
        findings.append(
            Finding(
                str(target.describe()),
                "nothing to verify: no dictdb snapshot, delta or log, and no reference DictDB file",
            )
        )
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
    merged = _merge(restorable)
    return VerifyReport(
        checked,
        segments_checked,
        tuple(findings),
        merged,
        windows,
        notes,
        tuple(warnings),
        found,
        tuple(Window(lo, hi, times.get(lo), times.get(hi)) for lo, hi in merged),
    )


def _segment_sizes(wal_dir: Path | None) -> list[int]:
    # The log's segments' sizes, in LSN order (for progress; a vanished one counts 0).
    if wal_dir is None:
        return []
    sizes = []
    for _, path in list_segments(wal_dir):
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            sizes.append(0)
    return sizes


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
