"""Every code example in README.md and docs/*.md runs, as written, in order per file.

Each file's fenced blocks run in one fresh temporary directory, top to bottom, so a later
block may use the names and files of an earlier one:

- ```python blocks are executed in one namespace per file;
- ```console and ```bash blocks are commands: the lines after a `$ ` prompt if there are
  any, else every line but comments; each must be `python -m dictdb ...` and exit 0 (it runs
  in this process through `dictdb.cli.main`, which is what `python -m dictdb` calls);
- other blocks (```text, ```toml...) are not examples and are left alone.

HTML comments right before a block (blank lines between are allowed) steer it; a reader of
the rendered page does not see them:

- `<!-- docs: skip (why) -->`: the block is not run; each one is reported as a skipped
  test, with its file, line and reason;
- `<!-- docs: copy SRC DEST -->`: before the block, copy SRC (a file or a directory, relative
  to the repository) to DEST (relative to the temporary directory);
- `<!-- docs: new-dir -->`: from this block on, work in a new empty directory (the names
  defined so far stay).

A console or bash block whose commands are not `python -m dictdb` must be marked `skip`: the
test fails otherwise, so a new example is either run or listed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from dictdb.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```([\w-]*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*docs:\s*(?P<verb>[\w-]+)\s*(?P<rest>.*?)\s*-->\s*$")
_SHELL = {"console", "bash", "sh", "shell"}
_PREFIX = ["python", "-m", "dictdb"]


@attrs.frozen
class Block:
    """One fenced block: where it is, its language, its text and its directives."""

    path: Path
    line: int  # of the first line inside the fence, 1-based
    lang: str
    text: str
    directives: tuple[tuple[str, str], ...]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        for verb, rest in self.directives:
            if verb == "skip":
                return rest.strip("()") or "marked skip"
        return None


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, each with the directives just before it."""
    found: list[Block] = []
    pending: list[tuple[str, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        directive = _DIRECTIVE.match(line)
        if directive:
            pending.append((directive["verb"], directive["rest"]))
        elif fence:
            end = i + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            body = "\n".join(lines[i + 1 : end]) + "\n"
            found.append(Block(path, i + 2, fence[1].lower(), body, tuple(pending)))
            pending = []
            i = end
        elif line.strip():
            pending = []
        i += 1
    return found


def commands(block: Block) -> list[str]:
    """The command lines of a console or bash block."""
    lines = block.text.splitlines()
    if block.lang == "console" and any(ln.startswith("$ ") for ln in lines):
        return [ln[2:] for ln in lines if ln.startswith("$ ")]
    return [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _examples() -> Iterator[Block]:
    for path in FILES:
        for block in blocks(path):
            if block.lang == "python" or block.lang in _SHELL:
                yield block


def _skipped() -> list[Block]:
    return [b for b in _examples() if b.skip_reason is not None]


def _run_command(block: Block, command: str) -> None:
    argv = shlex.split(command, comments=True)
    assert _PREFIX == argv[:3], f"{block.where}: not `python -m dictdb`: {command}"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(argv[3:])
    assert 0 == code, f"{block.where}: `{command}` exited {code}:\n{out.getvalue()}{err.getvalue()}"


def _run_file(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    namespace: dict[str, object] = {"__name__": f"docs_example_{path.stem}"}
    cwd = tmp_path / "0"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    ran = 0
    for block in blocks(path):
        if block.lang != "python" and block.lang not in _SHELL:
            continue
        if block.skip_reason is not None:
            continue
        for verb, rest in block.directives:
            if verb == "new-dir":
                cwd = tmp_path / str(len(list(tmp_path.iterdir())))
                cwd.mkdir()
                monkeypatch.chdir(cwd)
            elif verb == "copy":
                src, dest = rest.split()
                target = cwd / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / src).is_dir():
                    shutil.copytree(ROOT / src, target, dirs_exist_ok=True)
                else:
                    shutil.copyfile(ROOT / src, target)
            else:
                pytest.fail(f"{block.where}: unknown directive `docs: {verb}`")
        if block.lang == "python":
            # Padded so that a traceback's line number is the Markdown file's.
            code = compile("\n" * (block.line - 1) + block.text, str(block.path), "exec")
            with contextlib.redirect_stdout(io.StringIO()):
                exec(code, namespace)
        else:
            cmds = commands(block)
            assert cmds, f"{block.where}: a {block.lang} block with no command"
            for command in cmds:
                _run_command(block, command)
        ran += 1
    return ran


@pytest.fixture(autouse=True)
def _quiet_dictdb_logger() -> Iterator[None]:
    # Legacy reads warn on the `dictdb` logger by design; the examples need not show it.
    logger = logging.getLogger("dictdb")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_examples_of_a_file_run_in_order(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every python block, and every `python -m dictdb` command, of the file runs as written."""
    monkeypatch.setenv("TZ", os.environ.get("TZ", "UTC"))
    _run_file(path, tmp_path, monkeypatch)


@pytest.mark.parametrize("block", _skipped(), ids=lambda b: b.where)
def test_an_example_marked_skip_is_listed(block: Block) -> None:
    """Each block marked `docs: skip` shows in the run's summary with its reason."""
    pytest.skip(f"{block.where}: {block.skip_reason}")


def test_the_examples_are_found() -> None:
    """The extraction sees the README's examples, and each page has a run example."""
    readme = [b for b in _examples() if b.path.name == "README.md"]
    assert len([b for b in readme if b.lang == "python"]) >= 5
    for path in FILES[1:]:
        if path.name == "contract.md":
            continue  # the design contract: tables, no examples
        runnable = [b for b in blocks(path) if b.lang == "python" and b.skip_reason is None]
        assert runnable, f"{path.relative_to(ROOT)}: no python example that runs"


def test_a_shell_block_must_run_dictdb_or_be_marked() -> None:
    """A console/bash block of anything but `python -m dictdb` needs a `docs: skip` marker."""
    unmarked = [
        f"{b.where}: {c}"
        for b in _examples()
        if b.lang in _SHELL and b.skip_reason is None
        for c in commands(b)
        if shlex.split(c, comments=True)[:3] != _PREFIX
    ]
    assert [] == unmarked
