"""Our legacy reader and writer against the reference DictDB 1.11.0 itself.

Random databases the reference can represent go both ways: the reference saves them (JSON and
pickle) and we load them; we save them with `save_legacy` and the reference's own
``DictDB.load`` reads them. The reference's `BackupManager` writes chains of fulls and deltas
and `dictdb.restore` must give its live state, at the end and at each file's time. The
reference runs in its own venv (`tests.dictdb.legacy_support.reference_python`), answering
commands from `tests/data/legacy/make_legacy.py --serve`; where that venv cannot be built the
tests are skipped, saying why.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dictdb import DictDB, restore
from dictdb.storage.legacy import save_legacy
from tests.dictdb.legacy_support import (
    LEGACY,
    MAKE_LEGACY,
    ReferenceWorker,
    actual_tables,
    expected_doc,
    expected_tables,
    file_format,
    name_time,
    ours,
    reference_env,
    reference_python,
    untag,
)
from tests.strategies import field_names, huge_ints

pytestmark = [pytest.mark.reference, pytest.mark.usefixtures("quiet_dictdb_logs")]

#: Hypothesis runs many examples in one temporary directory (function-scoped fixtures are
#: shared between examples): each example writes under a fresh name.
EXAMPLE_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceWorker]:
    """The reference, answering commands for the whole module."""
    python = reference_python()
    process = ReferenceWorker(python, tmp_path_factory.mktemp("reference"))
    yield process
    process.close()


class Names:
    """Fresh file and directory names under one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def __call__(self, suffix: str = "") -> Path:
        self.count += 1
        return self.folder / f"{self.count:05d}{suffix}"


@pytest.fixture
def names(tmp_path: Path) -> Names:
    return Names(tmp_path)


# -- databases the reference can represent, in the tagged form ----------------------------------


def json_scalars() -> st.SearchStrategy[Any]:
    """What the reference's JSON holds: None, bool, any int, floats (the infinities too; NaN
    comes back as None), str."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        huge_ints(),
        st.floats(allow_nan=False).map(lambda f: f if abs(f) != float("inf") else _inf(f)),
        st.just({"$float": "nan"}),
        st.text(max_size=12),
    )


def _inf(f: float) -> Any:
    return {"$float": "inf" if f > 0 else "-inf"}


def pickle_scalars() -> st.SearchStrategy[Any]:
    """What the reference's pickle adds: bytes, tuples, sets and frozensets (of one kind, so
    that they sort)."""
    orderable = st.one_of(
        st.sets(st.integers(), max_size=4), st.sets(st.text(max_size=4), max_size=4)
    )
    return st.one_of(
        json_scalars(),
        st.binary(max_size=12).map(lambda b: {"$bytes": base64.b64encode(b).decode()}),
        orderable.map(lambda s: {"$set": sorted(s)}),
        orderable.map(lambda s: {"$frozenset": sorted(s)}),
    )


def values(scalars: st.SearchStrategy[Any], tuples: bool) -> st.SearchStrategy[Any]:
    def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        dicts = st.dictionaries(field_names(), children, max_size=3).map(wrap_dollar)
        kinds = [st.lists(children, max_size=3), dicts]
        if tuples:
            kinds.append(st.lists(children, max_size=3).map(lambda v: {"$tuple": v}))
        return st.one_of(*kinds)

    return st.recursive(scalars, containers, max_leaves=6)


def wrap_dollar(d: dict[str, Any]) -> dict[str, Any]:
    """A user dict in tagged form: one whose one key starts with ``$`` is wrapped."""
    return {"$dict": d} if len(d) == 1 and next(iter(d)).startswith("$") else d


SCHEMA_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "int": st.one_of(st.integers(), huge_ints()),
    "str": st.text(max_size=8),
    "float": st.floats(allow_nan=False).map(lambda f: f if abs(f) != float("inf") else _inf(f)),
    "bool": st.booleans(),
    "list": st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=4)), max_size=3),
    "dict": st.dictionaries(st.text(max_size=4), st.integers(), max_size=3).map(wrap_dollar),
}

TABLE_NAMES = ("t", "users", "é", "$t", "with space", "count", "records")
KEY_NAMES = ("id", "key", "pk", "é", "$k")


@st.composite
def tables(draw: st.DrawFn, pickled: bool) -> dict[str, Any]:
    """One table's tagged spec: primary key, schema (type names) or None, rows."""
    pk = draw(st.sampled_from(KEY_NAMES))
    str_keys = draw(st.booleans())
    keys = draw(
        st.lists(
            st.text(max_size=6) if str_keys else st.one_of(st.integers(), huge_ints()),
            unique=True,
            max_size=4,
        )
    )
    if draw(st.booleans()):
        fields = draw(
            st.dictionaries(
                field_names().filter(lambda f: f != pk),
                st.sampled_from(sorted(SCHEMA_VALUES)),
                max_size=3,
            )
        )
        schema: dict[str, str] | None = {pk: "str" if str_keys else "int", **fields}
        rows = [{pk: key, **{f: draw(SCHEMA_VALUES[t]) for f, t in fields.items()}} for key in keys]
    else:
        schema = None
        scalars = pickle_scalars() if pickled else json_scalars()
        row_values = st.dictionaries(
            field_names().filter(lambda f: f != pk), values(scalars, pickled), max_size=3
        )
        rows = [{**draw(row_values), pk: key} for key in keys]
    return {"primary_key": pk, "schema": schema, "rows": rows}


