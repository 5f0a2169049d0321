"""Helpers shared by the worker modules (`_worker.py`, `_wstorage.py`).

Imported by plain name when the worker runs as a script (the reference's ``python -I
benchmarks/_worker.py``, which puts the benchmarks directory on ``sys.path`` itself) and as
``benchmarks._wcommon`` otherwise. Imports nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEPTS: tuple[str, ...] = (
    "eng",
    "ops",
    "sales",
    "hr",
    "legal",
    "finance",
    "support",
    "research",
    "design",
    "marketing",
)
TABLE = "users"
RANGE_LOW = 80  # select_range_sorted: age >= RANGE_LOW
SCRATCH_ENV = "DICTDB_BENCH_SCRATCH"


class NotSupportedError(Exception):
    """The implementation does not offer what the workload needs (reported, not fatal)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Case:
    """One repetition: ``run`` is timed; everything else was prepared untimed.

    ``run`` may store its own measurement in ``measured["value"]`` (in the workload's base
    unit: seconds, or MiB for memory workloads); the driver then reports that instead of the
    elapsed time of ``run``. It may also add to ``extras`` while running.
    """

    run: Callable[[], Any]
    ops: int
    check: Callable[[Any], None] | None = None
    extras: dict[str, float] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)
    cleanup: Callable[[], None] | None = None


def row(i: int) -> dict[str, Any]:
    return {"name": f"user{i}", "age": i % 90, "dept": DEPTS[i % 10]}


def keyed_row(i: int, age: int | None = None) -> dict[str, Any]:
    """Row *i* with its ``id``; *age* replaces the age (a changed version of the row)."""
    r = {"id": i, **row(i)}
    if age is not None:
        r["age"] = age
    return r


def make_rows(size: int, *, explicit_keys: bool = False) -> list[dict[str, Any]]:
    """Fresh row dicts ``1..size``; with ``explicit_keys`` each row carries ``id == i``."""
    if explicit_keys:
        return [{"id": i, **row(i)} for i in range(1, size + 1)]
    return [row(i) for i in range(1, size + 1)]


def spread(seq: list[Any], count: int) -> list[Any]:
    """``count`` items taken evenly across ``seq`` (cycling when count > len(seq))."""
    if not seq:
        return []
    step = max(1, len(seq) // max(1, count))
    picked = seq[::step][:count]
    while len(picked) < count:
        picked.extend(picked[: count - len(picked)])
    return picked


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(f"wrong result: {message}")


def range_count(size: int) -> int:
    return sum(1 for i in range(1, size + 1) if i % 90 >= RANGE_LOW)


# --------------------------------------------------------------------------- memory


def rss_mib() -> float:
    """The process's peak RSS so far (``ru_maxrss``), MiB."""
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _proc_status(name: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def current_rss_mib() -> float:
    """The resident set size now (VmRSS), MiB; the peak when /proc is missing."""
    value = _proc_status("VmRSS")
    return rss_mib() if value is None else value


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5); False when not possible.

    After a reset, ``ru_maxrss`` and VmHWM report the peak from now on (the process has no
    exited threads whose peak would be kept).
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """The peak RSS since the last reset (VmHWM), MiB; ``ru_maxrss`` without /proc."""
    value = _proc_status("VmHWM")
    return rss_mib() if value is None else value


class PeakMemory:
    """Measures the extra memory a block needs: peak RSS during it minus RSS before it."""

    def __init__(self) -> None:
        self.before = 0.0
        self.peak = 0.0
        self.ru_before = 0.0
        self.ru_after = 0.0
        self.reset = False

    def __enter__(self) -> PeakMemory:
        self.ru_before = rss_mib()
        self.before = current_rss_mib()
        self.reset = reset_peak_rss()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = peak_rss_mib()
        self.ru_after = rss_mib()

    @property
    def extra(self) -> float:
        return max(0.0, self.peak - self.before)

    def extras(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}rss_before_mib": round(self.before, 1),
            f"{prefix}peak_rss_mib": round(self.peak, 1),
            f"{prefix}ru_maxrss_before_mib": self.ru_before,
            f"{prefix}ru_maxrss_after_mib": self.ru_after,
            f"{prefix}peak_reset": float(self.reset),
        }


# --------------------------------------------------------------------------- files


def scratch_root() -> Path:
    """The run's scratch directory (set by the runner; a temp directory otherwise)."""
    root = os.environ.get(SCRATCH_ENV)
    if not root:
        import tempfile

        root = tempfile.mkdtemp(prefix="dictdb-bench-")
        os.environ[SCRATCH_ENV] = root
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


_COUNTER = [0]


def fresh_dir(label: str) -> Path:
    """A new empty directory under the scratch root."""
    _COUNTER[0] += 1
    path = scratch_root() / f"{label}-{os.getpid()}-{_COUNTER[0]}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def fixture(name: str, build: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """A directory built once per run and reused (also by later worker processes).

    *build* fills the empty directory and returns a manifest (JSON-able), stored beside it.
    A directory without its ``.complete`` marker (an interrupted build) is rebuilt.
    """
    import json

    path = scratch_root() / f"fixture-{name}"
    marker = path / ".complete"
    if marker.exists():
        return path, json.loads(marker.read_text())
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    manifest = build(path)
    marker.write_text(json.dumps(manifest))
    return path, manifest


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


MIB = 1024 * 1024


# --------------------------------------------------------------------------- writer threads


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class Writers:
    """*threads* threads, each inserting its share of *ops* rows one at a time.

    Threads start untimed and wait on a barrier; `run` releases them and joins them, so
    the timed span is the writing alone. Each insert's latency is recorded.
    """

    def __init__(self, insert: Callable[[Any], Any], rows: list[Any], threads: int) -> None:
        self.latencies: list[list[float]] = [[] for _ in range(threads)]
        self.errors: list[BaseException] = []
        self._barrier = threading.Barrier(threads + 1)
        shares = [rows[i::threads] for i in range(threads)]
        self._threads = [
            threading.Thread(target=self._work, args=(insert, shares[i], self.latencies[i]))
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self, insert: Callable[[Any], Any], share: list[Any], lat: list[float]) -> None:
        clock = time.perf_counter
        append = lat.append
        try:
            self._barrier.wait()
            for item in share:
                start = clock()
                insert(item)
                append(clock() - start)
        except BaseException as exc:
            self.errors.append(exc)

    def run(self) -> int:
        self._barrier.wait()
        for thread in self._threads:
            thread.join()
        if self.errors:
            raise self.errors[0]
        return sum(map(len, self.latencies))

    def abort(self) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            self._barrier.abort()
        for thread in self._threads:
            thread.join()

    def extras(self, elapsed: float | None = None) -> dict[str, float]:
        values = sorted(v for lat in self.latencies for v in lat)
        out = {
            "p50_us": percentile(values, 0.50) * 1e6,
            "p99_us": percentile(values, 0.99) * 1e6,
            "max_us": (values[-1] if values else 0.0) * 1e6,
            "mean_us": (statistics.fmean(values) if values else 0.0) * 1e6,
        }
        if elapsed:
            out["ops_per_s"] = len(values) / elapsed
        return out
