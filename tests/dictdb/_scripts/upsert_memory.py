"""Print how much a process's peak RSS grows over N upserts on 1,000 rows.

Usage: ``python -m tests.dictdb._scripts.upsert_memory N RETAIN`` with RETAIN ``none``
(the default journal policy), ``true`` or ``false``. Prints the growth in KiB.
"""

from __future__ import annotations

import resource
import sys

from dictdb import DictDB


def main() -> None:
    n, retain = int(sys.argv[1]), {"none": None, "true": True, "false": False}[sys.argv[2]]
    db = DictDB(retain_journal=retain)
    db.create_table("t")
    t = db.get_table("t")
    for i in range(1000):
        t.upsert({"id": i, "v": 0, "name": "row"})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(n):
        t.upsert({"id": i % 1000, "v": i, "name": "row"})
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)


if __name__ == "__main__":
    main()
