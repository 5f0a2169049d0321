"""Network faults between dictdb and object storage: a small HTTP proxy on loopback, in front
of the real S3-compatible server, fails the Nth request (500, 503 SlowDown, a reset
connection, a stall past the client's timeout). Swept across a full backup, a delta and a log
shipment: afterwards the newest good point restores, the counters are right, and nothing is
lost once the target is back."""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dictdb import BackupManager, DictDB, restore
from dictdb.storage.target import FsspecTarget, RetryPolicy
from tests.conftest import S3Server

FAULTS = ("500", "503", "reset", "stall")
#: Which requests a sweep fails: every one for 500, every second for 503; for the slow ones (a reset
#: waits for the client's retry, a stall for its timeout), every third in the default run and
#: every one under `-m slow` (`test_a_fault_at_every_request_of_a_backup_loses_nothing`).
STRIDE = {"500": 1, "503": 2, "reset": 3, "stall": 3}


class FaultProxy:
    """Forwards HTTP requests to *upstream*; request number `fail_at` gets `fault`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.count = 0
        self.fail_at = 0
        self.fault = "500"
        self.failed = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.count += 1
                    fail = proxy.count == proxy.fail_at or proxy.fail_at < 0  # < 0: an outage
                if fail:
                    proxy.failed += 1
                    self._fail(proxy.fault)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                # The request goes on as signed (its Host header included).
                headers = dict(self.headers.items())
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                # A HEAD's length is the object's, as the server said (its body is empty).
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _fail(self, fault: str) -> None:
                if fault == "reset":
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.connection.close()
                    return
                if fault == "stall":
                    time.sleep(2.5)  # past the client's read timeout (1 s in these tests)
                    self.connection.close()
                    return
                status = 500 if fault == "500" else 503
                code = "InternalError" if fault == "500" else "SlowDown"
                body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def arm(self, n: int, fault: str) -> None:
        with self.lock:
            self.count = 0
            self.fail_at = n
            self.fault = fault

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    p = FaultProxy(s3_server.endpoint)
    yield p
    p.close()


def target_via(proxy: FaultProxy, url: str) -> FsspecTarget:
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": proxy.endpoint, "region_name": "us-east-1"},
        "config_kwargs": {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}},
        "skip_instance_cache": True,
    }
    return FsspecTarget(url, options, retry=RetryPolicy(attempts=3, base=0.01, deadline=10))


def requests_of(proxy: FaultProxy, action: Any) -> int:
    proxy.arm(0, "500")
    action()
    return proxy.count


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_at_any_request_of_a_backup_loses_nothing(
    s3_server: S3Server, proxy: FaultProxy, fault: str
) -> None:
    sweep_a_backup(s3_server, proxy, fault, STRIDE[fault])


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["reset", "stall"])
def test_a_fault_at_every_request_of_a_backup_loses_nothing(
    s3_server: S3Server, proxy: FaultProxy, fault: str
) -> None:
    sweep_a_backup(s3_server, proxy, fault, 1)


def sweep_a_backup(s3_server: S3Server, proxy: FaultProxy, fault: str, stride: int) -> None:
    url = s3_server.url()
    target = target_via(proxy, url)
    db = DictDB()
    failures: list[int] = []
    manager = BackupManager(
        db,
        target,
        incremental=True,
        min_backup_interval=0,
        on_backup_failure=lambda err, n: failures.append(n),
    )
    table = db.create_table("t")
    table.insert([{"v": i} for i in range(50)])
    # How many requests a full backup and a delta make (no fault), to sweep them.
    full_requests = requests_of(proxy, manager.backup_full)
    table.insert([{"v": i} for i in range(5)])
    delta_requests = requests_of(proxy, manager.backup_delta)
    assert full_requests > 2
    assert delta_requests > 1
    for kind, n_requests in (("full", full_requests), ("delta", delta_requests)):
        for n in range(1, n_requests + 1, stride):
            table.insert({"v": n})
            before = len(failures)
            proxy.arm(n, fault)
            written = manager.backup_full() if kind == "full" else manager.backup_delta()
            proxy.arm(0, fault)
            if written is None:  # the retries ran out: reported, counted, nothing released
                assert len(failures) == before + 1
                assert manager.consecutive_failures >= 1
            else:
                assert manager.consecutive_failures == 0
            # The newest good point restores, straight from the server.
            good = restore(url, storage_options=s3_server.options)
            assert good.lsn <= db.lsn
            # The target is back: the next backup covers everything.
            table.insert({"v": -n})
            assert manager.backup_now() is not None
            assert manager.consecutive_failures == 0
            assert db.to_dict() == restore(url, storage_options=s3_server.options).to_dict()


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_while_shipping_the_log_loses_nothing(
    tmp_path: Path, s3_server: S3Server, proxy: FaultProxy, fault: str
) -> None:
    url = s3_server.url()
    target = target_via(proxy, url)
    with DictDB.open(tmp_path / "db", fsync="always") as db:
        manager = BackupManager(db, target, min_backup_interval=0, archive_interval=3600)
        table = db.create_table("t")
        manager.backup_full()
        manager.start()  # the interval is long: shipments happen when asked
        table.insert({"v": 0})
        ship_requests = requests_of(proxy, manager.ship_log)
        for n in range(1, ship_requests + 3):
            table.insert({"v": n})
            proxy.arm(n, fault)
            manager.ship_log()
            proxy.arm(0, fault)
            assert db.lsn == manager.ship_log()  # back: shipped up to the disk
            got = restore(url, storage_options=s3_server.options)
            assert (db.lsn, db.to_dict()) == (got.lsn, got.to_dict())
        manager.stop(final_backup=False)


def test_an_outage_fails_backups_with_counters_and_the_next_backup_covers_it(
    s3_server: S3Server, proxy: FaultProxy
) -> None:
    url = s3_server.url()
    target = target_via(proxy, url)
    failures: list[int] = []
    db = DictDB()
    table = db.create_table("t")
    proxy.arm(-1, "503")  # the endpoint answers SlowDown to everything
    manager = BackupManager(  # creating a manager during an outage does not fail
        db,
        target,
        incremental=True,
        min_backup_interval=0,
        on_backup_failure=lambda err, n: failures.append(n),
    )
    for i in range(3):
        table.insert({"v": i})  # the application's writes go on
        started = time.monotonic()
        assert manager.backup_now() is None
        assert time.monotonic() - started < 15  # bounded: never minutes
    assert ([1, 2, 3], 3) == (failures, manager.consecutive_failures)
    proxy.arm(0, "503")  # back
    assert manager.backup_now() is not None
    assert 0 == manager.consecutive_failures
    assert db.to_dict() == restore(url, storage_options=s3_server.options).to_dict()
