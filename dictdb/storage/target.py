"""Storage targets: places that hold named, immutable objects which appear atomically.

Every backup file is read and written through a `Target` (snapshots, deltas, the listing
that plans a restore, retention's deletions): the rest of the storage layer never opens a
path itself. A target promises:

- `create` returns a writer whose object appears under its final name only at `publish`,
  complete and durable (on a local disk: fsynced, renamed or linked, directory fsynced);
  `discard`, or any failure, leaves no object and no final name behind. With
  ``overwrite=False``, publishing onto an existing name fails with `FileExistsError`
  and changes nothing (two writers never overwrite each other).
- `list` names the objects that are there now, with their sizes and modification times;
  only regular objects are listed as readable (never a symlink, FIFO, device or directory:
  a backup directory's files stay inside it, and a FIFO would block a read).
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
import random
import re
import stat
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Final, Protocol, TypeVar, runtime_checkable

import attrs

from dictdb._atomic import AtomicFile
from dictdb.errors import CorruptFileError
from wal import NotRegularFileError
from wal import open_regular as _open_regular

_T = TypeVar("_T")


@attrs.frozen
class Entry:
    """One name in a target's listing.

    Attributes:
        name: the object's name (no directory part).
        size: its size in bytes.
        regular: whether it is a regular object (False for a symlink, FIFO, device or
            directory under that name).
        kind: ``"file"``, ``"symlink"``, ``"directory"`` or ``"special"`` (FIFO, device,
            socket).
        mtime: its last modification, epoch seconds (0.0 when unknown).
    """

    name: str
    size: int
    regular: bool = True
    kind: str = "file"
    mtime: float = 0.0


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

    def read(self, name: str) -> bytes:
        """The whole content of *name* (on object storage: one request)."""
        ...

    def read_head(self, name: str, size: int) -> bytes:
        """The first *size* bytes of *name*, fewer if it is shorter (one request)."""
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

    def child(self, name: str) -> Target:
        """The target of the objects under *name*/ (the shipped log's ``wal/``)."""
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

    def read(self, name: str) -> bytes:
        with self.open(name) as handle:
            return handle.read()

    def read_head(self, name: str, size: int) -> bytes:
        with self.open(name) as handle:
            return handle.read(size)

    def create(self, name: str, *, overwrite: bool = False) -> ObjectWriter:
        try:
            return AtomicFile(self.path / name, overwrite)
        except FileNotFoundError:  # an object store needs no folder: neither does this
            self.path.mkdir(parents=True, exist_ok=True)
            return AtomicFile(self.path / name, overwrite)

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / name)

    def local_directory(self) -> Path | None:
        return self.path

    def child(self, name: str) -> Target:
        return LocalDirectory(self.path / name)


def _entry(e: os.DirEntry[str]) -> Entry:
    try:
        st = e.stat(follow_symlinks=False)
    except OSError:
        return Entry(e.name, 0, False, "special")
    if stat.S_ISREG(st.st_mode):
        return Entry(e.name, st.st_size, True, "file", st.st_mtime)
    kind = (
        "symlink"
        if stat.S_ISLNK(st.st_mode)
        else "directory"
        if stat.S_ISDIR(st.st_mode)
        else "special"
    )
    return Entry(e.name, 0, False, kind, st.st_mtime)


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
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._children: dict[str, MemoryTarget] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryTarget({self.name!r})"

    def describe(self, name: str = "") -> Path:
        base = PurePosixPath(f"memory:/{self.name}")
        return Path(base / name if name else base)

    def list(self) -> list[Entry]:
        with self._lock:
            return [Entry(name, len(data), mtime=t) for name, (data, t) in self._objects.items()]

    def open(self, name: str) -> BinaryIO:
        with self._lock:
            try:
                return io.BytesIO(self._objects[name][0])
            except KeyError:
                raise FileNotFoundError(str(self.describe(name))) from None

    def read(self, name: str) -> bytes:
        with self.open(name) as handle:
            return handle.read()

    def read_head(self, name: str, size: int) -> bytes:
        return self.read(name)[:size]

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
            self._objects[name] = (bytes(data), time.time())

    def delete(self, name: str) -> None:
        with self._lock:
            self._objects.pop(name, None)

    def local_directory(self) -> Path | None:
        return None

    def child(self, name: str) -> Target:
        with self._lock:
            return self._children.setdefault(name, MemoryTarget(f"{self.name}/{name}"))


#: Where backups are: a local directory path, or a storage target.
Place = str | os.PathLike[str] | Target


