"""Value tags: the value domain, and its exact form in JSON (a *plain tree*).

The value domain is None, bool, int, float, str, bytes, list, dict (str keys),
`datetime.datetime` (naive or with a fixed-offset `datetime.timezone`), `datetime.date`,
`decimal.Decimal`, `uuid.UUID`; lists and dicts nest at most `MAX_NESTING` deep. NaN is outside
it (it is not equal to itself, so no copy of it could be verified).

`to_plain` writes the values JSON cannot carry as one-key *tag* objects, and `from_plain`
reads them back::

    {"$bytes": "<base64>"}      {"$date": "2024-01-31"}      {"$uuid": "<hex with dashes>"}
    {"$datetime": "<ISO 8601, microseconds, offset if aware>"}  {"$decimal": "<str(d)>"}
    {"$datetime_fold": "<same>"}  (a datetime with fold=1: ISO 8601 has no place for it)
    {"$int": "<decimal digits>"}   (ints outside the signed 64-bit range)
    {"$float": "inf" | "-inf"}     (NaN is outside the domain)
    {"$dict": {...}}             (a user dict with one key starting with "$", escaped)

Tags are exact: every value comes back with its type and value (``-0.0`` included). A plain
tree is standard JSON: dicts with str keys, lists, str, ints within 64 bits, finite floats,
bool and None. `own_value` checks a value against the domain and copies it, once, at the
mutation.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import decimal
import math
import uuid
from collections.abc import Iterable
from typing import Any, Final

from wal.errors import CodecError, UnsupportedValueError

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_INF: Final = math.inf

#: Scalar types stored as they are in a plain tree.
_PLAIN_SCALARS: Final = frozenset({str, bool, type(None)})
#: Immutable scalar types of the domain that need no further check.
_SHARED_SCALARS: Final = frozenset({str, bool, type(None), int, bytes, _dt.date, uuid.UUID})
_NAN_REASON: Final = (
    "NaN is refused: it is not equal to itself, so no copy of it could be verified; "
    "store None instead"
)


#: How deep lists and dicts may nest in a value (``[[1]]``: 2), a record counting as one
#: (``{"a": [[1]]}``: 3). Deeper values are refused at the mutation, so that every stored
#: value can be written: a plain tree can be twice as deep as its value (``{"$dict": {...}}``
#: around each dict whose one key starts with ``$``), the files add a few levels, and orjson
#: encodes ~250 levels at most. Readers refuse deeper values too, well before Python's
#: recursion limit.
MAX_NESTING: Final = 100
_NESTING_REASON: Final = f"lists and dicts nest more than {MAX_NESTING} deep"


def _describe(path: str) -> str:
    return path or "<value>"


def _refuse(path: str, value: Any, reason: str) -> UnsupportedValueError:
    return UnsupportedValueError(path, type(value).__name__, f"{_describe(path)}: {reason}")


_SURROGATE_REASON: Final = (
    "a str with a lone surrogate (e.g. '\\ud800') is refused: UTF-8, and so every file "
    "format, cannot hold it"
)


def is_text(text: str) -> bool:
    """Whether *text* can be encoded as UTF-8 (no lone surrogate): every str the domain
    holds, as a value, a dict key or a field name."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def own_value(value: Any, path: str = "", depth: int = 0) -> Any:
    """Check that *value* lies in the value domain and return an owned copy of it.

    Lists and dicts are copied all the way down; scalars are immutable and shared.

    Args:
        value: the value to check.
        path: where the value sits, for error messages (e.g. ``"tags[2]"``).
        depth: the containers already around the value (a record's field: 1, the record).

    Returns:
        A deep copy of the containers, sharing the (immutable) scalars.

    Raises:
        UnsupportedValueError: the value, or one nested in it, is outside the domain
            (including containers nested deeper than `MAX_NESTING`).
    """
    t = type(value)
    if t is str:
        if not is_text(value):
            raise _refuse(path, value, _SURROGATE_REASON)
        return value
    if t in _SHARED_SCALARS:
        return value
    if t is float:
        if value != value:
            raise _refuse(path, value, _NAN_REASON)
        return value
    if t is list or t is dict:
        if depth == MAX_NESTING:
            raise _refuse(path, value, _NESTING_REASON)
        if t is list:
            return [own_value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        out = {}
        for k, item in value.items():
            if type(k) is not str:
                raise _refuse(path, k, f"dict keys must be str, got {type(k).__name__} {k!r}")
            if not is_text(k):
                raise _refuse(path, k, f"dict key {k!r}: {_SURROGATE_REASON}")
            out[k] = own_value(item, f"{path}.{k}" if path else k, depth + 1)
        return out
    if t is _dt.datetime:
        tz = value.tzinfo
        if tz is not None:
            if type(tz) is not _dt.timezone:
                raise _refuse(
                    path,
                    value,
                    "datetime tzinfo must be None or a fixed-offset datetime.timezone "
                    f"(got {type(tz).__name__}); convert it with .astimezone(timezone.utc)",
                )
            offset = tz.utcoffset(None)
            # ISO 8601 keeps neither a timezone's name nor (as Python 3.11 parses it) a
            # sub-second offset: refuse what could not come back exactly.
            if (
                offset.microseconds
                or tz != _dt.timezone(offset)
                or (tz.tzname(None) != _dt.timezone(offset).tzname(None))
            ):
                raise _refuse(
                    path,
                    value,
                    f"datetime tzinfo {tz!r} cannot be stored exactly: use an unnamed "
                    "timezone(timedelta(...)) with a whole-second offset, or timezone.utc",
                )
        return value
    if t is decimal.Decimal:
        if value.is_nan():
            raise _refuse(path, value, _NAN_REASON)
        return value
    raise _refuse(
        path,
        value,
        f"type {t.__module__}.{t.__qualname__} is outside the value domain "
        "(None, bool, int, float, str, bytes, list, dict, datetime, date, Decimal, UUID)",
    )


def _is_flat_plain(value: dict[Any, Any]) -> bool:
    # A flat dict of str keys and JSON-exact scalars, not looking like a tag.
    for k, v in value.items():
        if type(k) is not str:
            return False
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if not _INT64_MIN <= v <= _INT64_MAX:
                return False
        elif t is not float or not -_INF < v < _INF:
            return False
    return not (len(value) == 1 and next(iter(value)).startswith("$"))


def to_plain(value: Any) -> Any:
    """Unstructure a domain value into a JSON-compatible tree (tags where needed).

    Raises:
        UnsupportedValueError: the value is outside the domain; ``path`` names where.
    """
    try:
        return _to_plain(value)
    except UnsupportedValueError:
        own_value(value)  # walks again with paths, to raise naming the nested location
        raise


def plain_items(items: Iterable[dict[str, Any]]) -> list[Any]:
    """`to_plain` of each dict of *items* (flat plain ones are returned as they are, without
    the per-call overhead: the batch form costs about half per row).

    Raises:
        UnsupportedValueError: as `to_plain`.
    """
    flat = _is_flat_plain
    return [item if type(item) is dict and flat(item) else to_plain(item) for item in items]


def _to_plain(value: Any) -> Any:
    t = type(value)
    if t in _PLAIN_SCALARS:
        return value
    if t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
        return {"$int": str(value)}
    if t is float:
        if -_INF < value < _INF:
            return value
        if value != value:
            raise _refuse("", value, _NAN_REASON)
        return {"$float": "inf" if value > 0 else "-inf"}
    if t is dict:
        if _is_flat_plain(value):
            return value  # nothing to tag: the dict is its own plain tree
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise UnsupportedValueError(
                    "", type(k).__name__, f"dict keys must be str, got {type(k).__name__}"
                )
            out[k] = _to_plain(v)
        if len(out) == 1 and next(iter(out)).startswith("$"):
            return {"$dict": out}
        return out
    if t is list:
        return [_to_plain(v) for v in value]
    if t is _dt.datetime:
        own_value(value)
        text = value.isoformat(timespec="microseconds")
        return {"$datetime_fold": text} if value.fold else {"$datetime": text}
    if t is _dt.date:
        return {"$date": value.isoformat()}
    if t is decimal.Decimal:
        if value.is_nan():
            raise _refuse("", value, _NAN_REASON)
        return {"$decimal": str(value)}
    if t is uuid.UUID:
        return {"$uuid": str(value)}
    if t is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    own_value(value)  # raises with the domain description
    raise AssertionError("unreachable")  # pragma: no cover


def _untag(tag: str, payload: Any, depth: int) -> Any:
    if tag == "$dict":  # outside the try: a CodecError from within is a ValueError too
        if type(payload) is not dict:
            raise CodecError("$dict tag must hold an object")
        if depth == MAX_NESTING:
            raise CodecError(_NESTING_REASON)
        return {k: from_plain(v, depth + 1) for k, v in payload.items()}
    try:
        if type(payload) is not str:
            raise CodecError(f"{tag} tag must hold a string, got {type(payload).__name__}")
        if tag == "$datetime":
            return _dt.datetime.fromisoformat(payload)
        if tag == "$datetime_fold":
            return _dt.datetime.fromisoformat(payload).replace(fold=1)
        if tag == "$date":
            return _dt.date.fromisoformat(payload)
        if tag == "$decimal":
            number = decimal.Decimal(payload)
            if number.is_nan():
                raise CodecError("a $decimal tag may not hold NaN")
            return number
        if tag == "$uuid":
            return uuid.UUID(payload)
        if tag == "$bytes":
            return base64.b64decode(payload, validate=True)
        if tag == "$int":
            if not payload.lstrip("-").isdigit():
                raise CodecError(f"bad $int payload {payload[:40]!r}")
            return int(payload)
        if tag == "$float":
            if payload not in ("inf", "-inf"):
                raise CodecError(f"bad $float payload {payload[:40]!r}")
            return float(payload)
    except (ValueError, decimal.InvalidOperation, binascii.Error) as exc:
        raise CodecError(f"bad {tag} payload {str(payload)[:40]!r}: {exc}") from None
    raise CodecError(f"unknown tag {tag!r}")


#: Value types a plain tree's dict may hold without any walk: no tag can hide in them.
_FLAT_VALUES: Final = frozenset({str, int, float, bool, type(None)})
_STR: Final = frozenset({str})


def from_plain(obj: Any, depth: int = 0) -> Any:
    """Structure a plain tree made by `to_plain` back into domain values.

    A flat dict (scalar values) holds no tag and is returned as it is, not copied.

    Args:
        obj: the plain tree.
        depth: the containers already around it (tags add none).

    Raises:
        CodecError: a malformed tag, a type a plain tree cannot hold, or a value whose lists
            and dicts nest deeper than `MAX_NESTING`.
    """
    t = type(obj)
    if t in _PLAIN_SCALARS or t is int or t is float:
        return obj
    if t is dict:
        if len(obj) == 1:
            k = next(iter(obj))
            if type(k) is str and k.startswith("$"):
                return _untag(k, obj[k], depth)
        if _FLAT_VALUES.issuperset(map(type, obj.values())) and _STR.issuperset(map(type, obj)):
            # A flat record, the common case: nothing in it can be a tag, so it is its own
            # structured value (a log's replay spent ~0.9 us per operation walking them).
            return obj
        if depth == MAX_NESTING:
            raise CodecError(_NESTING_REASON)
        out = {}
        for k, v in obj.items():
            if type(k) is not str:
                raise CodecError(f"a plain tree's dict keys must be str, got {type(k).__name__}")
            out[k] = from_plain(v, depth + 1)
        return out
    if t is list:
        if depth == MAX_NESTING:
            raise CodecError(_NESTING_REASON)
        return [from_plain(v, depth + 1) for v in obj]
    raise CodecError(f"a plain tree cannot hold {t.__name__}")
