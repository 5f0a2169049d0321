"""A pytest plugin for the child run: every test's outcome, as JSON, to $REFERENCE_PARITY_OUT.

Loaded with ``-p tests.reference_parity._collector``. A test fails when any of its phases
(setup, call, teardown) fails; a module that cannot be collected (an import error) is
recorded under its own node id as ``"error"``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_OUTCOMES: dict[str, str] = {}
_MESSAGES: dict[str, str] = {}


def _record(nodeid: str, outcome: str, message: str) -> None:
    # passed < skipped < failed < error: a later phase may only make the outcome worse.
    rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    if rank[outcome] >= rank[_OUTCOMES.get(nodeid, "passed")]:
        _OUTCOMES[nodeid] = outcome
        if message:
            _MESSAGES[nodeid] = message


def _first_line(report: pytest.CollectReport | pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _record(report.nodeid, "error", _first_line(report))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _record(report.nodeid, "failed" if report.when == "call" else "error", _first_line(report))
    elif report.skipped:
        _record(report.nodeid, "skipped", "")
    elif report.when == "call":
        _record(report.nodeid, "passed", "")


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = os.environ.get("REFERENCE_PARITY_OUT")
    if out:
        document = {"outcomes": _OUTCOMES, "messages": _MESSAGES}
        Path(out).write_text(json.dumps(document, indent=1, sort_keys=True), encoding="utf-8")
