"""Writers for results.json, results.md and the per-group PNG charts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from benchmarks import _catalog as cat
from benchmarks._charts import fmt  # standalone (stdlib) module: charts and tables agree

Row = dict[str, Any]


def _index(results: list[Row]) -> dict[tuple[str, str, int], Row]:
    return {(r["workload"], r["impl"], r["size"]): r for r in results}


def _ratio(a: Row | None, b: Row | None) -> float | None:
    if not a or not b or a["status"] != "ok" or b["status"] != "ok" or not b["median"]:
        return None
    return float(a["median"] / b["median"])


def compute_ratios(results: list[Row]) -> list[Row]:
    """ours ÷ reference and ours ÷ sqlite3 from medians of the same run and size."""
    by_key = _index(results)
    out: list[Row] = []
    seen: set[tuple[str, int]] = set()
    for r in results:
        key = (r["workload"], r["size"])
        if key in seen:
            continue
        seen.add(key)
        name, size = key
        ours = by_key.get((name, "ours", size))
        out.append(
            {
                "workload": name,
                "size": size,
                "ours_over_reference": _ratio(ours, by_key.get((name, "reference", size))),
                "ours_over_sqlite3": _ratio(ours, by_key.get((name, "sqlite3", size))),
            }
        )
    return out


def journal_overhead(results: list[Row]) -> list[Row]:
    """Ours: insert_row_journaled (every operation kept) ÷ insert_row (the default: kept
    only for a consumer), per size."""
    by_key = _index(results)
    out: list[Row] = []
    for r in results:
        if r["workload"] != "insert_row_journaled" or r["impl"] != "ours":
            continue
        default = by_key.get(("insert_row", "ours", r["size"]))
        out.append(
            {
                "size": r["size"],
                "ratio": _ratio(r, default),
                "budget": cat.BUDGET_JOURNAL_OVERHEAD,
            }
        )
    return out


def notes(report: Row) -> list[str]:
    impls = report["implementations"]
    ref = impls.get("reference", {})
    items = [
        "Times are per operation (per row, query or update as the unit says) or per call "
        "(save, load, delta, restore, audit: the unit is ms or s); memory is MiB. Lower is "
        "better everywhere. Each cell is the median of the repetitions with (min-max) in "
        "parentheses.",
        "Ratio columns = median(ours) ÷ median(other) at the same size, from this run; "
        "< 1 means ours is faster.",
        "Each (implementation, workload, size) runs in its own fresh Python process; each "
        "repetition builds fresh objects untimed, calls gc.collect(), then times the "
        "operations with time.perf_counter while the GC stays enabled.",
        "sqlite3: stdlib module, `:memory:` database, table `(id INTEGER PRIMARY KEY, name "
        "TEXT, age INTEGER, dept TEXT)`. Per-row writes use one `execute` per row and a "
        "single `commit` at the end (Python's implicit transaction), inside the timed "
        "section: that is NOT the same as one autocommitted transaction per row. Rows are "
        "passed and returned as tuples (no dict conversion).",
        f"reference: DictDB 1.11 (PyPI `dctdb`, imported as `dictdb`) in its own venv; its "
        f"default DEBUG log handler is removed (`logger.remove()`), but its logging calls "
        f"still run. insert_bulk_explicit_keys is O(n²) in the reference, so it runs only "
        f"up to {cat.REFERENCE_EXPLICIT_KEYS_CAP:,} rows (larger sizes: 'skipped "
        f"(quadratic)'; the {cat.REFERENCE_EXPLICIT_KEYS_CAP:,} size is added so a "
        f"comparison exists). Its update by key scans the whole table, so it runs "
        f"{cat.reference_update_ops_note()} (still reported per update).",
        "n/a: the workload does not apply to that implementation; not implemented: the "
        "API it needs is missing; error: the worker failed (numbered footnote under the table).",
        "Files are written under a scratch directory on the machine's disk "
        f"({report['machine'].get('scratch_fs', '?')}; benchmarks/.scratch/ by default), "
        "removed at the end of the run. Loads and restores read files that are in the page "
        "cache (they were just written).",
    ]
    if ref.get("status") == "unavailable":
        items.append(f"reference unavailable: {ref.get('message', '')}")
    return items


class Footnotes:
    """Numbered messages for failed cells, so the tables stay narrow."""

    def __init__(self) -> None:
        self.messages: dict[str, int] = {}
        self.pending: dict[int, str] = {}

    def ref(self, message: str) -> str:
        number = self.messages.setdefault(message, len(self.messages) + 1)
        self.pending[number] = message
        return f"[{number}]"

    def flush(self) -> list[str]:
        """Footnotes referenced since the last flush (one per line)."""
        lines = [f"[{n}] {m}  " for n, m in sorted(self.pending.items())]
        self.pending.clear()
        return lines


def _cell(row: Row | None, notes: Footnotes) -> str:
    if row is None:
        return "—"
    if row["status"] != "ok":
        message = str(row.get("message") or "").replace("|", "\\|").replace("\n", " ")
        if row["status"] in ("error", "not implemented", "unavailable") and message:
            return f"{row['status']} {notes.ref(message)}"
        return str(row["status"])
    return f"{fmt(row['median'])} ({fmt(row['min'])}-{fmt(row['max'])})"


def _ratio_cell(value: float | None) -> str:
    return "—" if value is None else f"{value:#.3g}x"


def _describe_impl(name: str, info: Row) -> str:
    if info.get("status") != "ok":
        return f"{name}: {info.get('status')} ({info.get('message', '')})"
    version = info.get("version", "?")
    if name == "sqlite3":
        return f"sqlite3: SQLite {version} (`:memory:`, files where the workload says so)"
    if "module" not in info:
        return f"{name}: no worker imported it successfully (see the rows)"
    return f"{name}: dictdb {version} from `{info['module']}`"


def _repeat_text(report: Row) -> str:
    counts = sorted({r.get("repeat") for r in report["results"] if r.get("repeat")})
    if len(counts) == 1:
        return f"{counts[0]} repetitions"
    if counts:
        return f"{min(counts)}-{max(counts)} repetitions (per row in results.json)"
    return f"{report['config']['repeat']} repetitions"


def _extra_cell(row: Row | None, extra: cat.Extra) -> str:
    if row is None or row["status"] != "ok":
        return "—"
    found = row.get("extras", {}).get(extra.key)
    if not found:
        return "—"
    value = found["median"] * extra.scale
    if extra.key in ("ops_per_s", "inserts_during"):
        return f"{value:,.0f}"
    return fmt(value)


def _details(report: Row, group: cat.Group, members: list[cat.Workload]) -> list[str]:
    """Per implementation and size, the medians of the extra measurements: one table per
    set of extras in the group."""
    by_key = _index(report["results"])
    impls: list[str] = report["config"]["impls"]
    sizes = sorted({r["size"] for r in report["results"] if r["group"] == group.key})
    kinds: list[tuple[cat.Extra, ...]] = []
    for w in members:
        if w.extras and w.extras not in kinds:
            kinds.append(w.extras)
    lines: list[str] = []
    for extras in kinds:
        header = ["workload", group.size_label, "impl", *(e.label for e in extras)]
        body: list[str] = []
        for w in members:
            if w.extras != extras:
                continue
            for size in sizes:
                for impl in impls:
                    row = by_key.get((w.name, impl, size))
                    if row is None or row["status"] != "ok":
                        continue
                    cells = [_extra_cell(row, e) for e in extras]
                    body.append(f"| `{w.name}` | {size:,} | {impl} | " + " | ".join(cells) + " |")
        if body:
            aligns = "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|"
            lines += ["", "Details (medians):", "", "| " + " | ".join(header) + " |", aligns]
            lines += body
    return lines


def render_markdown(report: Row) -> str:
    m = report["machine"]
    cfg = report["config"]
    by_key = _index(report["results"])
    ratios = {(r["workload"], r["size"]): r for r in report["ratios"]}
    impls: list[str] = cfg["impls"]
    lines = [
        "# dictdb benchmarks",
        "",
        f"- Date: {m.get('date')} — mode: {cfg['mode']}, sizes "
        f"{', '.join(f'{s:,}' for s in cfg['sizes'])}, {_repeat_text(report)}, "
        f"run took {report['elapsed_s']} s",
        f"- Command: `{cfg.get('command', 'python -m benchmarks')}`"
        + "".join(
            f"; merged: `{part.get('command')}` ({part.get('elapsed_s')} s)"
            for part in cfg.get("merged", [])
        ),
        f"- Machine: {m.get('cpu_model')}, {m.get('cores')} cores ({m.get('cores_usable')} "
        f"usable), {m.get('ram_gib')} GiB RAM, {m.get('platform')}, "
        f"{m.get('python_implementation')} {m.get('python')}, scratch files on "
        f"{m.get('scratch_fs', '?')}; dictdb at commit {m.get('commit', '?')}; load average "
        f"(1/5/15 min) {m.get('load_average_start', '?')} at the start, "
        f"{m.get('load_average_end', '?')} at the end",
    ]
    lines += [f"- {_describe_impl(n, report['implementations'].get(n, {}))}" for n in impls]
    lines += ["", "**Lower is better** for every number below; ratios < 1 mean ours is better.", ""]
    names: list[str] = cfg["workloads"]
    footnotes = Footnotes()
    for group in cat.GROUPS:
        members = [cat.BY_NAME[n] for n in names if cat.BY_NAME[n].group == group.key]
        if not members:
            continue
        header = ["workload", group.size_label, "unit", *impls]
        if "ours" in impls and "reference" in impls:
            header.append("ours ÷ reference")
        if "ours" in impls and "sqlite3" in impls:
            header.append("ours ÷ sqlite3")
        lines += [f"## {group.title}", ""]
        if group.note:
            lines += [group.note, ""]
        lines += ["| " + " | ".join(header) + " |"]
        aligns = ["---" if i in (0, 2) else "---:" for i in range(len(header))]
        lines.append("|" + "|".join(aligns) + "|")
        sizes = sorted({r["size"] for r in report["results"] if r["group"] == group.key})
        for w in members:
            for size in sizes:
                cells = [by_key.get((w.name, impl, size)) for impl in impls]
                if all(c is None for c in cells):
                    continue
                row = [f"`{w.name}`", f"{size:,}", w.unit, *(_cell(c, footnotes) for c in cells)]
                ratio = ratios.get((w.name, size), {})
                if "ours ÷ reference" in header:
                    row.append(_ratio_cell(ratio.get("ours_over_reference")))
                if "ours ÷ sqlite3" in header:
                    row.append(_ratio_cell(ratio.get("ours_over_sqlite3")))
                lines.append("| " + " | ".join(row) + " |")
        notes_here = footnotes.flush()
        if notes_here:
            lines += ["", *notes_here]
        lines += _details(report, group, members)
        index_rows = [
            r
            for r in report["results"]
            if r["group"] == group.key
            and r["status"] == "ok"
            and "index_build_s" in r.get("extras", {})
        ]
        if index_rows:
            built = "; ".join(
                f"{r['workload']} {r['impl']} {r['size']:,}: "
                f"{fmt(r['extras']['index_build_s']['median'] * 1e3)} ms"
                for r in index_rows
            )
            lines += ["", f"Index build (untimed above, median): {built}."]
        chart = f"chart_{group.key}.png"
        if chart in report.get("charts", []):
            lines += ["", f"![{group.title}]({chart})"]
        lines.append("")
    lines += _budget_lines(report)
    lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _median(report: Row, workload: str, impl: str, size: int) -> float | None:
    row = _index(report["results"]).get((workload, impl, size))
    if row is None or row["status"] != "ok":
        return None
    return float(row["median"])


def _extra_median(report: Row, workload: str, impl: str, size: int, key: str) -> float | None:
    row = _index(report["results"]).get((workload, impl, size))
    if row is None or row["status"] != "ok" or key not in row.get("extras", {}):
        return None
    return float(row["extras"][key]["median"])


def budgets(report: Row) -> list[Row]:
    """The informational budgets of the performance issues, evaluated on this run."""
    out: list[Row] = []

    def add(measure: str, value: float | None, shown: str, budget: str, ok: bool) -> None:
        if value is not None:
            out.append(
                {"measure": measure, "value": value, "shown": shown, "budget": budget, "met": ok}
            )

    sizes = sorted({r["size"] for r in report["results"] if r["status"] == "ok"})
    for r in report["results"]:
        if r["workload"] == "insert_row" and r["impl"] == "ours" and r["status"] == "ok":
            add(
                f"ours `insert_row` at {r['size']:,} rows",
                r["median"],
                f"{fmt(r['median'])} µs/row",
                f"≤ {cat.BUDGET_OURS_INSERT_ROW_US} µs/row",
                r["median"] <= cat.BUDGET_OURS_INSERT_ROW_US,
            )
    for j in report["journal_overhead"]:
        if j["ratio"] is not None:
            add(
                f"journal overhead (retained ÷ not retained) at {j['size']:,} rows",
                j["ratio"],
                f"{j['ratio']:.2f}x",
                f"≤ {j['budget']}x",
                j["ratio"] <= j["budget"],
            )
    for size in sizes:
        for workload, need in (
            ("save_json", cat.BUDGET_SAVE_JSON_SPEEDUP),
            ("load_json", cat.BUDGET_LOAD_JSON_SPEEDUP),
        ):
            ours = _median(report, workload, "ours", size)
            ref = _median(report, workload, "reference", size)
            if ours and ref:
                speedup = ref / ours
                add(
                    f"`{workload}` speed-up over the reference at {size:,} rows",
                    speedup,
                    f"{speedup:.1f}x faster",
                    f"≥ {need:g}x faster",
                    speedup >= need,
                )
        share = _extra_median(report, "delta_1pct", "ours", size, "delta_over_full")
        add(
            f"ours 1% delta ÷ full save at {size:,} rows",
            share,
            f"{(share or 0) * 100:.1f}%",
            f"≤ {cat.BUDGET_DELTA_1PCT_OF_FULL * 100:g}%",
            share is not None and share <= cat.BUDGET_DELTA_1PCT_OF_FULL,
        )
        stall = _median(report, "backup_stall", "ours", size)
        add(
            f"ours worst insert during a full backup at {size:,} rows",
            stall,
            f"{fmt(stall or 0)} ms",
            f"≤ {cat.BUDGET_STALL_MS:g} ms",
            stall is not None and stall <= cat.BUDGET_STALL_MS,
        )
    for size in sorted({r["size"] for r in report["results"] if r["group"] == "wal"}):
        one = _median(report, "wal_always_1t", "ours", size)
        eight = _median(report, "wal_always_8t", "ours", size)
        if one and eight:
            gain = one / eight
            add(
                f"fsync=always: 8 threads ÷ 1 thread throughput ({size:,} ops)",
                gain,
                f"{gain:.1f}x",
                f'≥ {cat.BUDGET_GROUP_COMMIT_SPEEDUP:g}x ("several times")',
                gain >= cat.BUDGET_GROUP_COMMIT_SPEEDUP,
            )
        for threads in ("1t", "8t"):
            memory = _median(report, f"wal_memory_{threads}", "ours", size)
            everysec = _median(report, f"wal_everysec_{threads}", "ours", size)
            if memory and everysec:
                slower = everysec / memory
                add(
                    f"fsync=everysec ÷ in-memory time per insert, {threads[0]} thread(s) "
                    f"({size:,} ops)",
                    slower,
                    f"{slower:.2f}x",
                    f"≤ {cat.BUDGET_EVERYSEC_OVER_MEMORY:g}x",
                    slower <= cat.BUDGET_EVERYSEC_OVER_MEMORY,
                )
    return out


def _budget_lines(report: Row) -> list[str]:
    rows = report.get("budgets", [])
    if not rows:
        return []
    lines = [
        "## Budgets (informational; nothing asserts on them)",
        "",
        "| measure | this run | budget | |",
        "|---|---:|---:|---|",
    ]
    for b in rows:
        verdict = "met" if b["met"] else "**not met**"
        lines.append(f"| {b['measure']} | {b['shown']} | {b['budget']} | {verdict} |")
    return [*lines, ""]


CHARTS_SCRIPT = Path(__file__).resolve().parent / "_charts.py"


def write_charts(report_path: Path, out: Path, python: str | None) -> list[str]:
    """Render one PNG per group by running `_charts.py` with *python* (the interpreter
    that has matplotlib: the reference venv's, see `_runner.chart_python`)."""
    if python is None:
        return []
    try:
        proc = subprocess.run(
            [python, str(CHARTS_SCRIPT), str(report_path), str(out)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"note: charts failed: {exc}", flush=True)
        return []
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        print(f"note: charts failed: {tail}", flush=True)
        return []
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("["):
            return [str(name) for name in json.loads(line)]
    return []


def write_all(report: Row, out: Path, charts: tuple[str | None, str] = (None, "")) -> str:
    """Fill in the derived sections, write every output file, return the Markdown.

    *charts* is (interpreter with matplotlib or None, a note saying which or why not).
    """
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("chart_*.png"):  # charts of groups not in this run
        stale.unlink()
    report["ratios"] = compute_ratios(report["results"])
    report["journal_overhead"] = journal_overhead(report["results"])
    report["budgets"] = budgets(report)
    report["notes"] = notes(report)
    if charts[1]:
        report["notes"].append(charts[1])
    report["charts"] = []
    path = out / "results.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    report["charts"] = write_charts(path, out, charts[0])
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    markdown = render_markdown(report)
    (out / "results.md").write_text(markdown)
    return markdown
