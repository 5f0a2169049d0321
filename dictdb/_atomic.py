"""Files that appear atomically and durably under their final name, on a local disk.

`AtomicFile` writes a temp file in the same directory (name ``.<final>.<random>.tmp``);
`publish` flushes and fsyncs it, then takes the final name with ``os.replace`` (or
``os.link`` when the name must not already exist), then fsyncs the directory. On any failure
the temp file is removed and the final name is as it was. A crash leaves at worst a ``.tmp``
leftover, which readers ignore. Used by the local storage target and by CSV export.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from wal import fsync_directory


class AtomicFile:
    """A temp file beside the final name: `publish` makes it the final name, atomically and
    durably; `discard` removes it."""

    def __init__(self, path: Path, overwrite: bool) -> None:
        self.path = path
        self.overwrite = overwrite
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self.tmp = Path(name)
        try:
            self.handle: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.tmp.unlink()
            raise

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.handle.write(data)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)

    def publish(self) -> None:
        """Flush, fsync, then take the final name and fsync the directory.

        Raises:
            FileExistsError: *overwrite* is False and the final name exists.
            OSError: any I/O failure. The temp file is removed, and the final name is as it
                was before: a failure after the new file took the name (the directory fsync)
                puts the old file back (kept meanwhile under a second hard link) or removes
                the new one.
        """
        path, tmp, directory = self.path, self.tmp, self.path.parent
        keep: Path | None = None  # the old file, while the new one is not yet durable
        published = False
        try:
            with self.handle as handle:
                handle.flush()
                os.fsync(handle.fileno())
            if self.overwrite:
                if path.exists():
                    keep = tmp.with_name(tmp.name[: -len(".tmp")] + ".old.tmp")
                    os.link(path, keep)
                os.replace(tmp, path)
                published = True
            else:
                os.link(tmp, path)  # fails atomically if the name exists
                published = True
                os.unlink(tmp)
            fsync_directory(directory)
            if keep is not None:
                os.unlink(keep)  # a failure here still puts the old file back: all or nothing
                keep = None
        except BaseException:
            self.discard()
            if published:
                with contextlib.suppress(OSError):
                    if keep is not None:
                        os.replace(keep, path)
                        keep = None
                    else:
                        os.unlink(path)
                with contextlib.suppress(OSError):
                    fsync_directory(directory)
            raise
        finally:
            if keep is not None:  # only when putting the old file back failed too
                with contextlib.suppress(OSError):
                    os.unlink(keep)


def write_atomic(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Publish *data* under *path* atomically and durably.

    Args:
        path: the final name.
        data: the whole content.
        overwrite: replace an existing file (True) or fail if one exists (False).

    Raises:
        FileExistsError: *overwrite* is False and *path* exists.
        OSError: any I/O failure. No temp file is left, and *path* is as it was before the
            call (see `AtomicFile.publish`).
    """
    writer = AtomicFile(path, overwrite)
    try:
        writer.write(data)
    except BaseException:
        writer.discard()
        raise
    writer.publish()
