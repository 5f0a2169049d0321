"""Migration of a reference DictDB 1.x backup directory into a verified dictdb chain.

The reference's files (`dictdb.storage.legacy`) are replayed in the order of their names'
times, the seed guide's recipe, into one engine of one history:

- the first full snapshot becomes the state at LSN 0;
- each delta becomes operations (each upsert and delete one LSN, all at the time the file's
  name records), written as one of our deltas;
- each later full snapshot becomes the operations that turn the state so far into it (tables
  dropped and created, rows inserted, replaced, deleted: the reference's chains do drift from
  its full snapshots, see its defects A1-A3), then one of our full snapshots at that LSN.

So ``restore(DEST, at=t)`` equals the reference's state at every file time t, and LSNs order
the history. The history's lineage is derived from the first full snapshot's name: running the
migration again over the same source (``force=True``) writes the same chain under the same
names and timeline, and a source that gained files since gains them in DEST too. Deltas older
than the first full snapshot are skipped (nothing to apply them to), with a warning.

After writing, DEST is restored and compared with the replayed state; a mismatch is an error.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from dictdb._engine import Engine
from dictdb.errors import DictDBError, UsageError
from dictdb.storage import persist
from dictdb.storage.catalog import LegacyFile, scan
from dictdb.storage.names import backup_name
from dictdb.storage.restore import restore_engine
from dictdb.storage.target import Located, Place, Target, as_target
from dictdb.storage.timeline import register
from wal import CREATE, DELETE, DROP, INSERT, UPDATE

log = logging.getLogger("dictdb")

#: The namespace of migrated histories' lineages (uuid5 of the first full snapshot's name).
_LINEAGES = uuid.UUID("5b3f6d2e-8a41-4c55-9f0e-2d7c1a9b6e13")


@attrs.frozen
class MigrationReport:
    """What a migration did.

    Attributes:
        written: the files written to DEST, in order.
        skipped: source files left out, with the reason.
        lsn: the LSN the migrated history reaches.
        timeline: the timeline number of that history in DEST.
    """

    written: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...]
    lsn: int
    timeline: int


def migrate(
    source: Place,
    dest: Place,
    *,
    file_format: str = "json",
    compression: str | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> MigrationReport:
    """Convert the reference DictDB files of *source* into a chain of dictdb files in *dest*.

    Args:
        source: a directory (or target) holding ``dictdb_backup_*``/``dictdb_delta_*`` files
            of the reference DictDB 1.x.
        dest: where to write; must be empty unless *force*.
        file_format, compression: of the files written (``"json"``/``"pickle"``, ``"zstd"``).
        force: write into a non-empty *dest*, replacing files of the same names.
        progress: called with (bytes read, bytes in all) after each source file.
        storage_options: for URLs, passed to fsspec.

    Returns:
        What was written.

    Raises:
        UsageError: *dest* is not empty (without *force*), is *source*, or *source* holds no
            reference files.
        CorruptFileError: a source file is damaged (nothing after it is written).
        RestoreError: DEST does not restore to the replayed state.
    """
    src = as_target(source, storage_options)
    out = as_target(dest, storage_options)
    fmt = persist.check_format(file_format)
    comp = persist.check_compression(compression)
    if src.describe() == out.describe():
        raise UsageError("DEST must not be SOURCE: the migrated files take the same names")
    catalog = scan(src)
    files = list(catalog.legacy)
    if not files:
        raise UsageError(f"{src.describe()} holds no reference DictDB backup files")
    if catalog.files:
        log.warning(
            "%s also holds %d dictdb files: they are not migrated",
            src.describe(),
            len(catalog.files),
        )
    _check_dest(out, force)
    local = out.local_directory()
    if local is not None:
        local.mkdir(parents=True, exist_ok=True)
    first_full = next((i for i, f in enumerate(files) if f.is_full), None)
    if first_full is None:
        raise UsageError(
            f"{src.describe()} holds reference deltas but no full snapshot: nothing to apply "
            "them to"
        )
    skipped: list[tuple[Path, str]] = [
        (f.path, "a delta older than the first full snapshot") for f in files[:first_full]
    ]
    for path, reason in skipped:
        log.warning("migrate: skipping %s: %s", path, reason)
    files = files[first_full:]
    lineage = uuid.uuid5(_LINEAGES, files[0].path.name).hex
    timeline = register(out, scan(out).history, lineage, None)
    engine: Engine | None = None
    written: list[Path] = []
    names: set[str] = set()
    total = sum(f.size for f in files)
    done = 0
    for f in files:
        engine, wrote = _migrate_one(engine, f, out, fmt, comp, force, timeline, lineage, names)
        if wrote is not None:
            written.append(wrote)
        else:
            skipped.append((f.path, "changes nothing"))
        done += f.size
        if progress is not None:
            progress(done, total)
    assert engine is not None
    _check_restores(out, engine)
    return MigrationReport(tuple(written), tuple(skipped), engine.lsn, timeline)


def _check_dest(out: Target, force: bool) -> None:
    local = out.local_directory()
    if local is not None and local.exists() and not local.is_dir():
        raise UsageError(f"DEST {local} is not a directory")
    try:
        entries = out.list()
    except FileNotFoundError:
        return
    if entries and not force:
        raise UsageError(
            f"DEST {out.describe()} is not empty ({len(entries)} entries): choose an empty "
            "directory, or --force to write into it (files of the same names are replaced)"
        )


def _migrate_one(
    engine: Engine | None,
    f: LegacyFile,
    out: Target,
    fmt: str,
    comp: str | None,
    force: bool,
    timeline: int,
    lineage: str,
    names: set[str],
) -> tuple[Engine, Path | None]:
    name = _free_name(f, fmt, comp, names)
    if f.is_full:
        state = persist.load(f.where)
        if engine is None:
            engine = state
            engine.lineage = lineage
        else:
            _converge(engine, state, f.stamp)
        full = persist.save(
            engine, Located(out, name), fmt, comp, overwrite=force, as_base=True, timeline=timeline
        )
        return engine, full
    assert engine is not None  # deltas before the first full are skipped
    persist.apply_delta(engine, f.where)
    delta = persist.save_delta(
        engine, Located(out, name), fmt, comp, overwrite=force, timeline=timeline
    )
    return engine, delta


def _free_name(f: LegacyFile, fmt: str, comp: str | None, names: set[str]) -> str:
    # The source file's time, one microsecond later when two source files share it (a JSON
    # and a pickle snapshot written at once).
    micro = round(f.stamp * 1_000_000)
    while True:
        name = backup_name(f.kind, fmt, comp, micro / 1_000_000)
        if name not in names:
            names.add(name)
            return name
        micro += 1


def _converge(engine: Engine, state: Engine, ts: float) -> None:
    """Turn *engine*'s state into *state*'s with operations at time *ts* (one statement)."""
    changes: list[tuple[str, str, Any, Any, Any, bool]] = []
    with engine.lock:
        for name, table in list(engine.tables.items()):
            wanted = state.tables.get(name)
            if wanted is None or wanted.definition() != table.definition():
                changes.append((DROP, name, None, None, None, True))
        for name, target in state.tables.items():
            same = engine.tables.get(name)
            current: dict[Any, Any] = {}
            if same is not None and same.definition() == target.definition():
                current = same.rows
            else:
                changes.append((CREATE, name, None, target.definition(), None, True))
            for key, row in target.rows.items():
                before = current.get(key)
                if before != row or (before is not None and type(before) is not type(row)):
                    plain = key not in target.special
                    kind = INSERT if before is None else UPDATE
                    changes.append((kind, name, key, row, before, plain))
            for key, before in current.items():
                if key not in target.rows:
                    changes.append((DELETE, name, key, None, before, True))
        engine.commit_many(changes, ts)
        for name, target in state.tables.items():
            table = engine.tables[name]
            table.next_pk = max(table.next_pk, target.next_pk)


def _check_restores(out: Target, engine: Engine) -> None:
    restored = restore_engine(out)
    expected = {n: t.rows for n, t in engine.tables.items()}
    actual = {n: t.rows for n, t in restored.tables.items()}
    if expected != actual or restored.lsn != engine.lsn:
        raise DictDBError(
            f"{out.describe()}: the migrated chain does not restore to the replayed state "
            f"(LSN {restored.lsn} vs {engine.lsn}): please report this"
        )
