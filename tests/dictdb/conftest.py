"""Fixtures shared by several test modules of `tests/dictdb`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dictdb import DictDB
from tests.dictdb._scripts.audit_dirs import Built, build_durable_dir, build_snapshot_dir


@pytest.fixture(params=["memory", "durable"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DictDB]:
    """A new, empty database, once in memory (`DictDB()`) and once durable (`DictDB.open`).

    For behaviour that must hold in both modes: in durable mode every write also goes through
    the log (``fsync="off"``: the OS decides, the tests do not wait on the disk). At teardown
    the durable database is closed, and its directory reopened must hold the state the test
    left (what the log took is what the database did, refusals included).
    """
    if request.param == "memory":
        yield DictDB(retain_journal=True)  # the tests read the journal
        return
    path = tmp_path / "d"
    durable_db = DictDB.open(path, fsync="off", retain_journal=True)
    try:
        assert durable_db.durable
        yield durable_db
        left = (durable_db.lsn, durable_db.to_dict())
    finally:
        durable_db.close()
    with DictDB.open(path, fsync="off", retain_journal=True) as reopened:
        assert left == (reopened.lsn, reopened.to_dict())


@pytest.fixture
def quiet_dictdb_logs() -> Iterator[None]:
    """Silence the `dictdb` logger for a test that provokes failures on purpose."""
    logger = logging.getLogger("dictdb")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


# The audit and CLI tests read the same kinds of directories; each module builds its own
# (module scope), since some tests damage copies and timings differ.


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A backup directory of full snapshots and deltas."""
    return build_snapshot_dir(tmp_path_factory.mktemp("snap"))


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A durable database directory: log, snapshots and deltas."""
    return build_durable_dir(tmp_path_factory.mktemp("durable"))
