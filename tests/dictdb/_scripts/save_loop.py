"""Child process for the kill test: save one of two databases to one path, forever.

``python save_loop.py PATH [ROWS]``: builds two databases of ROWS rows (default 50 000) that
differ in every row and in a marker table, then saves them alternately to PATH with
`DictDB.save` (JSON, atomic replace). Prints ``ready`` once the first save is complete.
The parent SIGKILLs it at a random moment.
"""

from __future__ import annotations

import sys

from dictdb import DictDB

ROWS = 50_000


def build(variant: int, rows: int = ROWS) -> DictDB:
    """Content *variant* (0 or 1): same keys, different values everywhere."""
    db = DictDB()
    db.create_table("marker").insert({"id": 1, "variant": variant})
    db.create_table("rows").insert(
        [{"id": i, "name": f"row-{i}-{variant}", "v": i * 2 + variant} for i in range(rows)]
    )
    return db


def main() -> None:
    path = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else ROWS
    dbs = (build(0, rows), build(1, rows))
    i = 0
    while True:
        dbs[i % 2].save(path)
        if i == 0:
            print("ready", flush=True)
        i += 1


if __name__ == "__main__":
    main()
