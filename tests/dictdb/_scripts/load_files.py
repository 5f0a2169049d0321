"""Child process: load each file given on the command line, report the outcome and RSS growth.

Prints one JSON line per file: {"name", "error" (exception type or null), "path" (the
CorruptFileError's path), "reason", "growth_kb" (peak RSS growth since start, in KiB)}.
Run in a fresh process so that the peak RSS measures only these loads. Its address space is
capped (4 GB): a load that tries to allocate more fails with MemoryError, reported, instead of
exhausting the machine.
"""

from __future__ import annotations

import json
import resource
import sys

from dictdb import DictDB
from dictdb.errors import CorruptFileError


def peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    limit = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    start = peak_kb()
    for name in sys.argv[1:]:
        error = path = reason = None
        try:
            DictDB.load(name)
        except CorruptFileError as exc:
            error, path, reason = type(exc).__name__, exc.path, exc.reason
        except Exception as exc:  # reported, and the parent fails on it
            error, reason = type(exc).__name__, str(exc)
        out = {"name": name, "error": error, "path": path, "reason": reason}
        print(json.dumps({**out, "growth_kb": peak_kb() - start}), flush=True)


if __name__ == "__main__":
    main()
