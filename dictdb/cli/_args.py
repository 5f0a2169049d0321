"""Argument parsing and output helpers shared by the commands; the exit codes."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import time
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
        return _in_range(text, value)
    try:
        moment = _dt.datetime.fromisoformat(text)
        value = moment.timestamp()
    except ValueError:
        raise UsageError(f"not a time (ISO 8601 or epoch seconds): {text!r}") from None
    except (OverflowError, OSError):
        raise UsageError(f"time out of range (years 1 to 9999): {text!r}") from None
    return _in_range(text, value)


#: The times a datetime can show: from year 1 to before year 10000 (epoch seconds).
_TIME_RANGE = (-62135596800.0, 253402300800.0)


def _in_range(text: str, value: float) -> float:
    if not _TIME_RANGE[0] <= value < _TIME_RANGE[1]:
        raise UsageError(f"time out of range (years 1 to 9999): {text!r}")
    return value


def parse_point(text: str) -> tuple[int | None, float | None]:
    """A point of a history: ``lsn:N``, an ISO 8601 time, or epoch seconds as ``@N`` (or
    with a decimal point). A bare integer is refused: an LSN or epoch seconds?

    Returns:
        ``(lsn, None)`` or ``(None, epoch seconds)``.

    Raises:
        UsageError: none of those.
    """
    from dictdb.audit import parse_point as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


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


#: The clock progress reads (a test replaces it).
_clock = time.monotonic

#: Seconds between two progress updates at most (the last one is always shown).
_EVERY = 0.1


def progress(label: str, stream: TextIO) -> Callable[[int, int], None] | None:
    """A progress line on *stream* for ``(bytes done, bytes total)``: sizes and an ETA, at
    most ten updates a second, ended by a newline once done reaches total. None when
    *stream* is not a terminal (progress is for people watching, never for a pipe)."""
    if not stream.isatty():
        return None
    started = _clock()
    shown = -math.inf
    width = 0
    ended = False

    def show(done: int, total: int) -> None:
        nonlocal shown, width, ended
        now = _clock()
        final = done >= total
        if ended or (not final and now - shown < _EVERY):
            return
        shown = now
        elapsed = now - started
        text = f"{label}: {human_size(done)} / {human_size(total)}"
        if total > 0:
            text += f" ({100 * done // total}%)"
        if final:
            text += f" in {human_duration(elapsed)}"
        elif done > 0 and elapsed > 0:
            text += f", ETA {human_duration((total - done) * elapsed / done)}"
        stream.write("\r" + text.ljust(width))
        width = len(text)
        if final:
            stream.write("\n")
            ended = True
        stream.flush()

    return show


def human_size(n: int) -> str:
    """*n* bytes for people: ``512 B``, ``1.5 KiB``, ``12.0 MiB``..."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def human_duration(seconds: float) -> str:
    """*seconds* for people: ``0.4 s``, ``12 s``, ``3:07``, ``1:02:03``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def dump(obj: Any) -> str:
    """One line of JSON. A str orjson refuses (a path that was not valid UTF-8 in argv, held
    as lone surrogates) is escaped by the standard library instead."""
    try:
        return orjson.dumps(obj, default=str).decode()
    except TypeError:
        return json.dumps(obj, default=str, separators=(",", ":"))


def when(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="seconds")
