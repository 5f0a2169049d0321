"""The reference's loguru-style ``logger`` and ``configure_logging``, over stdlib `logging`.

This module is the reference-compatible logging façade (dictdb's own code logs through
``logging.getLogger("dictdb")`` directly). Everything goes through that standard logger, which
gets a `logging.NullHandler` at import and nothing else, so dictdb is silent (nothing reaches
Python's last-resort stderr handler) until the application configures logging (its own, or
through the calls below). The library itself logs DDL at DEBUG only, never one line per row.

- ``logger.add(sink, level=..., format=..., serialize=..., filter=...)`` adds a handler on the
  "dictdb" logger and returns its id: *sink* is a file path, a stream (anything with
  ``write``) or a callable receiving each formatted line. *format* is a `str.format`
  template over ``time``, ``level``, ``name``, ``message`` and ``extra``; *serialize* writes
  JSON lines ``{"time", "level", "message", "extra"}``; *filter* receives a loguru-like dict
  (``record["level"].name``, ``["message"]``, ``["extra"]``) and returns whether to emit.
  The logger's level is lowered as needed so that the handler receives its records.
- ``logger.remove()`` removes every handler added this way (``remove(id)``: one of them) and
  gives the "dictdb" logger back its level and propagation.
- ``logger.debug/info/warning/error/critical(msg, **fields)`` and ``logger.bind(**fields)``:
  the message is interpolated with ``str.format(**fields)`` *before* the record is made (a
  message that does not format is kept as it is), so every handler, the application's root
  handlers included, sees the final text; the fields ride along as ``record.extra``.
- ``configure_logging(level, console, logfile, json=..., sample_debug_every=...)`` replaces
  those handlers with one on stdout and/or one appending to *logfile*; dictdb's records then
  stop propagating to the root logger, so they are not printed twice.
  *sample_debug_every=N* keeps one DEBUG record in N (per handler). It then logs one DEBUG
  line saying what it configured, as the reference does.
- `DictDBFormatter`, `JSONFormatter` and `SampleDebugFilter` are the reference's names for the
  text and JSON layouts and the sampler (also reachable at its path, `dictdb.obs.logging`).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json as _json
import logging
import sys
import threading
from collections.abc import Callable
from typing import IO, Any, Final

_LEVELS: Final = {
    "TRACE": 5,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "SUCCESS": 25,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}

Sink = str | IO[str] | Callable[[str], Any]


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.upper()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}") from None


def _interpolate(msg: str, fields: dict[str, Any]) -> str:
    if not fields:
        return msg
    try:
        return msg.format(**fields)
    except (KeyError, IndexError, ValueError, AttributeError):
        return msg


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    extra = getattr(record, "extra", None)
    return extra if isinstance(extra, dict) else {}


def _time(record: logging.LogRecord) -> str:
    return _dt.datetime.fromtimestamp(record.created).isoformat(sep=" ", timespec="milliseconds")


_COLORS: Final = {
    logging.DEBUG: "\033[36m",
    logging.INFO: "\033[32m",
    logging.WARNING: "\033[33m",
    logging.ERROR: "\033[31m",
    logging.CRITICAL: "\033[1;31m",
}
_RESET: Final = "\033[0m"


class DictDBFormatter(logging.Formatter):
    """``time | LEVEL | k=v ... | message``, or a `str.format` template (the reference's).

    The message is interpolated with the record's fields (``"into {table}"``) if it was not
    already; *use_colors* colours the level name with ANSI codes.
    """

    def __init__(self, template: str | None = None, *, use_colors: bool = False) -> None:
        super().__init__()
        self._template = template
        self._colors = use_colors

    def format(self, record: logging.LogRecord) -> str:
        extra = _extra(record)
        message = _interpolate(record.getMessage(), extra)
        if self._template is not None:
            try:
                return self._template.format(
                    time=_time(record),
                    level=record.levelname,
                    name=record.name,
                    message=message,
                    extra=extra,
                )
            except (KeyError, IndexError, ValueError, AttributeError):
                pass  # a template that does not fit: fall back to the default layout
        fields = "".join(f"{k}={v} " for k, v in extra.items())
        level = f"{record.levelname:8}"
        if self._colors:
            level = f"{_COLORS.get(record.levelno, '')}{level}{_RESET}"
        return f"{_time(record)} | {level} | {fields + '| ' if fields else ''}{message}"


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, message, extra (the reference's)."""

    def format(self, record: logging.LogRecord) -> str:
        extra = _extra(record)
        return _json.dumps(
            {
                "time": _dt.datetime.fromtimestamp(record.created).isoformat(),
                "level": record.levelname,
                "message": _interpolate(record.getMessage(), extra),
                "extra": extra,
            },
            default=str,
        )


class _CallableHandler(logging.Handler):
    def __init__(self, sink: Callable[[str], Any]) -> None:
        super().__init__()
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sink(self.format(record))
        except Exception:
            self.handleError(record)


class _Level:
    __slots__ = ("name", "no")

    def __init__(self, name: str, no: int) -> None:
        self.name = name
        self.no = no


class _CallableFilter(logging.Filter):
    """Calls a loguru-style filter with a dict view of the record."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any]) -> None:
        super().__init__()
        self._fn = fn

    def filter(self, record: logging.LogRecord) -> bool:
        view = {
            "level": _Level(record.levelname, record.levelno),
            "message": record.getMessage(),
            "extra": _extra(record),
            "name": record.name,
            "time": _dt.datetime.fromtimestamp(record.created),
        }
        return bool(self._fn(view))


class SampleDebugFilter(logging.Filter):
    """Lets one DEBUG record in *every_n* through (the n-th, 2n-th...); other levels pass."""

    def __init__(self, every_n: int) -> None:
        super().__init__()
        self._every = every_n
        self._seen = itertools.count(1)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.DEBUG or next(self._seen) % self._every == 0


class BoundLogger:
    """A logger carrying fields added to every record (``logger.bind(table="t")``)."""

    __slots__ = ("_extra", "_logger")

    def __init__(self, logger: logging.Logger, extra: dict[str, Any]) -> None:
        self._logger = logger
        self._extra = extra

    def bind(self, **fields: Any) -> BoundLogger:
        """A logger with these fields added."""
        return BoundLogger(self._logger, {**self._extra, **fields})

    def _log(self, level: int, msg: str, fields: dict[str, Any]) -> None:
        logger = self._logger
        if not logger.isEnabledFor(level):
            return
        merged = {**self._extra, **fields}
        # stacklevel 3: the record names the caller of debug()/info()..., not this module.
        logger.log(level, _interpolate(msg, merged), extra={"extra": merged}, stacklevel=3)

    def debug(self, msg: str, **fields: Any) -> None:
        """Log at DEBUG."""
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        """Log at INFO."""
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        """Log at WARNING."""
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        """Log at ERROR."""
        self._log(logging.ERROR, msg, fields)

    def critical(self, msg: str, **fields: Any) -> None:
        """Log at CRITICAL."""
        self._log(logging.CRITICAL, msg, fields)


class DictDBLogger(BoundLogger):
    """The reference's ``logger``: `BoundLogger` plus loguru-style ``add`` and ``remove``."""

    __slots__ = ("_handlers", "_ids", "_lock", "_saved")

    def __init__(self, name: str = "dictdb") -> None:
        super().__init__(logging.getLogger(name), {})
        self._handlers: dict[int, logging.Handler] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._saved: tuple[int, bool] | None = None  # level and propagate before add()

    def add(
        self,
        sink: Sink,
        *,
        level: str | int = "DEBUG",
        format: str | None = None,
        serialize: bool = False,
        filter: Callable[[dict[str, Any]], Any] | logging.Filter | None = None,
    ) -> int:
        """Send dictdb's records at *level* and above to *sink*; returns the handler's id.

        Raises:
            ValueError: an unknown level name.
        """
        number = _level(level)
        handler: logging.Handler
        if isinstance(sink, str):
            handler = logging.FileHandler(sink, encoding="utf-8")
        elif hasattr(sink, "write"):
            handler = logging.StreamHandler(sink)
        elif callable(sink):
            handler = _CallableHandler(sink)
        else:
            raise TypeError(f"a log sink is a path, a stream or a callable, got {sink!r}")
        handler.setLevel(number)
        handler.setFormatter(JSONFormatter() if serialize else DictDBFormatter(format))
        if isinstance(filter, logging.Filter):
            handler.addFilter(filter)
        elif filter is not None:
            handler.addFilter(_CallableFilter(filter))
        with self._lock:
            logger = self._logger
            if self._saved is None:
                self._saved = (logger.level, logger.propagate)
            logger.addHandler(handler)
            handler_id = next(self._ids)
            self._handlers[handler_id] = handler
            self._fit_level()
        return handler_id

    def _fit_level(self) -> None:
        # The logger must let through what its most verbose handler wants.
        logger = self._logger
        lowest = min(h.level for h in self._handlers.values())
        if logger.getEffectiveLevel() > lowest:
            logger.setLevel(lowest)

    def remove(self, handler_id: int | None = None) -> None:
        """Remove the handler *handler_id*, or every handler added with `add`.

        Raises:
            ValueError: no handler has that id.
        """
        with self._lock:
            if handler_id is None:
                removed = list(self._handlers.values())
                self._handlers.clear()
            else:
                try:
                    removed = [self._handlers.pop(handler_id)]
                except KeyError:
                    raise ValueError(f"no log handler with id {handler_id!r}") from None
            for handler in removed:
                self._logger.removeHandler(handler)
                handler.close()
            if not self._handlers and self._saved is not None:
                self._logger.setLevel(self._saved[0])
                self._logger.propagate = self._saved[1]
                self._saved = None

    @property
    def name(self) -> str:
        """The name of the standard-library logger behind this one (``"dictdb"``)."""
        return self._logger.name


# Silent by default: without a handler of its own, a WARNING would reach Python's
# last-resort handler (stderr) even though the application configured no logging.
logging.getLogger("dictdb").addHandler(logging.NullHandler())

#: The reference's global logger object.
logger: Final = DictDBLogger()


def configure_logging(
    level: str = "INFO",
    console: bool = True,
    logfile: str | None = None,
    *,
    json: bool = False,
    sample_debug_every: int | None = None,
) -> None:
    """Replace dictdb's handlers: stdout and/or a log file, at *level*.

    Args:
        level: the lowest level written (DEBUG, INFO, WARNING, ERROR, CRITICAL).
        console: write to standard output.
        logfile: also append to this file.
        json: write JSON lines instead of text.
        sample_debug_every: keep only one DEBUG record in this many.

    Raises:
        ValueError: an unknown level, or *sample_debug_every* below 1.
    """
    number = _level(level)
    if sample_debug_every is not None and sample_debug_every < 1:
        raise ValueError(f"sample_debug_every must be at least 1, got {sample_debug_every!r}")
    logger.remove()
    sinks: list[Sink] = []
    if console:
        sinks.append(sys.stdout)
    if logfile:
        sinks.append(logfile)
    for sink in sinks:
        # One sampler per handler: each handler sees every record, so each keeps one in N.
        sampler = SampleDebugFilter(sample_debug_every) if sample_debug_every else None
        logger.add(sink, level=number, serialize=json, filter=sampler)
    if sinks:
        logging.getLogger(logger.name).propagate = False
    logger.debug(
        "Logging configured: level={level}, console={console}, logfile={logfile}",
        level=logging.getLevelName(number),
        console=console,
        logfile=logfile,
    )
