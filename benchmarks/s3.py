"""Backups on object storage against a local directory, side by side in one run.

    python -m benchmarks.s3 [--sizes 100000,1000000] [--deltas 100] [--out DIR]

Starts moto's S3 server on a free loopback port (`moto[server]`, from the test extra), with
a counting proxy in front of it for the bytes and requests each backup sends, and measures,
for each size: a full backup and its restore (local directory vs the S3 server), a 1%
delta (time, bytes uploaded against the full snapshot's, requests), the restore of a full
snapshot and `--deltas` deltas, and the log shipping lag of a durable database written at
about 10,000 operations a second with ``archive_interval=1.0``. Writes `s3.json` and `s3.md`
into `--out` (default `benchmarks/results/`). Nothing asserts on timings; the budgets of
issue 18 are printed beside the figures.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import http.server
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from dictdb import BackupManager, DictDB, restore

BUCKET = "dictdb-bench"


class CountingProxy:
    """Forwards HTTP to the S3 server, counting requests and the bytes sent to it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.requests = 0
        self.sent = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.requests += 1
                    proxy.sent += length
                conn = http.client.HTTPConnection(proxy.upstream, timeout=120)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                length_out = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length_out or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            self.sent = 0


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    with urllib.request.urlopen(
        urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT"), timeout=10
    ):
        pass
    return proc, endpoint


def options(endpoint: str) -> dict[str, Any]:
    return {
        "key": "bench",
        "secret": "bench",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }


def populated(size: int) -> DictDB:
    db = DictDB()
    db.create_table("t").insert(
        [{"id": i, "name": f"user-{i}", "age": i % 90, "city": "Paris"} for i in range(size)]
    )
    return db


def change(db: DictDB, fraction: float, salt: int) -> None:
    table = db.get_table("t")
    size = table.count()
    step = max(1, round(1 / fraction))
    for key in range(salt % step, size, step):
        table.upsert({"id": key, "name": f"user-{key}-{salt}", "age": (key + salt) % 90})


def timed(fn: Any) -> tuple[float, Any]:
    gc.collect()  # as the main suite does: no collection debt from the previous step
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_size(size: int, deltas: int, endpoint: str, proxy: CountingProxy) -> dict[str, Any]:
    row: dict[str, Any] = {"size": size}
    scratch = Path(tempfile.mkdtemp(prefix="dictdb-s3bench-"))
    try:
        local = scratch / "local"
        url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
        counted = options(proxy.endpoint)
        direct = options(endpoint)
        # Two equal databases: a database's delta chain follows one target at a time.
        db, db2 = populated(size), populated(size)
        m_local = BackupManager(db, local, incremental=True, min_backup_interval=0)
        m_s3 = BackupManager(
            db2, url, incremental=True, min_backup_interval=0, storage_options=counted
        )
        full_lsn = db.lsn
        row["full_local_s"], _ = timed(m_local.backup_full)
        proxy.reset()
        row["full_s3_s"], _ = timed(m_s3.backup_full)
        row["full_s3_bytes"], row["full_s3_requests"] = proxy.sent, proxy.requests
        change(db, 0.01, 1)
        change(db2, 0.01, 1)
        row["delta_local_s"], _ = timed(m_local.backup_delta)
        proxy.reset()
        row["delta_s3_s"], _ = timed(m_s3.backup_delta)
        row["delta_s3_bytes"], row["delta_s3_requests"] = proxy.sent, proxy.requests
        row["delta_over_full_bytes"] = row["delta_s3_bytes"] / row["full_s3_bytes"]
        # Each restored database is dropped before the next step: a live one would make the
        # next step's garbage collections walk a million more rows.
        row["restore_full_local_s"], _ = timed(lambda: restore(local, lsn=full_lsn))
        del _
        row["restore_full_s3_s"], _ = timed(
            lambda: restore(url, lsn=full_lsn, storage_options=direct)
        )
        del _
        for i in range(2, deltas + 1):  # the chain: one full and `deltas` deltas
            change(db, 0.001, i)
            change(db2, 0.001, i)
            m_local.backup_delta()
            m_s3.backup_delta()
        row["chain_deltas"] = deltas
        row["restore_chain_local_s"], back = timed(lambda: restore(local))
        assert back.to_dict() == db.to_dict()
        del back
        row["restore_chain_s3_s"], back = timed(lambda: restore(url, storage_options=direct))
        assert back.to_dict() == db2.to_dict()
        del back
        row["restore_chain_ratio"] = row["restore_chain_s3_s"] / row["restore_chain_local_s"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return row


def bench_lag(endpoint: str, seconds: float, rate: int, interval: float) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="dictdb-s3lag-"))
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    acked: dict[int, float] = {}
    shipped_at: dict[int, float] = {}
    try:
        db = DictDB.open(scratch / "db", fsync="everysec")
        table = db.create_table("t")
        manager = BackupManager(
            db,
            url,
            min_backup_interval=0,
            archive_interval=interval,
            storage_options=options(endpoint),
        )
        manager.backup_full()
        manager.start()
        stop = threading.Event()
        archiver = manager._archiver

        def watch() -> None:
            last = 0
            while not stop.is_set():
                now_shipped = archiver.shipped_lsn if archiver is not None else 0
                if now_shipped > last:
                    t = time.perf_counter()
                    for lsn in range(last + 1, now_shipped + 1):
                        shipped_at[lsn] = t
                    last = now_shipped
                time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            table.insert({"v": i})
            acked[db.lsn] = time.perf_counter()
            i += 1
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        deadline = time.perf_counter() + 10 * interval
        while time.perf_counter() < deadline and max(shipped_at, default=0) < db.lsn:
            time.sleep(0.01)
        stop.set()
        watcher.join()
        manager.stop(final_backup=False)
        achieved = len(acked) / seconds
        db.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lags = sorted(shipped_at[lsn] - t for lsn, t in acked.items() if lsn in shipped_at)
    missing = len([lsn for lsn in acked if lsn not in shipped_at])
    return {
        "interval_s": interval,
        "rate_ops_s": round(achieved),
        "ops": len(acked),
        "unshipped": missing,
        "lag_p50_s": statistics.median(lags) if lags else None,
        "lag_p99_s": lags[int(len(lags) * 0.99) - 1] if lags else None,
        "lag_max_s": lags[-1] if lags else None,
    }


