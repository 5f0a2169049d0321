"""Run the ``dictdb`` command with every snapshot/delta load slowed down.

Usage: ``python -m tests.dictdb._scripts.slow_cli MARKER SECONDS ARGS...``. The first load
touches MARKER (so a test knows the command is busy and can interrupt it), then every load
sleeps SECONDS before reading. Exits with the command's exit code.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from dictdb import cli
from dictdb.storage import persist


def main() -> int:
    marker, delay, args = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    real_load, real_apply = persist.load, persist.apply_delta

    def load(*a: Any, **k: Any) -> Any:
        marker.touch()
        time.sleep(delay)
        return real_load(*a, **k)

    def apply_delta(*a: Any, **k: Any) -> Any:
        marker.touch()
        time.sleep(delay)
        return real_apply(*a, **k)

    persist.load = load  # type: ignore[assignment]
    persist.apply_delta = apply_delta  # type: ignore[assignment]
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
