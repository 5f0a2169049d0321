"""A generic, event-sourced write-ahead-log engine: operations, journal, durable log.

`wal` knows operations on keyed items of named collections; it gives them no further meaning
and never imports `dictdb`. This module only re-exports: the modules are `operation` (the
one record type), `tags` (the value domain and its JSON form), `zstd` (bounded compression),
`framing` (the segment format), `recovery` (reading segments back), `durable` (the durable
log's writer), `journal` (the in-memory journal), `compaction` (folding operations into net
changes), `keyindex` (which frames hold a key), `directory` (durable directory entries) and
`errors`.
"""

from wal.compaction import Compaction, Trail, compact, compact_flat
from wal.directory import fsync_directory, open_regular, read_regular
from wal.durable import POLICIES, DurableLog, LogFailedError
from wal.errors import (
    CodecError,
    JournalError,
    NotRegularFileError,
    UnsupportedValueError,
    WALError,
    brief,
)
from wal.framing import MAX_TS, parse_segment_name, segment_name
from wal.journal import Journal
from wal.keyindex import (
    KeyIndexWarning,
    from_little_endian,
    index_segments,
    key_operations,
    to_little_endian,
)
from wal.keyindex import token as key_token
from wal.keyindex import tokens as key_tokens
from wal.operation import (
    CREATE,
    DELETE,
    DROP,
    INSERT,
    ITEM_KINDS,
    KINDS,
    UPDATE,
    Operation,
    OpTuple,
)
from wal.recovery import (
    RecoveryError,
    SegmentReport,
    iter_batches,
    iter_wal,
    last_operation,
    list_segments,
    read_segment,
    read_until_damage,
    read_until_gap,
    read_wal,
    stream_until_damage,
)
from wal.tags import MAX_NESTING, from_plain, is_text, own_value, plain_items, to_plain
from wal.tail import LogTail, Piece
from wal.zstd import ZSTD_MAGIC, compress, decompress

__all__ = [
    "CREATE",
    "DELETE",
    "DROP",
    "INSERT",
    "ITEM_KINDS",
    "KINDS",
    "MAX_NESTING",
    "MAX_TS",
    "POLICIES",
    "UPDATE",
    "ZSTD_MAGIC",
    "CodecError",
    "Compaction",
    "DurableLog",
    "Journal",
    "JournalError",
    "KeyIndexWarning",
    "LogFailedError",
    "LogTail",
    "NotRegularFileError",
    "OpTuple",
    "Operation",
    "Piece",
    "RecoveryError",
    "SegmentReport",
    "Trail",
    "UnsupportedValueError",
    "WALError",
    "brief",
    "compact",
    "compact_flat",
    "compress",
    "decompress",
    "fsync_directory",
    "index_segments",
    "from_little_endian",
    "from_plain",
    "is_text",
    "iter_batches",
    "iter_wal",
    "key_operations",
    "key_token",
    "key_tokens",
    "last_operation",
    "list_segments",
    "open_regular",
    "own_value",
    "parse_segment_name",
    "plain_items",
    "read_regular",
    "read_segment",
    "read_until_damage",
    "read_until_gap",
    "read_wal",
    "segment_name",
    "stream_until_damage",
    "to_little_endian",
    "to_plain",
]
