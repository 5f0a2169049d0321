"""Child process: load files under a given decompression limit, report outcome, time and RSS.

Usage: ``load_capped.py LIMIT FILE...``. *LIMIT* is a byte count assigned to
`dictdb.storage._files.MAX_DECOMPRESSED` (a module attribute read at every load) before
anything is loaded, or ``-`` to keep the default. The address space is capped (4 GB): a load
that tries to allocate more fails with MemoryError, reported, instead of exhausting the
machine. Tests run it through `load_in_child`.

Prints one JSON line per file: {"name", "error" (exception type or null), "path" (the
CorruptFileError's path), "reason", "seconds" (the load's wall time), "growth_kb" (peak RSS
growth since the start, in KiB)}. Run in a fresh process so that the peak measures only these
loads (peaks do not add up: list the file expected to grow least first).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dictdb import DictDB
from dictdb.errors import CorruptFileError
from dictdb.storage import _files as files

REPO = Path(__file__).resolve().parents[3]


def load_in_child(folder: Path, names: list[str], limit: int | None = None) -> dict[str, Any]:
    """Load the files *names* of *folder* with this script in a fresh process capped at 4 GB
    of address space, `files.MAX_DECOMPRESSED` set to *limit* (None: the default): by name,
    each file's outcome, load time and peak RSS growth."""
    run = subprocess.run(
        [sys.executable, __file__, "-" if limit is None else str(limit), *names],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {r["name"]: r for r in map(json.loads, run.stdout.splitlines())}


def peak_kb() -> int:
    """The peak resident set size of this process so far, in KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    limit = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if sys.argv[1] != "-":
        files.MAX_DECOMPRESSED = int(sys.argv[1])  # type: ignore[misc]
    start = peak_kb()
    for name in sys.argv[2:]:
        error = path = reason = None
        started = time.monotonic()
        try:
            DictDB.load(name)
        except CorruptFileError as exc:  # any of its kinds (CorruptJSONError...)
            error, path, reason = "CorruptFileError", exc.path, exc.reason
        except Exception as exc:  # reported, and the parent fails on it
            error, reason = type(exc).__name__, str(exc)
        seconds = time.monotonic() - started
        out = {"name": name, "error": error, "path": path, "reason": reason, "seconds": seconds}
        print(json.dumps({**out, "growth_kb": peak_kb() - start}), flush=True)


if __name__ == "__main__":
    main()
