"""Command line, reference venv management and worker orchestration."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _catalog as cat
from benchmarks import _report
from benchmarks._wcommon import SCRATCH_ENV

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORKER = BENCH_DIR / "_worker.py"
REFERENCE_VENV = BENCH_DIR / ".venvs" / "reference"
REFERENCE_REQUIREMENT = "dctdb==1.11.0"
REFERENCE_VERSION = "1.11.0"


@dataclass
class Impl:
    """How to start a worker for one implementation."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    status: str = "ok"  # "ok" or "unavailable"
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- machine


def _cpuinfo_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": _cpuinfo_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite_version": sqlite3.sqlite_version,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }


def _commit() -> str:
    """The repository's HEAD, with "+changes" when dictdb/ or wal/ differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "dictdb", "wal"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if changed else "")


# --------------------------------------------------------------------------- implementations


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        env.pop(var, None)
    return env


def _venv_python(venv: Path) -> Path:
    if sys.platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])


def _reference_version(python: Path) -> str | None:
    probe = "import importlib.metadata as m, dictdb; print(m.version('dctdb'))"
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", probe],
            cwd=python.parent,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _pip_install(python: Path, *args: str) -> list[str]:
    """The argv of a quiet, non-interactive ``pip install`` with *python*, giving up fast
    when the network is out (one retry, 15 s timeouts)."""
    quiet = ["--quiet", "--disable-pip-version-check", "--no-input"]
    return [str(python), "-m", "pip", "install", *quiet, "--retries", "1", "--timeout", "15", *args]


def ensure_reference_venv(venv: Path = REFERENCE_VENV) -> tuple[Path | None, str]:
    """Create the reference venv when missing; return (python, message)."""
    python = _venv_python(venv)
    if python.exists() and _reference_version(python) == REFERENCE_VERSION:
        return python, f"using {venv}"
    if venv.exists():
        shutil.rmtree(venv)
    print(f"creating reference venv at {venv} ({REFERENCE_REQUIREMENT}) ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        _pip_install(python, "--ignore-requires-python", REFERENCE_REQUIREMENT),
    ]
    for argv in steps:
        try:
            proc = subprocess.run(
                argv,
                cwd=venv.parent if venv.parent.exists() else None,
                env=_clean_env(),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(venv, ignore_errors=True)
            return None, f"{argv[2]} failed: {exc}"
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            return None, f"`{' '.join(argv[1:4])}` failed: {_tail(proc.stderr or proc.stdout)}"
    found = _reference_version(python)
    if found != REFERENCE_VERSION:
        shutil.rmtree(venv, ignore_errors=True)
        return None, f"installed reference reports version {found!r}"
    return python, f"created {venv}"


def make_impls(names: list[str]) -> dict[str, Impl]:
    impls: dict[str, Impl] = {}
    repo_env = _clean_env()
    repo_env["PYTHONPATH"] = str(REPO_ROOT)
    worker_module = [sys.executable, "-m", "benchmarks._worker"]
    if "ours" in names:
        impls["ours"] = Impl("ours", worker_module, REPO_ROOT, repo_env)
    if "reference" in names:
        python, message = ensure_reference_venv()
        if python is None:
            print(f"reference unavailable: {message}", flush=True)
            impls["reference"] = Impl(
                "reference", [], BENCH_DIR, {}, status="unavailable", message=message
            )
        else:
            # -I: ignore PYTHON* variables and do not put the worker's directory on
            # sys.path; cwd outside the repository, so `import dictdb` is the venv's.
            argv = [str(python), "-I", str(WORKER)]
            impls["reference"] = Impl(
                "reference", argv, python.parent, _clean_env(), message=message
            )
    if "sqlite3" in names:
        impls["sqlite3"] = Impl("sqlite3", worker_module, REPO_ROOT, repo_env)
    return impls


# --------------------------------------------------------------------------- charts

MATPLOTLIB_REQUIREMENT = "matplotlib"
# A failed matplotlib install is not retried on every run: delete the marker (or the venv).
MATPLOTLIB_FAILED = ".matplotlib-install-failed"
MATPLOTLIB_RETRY_S = 24 * 3600


def _has_matplotlib(python: str | Path) -> bool:
    try:
        proc = subprocess.run(
            [str(python), "-c", "import matplotlib"],
            cwd=BENCH_DIR,
            env=_clean_env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _install_matplotlib(python: Path, venv: Path) -> str | None:
    """pip install matplotlib into the venv; None on success, else why not."""
    marker = venv / MATPLOTLIB_FAILED
    if marker.exists() and time.time() - marker.stat().st_mtime < MATPLOTLIB_RETRY_S:
        return f"an earlier install failed ({marker.read_text().strip()}); delete {marker}"
    print(f"installing {MATPLOTLIB_REQUIREMENT} into {venv} (charts) ...", flush=True)
    argv = _pip_install(python, MATPLOTLIB_REQUIREMENT)
    try:
        proc = subprocess.run(
            argv, env=_clean_env(), capture_output=True, text=True, timeout=600, check=False
        )
        failure = None if proc.returncode == 0 else _tail(proc.stderr or proc.stdout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        failure = str(exc)
    if failure is not None:
        marker.write_text(failure[:500] + "\n")
    return failure


def chart_python(venv: Path = REFERENCE_VENV) -> tuple[str | None, str]:
    """The interpreter that renders the charts, and a note saying which (or why none).

    matplotlib is not a dependency of the project: it goes into the suite's own reference
    venv (next to dctdb); the current interpreter is used when that fails and it has
    matplotlib; otherwise the charts are skipped.
    """
    python, message = ensure_reference_venv(venv)
    failure = message
    if python is not None:
        if _has_matplotlib(python):
            return str(python), f"charts rendered with {python}"
        failure = _install_matplotlib(python, venv)
        if failure is None and _has_matplotlib(python):
            return str(python), f"charts rendered with {python} (matplotlib just installed)"
    if _has_matplotlib(sys.executable):
        return sys.executable, f"charts rendered with {sys.executable} (venv: {failure})"
    return None, f"charts skipped: matplotlib unavailable ({failure})"


# --------------------------------------------------------------------------- running


def _parse_worker_output(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                return parsed
    return None


def _wrong_module(impl: str, module: str | None) -> bool:
    """True when a dictdb worker imported a dictdb other than the one it is meant to time."""
    if impl == "sqlite3" or not module:
        return False
    expected = REPO_ROOT / "dictdb" if impl == "ours" else REFERENCE_VENV
    return not Path(module).resolve().is_relative_to(expected.resolve())


def run_worker(
    impl: Impl, workload: cat.Workload, size: int, repeat: int, timeout: float, scratch: Path
) -> dict[str, Any]:
    ops = workload.ops_for(impl.name, size)
    argv = [*impl.argv, impl.name, workload.name, str(size), str(repeat), str(ops)]
    env = {**impl.env, SCRATCH_ENV: str(scratch)}
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            argv,
            cwd=impl.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "message": f"worker timed out after {timeout:g} s"}
    except OSError as exc:
        return {"status": "error", "message": f"cannot start worker: {exc}"}
    wall = time.perf_counter() - started
    data = _parse_worker_output(proc.stdout)
    if data is None:
        detail = _tail(proc.stderr, 1) or f"exit code {proc.returncode}, no JSON line"
        return {"status": "error", "message": f"worker failed: {detail}", "wall_s": wall}
    data["wall_s"] = round(wall, 3)
    if proc.returncode != 0 and data.get("status") == "ok":
        data.update(status="error", message=f"worker exit code {proc.returncode}")
    if data.get("status") == "ok" and _wrong_module(impl.name, data.get("module")):
        data.update(status="error", message=f"imported the wrong dictdb: {data.get('module')}")
    return data


def run_cell(
    impl: Impl, workload: cat.Workload, size: int, repeat: int, timeout: float, scratch: Path
) -> dict[str, Any]:
    """All repetitions of one cell: one worker, or one worker per repetition (after a
    fixture-building worker) for the per-process workloads."""
    if not workload.per_process and not workload.fixture:
        return run_worker(impl, workload, size, repeat, timeout, scratch)
    wall = 0.0
    if workload.fixture:
        built = run_worker(impl, workload, size, 0, timeout, scratch)
        wall += float(built.get("wall_s", 0.0))
        if built.get("status") != "ok":
            return built
    if not workload.per_process:
        data = run_worker(impl, workload, size, repeat, timeout, scratch)
        data["wall_s"] = round(wall + float(data.get("wall_s", 0.0)), 3)
        return data
    merged: dict[str, Any] | None = None
    for _ in range(repeat):
        data = run_worker(impl, workload, size, 1, timeout, scratch)
        wall += float(data.get("wall_s", 0.0))
        if data.get("status") != "ok":
            data["wall_s"] = round(wall, 3)
            return data
        if merged is None:
            merged = data
            merged["processes"] = 1
            continue
        merged["runs_s"] = [*merged["runs_s"], *data["runs_s"]]
        for key, values in (data.get("extras") or {}).items():
            merged["extras"].setdefault(key, []).extend(values)
        merged["peak_rss_mib"] = max(merged.get("peak_rss_mib", 0), data.get("peak_rss_mib", 0))
        merged["processes"] += 1
    assert merged is not None
    merged["wall_s"] = round(wall, 3)
    return merged


def summarize(workload: cat.Workload, impl: str, size: int, raw: dict[str, Any]) -> dict[str, Any]:
    """One result row for results.json: statistics in the workload's display unit."""
    row: dict[str, Any] = {
        "workload": workload.name,
        "group": workload.group,
        "impl": impl,
        "size": size,
        "unit": workload.unit,
        "status": raw.get("status", "error"),
        "message": raw.get("message", ""),
    }
    runs_s: list[float] = raw.get("runs_s") or []
    ops = int(raw.get("ops") or 0)
    if row["status"] == "ok" and runs_s and ops > 0:
        values = [s / ops * workload.scale for s in runs_s]
        row.update(
            ops=ops,
            runs_s=runs_s,
            runs=values,
            median=statistics.median(values),
            min=min(values),
            max=max(values),
        )
        extras = raw.get("extras") or {}
        row["extras"] = {
            key: {"median": statistics.median(vals), "runs": vals}
            for key, vals in extras.items()
            if vals
        }
        row["repeat"] = len(values)
    elif row["status"] == "ok":
        row.update(status="error", message="worker returned no timings")
    for key in (
        "peak_rss_mib",
        "rss_after_import_mib",
        "version",
        "module",
        "wall_s",
        "processes",
    ):
        if key in raw:
            row[key] = raw[key]
    return row


