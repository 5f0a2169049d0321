"""Our deliberate differences from the reference, by the node id of the test that shows one.

Each reason says what we do instead and why (R<n>: ARCHITECTURE.md's requirements; A<n>,
B<n>: the reference defects in upstream-defects.md, each shown impossible by a test in
tests/dictdb/test_parity.py or test_persist*.py). README.md "Differences from the reference"
groups them. Entries marked PENDING are not deliberate: they wait for the storage layer (see
the README section); they stay listed so that a new, unexplained failure stands out.
"""

from __future__ import annotations

from typing import Final

_COPIES: Final = (
    "Records are copied in and out (R2; defect B3): insert never writes the assigned key into "
    "the caller's dict. Use the key insert returns."
)
_SCHEMA_ALWAYS: Final = (
    "skip_validation is accepted but the schema is always enforced at write time: a stored "
    "row breaking it could not be loaded back from a snapshot (R1, R5)."
)
_NO_DIRTY_SETS: Final = (
    "No per-table dirty tracking (has_changes, get_dirty_records, clear_dirty_tracking): "
    "deltas are cut from the operation journal by LSN, so a full backup and a delta never "
    "disagree about what changed (R15, R20; defect A13(C)(D))."
)
_TIMING: Final = (
    "A timing ratio, not a behaviour: our one-row insert costs about what a row of a batch "
    "costs (one lock, one journal append), so a batch is not 2x faster."
)
_ONE_LOCK: Final = (
    "No reader-writer lock: one re-entrant lock per database serializes writers and readers "
    "(R8), which makes the reference's re-entrant read deadlock impossible (defect B7). "
    "dictdb.core.rwlock is the reference's internal class."
)
_NO_AVL: Final = (
    "Sorted indexes keep a SortedDict (sortedcontainers), not the reference's internal AVL "
    "tree: dictdb.index.avl is an implementation detail we do not ship (R27)."
)
_CREATE_INDEX_RAISES: Final = (
    "create_index raises on failure instead of logging and leaving no index (defect B6)."
)
_SILENT: Final = (
    "Silent by default: a new logger has no handler until the application adds one (R9; defect B8)."
)
_NO_ROW_LOGS: Final = (
    "No log line per statement ([INSERT], [SELECT]): only databases and DDL are logged "
    "(defect B8: per-row logging doubled insert time)."
)
_PRIVATE_THREAD: Final = (
    "Tests a private attribute (_backup_thread) of the reference's manager; ours has an "
    "idempotent start/stop and a worker that never dies (R19; defects A14, A16)."
)
_SAVE_NOT_CALLED: Final = (
    "BackupManager writes snapshots through the storage layer, not by calling db.save(), so "
    "a DictDB subclass whose save() raises does not make backups fail (R19, R28)."
)
_COALESCE: Final = (
    "notify_change coalesces: a change within min_backup_interval is backed up by the worker "
    "after the interval (trailing edge), never dropped (defect A15)."
)
_FULL_FIRST: Final = (
    "Incremental mode writes a full snapshot first and deltas after it, so the directory is "
    "restorable from the first backup (defect A13(B))."
)
_BASE_FIRST: Final = (
    "A delta is an LSN range after a full snapshot; save_delta without a base snapshot "
    "refuses instead of writing a delta nothing can restore (R15, R20; defect A13)."
)
_CORRUPT: Final = (
    "A damaged or foreign file raises CorruptFileError(path, reason), a ValueError, before "
    "anything is applied, whatever the damage; the reference leaks its parser's exception "
    "(JSONDecodeError, KeyError, TypeError, AttributeError, EOFError, UnpicklingError) (R12, "
    "R18; defect A18)."
)
_PENDING_STORAGE: Final = "PENDING storage layer: {}"

