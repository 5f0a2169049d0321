"""Persistence: snapshots, deltas, files (`dictdb.storage.persist` is the public module)."""
