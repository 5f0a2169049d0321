"""Storage targets: places that hold named, immutable objects which appear atomically.

Every backup file is read and written through a `Target` (snapshots, deltas, the listing
that plans a restore, retention's deletions): the rest of the storage layer never opens a
path itself. A target promises:

- `create` returns a writer whose object appears under its final name only at `publish`,
  complete and durable (on a local disk: fsynced, renamed or linked, directory fsynced);
  `discard`, or any failure, leaves no object and no final name behind. With
  ``overwrite=False``, publishing onto an existing name fails with `FileExistsError`
  and changes nothing (two writers never overwrite each other).
- `list` names the objects that are there now, with their sizes; only regular objects
  (never FIFOs, devices or directories; on a local disk a symlink counts as what it points
  to, for now) are listed as readable.
- `open` returns a binary stream of an object's content, or raises `FileNotFoundError` if it
  is gone (retention may delete it between a listing and a read); a name that is not a
  regular object is refused with `CorruptFileError`.
- `delete` removes an object; a missing one is not an error.

Two implementations: `LocalDirectory` (today's directory of files) and `MemoryTarget` (a
dict in this process, for tests and for the contract every target must pass).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol, runtime_checkable

import attrs

from dictdb._atomic import AtomicFile
from dictdb.errors import CorruptFileError
from wal import NotRegularFileError
from wal import open_regular as _open_regular


@attrs.frozen
class Entry:
    """One name in a target's listing.

    Attributes:
        name: the object's name (no directory part).
        size: its size in bytes.
        regular: whether it is a regular object that `read` will return (False for a
            FIFO, device or directory under that name, or a symlink to one).
    """

    name: str
    size: int
    regular: bool = True


class ObjectWriter(Protocol):
    """An object being written: nothing is visible under its name until `publish`."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...
    def publish(self) -> None: ...
    def discard(self) -> None: ...


@runtime_checkable
class Target(Protocol):
    """A place holding named, immutable, atomically appearing objects (see module doc)."""

    def describe(self, name: str = "") -> Path:
        """Where *name* is, for messages and as the object's identity (no credentials)."""
        ...

    def list(self) -> list[Entry]:
        """The objects there now (missing place: empty)."""
        ...

    def open(self, name: str) -> BinaryIO:
        """A binary stream of *name*'s content (a context manager; close it)."""
        ...

    def create(self, name: str, *, overwrite: bool = False) -> ObjectWriter:
        """A writer that publishes *name* atomically."""
        ...

    def delete(self, name: str) -> None:
        """Remove *name* (missing: nothing to do)."""
        ...

    def local_directory(self) -> Path | None:
        """The local directory behind the target, if there is one (the durable log's)."""
        ...


class LocalDirectory:
    """A directory of files on a local disk."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"LocalDirectory({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalDirectory) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def describe(self, name: str = "") -> Path:
        return self.path / name if name else self.path

    def list(self) -> list[Entry]:
        try:
            with os.scandir(self.path) as entries:
                return [_entry(e) for e in entries]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def open(self, name: str) -> BinaryIO:
        # A FIFO or a device named like a backup is refused at once, not waited on or read
        # forever.
        path = self.path / name
        try:
            return _open_regular(path)
        except NotRegularFileError:
            raise CorruptFileError(path, "not a regular file") from None

    def create(self, name: str, *, overwrite: bool = False) -> ObjectWriter:
        return AtomicFile(self.path / name, overwrite)

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / name)

    def local_directory(self) -> Path | None:
        return self.path


def _entry(e: os.DirEntry[str]) -> Entry:
    try:
        regular = e.is_file()
        size = e.stat().st_size if regular else 0
    except OSError:
        regular, size = False, 0
    return Entry(e.name, size, regular)


class _MemoryWriter:
    def __init__(self, target: MemoryTarget, name: str, overwrite: bool) -> None:
        self._target = target
        self._name = name
        self._overwrite = overwrite
        self._parts: list[bytes] = []
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise ValueError("write after publish or discard")
        self._parts.append(bytes(data))

    def publish(self) -> None:
        if self._done:
            raise ValueError("publish after publish or discard")
        self._done = True
        self._target.put(self._name, b"".join(self._parts), overwrite=self._overwrite)
        self._parts = []

    def discard(self) -> None:
        self._done = True
        self._parts = []


class MemoryTarget:
    """Objects in a dict of this process: a target with no disk, for tests.

    Args:
        name: shown in messages as ``memory://<name>/<object>``.
    """

    def __init__(self, name: str = "dictdb") -> None:
        self.name = name
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryTarget({self.name!r})"

    def describe(self, name: str = "") -> Path:
        base = PurePosixPath(f"memory:/{self.name}")
        return Path(base / name if name else base)

    def list(self) -> list[Entry]:
        with self._lock:
            return [Entry(name, len(data)) for name, data in self._objects.items()]

    def open(self, name: str) -> BinaryIO:
        with self._lock:
            try:
                return io.BytesIO(self._objects[name])
            except KeyError:
                raise FileNotFoundError(str(self.describe(name))) from None

    def create(self, name: str, *, overwrite: bool = False) -> ObjectWriter:
        return _MemoryWriter(self, name, overwrite)

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
        """Publish *data* under *name* at once (the test helper's and the writer's way in).

        Raises:
            FileExistsError: *overwrite* is False and the name is taken.
        """
        with self._lock:
            if not overwrite and name in self._objects:
                raise FileExistsError(str(self.describe(name)))
            self._objects[name] = bytes(data)

    def delete(self, name: str) -> None:
        with self._lock:
            self._objects.pop(name, None)

    def local_directory(self) -> Path | None:
        return None


#: Where backups are: a local directory path, or a storage target.
Place = str | os.PathLike[str] | Target


def as_target(place: Place) -> Target:
    """The target for *place*: a `Target` as it is, a path as a `LocalDirectory`."""
    if isinstance(place, (str, os.PathLike)):
        return LocalDirectory(place)
    if isinstance(place, Target):
        return place
    raise TypeError(f"a backup place is a directory path or a Target, got {place!r}")


@attrs.frozen
class Located:
    """An object of a target: where a snapshot or delta is read from or written to.

    Attributes:
        target: the target holding it.
        name: its name there.
    """

    target: Target
    name: str

    @property
    def path(self) -> Path:
        """The object's identity in messages (a path for a local directory)."""
        return self.target.describe(self.name)


#: Where a snapshot or delta is: a file path, or an object of a target.
Where = str | os.PathLike[str] | Located


def locate(where: Where) -> Located:
    """*where* as a `Located`: a file path becomes its name in a `LocalDirectory`."""
    if isinstance(where, Located):
        return where
    path = Path(where)
    return Located(LocalDirectory(path.parent), path.name)
