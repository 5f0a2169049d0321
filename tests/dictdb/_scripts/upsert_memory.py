"""Print how much a process's peak RSS grows over N upserts on 1,000 rows.

Usage: ``python -m tests.dictdb._scripts.upsert_memory N RETAIN`` with RETAIN ``none``
(the default journal policy), ``true`` or ``false``, or ``manager`` (the default policy with
a BackupManager whose full backup was taken before the upserts, and whose deltas all fail: the
journal keeps what changed since, compacted). Prints the growth in KiB.

The peak is the kernel's VmHWM of this process's memory (reset at exec), not getrusage's
ru_maxrss, which Linux carries over from the parent that forked it: under a large test
runner the child's own growth would not show.
"""

from __future__ import annotations

import resource
import signal
import sys
import tempfile
from pathlib import Path

from dictdb import BackupManager, DictDB


def main() -> None:
    n, mode = int(sys.argv[1]), sys.argv[2]
    db = DictDB(retain_journal={"true": True, "false": False}.get(mode))
    db.create_table("t")
    t = db.get_table("t")
    for i in range(1000):
        t.upsert({"id": i, "v": 0, "name": "row"})
    with tempfile.TemporaryDirectory() as directory:
        if mode == "manager":
            manager = BackupManager(db, directory, incremental=True)
            manager.backup_full()
            # Every delta from now on fails for real: files may not grow past 1 KiB (EFBIG).
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
        before = peak_kib()
        for i in range(n):
            t.upsert({"id": i % 1000, "v": i, "name": "row"})
            if mode == "manager" and i % 50_000 == 49_999:
                assert manager.backup_delta() is None  # fails: pins and unpins a cut
                assert manager.consecutive_failures, "the delta was expected to fail"
        print(peak_kib() - before)


def peak_kib() -> int:
    """This process's peak resident set since exec (Linux's VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main()
