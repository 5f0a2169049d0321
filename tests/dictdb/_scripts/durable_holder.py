"""Another process for the directory-lock tests of ``tests/dictdb/test_durable.py``.

``python -m tests.dictdb._scripts.durable_holder try DIR``: tries `DictDB.open` and prints
``locked`` (DatabaseLockedError) or ``opened`` (then closes).

``python -m tests.dictdb._scripts.durable_holder hold DIR``: opens DIR with ``fsync="always"``,
inserts one row into table ``held`` (created if missing), prints ``READY <lsn>`` and sleeps
until killed.
"""

from __future__ import annotations

import sys
import time

from dictdb import DictDB
from dictdb.durable import DatabaseLockedError


def main(argv: list[str]) -> int:
    mode, directory = argv
    if mode == "try":
        try:
            db = DictDB.open(directory)
        except DatabaseLockedError:
            print("locked", flush=True)
            return 0
        db.close()
        print("opened", flush=True)
        return 0
    db = DictDB.open(directory, fsync="always")
    table = db.get_table("held") if "held" in db else db.create_table("held")
    table.insert({"by": "holder"})
    print(f"READY {db.lsn}", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
