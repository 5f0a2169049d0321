"""Fetch the reference's tests, run them against this package, and report against our list.

Steps: `fetch_sdist` (pip download, checked against a pinned SHA-256) → `extract_tests` (only
``tests/``, into a fresh directory) → `run_tests` (pytest in a child process, with the
reference's own conftest and a minimal ini registering its ``slow`` marker, so nothing from
our pyproject, such as ``--strict-markers -m 'not slow'`` or coverage options, leaks in) →
`classify` and `report`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from tests.reference_parity.differences import DIFFERENCES, ROOT_ONLY

PACKAGE = "dctdb"
VERSION = "1.11.0"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
#: The sdist as published on PyPI: what we run is exactly the reference's 1.11.0 suite.
SDIST_SHA256 = "1b68d2ea3b7faa68a01abe6135565a3032b7bb2a532517a6fb8fe34989a536d0"
#: The share of the reference's tests that must pass.
GOAL = 0.95

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO / ".cache" / "reference_parity"

# The reference declares this marker in its own pyproject, which we do not extract.
_INI = """\
[pytest]
markers =
    slow: marks tests as slow (the reference's own marker)
"""


def fetch_sdist(cache: Path) -> Path:
    """The reference's sdist in *cache*, downloaded with pip unless already there.

    Raises:
        RuntimeError: pip failed, or the file is not the published one.
    """
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / SDIST
    if not path.is_file():
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--ignore-requires-python",  # it declares >=3.13; its tests run on 3.11
            "--dest",
            str(cache),
            f"{PACKAGE}=={VERSION}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not path.is_file():
            raise RuntimeError(f"pip download {PACKAGE}=={VERSION} failed:\n{done.stderr}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        path.unlink()
        raise RuntimeError(f"{path}: sha256 {digest}, expected {SDIST_SHA256}")
    return path


def extract_tests(sdist: Path, dest: Path) -> Path:
    """Extract only the sdist's ``tests/`` into *dest* (emptied first); return *dest*."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    prefix = f"{PACKAGE}-{VERSION}/tests/"
    with tarfile.open(sdist, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            if not member.name.startswith(prefix) or not (member.isfile() or member.isdir()):
                continue
            member.name = "tests/" + member.name[len(prefix) :]
            members.append(member)
        archive.extractall(dest, members=members, filter="data")
    (dest / "pytest.ini").write_text(_INI, encoding="utf-8")
    return dest


def run_tests(root: Path, pytest_args: Sequence[str] = ()) -> dict[str, dict[str, str]]:
    """Run the tests under *root* against this package; node id → outcome, and messages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "outcomes.json"
        env["REFERENCE_PARITY_OUT"] = str(out)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(root / "pytest.ini"),
            "--rootdir",
            str(root),
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.reference_parity._collector",
            "--continue-on-collection-errors",
            "-q",
            "--tb=no",
            "--no-header",
            *pytest_args,
            "tests",
        ]
        subprocess.run(command, cwd=root, env=env, check=False, stdout=subprocess.DEVNULL)
        if not out.is_file():
            raise RuntimeError("pytest wrote no outcomes: see its output above")
        document: dict[str, dict[str, str]] = json.loads(out.read_text(encoding="utf-8"))
    return document


@attrs.frozen
class Verdict:
    """The run, classified: what passed, what differs on purpose, what nobody explained."""

    passed: tuple[str, ...]
    skipped: tuple[str, ...]
    deliberate: tuple[tuple[str, str], ...]  # (node id, reason)
    unexplained: tuple[tuple[str, str], ...]  # (node id, first line of the failure)
    stale: tuple[str, ...]  # listed as a difference, yet passing

    @property
    def total(self) -> int:
        """Tests run, skipped ones left out."""
        return len(self.passed) + len(self.deliberate) + len(self.unexplained)

    @property
    def rate(self) -> float:
        """The share of tests run that passed."""
        return len(self.passed) / self.total if self.total else 0.0

    @property
    def ok(self) -> bool:
        """No unexplained failure, and at least `GOAL` of the tests pass."""
        return not self.unexplained and self.rate >= GOAL


def classify(
    outcomes: Mapping[str, str],
    messages: Mapping[str, str],
    differences: Mapping[str, str],
) -> Verdict:
    """Sort *outcomes* (node id → passed/skipped/failed/error) against *differences*."""
    passed, skipped, deliberate, unexplained, stale = [], [], [], [], []
    for nodeid in sorted(outcomes):
        outcome = outcomes[nodeid]
        if outcome == "passed":
            passed.append(nodeid)
            if nodeid in differences:
                stale.append(nodeid)
        elif outcome == "skipped":
            skipped.append(nodeid)
        elif nodeid in differences:
            deliberate.append((nodeid, differences[nodeid]))
        else:
            unexplained.append((nodeid, messages.get(nodeid, outcome)))
    return Verdict(
        tuple(passed), tuple(skipped), tuple(deliberate), tuple(unexplained), tuple(stale)
    )


def report(verdict: Verdict, outcomes: Mapping[str, str]) -> str:
    """The per-test lines, the deliberate differences, the unexplained failures, the totals."""
    reasons = dict(verdict.deliberate)
    lines = []
    for nodeid in sorted(outcomes):
        outcome = outcomes[nodeid]
        mark = {"passed": "PASS", "skipped": "SKIP"}.get(outcome, "FAIL")
        tag = ""
        if mark == "FAIL":
            tag = "  [deliberate]" if nodeid in reasons else "  [UNEXPLAINED]"
        lines.append(f"{mark} {nodeid}{tag}")
    if verdict.deliberate:
        lines += ["", f"Deliberate differences ({len(verdict.deliberate)}):"]
        lines += [f"  {nodeid}\n      {reason}" for nodeid, reason in verdict.deliberate]
    if verdict.unexplained:
        lines += ["", f"UNEXPLAINED failures ({len(verdict.unexplained)}):"]
        lines += [f"  {nodeid}\n      {message}" for nodeid, message in verdict.unexplained]
    if verdict.stale:
        lines += ["", "Listed as differences but passing (remove them from the list):"]
        lines += [f"  {nodeid}" for nodeid in verdict.stale]
    modules = [nodeid for nodeid in outcomes if "::" not in nodeid and outcomes[nodeid] != "passed"]
    if modules:
        lines += [
            "",
            f"{len(modules)} test modules could not be collected; each counts as one failed "
            "test below, whatever the number of tests it holds: " + ", ".join(sorted(modules)),
        ]
    lines += [
        "",
        f"dctdb {VERSION} tests against this package: {len(verdict.passed)} passed of "
        f"{verdict.total} ({verdict.rate:.1%}); {len(verdict.deliberate)} deliberate "
        f"differences, {len(verdict.unexplained)} unexplained failures, "
        f"{len(verdict.skipped)} skipped. Goal: {GOAL:.0%} and none unexplained: "
        + ("met." if verdict.ok else "NOT met."),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the parity check; 0 when the goal is met, 1 when not, 2 when it could not run."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.reference_parity",
        description=f"Run the {PACKAGE} {VERSION} test suite against this package.",
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where the sdist and its tests go"
    )
    parser.add_argument(
        "pytest_args", nargs="*", help="extra pytest arguments, after --, e.g. -- -k table"
    )
    args = parser.parse_args(argv)
    try:
        sdist = fetch_sdist(args.cache)
        root = extract_tests(sdist, args.cache / "run")
        document = run_tests(root, args.pytest_args)
    except (OSError, RuntimeError, tarfile.TarError) as error:
        print(f"reference parity: {error}", file=sys.stderr)
        return 2
    differences = dict(DIFFERENCES)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        differences.update(ROOT_ONLY)
    verdict = classify(document["outcomes"], document["messages"], differences)
    print(report(verdict, document["outcomes"]))
    return 0 if verdict.ok else 1
