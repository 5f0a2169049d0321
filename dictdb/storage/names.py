"""The names of snapshot and delta files, the seed's: the kind and the time they were written.

``dictdb_backup_<sec>_<usec>.<ext>`` (a full snapshot) and ``dictdb_delta_<sec>_<usec>.<ext>``
(a delta), ``<ext>`` one of ``json``, ``pickle``, each optionally followed by ``.zst``. The
reference DictDB 1.x names its files the same way (without ``.zst``). dictdb orders its own
files by LSN, never by these times; the reference's files carry nothing else.
"""

from __future__ import annotations

import re
from typing import Final

#: What a backup file's key index (`dictdb.audit.snapshot_keys`, a cache) adds to its name.
KEY_INDEX_SUFFIX: Final = ".keys"

NAME_PATTERN: Final = re.compile(
    r"^dictdb_(?P<kind>backup|delta)_(?P<sec>\d+)_(?P<usec>\d{6})"
    r"\.(?P<fmt>json|pickle)(?P<zst>\.zst)?$"
)


def backup_name(kind: str, file_format: str, compression: str | None, stamp: float) -> str:
    """The seed's file name for a backup written at *stamp* (epoch seconds)."""
    sec = int(stamp)
    usec = min(round((stamp - sec) * 1_000_000), 999_999)
    prefix = "dictdb_backup" if kind == "full" else "dictdb_delta"
    return f"{prefix}_{sec}_{usec:06d}.{file_format}" + (".zst" if compression else "")


def name_stamp(name: str) -> float | None:
    """The time in a backup file's name (epoch seconds), or None for another name."""
    match = NAME_PATTERN.match(name)
    if match is None:
        return None
    return int(match["sec"]) + int(match["usec"]) / 1_000_000


def name_kind(name: str) -> str | None:
    """``"full"`` or ``"delta"`` as a backup file's name says, or None for another name."""
    match = NAME_PATTERN.match(name)
    if match is None:
        return None
    return "full" if match["kind"] == "backup" else "delta"
