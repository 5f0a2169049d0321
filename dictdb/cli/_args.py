"""Argument parsing and output helpers shared by the commands; the exit codes."""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import uuid
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from dictdb.errors import UsageError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: ``add(name, help)``: a new sub-command parser (see `dictdb.cli.register`).
Add = Callable[[str, str], argparse.ArgumentParser]

__all__ = ["UsageError"]


def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 or a number.

    Raises:
        UsageError: neither.
    """
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise UsageError(f"not a time: {text!r}")
        return value
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not a time (ISO 8601 or epoch seconds): {text!r}") from None
    return moment.timestamp()


def parse_point(text: str) -> Any:
    """A diff point: ``lsn:N`` or a time."""
    if text.startswith("lsn:"):
        try:
            n = int(text[4:])
        except ValueError:
            raise UsageError(f"not an LSN: {text!r}") from None
        if n < 0:
            raise UsageError(f"an LSN is >= 0: {text!r}")
        return text
    return parse_time(text)


def parse_key(text: str, key_type: str) -> Any:
    """A record key from the command line."""
    if key_type == "str":
        return text
    if key_type == "uuid":
        try:
            return uuid.UUID(text)
        except ValueError:
            raise UsageError(f"not a UUID: {text!r}") from None
    if key_type == "int" or (key_type == "auto" and text.lstrip("-").isdigit()):
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"not an int: {text!r}") from None
    return text


def progress(label: str, stream: TextIO) -> Callable[[int, int], None] | None:
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        stream.write(f"\r{label}: {done}/{total}")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


def dump(obj: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def when(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="seconds")
