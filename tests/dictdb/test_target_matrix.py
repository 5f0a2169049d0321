"""Backup, restore and point-in-time restore through every storage target: the same test
bodies run against a local directory and a `MemoryTarget` (full + deltas between writes of
many kinds, restore to the end and to every backup point, the plan, the catalog, retention,
and a damaged delta that restore names).
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from dictdb import (
    BackupManager,
    DictDB,
    Field,
    RestoreError,
    list_backups,
    plan_restore,
    restore,
)
from dictdb.storage import persist
from dictdb.storage.target import (
    FsspecTarget,
    LocalDirectory,
    Located,
    MemoryTarget,
    Target,
    as_target,
)
from dictdb.storage.timeline import TIMELINE_PATTERN

pytestmark = pytest.mark.usefixtures("quiet_dictdb_logs")  # tests/dictdb/conftest.py

#: A value written into one delta only, to find that delta's bytes and damage them.
MARKER = "damage-me-here-0123456789"


class Place(NamedTuple):
    """Where the backups go (a path for the local directory, else the target) and the target."""

    place: Any
    target: Target


@pytest.fixture(params=["local", "memory", "fsspec-memory", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    if request.param == "local":
        directory = tmp_path / "backups"
        yield Place(directory, LocalDirectory(directory))
    elif request.param == "memory":
        target = MemoryTarget("matrix")
        yield Place(target, target)
    elif request.param == "fsspec-memory":
        url = f"memory://matrix-{uuid.uuid4().hex}"
        yield Place(url, as_target(url))
    else:
        server = request.getfixturevalue("s3_server")
        target = as_target(server.url(), server.options)
        yield Place(target, target)


class Point(NamedTuple):
    lsn: int
    state: dict[str, Any]
    name: str


def names(target: Target) -> set[str]:
    """The snapshots and deltas of *target* (its timeline objects left out)."""
    return {e.name for e in target.list() if not TIMELINE_PATTERN.match(e.name)}


def run_history(where: Place, **manager_args: Any) -> tuple[DictDB, BackupManager, list[Point]]:
    """A full snapshot, then deltas between writes of every kind; the state at each backup."""
    db = DictDB()
    manager = BackupManager(db, where.place, incremental=True, **manager_args)
    points: list[Point] = []

    def backup(kind: str) -> None:
        path = getattr(manager, f"backup_{kind}")()
        assert path is not None
        assert manager.consecutive_failures == 0
        assert path.name in names(where.target)
        points.append(Point(db.lsn, db.to_dict(), path.name))

    users = db.create_table("users")
    users.insert({"id": 1, "name": "ada", "born": dt.datetime(1815, 12, 10, 8, 30)})
    users.insert({"id": 2, "name": "bob", "balance": Decimal("12.50"), "blob": b"\x00\xff"})
    backup("full")

    users.insert({"id": 3, "name": "cy", "day": dt.date(2024, 2, 29), "tags": ["a", "b"]})
    users.update({"balance": Decimal("-0.001")}, where=Field("id") == 2)
    backup("delta")

    users.delete(where=Field("id") == 1)
    orders = db.create_table("orders", primary_key="order_id")
    orders.insert({"order_id": 10, "user": 2, "amount": 1.25, "note": MARKER})
    orders.insert({"order_id": 11, "user": 3, "amount": None, "paid": True})
    backup("delta")

    db.create_table("scratch").insert({"id": 1, "x": 1})
    orders.update({"amount": Decimal("99.99"), "at": dt.datetime(2030, 1, 1)}, where=None)
    backup("delta")

    db.drop_table("scratch")
    users.insert({"id": 4, "name": "dee", "nested": {"k": [1, 2.5, "three"]}, "raw": b""})
    users.delete(where=Field("id") == 3)
    backup("delta")
    return db, manager, points


def test_restore_equals_the_live_state(place: Place) -> None:
    db, _, points = run_history(place)
    restored = restore(place.place)
    assert restored.lsn == db.lsn == points[-1].lsn
    assert restored.to_dict() == db.to_dict()
    assert set(restored.to_dict()) == {"users", "orders"}
    for name in ("users", "orders"):
        assert restored.get_table(name).copy() == db.get_table(name).copy()


def test_restore_to_every_backup_point(place: Place) -> None:
    _, _, points = run_history(place)
    for p in points:
        restored = restore(place.place, lsn=p.lsn)
        assert restored.lsn == p.lsn
        assert restored.to_dict() == p.state, p
    # Between two points: the state of the earlier one (no log here), never past the target.
    for before, after in itertools.pairwise(points):
        if after.lsn - before.lsn > 1:
            restored = restore(place.place, lsn=after.lsn - 1)
            assert restored.lsn == before.lsn
            assert restored.to_dict() == before.state
    with pytest.raises(RestoreError):
        restore(place.place, lsn=points[0].lsn - 1)


def test_restore_by_time(place: Place) -> None:
    _, _, points = run_history(place)
    restored = restore(place.place, at=dt.datetime.now(dt.UTC))
    assert restored.to_dict() == points[-1].state


def test_plan_lists_the_chain(place: Place) -> None:
    _, _, points = run_history(place)
    plan = plan_restore(place.place)
    assert [f.path.name for f in plan.files] == [p.name for p in points]
    assert [f.kind for f in plan.files] == ["full"] + ["delta"] * (len(points) - 1)
    assert plan.lsn == points[-1].lsn
    assert plan.files[0].path == place.target.describe(points[0].name)
    middle = plan_restore(place.place, lsn=points[2].lsn)
    assert [f.path.name for f in middle.files] == [p.name for p in points[:3]]
    assert middle.lsn == points[2].lsn


def test_list_backups_shows_one_chain(place: Place) -> None:
    _, _, points = run_history(place)
    catalog = list_backups(place.place)
    assert len(catalog.chains) == 1
    chain = catalog.chains[0]
    assert chain.full.path.name == points[0].name
    assert [d.path.name for d in chain.deltas] == [p.name for p in points[1:]]
    assert len(chain.deltas) == 4
    assert chain.last_lsn == points[-1].lsn
    assert catalog.unreadable == ()
    assert catalog.orphans == ()
    sizes = {e.name: e.size for e in place.target.list() if not TIMELINE_PATTERN.match(e.name)}
    assert {f.path.name: f.size for f in catalog.files} == sizes
    assert [1] == sorted(catalog.history.timelines)  # one history, recorded beside its files


def test_persist_reads_through_a_located_object(place: Place) -> None:
    db, _, points = run_history(place)
    full = Located(place.target, points[0].name)
    assert persist.read_header(full)["lsn"] == points[0].lsn
    engine = persist.load(full)
    for p in points[1:]:
        persist.apply_delta(engine, Located(place.target, p.name))
    assert engine.to_dict() == db.to_dict()


def test_save_and_load_through_a_located_object(place: Place) -> None:
    db, _, _ = run_history(place)
    where = Located(place.target, "copy.json")
    persist.save(db._engine, where, "json", None)
    assert "copy.json" in names(place.target)
    assert persist.load(where).to_dict() == db.to_dict()


def test_retention_keeps_one_chain(place: Place) -> None:
    db, manager, points = run_history(place, keep_chains=1)
    first_chain = {p.name for p in points}
    assert first_chain <= names(place.target)
    db.get_table("users").insert({"id": 5, "name": "eve"})
    second = manager.backup_full()
    assert second is not None
    assert names(place.target) == {second.name}
    assert not first_chain & names(place.target)
    for name in first_chain:
        with pytest.raises(FileNotFoundError):
            place.target.open(name)
    catalog = list_backups(place.place)
    assert len(catalog.chains) == 1
    assert catalog.chains[0].deltas == ()
    assert restore(place.place).to_dict() == db.to_dict()
    # The new chain grows deltas again.
    db.get_table("users").delete(where=Field("id") == 5)
    delta = manager.backup_delta()
    assert delta is not None
    assert delta.name != second.name
    assert len(list_backups(place.place).chains[0].deltas) == 1
    assert restore(place.place).to_dict() == db.to_dict()


def damage(target: Target, name: str, at: int) -> None:
    """Flip the bits of byte *at* of object *name* (the same on every target)."""
    with target.open(name) as handle:
        data = bytearray(handle.read())
    data[at] ^= 0xFF
    local = target.local_directory()
    if local is None:
        assert isinstance(target, MemoryTarget | FsspecTarget)
        target.put(name, bytes(data))
    else:
        (local / name).write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["header", "body", "last byte"])
def test_damaged_delta_fails_restore_naming_it(place: Place, where: str) -> None:
    _, _, points = run_history(place)
    victim = points[2].name  # the delta holding MARKER
    with place.target.open(victim) as handle:
        data = handle.read()
    at = {"header": 40, "body": data.index(MARKER.encode()) + 5, "last byte": len(data) - 1}[where]
    damage(place.target, victim, at)
    with pytest.raises(RestoreError) as caught:
        restore(place.place)
    assert caught.value.path is not None
    assert Path(str(caught.value.path)).name == victim
    assert victim in str(caught.value)
    # Points before the damaged delta still restore.
    assert restore(place.place, lsn=points[1].lsn).to_dict() == points[1].state