def databases(pickled: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(TABLE_NAMES), tables(pickled), max_size=3)


def our_database(spec: dict[str, Any]) -> DictDB:
    """Our database holding what our reader makes of *spec*."""
    db = DictDB()
    for name, table in spec.items():
        created = db.create_table(name, primary_key=table["primary_key"], schema=table["schema"])
        for row in table["rows"]:
            created.insert(untag(ours(row)))
    return db


# -- both ways ------------------------------------------------------------------------------------


@EXAMPLE_SETTINGS
@given(json_spec=databases(pickled=False), pickle_spec=databases(pickled=True))
def test_what_the_reference_saves_we_load_with_the_same_rows(
    worker: ReferenceWorker, names: Names, json_spec: dict[str, Any], pickle_spec: dict[str, Any]
) -> None:
    for spec, fmt in ((json_spec, "json"), (pickle_spec, "pickle")):
        path = names(f".{fmt}")
        worker.call(op="save", spec=spec, path=str(path), format=fmt)
        assert expected_tables(spec) == actual_tables(DictDB.load(path, fmt))


@EXAMPLE_SETTINGS
@given(json_spec=databases(pickled=False), pickle_spec=databases(pickled=True))
def test_what_save_legacy_writes_the_reference_loads_with_the_same_rows(
    worker: ReferenceWorker, names: Names, json_spec: dict[str, Any], pickle_spec: dict[str, Any]
) -> None:
    for spec, fmt in ((json_spec, "json"), (pickle_spec, "pickle")):
        db = our_database(spec)
        path = save_legacy(db, names(f".{fmt}"), fmt)
        seen = worker.call(op="load", path=str(path), format=fmt)["tables"]
        assert actual_tables(db) == expected_tables(seen)


#: Every golden snapshot in both formats, but for the one holding bytes (not in JSON).
WRITTEN_BACK = [
    (rel, fmt)
    for rel in sorted(r for r in expected_doc()["files"] if "_backup_" in r)
    for fmt in ("json", "pickle")
    if (rel, fmt) != ("snapshots/dictdb_backup_1700000000_000000.pickle", "json")
]


@pytest.mark.parametrize(("rel", "fmt"), WRITTEN_BACK)
def test_the_golden_snapshots_written_back_by_save_legacy_read_the_same_in_the_reference(
    rel: str, fmt: str, worker: ReferenceWorker, tmp_path: Path
) -> None:
    source = LEGACY / rel
    db = DictDB.load(source, file_format(source))
    path = save_legacy(db, tmp_path / f"back.{fmt}", fmt)
    seen = worker.call(op="load", path=str(path), format=fmt)["tables"]
    assert expected_tables(expected_doc()["files"][rel]["tables"]) == expected_tables(seen)


