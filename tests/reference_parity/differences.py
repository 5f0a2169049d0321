"""Our deliberate differences from the reference, by the node id of the test that shows one.

Each reason says what we do instead and why (R<n>: ARCHITECTURE.md's requirements; A<n>,
B<n>: the reference defects in upstream-defects.md, each shown impossible by a test in
tests/dictdb/test_parity.py or test_persist*.py). README.md "Differences from the reference"
groups them. A test listed here that passes is reported, so the list stays exact.
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
_TIMING: Final = (
    "A timing ratio, not a behaviour: our one-row insert costs about what a row of a batch "
    "costs (one lock, one journal append), so a batch is not 2x faster."
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
_DELTA_RETURNS_PATH: Final = (
    "save_delta returns the path it wrote (or None), not True/False, and needs a base "
    "snapshot: a delta is an LSN range after one (R15, R20; defect A13)."
)

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
    "tests/core/test_bulk_insert.py::TestBulkInsert::test_insert_many_performance": _TIMING,
    "tests/index/test_indexing.py::test_index_creation_failure_fallback": _CREATE_INDEX_RAISES,
    "tests/obs/test_logging.py::TestDictDBLogger::test_remove_clears_handlers": _SILENT,
    "tests/obs/test_logging.py::test_crud_logging_in_file": _NO_ROW_LOGS,
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
    "tests/storage/test_backup.py::test_save_delta": _DELTA_RETURNS_PATH,
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