def report(rows: list[dict[str, Any]], lag: dict[str, Any]) -> str:
    lines = [
        "# dictdb on object storage (moto's S3 server on loopback) vs a local directory",
        "",
        "`python -m benchmarks.s3`: one run; times in seconds; bytes and requests counted by",
        "a proxy in front of the server (restores talk to the server directly).",
        "",
        "| rows | full local | full S3 | full bytes | full requests | 1% delta local |"
        " 1% delta S3 | delta bytes | delta/full bytes | delta requests |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['full_local_s']:.3f} | {r['full_s3_s']:.3f} |"
            f" {r['full_s3_bytes']:,} | {r['full_s3_requests']} | {r['delta_local_s']:.4f} |"
            f" {r['delta_s3_s']:.4f} | {r['delta_s3_bytes']:,} |"
            f" {r['delta_over_full_bytes']:.2%} | {r['delta_s3_requests']} |"
        )
    lines += [
        "",
        "| rows | restore full local | restore full S3 | chain (deltas) |"
        " restore chain local | restore chain S3 | S3 / local |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['restore_full_local_s']:.3f} | {r['restore_full_s3_s']:.3f} |"
            f" {r['chain_deltas']} | {r['restore_chain_local_s']:.3f} |"
            f" {r['restore_chain_s3_s']:.3f} | {r['restore_chain_ratio']:.2f}x |"
        )
    lines += [
        "",
        f"Log shipping, `archive_interval={lag['interval_s']}`, a durable database written at"
        f" {lag['rate_ops_s']:,} operations/s for {lag['ops']:,} operations: lag p50"
        f" {lag['lag_p50_s']:.3f} s, p99 {lag['lag_p99_s']:.3f} s, max {lag['lag_max_s']:.3f} s;"
        f" {lag['unshipped']} not shipped at the end.",
        "",
        "Budgets (issue 18): restore of the largest size's chain from the server <= 1.5 x local;",
        "a 1% delta uploads <= 2% of a full snapshot's bytes; shipping lag p99 <= 2 x",
        "`archive_interval`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.s3")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--deltas", type=int, default=100)
    parser.add_argument("--lag-seconds", type=float, default=10.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    proc, endpoint = start_server()
    proxy = CountingProxy(endpoint)
    try:
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            rows.append(bench_size(size, args.deltas, endpoint, proxy))
            print(json.dumps(rows[-1]), flush=True)
        lag = bench_lag(endpoint, args.lag_seconds, 10_000, 1.0)
        print(json.dumps(lag), flush=True)
    finally:
        proxy.server.shutdown()
        proc.terminate()
        proc.wait()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "s3.json").write_text(json.dumps({"sizes": rows, "lag": lag}, indent=2) + "\n")
    (out / "s3.md").write_text(report(rows, lag))
    print(report(rows, lag))


if __name__ == "__main__":
    main()
