"""Print how much a process's peak RSS grows while it reads a durable directory back.

Usage: ``python -m tests.dictdb._scripts.restore_memory DIR MODE`` with MODE ``restore``
(`dictdb.restore(DIR)`, which streams the log into the state) or ``read_all`` (the control:
`wal.read_wal` holds every logged operation at once). Prints the growth in KiB (VmHWM: see
`upsert_memory`).
"""

from __future__ import annotations

import sys

from dictdb import restore
from tests.dictdb._scripts.upsert_memory import peak_kib
from wal import read_wal


def main() -> None:
    directory, mode = sys.argv[1], sys.argv[2]
    before = peak_kib()
    if mode == "restore":
        kept: object = restore(directory)
    else:
        kept = read_wal(f"{directory}/wal")
    print(peak_kib() - before)
    del kept


if __name__ == "__main__":
    main()
