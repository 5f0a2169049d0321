"""The demo."""

from __future__ import annotations

import argparse
from typing import TextIO

from dictdb.cli._args import (
    EXIT_OK,
    Add,
)


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from dictdb.database import DictDB

    db = DictDB()
    db.create_table("users", primary_key="id")
    users = db.get_table("users")
    alice = users.insert({"name": "Alice", "age": 30, "tags": ["admin"]})
    users.insert([{"name": "Bob", "age": 25}, {"name": "Chloé", "age": 41}])
    users.update({"age": 31}, where=users.id == alice)
    users.upsert({"id": 2, "city": "Lyon"})
    users.delete(where=users.name == "Chloé")
    print("rows:", file=out)
    for row in users.select(order_by="id"):
        print("  ", row, file=out)
    print(f"journal ({db.lsn} operations):", file=out)
    for op in db.journal.read(1):
        detail = op.after if op.kind != "delete" else {"before": op.before}
        print(f"  lsn={op.lsn:<3} {op.kind:<7} {op.table}/{op.key}  {detail}", file=out)
    replica = DictDB()
    replica.replay(db.journal.read(1))
    same = replica.to_dict() == db.to_dict()
    print(f"replaying the journal into an empty database gives an equal one: {same}", file=out)
    return EXIT_OK


def register(add: Add) -> None:
    """Add this module's commands to the parser."""
    p = add("demo", "create a table, change it, and show the journal")
    p.set_defaults(run=_cmd_demo)