DIFFERENCES: Final[dict[str, str]] = {
    "tests/core/test_table.py::test_insert_auto_assign_primary_key": _COPIES,
    "tests/core/test_table.py::test_auto_assign_primary_key_with_schema": _COPIES,
    "tests/core/test_table_concurrency.py::test_concurrent_inserts_auto_pk": _COPIES,
    "tests/core/test_bulk_insert.py::TestBulkInsert::test_insert_single_with_skip_validation": (
        _SCHEMA_ALWAYS
    ),
    "tests/core/test_bulk_insert.py::TestBulkInsert::test_insert_with_skip_validation": (
        _SCHEMA_ALWAYS
    ),
    "tests/core/test_bulk_insert.py::TestBulkInsert::test_insert_multiple_dirty_tracking": (
        _NO_DIRTY_SETS
    ),
    "tests/core/test_bulk_insert.py::TestBulkInsert::test_insert_many_performance": _TIMING,
    "tests/core/test_rwlock.py": _ONE_LOCK,
    "tests/index/test_avl.py": _NO_AVL,
    "tests/index/test_indexing.py::test_index_creation_failure_fallback": _CREATE_INDEX_RAISES,
    "tests/obs/test_logging.py::TestDictDBLogger::test_remove_clears_handlers": _SILENT,
    "tests/obs/test_logging.py::test_crud_logging_in_file": _NO_ROW_LOGS,
    "tests/storage/test_backup.py::test_dirty_tracking_insert": _NO_DIRTY_SETS,
    "tests/storage/test_backup.py::test_dirty_tracking_update": _NO_DIRTY_SETS,
    "tests/storage/test_backup.py::test_dirty_tracking_delete": _NO_DIRTY_SETS,
    "tests/storage/test_backup.py::test_clear_dirty_tracking": _NO_DIRTY_SETS,
    "tests/storage/test_backup.py::test_apply_delta": _NO_DIRTY_SETS,
    "tests/storage/test_backup.py::test_apply_delta_with_deletes": _NO_DIRTY_SETS,
    "tests/storage/test_backup_concurrency.py::test_incremental_backup_concurrent_modifications": (
        _NO_DIRTY_SETS
    ),
    "tests/storage/test_backup.py::test_stop_backup_manager": _PRIVATE_THREAD,
    "tests/storage/test_backup_concurrency.py::test_backup_manager_start_stop_concurrent": (
        _PRIVATE_THREAD
    ),
    "tests/storage/test_backup.py::test_backup_now_handles_failure": _SAVE_NOT_CALLED,
    "tests/storage/test_backup.py::test_backup_failure_callback": _SAVE_NOT_CALLED,
    "tests/storage/test_backup_concurrency.py::test_backup_failure_counter_thread_safety": (
        _SAVE_NOT_CALLED
    ),
    "tests/storage/test_backup.py::test_notify_change_debouncing": _COALESCE,
    "tests/storage/test_backup.py::test_incremental_backup_mode": _FULL_FIRST,
    "tests/storage/test_backup.py::test_incremental_backup_compaction": _FULL_FIRST,
    "tests/storage/test_backup.py::test_save_delta_no_changes": _BASE_FIRST,
    "tests/storage/test_persist_errors.py::test_save_delta_to_readonly_directory": _BASE_FIRST,
    **{
        f"tests/storage/test_persist_errors.py::{name}": _CORRUPT
        for name in (
            "test_load_corrupted_json_syntax_error",
            "test_load_corrupted_json_missing_tables_key",
            "test_load_corrupted_json_missing_primary_key",
            "test_load_truncated_pickle",
            "test_load_empty_json_file",
            "test_load_empty_pickle_file",
            "test_load_json_with_invalid_record_type",
            "test_load_json_with_null_records",
            "test_load_json_structural_errors[null_tables]",
            "test_load_json_structural_errors[tables_as_list]",
            "test_load_json_structural_errors[null_root]",
            "test_load_json_structural_errors[array_root]",
            "test_apply_delta_corrupted_json",
            "test_pickle_load_rejects_forbidden_class",
        )
    },
    "tests/storage/test_backup.py::test_save_delta": _PENDING_STORAGE.format(
        "dictdb.storage.persist.has_changes(db) -> bool is missing"
    ),
    "tests/storage/test_persist_errors.py::test_apply_delta_invalid_type": _PENDING_STORAGE.format(
        "a file that is not a delta should say 'not a valid delta file'"
    ),
    "tests/storage/test_persist_errors.py::test_persist_load_invalid_format": (
        _PENDING_STORAGE.format("persist.load should refuse an unknown format before opening")
    ),
    "tests/storage/test_persist_errors.py::test_path_traversal_blocked_on_save": (
        _PENDING_STORAGE.format("persist.save/load lack the reference's allowed_dir argument")
    ),
    "tests/storage/test_persist_errors.py::test_path_traversal_blocked_on_load": (
        _PENDING_STORAGE.format("persist.save/load lack the reference's allowed_dir argument")
    ),
}

#: Tests that fail only when run as root, as the reference's own do: root ignores the
#: permission bits they rely on (a read-only directory, an unreadable file).
ROOT_ONLY: Final[dict[str, str]] = {
    "tests/storage/test_persist_errors.py::test_save_to_readonly_directory": (
        "Run as root, which ignores a read-only directory's permission bits."
    ),
    "tests/storage/test_persist_errors.py::test_load_from_unreadable_file": (
        "Run as root, which ignores an unreadable file's permission bits."
    ),
}
