"""Durable directory entries: an fsync of the directory itself.

Creating, renaming or removing a file changes its directory; those changes reach the disk
only when the directory is fsynced (POSIX), which every file-publishing path here does.
"""

from __future__ import annotations

import os
from pathlib import Path


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
