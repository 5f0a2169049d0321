"""The wheel a user would install: built from this tree, installed into a fresh venv, run.

Offline: the wheel is built with the installed hatchling (`--no-isolation`), the venv reuses
this interpreter's site-packages for the dependencies (`--system-site-packages`), and pip is
told to use no index, so a dependency the wheel declares but this environment lacks fails the
install instead of being downloaded. Everything happens outside the repository, so the
package imported in the venv can only be the installed one.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import dictdb
from dictdb._version import __version__

ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "dictdb-journal"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("build") is None or importlib.util.find_spec("hatchling") is None,
    reason="needs the test extra's build and hatchling (pip install -e '.[test]')",
)


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert 0 == done.returncode, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), "."],
        cwd=ROOT,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_version_is_written_once_and_read_by_the_build() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert DIST_NAME == project["name"]
    assert "version" not in project
    assert ["version"] == project["dynamic"]
    assert __version__ == dictdb.__version__


def test_the_wheel_carries_the_name_the_version_and_the_license(wheel: Path) -> None:
    assert wheel.name.startswith(f"dictdb_journal-{__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = f"dictdb_journal-{__version__}.dist-info"
        metadata = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
    assert DIST_NAME == metadata["Name"]
    assert __version__ == metadata["Version"]
    assert "MIT" == metadata["License-Expression"]
    assert f"{info}/licenses/LICENSE" in names
    assert "dictdb/py.typed" in names
    assert "wal/__init__.py" in names
    assert not [n for n in names if n.startswith("tests/")]


def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_demo(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # No pip inside the venv (ensurepip would take seconds): this interpreter's pip installs
    # into it with --python.
    _run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        tmp_path,
    )
    python = venv / "bin" / "python"
    # The dependencies come from the environment running the tests (offline), which may itself
    # be a venv that --system-site-packages does not reach: a .pth file points at it.
    probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = _run([str(python), "-c", probe], tmp_path)
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.strip()) / "_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    _run(
        [*pip, "install", "--no-index", "--no-deps", "--no-cache-dir", "--quiet", str(wheel)],
        tmp_path,
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    where = _run([str(python), "-c", "import dictdb; print(dictdb.__file__)"], work, env)
    assert Path(where.strip()).is_relative_to(venv), where
    out = _run([str(python), "-m", "dictdb", "demo", "--dir", str(tmp_path / "demo")], work, env)
    assert out.strip()
    script = _run(
        [str(venv / "bin" / "dictdb"), "demo", "--dir", str(tmp_path / "demo")], work, env
    )
    assert script.strip()
