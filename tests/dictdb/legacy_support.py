"""What the legacy-file tests share: the golden files, their expected tables compared with
ours in one tagged form, the reference's python, and a capped child process for loads.

The golden files and ``expected.json`` are written by `tests/data/legacy/make_legacy.py`
(see its docstring) with the reference DictDB 1.11.0. ``expected.json`` holds the tables as
the reference sees them; `ours` turns that view into what our reader must give (pickled
tuples, sets and frozensets become lists, NaN becomes None), and `actual_tables` puts one of
our databases in the same form. Both go through `comparable`, which keys rows by primary key
and tags floats and bools, so that ``1``, ``1.0`` and ``True`` never compare equal.

Run as a module (``python -m tests.dictdb.legacy_support FORMAT FILE...``), it is the child of
`load_capped`.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import functools
import json
import math
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LEGACY = REPO / "tests" / "data" / "legacy"
MAKE_LEGACY = LEGACY / "make_legacy.py"
#: The chain directories of `LEGACY` and the format of their full snapshots.
CHAINS = {"chain-json": "json", "chain-pickle": "pickle"}


@functools.cache
def expected_doc() -> dict[str, Any]:
    """``tests/data/legacy/expected.json``, parsed."""
    doc: dict[str, Any] = json.loads((LEGACY / "expected.json").read_text(encoding="utf-8"))
    return doc


def file_format(path: Path) -> str:
    """``json`` or ``pickle``, from a legacy file's name."""
    return path.suffix.lstrip(".")


def name_time(path: Path) -> float:
    """The time in a legacy file's name (``<sec>_<usec>``), as epoch seconds."""
    sec, usec = path.name.split(".", maxsplit=1)[0].split("_")[2:4]
    return int(sec) + int(usec) / 1_000_000


def chain_files(chain: str) -> list[Path]:
    """The files of a golden chain directory, in time order."""
    return sorted((LEGACY / chain).iterdir(), key=name_time)


# -- one tagged form for both sides ------------------------------------------------------------


