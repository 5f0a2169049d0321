"""The parity command's verdict: deliberate differences, unexplained failures, the 95% goal."""

from __future__ import annotations

import tarfile
from pathlib import Path

from tests.reference_parity.run import GOAL, classify, extract_tests, report


def test_a_listed_failure_is_deliberate_and_an_unlisted_one_is_unexplained() -> None:
    outcomes = {"t.py::a": "passed", "t.py::b": "failed", "t.py::c": "error", "t.py::d": "skipped"}
    verdict = classify(outcomes, {"t.py::c": "ImportError: x"}, {"t.py::b": "we copy rows"})
    assert ("t.py::a",) == verdict.passed
    assert (("t.py::b", "we copy rows"),) == verdict.deliberate
    assert (("t.py::c", "ImportError: x"),) == verdict.unexplained
    assert ("t.py::d",) == verdict.skipped
    assert 3 == verdict.total
    assert not verdict.ok


def test_the_goal_needs_the_rate_as_well_as_every_failure_explained() -> None:
    passing = {f"t.py::p{i}": "passed" for i in range(19)}
    explained = classify({**passing, "t.py::f": "failed"}, {}, {"t.py::f": "why"})
    assert 19 / 20 == explained.rate >= GOAL
    assert explained.ok
    below = classify(
        {**passing, "t.py::f": "failed", "t.py::g": "failed"},
        {},
        {
            "t.py::f": "why",
            "t.py::g": "why",
        },
    )
    assert not below.ok


def test_a_listed_test_that_passes_is_reported_as_stale() -> None:
    verdict = classify({"t.py::a": "passed"}, {}, {"t.py::a": "no longer true"})
    assert ("t.py::a",) == verdict.stale
    assert "remove them from the list" in report(verdict, {"t.py::a": "passed"})


def test_only_the_tests_directory_is_extracted(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for name in ("dctdb-1.11.0/tests/core/test_x.py", "dctdb-1.11.0/src/dictdb/table.py"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("x = 1\n")
    sdist = tmp_path / "dctdb-1.11.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(source / "dctdb-1.11.0", arcname="dctdb-1.11.0")
    root = extract_tests(sdist, tmp_path / "run")
    extracted = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert ["pytest.ini", "tests/core/test_x.py"] == extracted
