"""Durable directory entries: an fsync of the directory itself.

Creating, renaming or removing a file changes its directory; those changes reach the disk
only when the directory is fsynced (POSIX), which every file-publishing path here does.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from wal.errors import NotRegularFileError


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries (creations, renames, removals) durable.

    Raises:
        OSError: the directory cannot be opened or fsynced.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_regular(path: Path, *, follow_symlinks: bool = True) -> BinaryIO:
    """Open *path* for reading if it is a regular file.

    Opened without blocking first, so that a FIFO or a device named like a data file is
    refused at once instead of waiting for a writer (or reading forever). With
    *follow_symlinks* False, a symlink is refused too (a file that must stay in its
    directory).

    Raises:
        NotRegularFileError: not a regular file (or a symlink, when not followed).
        OSError: it cannot be opened.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
        if os.path.islink(path):  # O_NOFOLLOW's ELOOP is not portable to tell apart
            raise NotRegularFileError(f"{path}: a symlink, not a regular file")
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"{path}: not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path, *, follow_symlinks: bool = True) -> bytes:
    """The content of *path*, a regular file (see `open_regular`)."""
    with open_regular(path, follow_symlinks=follow_symlinks) as handle:
        return handle.read()
