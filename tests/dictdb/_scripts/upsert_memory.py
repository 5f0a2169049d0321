"""Print how much a process's peak RSS grows over N upserts on 1,000 rows.

Usage: ``python -m tests.dictdb._scripts.upsert_memory N RETAIN`` with RETAIN ``none``
(the default journal policy), ``true`` or ``false``. Prints the growth in KiB.

The peak is the kernel's VmHWM of this process's memory (reset at exec), not getrusage's
ru_maxrss, which Linux carries over from the parent that forked it: under a large test
runner the child's own growth would not show.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dictdb import DictDB


def main() -> None:
    n, retain = int(sys.argv[1]), {"none": None, "true": True, "false": False}[sys.argv[2]]
    db = DictDB(retain_journal=retain)
    db.create_table("t")
    t = db.get_table("t")
    for i in range(1000):
        t.upsert({"id": i, "v": 0, "name": "row"})
    before = peak_kib()
    for i in range(n):
        t.upsert({"id": i % 1000, "v": i, "name": "row"})
    print(peak_kib() - before)


def peak_kib() -> int:
    """This process's peak resident set since exec (Linux's VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main()
