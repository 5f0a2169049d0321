"""The contract every storage target passes (`dictdb.storage.target`): objects appear only at
`publish`, complete; `discard` leaves nothing; no overwrite unless asked; a missing object is
`FileNotFoundError`; deleting a missing object is fine. Run against `LocalDirectory` and
`MemoryTarget` with the same test bodies.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dictdb.errors import CorruptFileError
from dictdb.storage.target import (
    LocalDirectory,
    Located,
    MemoryTarget,
    Target,
    as_target,
    locate,
)

NAME = "dictdb_backup_1_000001.json"


@pytest.fixture(params=["local", "memory", "fsspec-memory", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "local":
        (tmp_path / "t").mkdir()
        yield LocalDirectory(tmp_path / "t")
    elif request.param == "memory":
        yield MemoryTarget()
    elif request.param == "fsspec-memory":
        yield as_target(f"memory://contract-{uuid.uuid4().hex}")
    else:
        server = request.getfixturevalue("s3_server")
        yield as_target(server.url(), server.options)


def write(target: Target, name: str, data: bytes, *, overwrite: bool = False) -> None:
    writer = target.create(name, overwrite=overwrite)
    for i in range(0, len(data), 3):  # several writes make one object
        writer.write(data[i : i + 3])
    writer.publish()


def content(target: Target, name: str) -> bytes:
    with target.open(name) as handle:
        return handle.read()


def listing(target: Target) -> dict[str, tuple[int, bool]]:
    return {e.name: (e.size, e.regular) for e in target.list()}


def stray_files(target: Target) -> list[str]:
    """Files a local directory holds besides its objects' names (temp files); [] for others."""
    local = target.local_directory()
    return [] if local is None else sorted(p.name for p in local.iterdir() if p.name != NAME)


def test_is_a_target(target: Target) -> None:
    assert isinstance(target, Target)


def test_empty_target_lists_nothing(target: Target) -> None:
    assert target.list() == []


def test_missing_local_place_lists_nothing(tmp_path: Path) -> None:
    assert LocalDirectory(tmp_path / "absent").list() == []


def test_publish_makes_the_object_appear_with_its_exact_bytes(target: Target) -> None:
    data = bytes(range(256)) * 3 + b"end"
    write(target, NAME, data)
    assert listing(target) == {NAME: (len(data), True)}
    assert content(target, NAME) == data
    assert stray_files(target) == []


def test_empty_object(target: Target) -> None:
    write(target, NAME, b"")
    assert listing(target) == {NAME: (0, True)}
    assert content(target, NAME) == b""


def test_nothing_is_visible_before_publish(target: Target) -> None:
    writer = target.create(NAME)
    writer.write(b"partial")
    assert NAME not in listing(target)
    with pytest.raises(FileNotFoundError):
        target.open(NAME)
    writer.write(b" and the rest")
    assert NAME not in listing(target)
    writer.publish()
    assert content(target, NAME) == b"partial and the rest"


def test_discard_leaves_nothing(target: Target) -> None:
    writer = target.create(NAME)
    writer.write(b"never published")
    writer.discard()
    assert target.list() == []
    with pytest.raises(FileNotFoundError):
        target.open(NAME)
    local = target.local_directory()
    if local is not None:
        assert list(local.iterdir()) == []  # no .tmp file left behind


def test_discard_keeps_an_existing_object(target: Target) -> None:
    write(target, NAME, b"old")
    writer = target.create(NAME, overwrite=True)
    writer.write(b"new")
    writer.discard()
    assert content(target, NAME) == b"old"
    assert listing(target) == {NAME: (3, True)}
    assert stray_files(target) == []


def test_no_overwrite_raises_and_keeps_the_old_content(target: Target) -> None:
    write(target, NAME, b"first")
    writer = target.create(NAME, overwrite=False)
    writer.write(b"second, longer")
    with pytest.raises(FileExistsError):
        writer.publish()
    assert content(target, NAME) == b"first"
    assert listing(target) == {NAME: (5, True)}
    assert stray_files(target) == []