def as_target(place: Place, storage_options: dict[str, Any] | None = None) -> Target:
    """The target for *place*: a `Target` as it is, a path or ``file://`` URL as a
    `LocalDirectory`, any other URL (``s3://``, ``gs://``, ``az://``, ``memory://``) as an
    `FsspecTarget` with *storage_options*."""
    if isinstance(place, str) and "://" in place:
        scheme, _, rest = place.partition("://")
        if scheme == "file":
            return LocalDirectory(rest or "/")
        return FsspecTarget(place, storage_options)
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
    if isinstance(where, str) and "://" in where:
        parent, _, name = where.rstrip("/").rpartition("/")
        if name and "://" in parent:
            return Located(as_target(parent), name)
    path = Path(where)
    return Located(LocalDirectory(path.parent), path.name)


#: Object stores whose objects appear whole when an upload completes (a multipart upload is
#: invisible until completed), and whose fsspec writers refuse an existing name in mode
#: ``"xb"`` with a conditional write (S3's ``If-None-Match: *``).
_STREAMING: Final = frozenset({"s3", "s3a"})
#: The read-ahead block of a remote object opened for reading.
_READ_BLOCK: Final = 1 << 20
#: Errors that retrying cannot cure: the answer is already known.
_FINAL: Final = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    CorruptFileError,
    ValueError,
    TypeError,
)


@attrs.frozen
class RetryPolicy:
    """Bounded exponential backoff with full jitter for a remote target's calls.

    Attributes:
        attempts: calls at most, the first included.
        base: the first backoff's upper bound, seconds; doubled after each failure.
        cap: the largest single backoff, seconds.
        deadline: the most seconds a call may take with its retries, so that a dead
            endpoint never holds a caller (a manual backup included) for minutes.
    """

    attempts: int = 6
    base: float = 0.1
    cap: float = 5.0
    deadline: float = 30.0

    def call(self, what: Callable[[], _T], describe: str) -> _T:
        """Run *what*, retrying transient failures (network, 5xx, throttling, timeouts).

        Raises:
            OSError: the last failure, once attempts or the deadline are spent (naming
                *describe*, never credentials).
        """
        start = time.monotonic()
        delay = self.base
        for attempt in range(1, self.attempts + 1):
            try:
                return what()
            except _FINAL:
                raise
            except Exception as exc:
                left = self.deadline - (time.monotonic() - start)
                if attempt == self.attempts or left <= 0:
                    raise OSError(
                        f"{describe}: failed after {attempt} attempts: {type(exc).__name__}: "
                        f"{_redact(str(exc))}"
                    ) from None
                time.sleep(min(left, random.uniform(0, min(self.cap, delay))))
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover


def _redact(text: str) -> str:
    # Error texts of HTTP clients may echo URLs with credentials or signed queries.
    text = re.sub(
        r"(?i)(signature|credential|security-token|x-amz-[a-z-]*)=[^&\s'\"]+", r"\1=***", text
    )
    return re.sub(r"//[^/@\s]+:[^/@\s]+@", "//***@", text)


class _BufferedWriter:
    # For filesystems whose writes are not atomic by themselves: the object is gathered in
    # memory and put in one call at publish (`pipe_file`, in ``create`` mode when asked not
    # to overwrite).
    def __init__(self, target: FsspecTarget, name: str, overwrite: bool) -> None:
        self._target = target
        self._name = name
        self._overwrite = overwrite
        self._parts: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._parts.append(bytes(data))

    def publish(self) -> None:
        data, self._parts = b"".join(self._parts), []
        self._target.put(self._name, data, overwrite=self._overwrite)

    def discard(self) -> None:
        self._parts = []