def _fmt_line(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"{row['status']}" + (f": {row['message']}" if row.get("message") else "")
    return f"{_report.fmt(row['median'])} {row['unit']} (min {_report.fmt(row['min'])})"


# --------------------------------------------------------------------------- CLI


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in _csv(value)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad size list {value!r}") from exc
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="dictdb benchmarks: ours vs the reference DictDB 1.11 vs sqlite3.",
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke sizes (fast)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="output dir")
    parser.add_argument("--repeat", type=int, help="repetitions (default 5, quick 2)")
    parser.add_argument("--only", type=_csv, help="workloads, comma separated")
    parser.add_argument("--skip", type=_csv, default=[], help="workloads not to run")
    parser.add_argument("--sizes", type=_sizes, help="row counts, e.g. 100000,1000000")
    parser.add_argument(
        "--impls", type=_csv, default=list(cat.IMPLS), help="ours,reference,sqlite3"
    )
    parser.add_argument("--timeout", type=float, help="seconds per worker process")
    parser.add_argument(
        "--scratch",
        type=Path,
        help="directory for the files the workloads write (default: benchmarks/.scratch/)",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        help="results.json of an earlier (partial) run to merge in; repeatable",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: write the report (and charts) from the --merge files",
    )
    parser.add_argument("--no-charts", action="store_true", help="do not render charts")
    args = parser.parse_args(argv)
    for option in ("only", "skip"):
        unknown = [name for name in getattr(args, option) or [] if name not in cat.BY_NAME]
        if unknown:
            parser.error(f"unknown workload(s) {unknown}; choose from {sorted(cat.BY_NAME)}")
    unknown_impls = [name for name in args.impls if name not in cat.IMPLS]
    if unknown_impls:
        parser.error(f"unknown implementation(s) {unknown_impls}; choose from {cat.IMPLS}")
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.render_only and not args.merge:
        parser.error("--render-only needs at least one --merge file")
    return args