def test_overwrite_replaces(target: Target) -> None:
    write(target, NAME, b"first")
    write(target, NAME, b"second, longer", overwrite=True)
    assert content(target, NAME) == b"second, longer"
    assert listing(target) == {NAME: (14, True)}
    assert stray_files(target) == []


def test_two_writers_one_name_only_one_wins(target: Target) -> None:
    a = target.create(NAME)
    b = target.create(NAME)
    a.write(b"a")
    b.write(b"b")
    a.publish()
    with pytest.raises(FileExistsError):
        b.publish()
    assert content(target, NAME) == b"a"


def test_open_missing_raises_file_not_found(target: Target) -> None:
    with pytest.raises(FileNotFoundError):
        target.open("nothing_here.json")


def test_delete_removes_and_missing_is_fine(target: Target) -> None:
    write(target, NAME, b"x")
    write(target, "other.json", b"y")
    target.delete(NAME)
    assert listing(target) == {"other.json": (1, True)}
    with pytest.raises(FileNotFoundError):
        target.open(NAME)
    target.delete(NAME)  # gone already: not an error
    target.delete("never_there.json")
    assert listing(target) == {"other.json": (1, True)}


def test_several_objects_are_listed(target: Target) -> None:
    objects = {f"obj_{i}.json": bytes([i]) * i for i in range(5)}
    for name, data in objects.items():
        write(target, name, data)
    assert listing(target) == {name: (len(data), True) for name, data in objects.items()}
    for name, data in objects.items():
        assert content(target, name) == data


def test_describe_ends_with_the_name(target: Target) -> None:
    assert target.describe(NAME).name == NAME
    assert str(target.describe(NAME)).endswith(NAME)
    assert str(target.describe(NAME)).startswith(str(target.describe()))
    assert Located(target, NAME).path == target.describe(NAME)


def test_as_target_returns_a_target_as_it_is(target: Target) -> None:
    assert as_target(target) is target


def test_as_target_of_a_path_is_a_local_directory(tmp_path: Path) -> None:
    assert as_target(tmp_path) == LocalDirectory(tmp_path)
    assert isinstance(as_target(str(tmp_path)), LocalDirectory)
    assert as_target(str(tmp_path)).local_directory() == tmp_path


def test_as_target_refuses_other_things() -> None:
    with pytest.raises(TypeError):
        as_target(42)  # type: ignore[arg-type]


def test_locate_a_path(tmp_path: Path) -> None:
    where = locate(tmp_path / NAME)
    assert where == Located(LocalDirectory(tmp_path), NAME)
    assert locate(where) is where


def test_memory_target_has_no_local_directory() -> None:
    assert MemoryTarget().local_directory() is None


# -- a local directory holds things that are not objects ----------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_local_fifo_is_not_regular_and_open_refuses_it_promptly(tmp_path: Path) -> None:
    target = LocalDirectory(tmp_path)
    os.mkfifo(tmp_path / NAME)
    assert listing(target) == {NAME: (0, False)}
    outcome: list[BaseException | None] = []

    def try_open() -> None:
        try:
            target.open(NAME).close()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=try_open, daemon=True)
    thread.start()
    thread.join(timeout=5)
    if thread.is_alive():  # unblock it: open a writer end
        fd = os.open(tmp_path / NAME, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("open() of a FIFO blocked")
    assert len(outcome) == 1
    assert isinstance(outcome[0], CorruptFileError)


def test_local_directory_and_symlink_are_not_regular(tmp_path: Path) -> None:
    target = LocalDirectory(tmp_path)
    (tmp_path / "a_dir.json").mkdir()
    os.symlink(tmp_path / "a_dir.json", tmp_path / "link.json")
    assert listing(target) == {"a_dir.json": (0, False), "link.json": (0, False)}
    with pytest.raises(CorruptFileError):
        target.open("a_dir.json")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_local_symlink_to_a_fifo_is_not_regular(tmp_path: Path) -> None:
    target = LocalDirectory(tmp_path / "t")
    (tmp_path / "t").mkdir()
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "fifo", tmp_path / "t" / NAME)
    assert listing(target) == {NAME: (0, False)}
    with pytest.raises(CorruptFileError):
        target.open(NAME)
