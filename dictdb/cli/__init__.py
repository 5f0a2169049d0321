"""The ``dictdb`` command (also ``python -m dictdb``).

Exit codes: 0 success (``verify``: nothing found), 1 findings or a failed operation (the
file and the reason on stderr, one line; ``verify`` also when there is nothing to verify),
2 usage errors, 3 ``verify`` found no damage but warnings (a torn log tail, the normal trace
of a crash, cut aside when the database reopens), 130 interrupted (Ctrl-C).
Times are ISO 8601 (``2026-11-27T10:00:00+00:00``; naive means local time) or epoch seconds;
where a point may be an LSN, write ``lsn:N``. ``--json`` prints JSON (one object per line for
streams: ``history``, ``log``). Progress goes to stderr, and only when it is a terminal.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from dictdb._version import __version__
from dictdb.cli import auditing, backups, demo, exporting, legacy
from dictdb.cli._args import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from dictdb.errors import DictDBError, UsageError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    # Usage errors are one line on stderr (and exit 2), like every other error.
    def error(self, message: str) -> NoReturn:
        one_line = " ".join(message.split())  # an argument may hold a newline
        self.exit(EXIT_USAGE, f"dictdb: error: {one_line} (see dictdb --help)\n")


#: The temp file an atomic write goes through (`dictdb._atomic`): ``.<final>.<random>.tmp``.
_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.[A-Za-z0-9_]+\.tmp$")


def _public(path: object) -> object:
    # The file a user asked for, never the temp file a failed atomic write was filling.
    if path is None:
        return None
    found = _TEMP_NAME.match(Path(str(path)).name)
    return path if found is None else Path(str(path)).with_name(found["final"])


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dictdb",
        description="dictdb: demo, and audit tools over backup directories.",
        epilog="Exit codes: 0 ok, 1 findings/failure, 2 usage, 3 warnings only (verify), "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"dictdb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_)

    for module in (demo, backups, auditing, legacy, exporting):
        module.register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    out = sys.stdout
    # Warnings (a legacy file read unverified, a file set aside) reach the user on stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("dictdb: warning: %(message)s"))
    logger = logging.getLogger("dictdb")
    logger.addHandler(handler)
    try:
        run: Callable[[argparse.Namespace, TextIO], int] = args.run
        return run(args, out)
    except UsageError as exc:
        print(f"dictdb: {exc}".replace("\n", " "), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dictdb: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except (DictDBError, OSError, ValueError, OverflowError) as exc:
        path = _public(getattr(exc, "path", None) or getattr(exc, "filename", None))
        reason = getattr(exc, "reason", None) or str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror  # str(exc) would repeat the file name, maybe a temp file's
        where = f"{path}: " if path and str(path) not in reason else ""
        print(f"dictdb: {where}{reason}".replace("\n", " "), file=sys.stderr)
        return EXIT_FINDINGS
    finally:
        logger.removeHandler(handler)