def _merge(report: dict[str, Any], paths: list[Path]) -> None:
    """Add the rows of earlier runs that this run did not produce (this run wins)."""
    have = {(r["workload"], r["impl"], r["size"]) for r in report["results"]}
    merged: list[dict[str, Any]] = []
    for path in paths:
        other = json.loads(path.read_text())
        for row in other.get("results", []):
            key = (row["workload"], row["impl"], row["size"])
            if key in have or row["workload"] not in cat.BY_NAME:
                continue
            have.add(key)
            row.setdefault("repeat", other.get("config", {}).get("repeat"))
            row["from"] = str(path)
            report["results"].append(row)
        for name, info in other.get("implementations", {}).items():
            mine = report["implementations"].setdefault(name, info)
            if mine.get("status") != "ok" and info.get("status") == "ok":
                report["implementations"][name] = info
        if not report["machine"]:
            report["machine"] = other.get("machine", {})
        cfg = other.get("config", {})
        merged.append(
            {
                "path": str(path),
                "date": other.get("machine", {}).get("date"),
                "command": cfg.get("command"),
                "elapsed_s": other.get("elapsed_s"),
            }
        )
    config = report["config"]
    names = {r["workload"] for r in report["results"]}
    config["workloads"] = [w.name for w in cat.WORKLOADS if w.name in names]
    impls = {r["impl"] for r in report["results"]}
    config["impls"] = [name for name in cat.IMPLS if name in impls or name in config["impls"]]
    config["sizes"] = sorted(
        {
            *config["sizes"],
            *(
                r["size"]
                for r in report["results"]
                if cat.BY_NAME[r["workload"]].fixed_sizes is None
            ),
        }
    )
    config["merged"] = merged
    rank = {w.name: i for i, w in enumerate(cat.WORKLOADS)}
    order = {name: i for i, name in enumerate(cat.IMPLS)}
    report["results"].sort(key=lambda r: (rank[r["workload"]], r["size"], order[r["impl"]]))


