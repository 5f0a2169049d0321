"""The ``dictdb`` command: ``python -m dictdb demo`` (more subcommands come with the tools)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dictdb.database import DictDB


def _demo() -> int:
    db = DictDB()
    db.create_table("users", primary_key="id")
    users = db.get_table("users")
    alice = users.insert({"name": "Alice", "age": 30, "tags": ["admin"]})
    users.insert([{"name": "Bob", "age": 25}, {"name": "Chloé", "age": 41}])
    users.update({"age": 31}, where=users.id == alice)
    users.upsert({"id": 2, "city": "Lyon"})
    users.delete(where=users.name == "Chloé")
    print("rows:")
    for row in users.select(order_by="id"):
        print("  ", row)
    print(f"journal ({db.lsn} operations):")
    for op in db.journal.read(1):
        detail = op.after if op.kind != "delete" else {"before": op.before}
        print(f"  lsn={op.lsn:<3} {op.kind:<7} {op.table}/{op.key}  {detail}")
    replica = DictDB()
    replica.replay(db.journal.read(1))
    print(
        "replaying the journal into an empty database gives an equal one:",
        replica.to_dict() == db.to_dict(),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 findings, 2 usage)."""
    parser = argparse.ArgumentParser(prog="dictdb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="create a table, change it, and show the journal")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo()
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse exits first
    return 2


if __name__ == "__main__":
    sys.exit(main())