# -- chains ---------------------------------------------------------------------------------------

CHAIN_KEYS = st.integers(1, 6)
CHAIN_CODES = st.sampled_from(["a", "b", "c", "ü"])


def chain_steps(pickled: bool) -> st.SearchStrategy[list[list[Any]]]:
    """Writes to table ``a`` (int keys, no schema) and ``b`` (``code`` keys, schema
    ``{code: str, n: int}``), with backups in between."""
    row = st.dictionaries(
        st.sampled_from(["x", "y", "z"]), values(json_scalars(), pickled), max_size=2
    )
    b_row = st.builds(lambda c, n: {"code": c, "n": n}, CHAIN_CODES, st.integers())
    step = st.one_of(
        st.builds(lambda k, r: ["insert", "a", {**r, "id": k}], CHAIN_KEYS, row),
        st.builds(lambda r: ["insert", "a", r], row),
        st.builds(lambda k, r: ["upsert", "a", {**r, "id": k}], CHAIN_KEYS, row),
        st.builds(lambda k, r: ["update", "a", k, r], CHAIN_KEYS, row),
        st.builds(lambda k: ["delete", "a", k], CHAIN_KEYS),
        st.builds(lambda r: ["insert", "b", r], b_row),
        st.builds(lambda r: ["upsert", "b", r], b_row),
        st.builds(lambda c, n: ["update", "b", c, {"n": n}], CHAIN_CODES, st.integers()),
        st.builds(lambda c: ["delete", "b", c], CHAIN_CODES),
        st.just(["delta"]),
        st.just(["delta"]),
        st.just(["full"]),
    )
    return st.lists(step, max_size=25).map(lambda steps: [*steps, ["delta"]])


CHAIN_BASE: dict[str, Any] = {
    "a": {"primary_key": "id", "schema": None, "rows": [{"id": 1, "x": "one"}]},
    "b": {"primary_key": "code", "schema": {"code": "str", "n": "int"}, "rows": []},
}


@EXAMPLE_SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("fmt", ["json", "pickle"])
def test_restore_of_a_reference_backup_directory_gives_its_live_state_at_each_file(
    fmt: str, worker: ReferenceWorker, names: Names, data: st.DataObject
) -> None:
    steps = data.draw(chain_steps(pickled=fmt == "pickle"), label="steps")
    folder = names()
    answer = worker.call(op="chain", spec=CHAIN_BASE, steps=steps, dir=str(folder), format=fmt)
    assert expected_tables(answer["tables"]) == actual_tables(restore(folder))
    for name, tables in answer["files"].items():
        at = name_time(folder / name)
        assert (name, expected_tables(tables)) == (name, actual_tables(restore(folder, at=at)))


# -- the golden files -----------------------------------------------------------------------------


def test_regenerating_the_legacy_golden_files_gives_the_same_bytes(tmp_path: Path) -> None:
    # All but the wall-clock "timestamp" member of each delta: make_legacy.py is deterministic,
    # and the committed files are what the reference writes.
    python = reference_python()
    out = tmp_path / "legacy"
    subprocess.run(
        [str(python), str(MAKE_LEGACY), str(out)],
        cwd=tmp_path,
        env=reference_env(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    shutil.copy(MAKE_LEGACY, out / MAKE_LEGACY.name)
    committed = sorted(p.relative_to(LEGACY) for p in LEGACY.rglob("*") if p.is_file())
    committed = [p for p in committed if "__pycache__" not in p.parts]
    assert committed == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    for rel in committed:
        if rel.parent.name.startswith("chain-") and rel.name.startswith("dictdb_delta_"):
            mine, theirs = (_without_timestamp(root / rel) for root in (LEGACY, out))
        else:
            mine, theirs = (LEGACY / rel).read_bytes(), (out / rel).read_bytes()
        assert (rel, mine) == (rel, theirs)


def _without_timestamp(path: Path) -> bytes:
    lines = path.read_bytes().splitlines()
    return b"\n".join(line for line in lines if not line.lstrip().startswith(b'"timestamp"'))
