"""Smoke test of the benchmark suite: `python -m benchmarks --quick` runs end to end.

No timing is asserted: only that the run finishes, writes its report (JSON and Markdown) and
that no row of ours, nor of sqlite3, is an error.

The default test makes no network call: it runs our implementation and sqlite3 only, without
charts (`--impls ours,sqlite3 --no-charts`), so neither the reference venv (`pip install
dctdb`) nor matplotlib is installed; pip is also told not to reach an index. The full run,
with the reference DictDB and the charts, needs the network the first time (or a warm
`benchmarks/.venvs/`) and is marked slow: `python -m pytest -m slow tests/test_benchmarks_smoke.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
GROUPS = ("Inserts", "Full snapshots", "Delta backups", "Restore", "Durable log")
OFFLINE_IMPLS = ["ours", "sqlite3"]


def run_quick(out: Path, *options: str, offline: bool) -> dict[str, Any]:
    """Run `python -m benchmarks --quick --out OUT` (scratch files under OUT); the report."""
    env = dict(os.environ)
    if offline:
        # Belt and braces: were a code path to try `pip install`, it would fail, not download.
        env |= {"PIP_NO_INDEX": "1", "PIP_NO_INPUT": "1"}
    argv = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out / "report")]
    argv += ["--scratch", str(out / "scratch"), *options]
    proc = subprocess.run(
        argv,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report: dict[str, Any] = json.loads((out / "report" / "results.json").read_text())
    return report


def check_report(out: Path, report: dict[str, Any]) -> str:
    """The report is complete: quick mode, every group in the Markdown, charts it names exist."""
    markdown = (out / "report" / "results.md").read_text()
    assert markdown.startswith("# dictdb benchmarks")
    assert report["config"]["mode"] == "quick"
    for group in GROUPS:
        assert f"## {group}" in markdown
    for chart in report["charts"]:
        assert (out / "report" / chart).stat().st_size > 0
        assert f"]({chart})" in markdown
    return markdown


def check_ran(report: dict[str, Any], impl: str, *, every_workload: bool) -> None:
    """Every row of *impl* ran or is not applicable; none is an error; ok rows carry times."""
    rows = [r for r in report["results"] if r["impl"] == impl]
    assert rows, f"no rows for {impl}"
    if every_workload:
        assert {r["workload"] for r in rows} == set(report["config"]["workloads"])
    failed = [(r["workload"], r["size"], r.get("message")) for r in rows if r["status"] == "error"]
    assert failed == []
    ran = [r for r in rows if r["status"] == "ok"]
    assert ran, f"no workload of {impl} ran"
    assert all(r["median"] >= 0 and r["runs"] for r in ran)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    impls = ",".join(OFFLINE_IMPLS)
    return out, run_quick(out, "--impls", impls, "--no-charts", offline=True)


def test_quick_run_writes_the_report(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, report = quick_run
    markdown = check_report(out, report)
    assert report["config"]["impls"] == OFFLINE_IMPLS
    # Nothing was installed: no reference venv was looked for, no chart rendered.
    assert sorted(report["implementations"]) == OFFLINE_IMPLS
    assert report["charts"] == []
    assert "charts skipped (--no-charts)" in markdown


def test_every_workload_of_ours_ran(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _out, report = quick_run
    check_ran(report, "ours", every_workload=True)
    assert {r["impl"] for r in report["results"]} == set(OFFLINE_IMPLS)


def test_sqlite3_ran_beside_ours(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _out, report = quick_run
    check_ran(report, "sqlite3", every_workload=False)


@pytest.mark.slow
def test_full_quick_run_with_the_reference_and_charts(tmp_path: Path) -> None:
    """Needs the network the first time: creates `benchmarks/.venvs/reference` (dctdb and
    matplotlib)."""
    report = run_quick(tmp_path, offline=False)
    check_report(tmp_path, report)
    reference = report["implementations"]["reference"]
    assert reference["status"] == "ok", reference["message"]
    for impl in ("ours", "reference", "sqlite3"):
        check_ran(report, impl, every_workload=impl == "ours")
    assert report["charts"]
