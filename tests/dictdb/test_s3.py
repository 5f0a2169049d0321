"""Backups on object storage: a real S3-compatible server (moto's, on loopback, started by
the session fixture in tests/conftest.py), through s3fs. No mock of our code or the network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dictdb import BackupManager, DictDB, RestoreError, list_backups, restore
from dictdb.audit import history, verify
from dictdb.storage.target import FsspecTarget, as_target
from tests.conftest import S3Server

SECRET = "s3cr3t-never-printed-0xC0FFEE"


@pytest.fixture
def s3(s3_server: S3Server) -> tuple[str, dict[str, Any]]:
    options = {**s3_server.options, "secret": SECRET}
    return s3_server.url(), options


def s3_manager(db: DictDB, url: str, options: dict[str, Any]) -> BackupManager:
    return BackupManager(db, url, incremental=True, min_backup_interval=0, storage_options=options)


def populate(db: DictDB, manager: BackupManager) -> list[tuple[int, dict[str, Any]]]:
    points = []
    users = db.create_table("users")
    with db.audit(actor="alice", reason="signup"):
        users.insert([{"id": i, "name": f"u{i}"} for i in range(20)])
    manager.backup_full()
    points.append((db.lsn, db.to_dict()))
    for step in range(3):
        with db.audit(actor="bob", reason=f"edit {step}"):
            users.update({"name": f"edited-{step}"}, where=users.id == step)
            users.delete(where=users.id == 19 - step)
        manager.backup_delta()
        points.append((db.lsn, db.to_dict()))
    return points


def test_backups_on_s3_restore_at_every_point(s3: tuple[str, dict[str, Any]]) -> None:
    url, options = s3
    db = DictDB()
    manager = BackupManager(
        db, url, incremental=True, min_backup_interval=0, storage_options=options
    )
    points = populate(db, manager)
    assert db.to_dict() == restore(url, storage_options=options).to_dict()
    for lsn, state in points:
        got = restore(url, lsn=lsn, storage_options=options)
        assert (lsn, state) == (got.lsn, got.to_dict())
    catalog = list_backups(url, storage_options=options)
    assert (1, 3) == (len(catalog.chains), len(catalog.chains[0].deltas))
    report = verify(url, storage_options=options)
    assert report.ok, report.findings
    versions = history(url, "users", 1, storage_options=options)
    assert "edited-1" == versions[-1].after["name"]


def test_objects_are_named_like_files_so_a_synced_directory_restores_both_ways(
    tmp_path: Path, s3: tuple[str, dict[str, Any]]
) -> None:
    url, options = s3
    local = tmp_path / "local"
    db = DictDB()
    populate(db, BackupManager(db, local, incremental=True, min_backup_interval=0))
    target = as_target(url, options)
    assert isinstance(target, FsspecTarget)
    for f in sorted(local.iterdir()):
        target.put(f.name, f.read_bytes())  # what `aws s3 sync` would do
    assert {f.name for f in local.iterdir()} == {e.name for e in target.list()}
    assert db.to_dict() == restore(url, storage_options=options).to_dict()
    down = tmp_path / "down"
    down.mkdir()
    for e in target.list():
        with target.open(e.name) as handle:
            (down / e.name).write_bytes(handle.read())
    assert db.to_dict() == restore(down).to_dict()


def test_a_hostile_bucket_restores_its_own_newest_state(
    s3: tuple[str, dict[str, Any]], s3_server: S3Server
) -> None:
    url, options = s3
    db = DictDB()
    manager = BackupManager(
        db, url, incremental=True, min_backup_interval=0, storage_options=options
    )
    populate(db, manager)
    target = as_target(url, options)
    assert isinstance(target, FsspecTarget)
    other = DictDB()
    other_url = s3_server.url()
    other_manager = BackupManager(
        other, other_url, incremental=True, min_backup_interval=0, storage_options=options
    )
    other.create_table("x").insert([{"v": i} for i in range(50)])
    other_manager.backup_full()
    other.get_table("x").insert({"v": 99})
    stray = other_manager.backup_delta()
    assert stray is not None
    other_target = as_target(other_url, options)
    with other_target.open(stray.name) as handle:
        target.put(stray.name, handle.read())  # another database's newer delta
    target.put("dictdb_backup_9999999999_000000.json", b"")  # zero bytes
    target.put("README.txt", b"not a backup")
    target.put("dictdb_delta_9999999999_000001.json", b"\xff\xfe garbage")
    # An upload that never completed: invisible, as a multipart upload is until completed.
    unfinished = target.create("dictdb_backup_9999999999_000002.json", overwrite=False)
    try:
        unfinished.write(b"{" * (6 << 20))
        catalog = list_backups(url, storage_options=options)
        assert [stray.name] == [p.name for p, _ in catalog.strays]
        damaged = ["dictdb_backup_9999999999_000000.json", "dictdb_delta_9999999999_000001.json"]
        assert damaged == sorted(p.name for p, _ in catalog.unreadable)
        assert "dictdb_backup_9999999999_000002.json" not in {e.name for e in target.list()}
        # Damaged names newer than our files might hold operations we need: the newest
        # state is refused, naming one; any exact point of our own still restores.
        with pytest.raises(RestoreError, match="unreadable, and it may be needed") as err:
            restore(url, storage_options=options)
        assert any(name in str(err.value) for name in damaged)
        assert db.to_dict() == restore(url, lsn=db.lsn, storage_options=options).to_dict()
        for name in damaged:  # once the garbage is removed, the newest state restores
            target.delete(name)
        assert db.to_dict() == restore(url, storage_options=options).to_dict()
    finally:
        unfinished.discard()


def test_two_writers_never_overwrite_each_other(s3: tuple[str, dict[str, Any]]) -> None:
    url, options = s3
    target = as_target(url, options)
    first = target.create("dictdb_backup_1_000000.json", overwrite=False)
    second = target.create("dictdb_backup_1_000000.json", overwrite=False)
    first.write(b"first")
    second.write(b"second")
    first.publish()
    with pytest.raises(FileExistsError):
        second.publish()
    with target.open("dictdb_backup_1_000000.json") as handle:
        assert b"first" == handle.read()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dictdb", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_the_cli_works_on_a_bucket_with_the_standard_configuration_and_never_prints_secrets(
    tmp_path: Path, s3: tuple[str, dict[str, Any]], s3_server: S3Server
) -> None:
    url, options = s3
    db = DictDB()
    populate(
        db, BackupManager(db, url, incremental=True, min_backup_interval=0, storage_options=options)
    )
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server.endpoint,
    }
    outputs = []
    first = min(
        (f for f in list_backups(url, storage_options=options).files), key=lambda f: f.last_lsn
    )
    for args in (
        ("ls", url),
        ("verify", url),
        ("history", url, "users", "1"),
        ("log", url, "--table", "users"),
        ("diff", url, "--from", f"lsn:{first.last_lsn}", "--to", f"lsn:{db.lsn}"),
        ("inspect", f"{url}/{first.path.name}"),
        ("restore", url, "--out", str(tmp_path / "x.json")),
    ):
        result = run_cli(*args, env=env)
        outputs.append(result.stdout + result.stderr)
        assert 0 == result.returncode, (args, result.stdout, result.stderr)
    assert db.to_dict() == DictDB.load(tmp_path / "x.json").to_dict()
    missing = run_cli("ls", url.replace("dictdb-tests", "no-such-bucket-here"), env=env)
    outputs.append(missing.stdout + missing.stderr)
    assert not any(SECRET in text for text in outputs)


def test_creating_a_manager_for_an_unreachable_endpoint_does_not_fail(tmp_path: Path) -> None:
    """An application may start during an outage: the first backup reports it."""
    failures: list[tuple[BaseException, int]] = []
    db = DictDB()
    db.create_table("t").insert({"v": 1})
    target = FsspecTarget(
        "s3://bucket/prefix",
        {
            "key": "k",
            "secret": SECRET,
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},  # nothing listens
        },
    )
    target.retry = type(target.retry)(attempts=2, base=0.01, deadline=2.0)
    manager = BackupManager(
        db,
        target,
        min_backup_interval=0,
        on_backup_failure=lambda err, n: failures.append((err, n)),
    )
    assert manager.backup_now() is None
    assert 1 == manager.consecutive_failures
    assert len(failures) == 1
    assert SECRET not in str(failures[0][0])