def _scratch_dir(args: argparse.Namespace) -> Path:
    base = args.scratch or BENCH_DIR / ".scratch"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=base))


def _filesystem(path: Path) -> str:
    """The filesystem type holding *path* (from /proc/mounts), for the machine line."""
    try:
        best, kind = "", "unknown"
        resolved = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and resolved.startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
        return kind
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    repeat = args.repeat or (cat.QUICK_REPEAT if args.quick else cat.FULL_REPEAT)
    sizes = args.sizes or list(cat.QUICK_SIZES if args.quick else cat.FULL_SIZES)
    timeout = args.timeout or (120.0 if args.quick else 3600.0)
    workloads = [cat.BY_NAME[n] for n in args.only] if args.only else list(cat.WORKLOADS)
    workloads = [w for w in workloads if w.name not in args.skip]
    if args.render_only:
        workloads = []
    impl_names = [name for name in cat.IMPLS if name in args.impls]
    load_start = [round(x, 2) for x in os.getloadavg()]

    plan = [
        (w, size, name)
        for w in workloads
        for size in cat.sizes_for(w, sizes, impl_names, args.quick)
        for name in impl_names
    ]
    needed = {name for w, size, name in plan if cat.skip_reason(w, name, size) is None}
    impls = make_impls([name for name in impl_names if name in needed])
    scratch = _scratch_dir(args)
    results: list[dict[str, Any]] = []
    try:
        for number, (workload, size, name) in enumerate(plan, start=1):
            label = f"[{number}/{len(plan)}] {workload.name:<26} {name:<9} {size:>10,}"
            print(label, end=" ", flush=True)
            skip = cat.skip_reason(workload, name, size)
            impl = impls.get(name)
            if skip is not None:
                raw: dict[str, Any] = {"status": skip}
            elif impl is None or impl.status != "ok":
                raw = {
                    "status": "unavailable" if impl is None else impl.status,
                    "message": "" if impl is None else impl.message,
                }
            else:
                raw = run_cell(impl, workload, size, repeat, timeout, scratch)
            row = summarize(workload, name, size, raw)
            results.append(row)
            if impl is not None:
                for key in ("version", "module", "python"):
                    if key in raw and key not in impl.info:
                        impl.info[key] = raw[key]
            print(_fmt_line(row), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if args.scratch is None:
            with contextlib.suppress(OSError):
                scratch.parent.rmdir()  # benchmarks/.scratch/, when no other run uses it

    machine = machine_info() if not args.render_only else {}
    if machine:
        machine["scratch_fs"] = _filesystem(scratch.parent)
        machine["load_average_start"] = load_start
    report: dict[str, Any] = {
        "schema": 2,
        "machine": machine,
        "config": {
            "mode": "quick" if args.quick else "full",
            "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
            "repeat": repeat,
            "sizes": sizes,
            "workloads": [w.name for w in workloads],
            "impls": impl_names,
            "timer": "time.perf_counter; gc.collect() before each repetition, GC enabled",
        },
        "implementations": {
            name: {"status": impl.status, "message": impl.message, **impl.info}
            for name, impl in impls.items()
        },
        "groups": [
            {"key": g.key, "title": g.title, "size_label": g.size_label} for g in cat.GROUPS
        ],
        "workloads": {
            w.name: {"group": w.group, "unit": w.unit, "measures": w.measures}
            for w in cat.WORKLOADS
        },
        "results": results,
        "elapsed_s": 0.0,
    }
    if args.merge:
        _merge(report, args.merge)
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    charts: tuple[str | None, str] = (None, "charts skipped (--no-charts)")
    if not args.no_charts:
        charts = chart_python()
    markdown = _report.write_all(report, args.out, charts)
    print()
    print(markdown)
    print(charts[1])
    total = round(time.perf_counter() - started, 1)
    print(f"wrote {args.out} in {total} s", flush=True)
    return 0