class _StreamingWriter:
    # An object store upload: parts go out as they fill (multipart), the object appears only
    # when `publish` completes the upload (conditionally, when asked not to overwrite).
    def __init__(self, target: FsspecTarget, name: str, overwrite: bool) -> None:
        self._target = target
        self._path = target.key(name)
        mode = "wb" if overwrite else "xb"
        self._file = target.retry.call(
            lambda: target.fs.open(self._path, mode), target.url_of(name)
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._file.write(data)

    def publish(self) -> None:
        try:
            self._file.close()
        except FileExistsError:
            self.discard()  # the upload is aborted; the object there stays as it was
            raise
        except Exception as exc:
            self.discard()
            raise OSError(f"{self._target.url_of(self._path)}: upload failed: {exc}") from None

    def discard(self) -> None:
        # Abort the multipart upload (nothing appears), then mark the file closed so that
        # it does not try to complete the upload when collected.
        with contextlib.suppress(Exception):
            self._file.discard()
        self._file.closed = True


class FsspecTarget:
    """Objects under an fsspec URL: ``s3://bucket/prefix``, ``gs://``, ``az://``,
    ``memory://``.

    Args:
        url: where the backups are (no credentials in it: they come from *storage_options*
            or the backend's standard configuration).
        storage_options: passed to fsspec (the pandas/dask/pyarrow convention).
        retry: how transient failures are retried.
    """

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        import fsspec  # type: ignore[import-untyped]

        self.url = _redact(url.rstrip("/"))
        self.retry = RetryPolicy() if retry is None else retry
        self._raw_url = url.rstrip("/")
        self._options = storage_options
        options = dict(storage_options or {})
        if url.startswith(("s3://", "s3a://")):
            # Bounded waits: a stalled endpoint fails a call within seconds, and our own
            # retries (`RetryPolicy`) replace botocore's long default ones.
            options.setdefault(
                "config_kwargs",
                {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 2}},
            )
            options.setdefault("skip_instance_cache", True)  # (its retries are set below)
        self.fs, root = fsspec.core.url_to_fs(url, **options)
        if url.startswith(("s3://", "s3a://")) and options.get("skip_instance_cache"):
            self.fs.retries = 1  # s3fs's own retry loop (5 by default): `retry` replaces it
        self.root = root.rstrip("/")
        protocols = self.fs.protocol
        names = {protocols} if isinstance(protocols, str) else set(protocols)
        self.streaming = bool(names & _STREAMING)

    def __repr__(self) -> str:
        return f"FsspecTarget({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FsspecTarget) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def key(self, name: str) -> str:
        """The filesystem path of object *name*."""
        return f"{self.root}/{name}"

    def url_of(self, name: str) -> str:
        """The URL of object *name*, for messages."""
        return f"{self.url}/{name}"

    def describe(self, name: str = "") -> Path:
        return Path(self.url_of(name) if name else self.url)

    def list(self) -> list[Entry]:
        def ls() -> list[dict[str, Any]]:
            try:
                found: list[dict[str, Any]] = self.fs.ls(self.root, detail=True, refresh=True)
            except TypeError:  # a filesystem without the refresh keyword
                found = self.fs.ls(self.root, detail=True)
            return found

        try:
            infos = self.retry.call(ls, self.url)
        except FileNotFoundError:
            return []
        entries = []
        for info in infos:
            name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
            regular = info.get("type") == "file"
            entries.append(
                Entry(
                    name,
                    int(info.get("size") or 0) if regular else 0,
                    regular,
                    "file" if regular else "directory",
                    _mtime(info),
                )
            )
        return entries

    def open(self, name: str) -> BinaryIO:
        # Small blocks: a header read fetches 1 MiB, not s3fs's 50 MiB default block; a
        # whole read fetches the rest in one request all the same.
        handle: BinaryIO = self.retry.call(
            lambda: self.fs.open(self.key(name), "rb", block_size=_READ_BLOCK),
            self.url_of(name),
        )
        return handle

    def read(self, name: str) -> bytes:
        data: bytes = self.retry.call(lambda: self.fs.cat_file(self.key(name)), self.url_of(name))
        return data

    def read_head(self, name: str, size: int) -> bytes:
        def head() -> bytes:
            data: bytes = self.fs.cat_file(self.key(name), start=0, end=size)
            return data

        return self.retry.call(head, self.url_of(name))

    def create(self, name: str, *, overwrite: bool = False) -> ObjectWriter:
        if self.streaming:
            return _StreamingWriter(self, name, overwrite)
        return _BufferedWriter(self, name, overwrite)

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> None:
        """Publish *data* under *name* in one call.

        Raises:
            FileExistsError: *overwrite* is False and the name is taken.
        """
        mode = "overwrite" if overwrite else "create"

        def pipe() -> None:
            if not overwrite and self.fs.exists(self.key(name)):
                # A filesystem that cannot write conditionally: checked first (a race with
                # another writer remains; see ARCHITECTURE.md, storage targets).
                raise FileExistsError(self.url_of(name))
            self.fs.pipe_file(self.key(name), data, mode=mode)

        self.retry.call(pipe, self.url_of(name))

    def delete(self, name: str) -> None:
        def rm() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.key(name))

        self.retry.call(rm, self.url_of(name))

    def local_directory(self) -> Path | None:
        return None

    def child(self, name: str) -> Target:
        return FsspecTarget(f"{self._raw_url}/{name}", self._options, retry=self.retry)


def _mtime(info: Mapping[str, Any]) -> float:
    for field in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(field)
        if isinstance(value, int | float):
            return float(value)
        stamp = getattr(value, "timestamp", None)
        if callable(stamp):
            return float(stamp())
    return 0.0
