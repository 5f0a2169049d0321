"""The garbage-collector shelter of full snapshots (`dictdb.storage.gcshelter`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dictdb import DictDB
from dictdb.storage import gcshelter, persist


@pytest.fixture(autouse=True)
def clean_gc() -> Iterator[None]:
    """Every test starts and ends with nothing frozen and the collector enabled."""
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()
    gc.enable()


def db_with_rows(n: int = 50) -> DictDB:
    db = DictDB()
    db.create_table("t")
    db.get_table("t").insert([{"v": i} for i in range(n)])
    return db


def tracked(obj: Any) -> bool:
    """Whether a collection of some generation would walk *obj* (frozen objects are in none)."""
    return any(o is obj for o in gc.get_objects())


def spy_on_encoding(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record, while a snapshot encodes, whether its row-map copies are reachable by collections."""
    seen: list[dict[str, Any]] = []
    real = persist._encode_full

    def encode(db: DictDB, lsn: int, last_ts: float, tables: list[Any], *rest: Any) -> Any:
        seen.append(
            {
                "frozen": gc.get_freeze_count(),
                "copies_tracked": [tracked(cut.rows) for cut in tables],
            }
        )
        return real(db, lsn, last_ts, tables, *rest)

    monkeypatch.setattr(persist, "_encode_full", encode)
    return seen


def test_the_row_map_copies_are_out_of_reach_of_collections_while_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = db_with_rows()
    db.create_table("u")
    seen = spy_on_encoding(monkeypatch)
    persist.save(db, tmp_path / "s.json")
    assert len(seen) == 1
    assert seen[0]["frozen"] > 0
    assert seen[0]["copies_tracked"] == [False, False]
    assert gc.get_freeze_count() == 0  # everything is back once the snapshot is done


def test_without_the_shelter_the_copies_would_be_young_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test above: with the shelter off, the copies are tracked.
    monkeypatch.setattr(gcshelter, "ENABLED", False)
    seen = spy_on_encoding(monkeypatch)
    persist.save(db_with_rows(), tmp_path / "s.json")
    assert seen == [{"frozen": 0, "copies_tracked": [True]}]


def test_objects_frozen_by_the_application_stay_frozen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = [["a cycle"]]
    theirs.append(theirs)  # type: ignore[arg-type]
    gc.freeze()
    count = gc.get_freeze_count()
    seen = spy_on_encoding(monkeypatch)
    persist.save(db_with_rows(), tmp_path / "s.json")
    # The shelter stood aside: the copies stayed young, nothing more was frozen (the count
    # only drops as frozen objects die), nothing was unfrozen.
    assert [True] == seen[0]["copies_tracked"]
    assert 0 < seen[0]["frozen"] <= count
    assert 0 < gc.get_freeze_count() <= count
    assert not tracked(theirs)


def test_a_disabled_collector_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.disable()
    seen = spy_on_encoding(monkeypatch)
    persist.save(db_with_rows(), tmp_path / "s.json")
    assert seen == [{"frozen": 0, "copies_tracked": [True]}]
    assert not gc.isenabled()


def test_a_failed_snapshot_unfreezes_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any) -> Any:
        assert gc.get_freeze_count() > 0
        raise RuntimeError("encoding failed")

    monkeypatch.setattr(persist, "_encode_full", boom)
    with pytest.raises(RuntimeError, match="encoding failed"):
        persist.save(db_with_rows(), tmp_path / "s.json")
    assert gc.get_freeze_count() == 0
    assert list(tmp_path.iterdir()) == []


def test_overlapping_shelters_share_one_freeze_and_the_last_one_out_unfreezes() -> None:
    first, second = gcshelter.Shelter(), gcshelter.Shelter()
    first.__enter__()
    first.freeze()
    assert gc.get_freeze_count() > 0
    second.__enter__()
    young = {"made": "after the first freeze"}
    young["self"] = young  # type: ignore[assignment]
    assert tracked(young)
    second.freeze()
    assert not tracked(young)
    first.__exit__(None, None, None)
    assert gc.get_freeze_count() > 0  # the second snapshot still encodes
    second.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0
    assert tracked(young)  # back in the oldest generation, collectable again


def test_a_snapshot_written_under_the_shelter_loads_back(tmp_path: Path) -> None:
    db = db_with_rows(1000)
    path = persist.save(db, tmp_path / "s.json")
    assert persist.load(path).to_dict() == db.to_dict()