def tag(value: Any) -> Any:
    """A value in the tagged JSON form of ``expected.json``: one of ours, or one the
    reference holds (tuple, set, frozenset), as `make_legacy.tag` writes them."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return {"$float": "nan"}
        if math.isinf(value):
            return {"$float": "inf" if value > 0 else "-inf"}
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [tag(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [tag(v) for v in value]}
    if isinstance(value, set | frozenset):
        name = "$set" if isinstance(value, set) else "$frozenset"
        try:
            items = sorted(value)
        except TypeError:
            items = list(value)
        return {name: [tag(v) for v in items]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return {"$pairs": [[tag(k), tag(v)] for k, v in value.items()]}
        out = {k: tag(v) for k, v in value.items()}
        if len(out) == 1 and next(iter(out)).startswith("$"):
            return {"$dict": out}
        return out
    if isinstance(value, dt.datetime | dt.date | decimal.Decimal | uuid.UUID):
        return {f"${type(value).__name__}": str(value)}
    return {"$repr": repr(value)}


def untag(value: Any) -> Any:
    """Our value for a tagged one (bytes, non-finite floats, ``$dict``; lists stay lists)."""
    if isinstance(value, list):
        return [untag(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        if key == "$bytes":
            return base64.b64decode(inner)
        if key == "$float":
            return float(inner)
        if key == "$dict":
            return {k: untag(v) for k, v in inner.items()}
        if key in ("$tuple", "$set", "$frozenset"):
            return [untag(v) for v in inner]
    return {k: untag(v) for k, v in value.items()}


def ours(value: Any) -> Any:
    """What our reader makes of a value the reference holds (tagged): tuples, sets and
    frozensets become lists (sets sorted: ``expected.json`` lists them sorted), NaN None, and
    dict keys that are not str their JSON text (as the reference's JSON would store them)."""
    if isinstance(value, list):
        return [ours(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        if key in ("$tuple", "$set", "$frozenset"):
            return [ours(v) for v in inner]
        if key == "$float" and inner == "nan":
            return None
        if key == "$pairs":  # keys as the reference's JSON writes them
            return {json.dumps(untag(k)): ours(v) for k, v in inner}
        if key == "$dict":
            return {key: {k: ours(v) for k, v in inner.items()}}
        if key in ("$bytes", "$float", "$repr"):
            return value
    return {k: ours(v) for k, v in value.items()}


def strict(value: Any) -> Any:
    """A tagged value where floats and bools are tagged too: equal only if equal in type."""
    if isinstance(value, bool):
        return {"$bool": value}
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, list):
        return [strict(v) for v in value]
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    return value


def comparable(tables: dict[str, Any]) -> dict[str, Any]:
    """Tagged tables (name → primary_key, schema, rows) with rows keyed by their key."""
    out = {}
    for name, table in tables.items():
        key = table["primary_key"]
        rows = {json.dumps(strict(row[key])): strict(row) for row in table["rows"]}
        out[name] = {"primary_key": key, "schema": table["schema"], "rows": rows}
    return out


def expected_tables(tables: dict[str, Any]) -> dict[str, Any]:
    """The tables of an ``expected.json`` entry as our reader must give them."""
    return comparable(ours(tables))


def actual_tables(db: Any) -> dict[str, Any]:
    """One of our databases in the form of `expected_tables`."""
    tables = {}
    for name, table in db.to_dict().items():
        tables[name] = {
            "primary_key": table["primary_key"],
            "schema": table["schema"],
            "rows": [{f: tag(v) for f, v in row.items()} for row in table["records"].values()],
        }
    return comparable(tables)


def next_key(rows: Any) -> int:
    """The auto key after a load: one past the largest int key (bools are not keys), or 1."""
    ints = [k for k in rows if isinstance(k, int) and not isinstance(k, bool)]
    return max(ints) + 1 if ints else 1


# -- the reference ----------------------------------------------------------------------------


@functools.cache
def _reference_venv() -> tuple[Path | None, str]:
    from benchmarks._runner import ensure_reference_venv

    return ensure_reference_venv()


def reference_python() -> Path:
    """The reference DictDB's python (its venv built when missing); skips the test, with the
    reason, where it cannot be built (no network, no pip)."""
    python, message = _reference_venv()
    if python is None:
        pytest.skip(f"the reference DictDB venv cannot be built: {message}")
    return python


def reference_env() -> dict[str, str]:
    """An environment where ``import dictdb`` is the reference's (not this repository's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return {**env, "PYTHONHASHSEED": "0"}


class ReferenceWorker:
    """``make_legacy.py --serve`` under the reference's python: one JSON command a line."""

    def __init__(self, python: Path, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [str(python), "-P", str(MAKE_LEGACY), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=cwd,
            env=reference_env(),
            text=True,
            encoding="utf-8",
        )

    def call(self, **command: Any) -> dict[str, Any]:
        """Send *command*; its answer (an ``error`` member fails the test)."""
        stdin, stdout = self._pipes()
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        line = stdout.readline()
        assert line, f"the reference worker died (exit code {self.process.wait()})"
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, (command["op"], answer["error"])
        return answer

    def close(self) -> None:
        stdin, _ = self._pipes()
        stdin.close()
        self.process.wait(timeout=30)

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        return self.process.stdin, self.process.stdout


# -- loads in a capped child ------------------------------------------------------------------

#: The address-space cap of the child: a load allocating past it fails with MemoryError.
CAP = 2 << 30


def load_capped(folder: Path, names: list[str], kind: str) -> dict[str, dict[str, Any]]:
    """Read the files *names* of *folder* in a fresh process capped at `CAP` bytes of address
    space: *kind* ``json`` or ``pickle`` (`DictDB.load`), or ``delta`` (`apply_delta` to an
    empty database). By name: ``error`` (exception type or None), ``path`` and ``reason`` of
    a `CorruptFileError`, ``seconds``, ``growth_kb`` (peak RSS growth, KiB)."""
    run = subprocess.run(
        [sys.executable, "-m", "tests.dictdb.legacy_support", kind, *names],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {r["name"]: r for r in map(json.loads, run.stdout.splitlines())}


def _child() -> None:
    import logging

    from dictdb import CorruptFileError, DictDB
    from dictdb.storage import persist

    logging.getLogger("dictdb").setLevel(logging.CRITICAL)
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))
    kind, names = sys.argv[1], sys.argv[2:]
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name in names:
        error = path = reason = None
        started = time.monotonic()
        try:
            if kind == "delta":
                persist.apply_delta(DictDB(), name)
            else:
                DictDB.load(name, kind)
        except CorruptFileError as exc:  # any of its kinds (CorruptJSONError...)
            error, path, reason = "CorruptFileError", exc.path, exc.reason
        except BaseException as exc:  # reported: the parent fails on it
            error, reason = type(exc).__name__, str(exc)[:500]
        seconds = time.monotonic() - started
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start
        out = {"name": name, "error": error, "path": path, "reason": reason}
        print(json.dumps({**out, "seconds": seconds, "growth_kb": growth}), flush=True)


if __name__ == "__main__":
    _child()
