"""`wal` is generic: it never imports `dictdb`, statically or at run time."""

# The suite asserts `expected == actual` (STYLE.md), which SIM300 calls a Yoda condition.

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WAL = REPO / "wal"


def imported_modules(path: Path) -> list[str]:
    """Every module an import statement in *path* names (relative imports resolved to wal)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.append("wal" if node.level else node.module or "")
            if node.module is None or node.level:
                names.extend(alias.name for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.append(str(node.args[0].value))
    return names


def is_dictdb(name: str) -> bool:
    return name == "dictdb" or name.startswith("dictdb.")


def test_wal_sources_exist() -> None:
    assert (WAL / "__init__.py").is_file()
    assert len(list(WAL.rglob("*.py"))) >= 4


def test_the_static_check_sees_every_import_form(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import os, dictdb.table\n"
        "from dictdb import DictDB\n"
        "from .x import y\n"
        "def f():\n"
        "    import dictdb._values as v\n"
        "    importlib.import_module('dictdb.database')\n",
        encoding="utf-8",
    )
    expected = ["dictdb.table", "dictdb", "dictdb._values", "dictdb.database"]
    assert expected == [n for n in imported_modules(source) if is_dictdb(n)]


def test_no_wal_module_imports_dictdb() -> None:
    offenders = {
        str(path.relative_to(REPO)): [n for n in imported_modules(path) if is_dictdb(n)]
        for path in sorted(WAL.rglob("*.py"))
    }
    assert {} == {path: names for path, names in offenders.items() if names}


def test_importing_wal_loads_no_dictdb_module() -> None:
    code = (
        "import importlib, pkgutil, sys, wal; "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(wal.__path__, 'wal.')]; "
        "assert not any(m == 'dictdb' or m.startswith('dictdb.') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('dictdb'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (0, "") == (proc.returncode, proc.stderr)
