"""Smoke test of the benchmark suite: `python -m benchmarks --quick` runs end to end.

No timing is asserted: only that the run finishes, writes its report (JSON, Markdown and,
when matplotlib could be found or installed, the charts) and that none of our own workload
rows is an error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    return out, report


def test_quick_run_writes_the_report(quick_run: tuple[Path, dict]) -> None:
    out, report = quick_run
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("# dictdb benchmarks")
    assert report["config"]["mode"] == "quick"
    for group in ("Inserts", "Full snapshots", "Delta backups", "Restore", "Durable log"):
        assert f"## {group}" in markdown
    for chart in report["charts"]:
        assert (out / chart).stat().st_size > 0
        assert f"]({chart})" in markdown


def test_every_workload_of_ours_ran(quick_run: tuple[Path, dict]) -> None:
    _out, report = quick_run
    ours = [r for r in report["results"] if r["impl"] == "ours"]
    names = {r["workload"] for r in ours}
    assert names == set(report["config"]["workloads"])
    failed = [(r["workload"], r["size"], r.get("message")) for r in ours if r["status"] == "error"]
    assert not failed
    ran = [r for r in ours if r["status"] == "ok"]
    assert all(r["median"] >= 0 and r["runs"] for r in ran)
