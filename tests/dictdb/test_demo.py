"""``python -m dictdb demo``: it builds a durable database with audited changes and backups,
shows them, and every command it prints works on the directory it leaves.

Expected values come from `restore()` and the audit API on the directory, never from the
demo's own output.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from dictdb import cli, restore
from dictdb.audit import history, verify
from dictdb.cli.demo import MARKER

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """*argv* (``python -m dictdb ...``) with this checkout on the path."""
    return subprocess.run(
        argv, capture_output=True, text=True, env=ENV, cwd=cwd, timeout=60, check=False
    )


def printed_commands(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.startswith("  python -m dictdb")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One run of ``python -m dictdb demo --dir DIR`` (as a user runs it)."""
    base = tmp_path_factory.mktemp("demo")
    directory = base / "the demo dir"  # a space: the printed commands must quote it
    result = run([sys.executable, "-m", "dictdb", "demo", "--dir", str(directory)], base)
    return directory, result


def test_demo_exits_0_and_says_where_it_wrote(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    directory, result = demo
    assert (0, "") == (result.returncode, result.stderr)
    assert f"in {directory} (created)" in result.stdout.splitlines()[0]
    assert (directory / MARKER).is_file()
    assert (directory / "wal").is_dir()


def test_demo_prints_every_promised_command(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, result = demo
    verbs = [shlex.split(c)[3] for c in printed_commands(result.stdout)]
    expected = ["ls", "verify", "restore", "restore", "restore", "history", "diff", "log"]
    assert expected == verbs
    restores = [c for c in printed_commands(result.stdout) if " restore " in c]
    assert ["--dry-run", "--at", "--lsn"] == [
        next(a for a in shlex.split(c) if a in ("--dry-run", "--at", "--lsn")) for c in restores
    ]


def test_each_printed_command_works_on_the_demo_directory(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """Each command runs as printed (``python`` being this interpreter): exit 0, no stderr."""
    directory, result = demo
    commands = printed_commands(result.stdout)
    assert commands
    procs = []
    for command in commands:
        argv = shlex.split(command)
        assert "python" == argv[0]
        procs.append(
            (
                command,
                subprocess.Popen(
                    [sys.executable, *argv[1:]],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=ENV,
                    cwd=directory.parent,
                ),
            )
        )
    outcomes = []
    for command, proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        outcomes.append((command, proc.returncode, stderr, bool(stdout)))
    assert [(c, 0, "", True) for c in commands] == outcomes


def test_the_restore_commands_write_the_state_before_the_mistake(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """``restore --at T`` and ``--lsn N`` as printed give one state: the one before dave's
    change, whose plans the newest state lost."""
    directory, result = demo
    commands = [shlex.split(c) for c in printed_commands(result.stdout)]
    at = next(c[c.index("--at") + 1] for c in commands if "--at" in c and "--out" in c)
    lsn = int(next(c[c.index("--lsn") + 1] for c in commands if "--lsn" in c))
    then, now = restore(directory, at=at), restore(directory, lsn=lsn)
    assert then.to_dict() == now.to_dict()
    assert lsn == then.lsn
    newest = restore(directory)
    plans = {r["id"]: r["plan"] for r in then.get_table("customers").all()}
    assert {1: "pro", 3: "team"} == plans
    assert {1: "free", 3: "free"} == {
        r["id"]: r["plan"] for r in newest.get_table("customers").all()
    }


def test_the_history_shown_has_each_actor_and_reason(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    directory, result = demo
    section = result.stdout.split("History of customers/1")[1].split("\n\n")[0]
    versions = history(directory, "customers", 1)
    assert len(versions) >= 4
    for version in versions:
        assert version.meta["actor"] in section
        assert version.meta["reason"] in section
    assert "plan: 'pro' -> 'free'" in section


def test_the_directory_verifies_and_the_demo_says_so(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    directory, result = demo
    assert verify(directory).ok
    section = result.stdout.split("Verification")[1]
    assert "OK" in section


def test_demo_again_on_its_own_directory_replaces_it(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    assert 0 == cli.main(["demo", "--dir", str(directory)])
    (directory / "restored-at.json").write_text("{}")  # what a printed command leaves
    first = restore(directory).to_dict()
    assert 0 == cli.main(["demo", "--dir", str(directory)])
    again = restore(directory)
    assert first.keys() == again.to_dict().keys()
    assert not (directory / "restored-at.json").exists()
    assert verify(directory).ok


def test_demo_without_dir_uses_a_new_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert 0 == cli.main(["demo"])
    made = [p for p in tmp_path.iterdir() if p.name.startswith("dictdb-demo-")]
    assert 1 == len(made)
    assert f"a new temporary directory (--dir DIR to choose one): {made[0]}" in (
        capsys.readouterr().out
    )
    assert verify(made[0]).ok


@pytest.mark.parametrize("kind", ["not empty", "a file", "a FIFO"])
def test_demo_refuses_a_dir_it_did_not_make(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, one line on stderr, and nothing written."""
    target = tmp_path / "target"
    if kind == "not empty":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    elif kind == "a file":
        target.write_text("mine")
    else:
        os.mkfifo(target)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code = cli.main(["demo", "--dir", str(target)])
    err = capsys.readouterr().err
    expected: tuple[Any, ...] = (2, 1, True)
    assert expected == (code, len(err.splitlines()), err.startswith("dictdb: --dir "))
    assert before == sorted(str(p) for p in tmp_path.rglob("*"))
