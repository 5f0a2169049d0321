"""Compare two benchmark runs: where each workload stood before and where it stands now.

Usage::

    python -m benchmarks.compare BEFORE/results.json AFTER/results.json [--out FILE]

Writes a Markdown report (to FILE, else stdout) with, for every workload and size that both
runs measured against a peer, ours ÷ reference and ours ÷ sqlite3 before and now (lower is
better; "behind" marks a ratio above 1 against the reference, or above the issue's bound
against sqlite3), then the issue's goals as measured in the AFTER run: per-row operations
within 1.5x sqlite3, `load_json` within 1.2x, `wal_always_1t` within sqlite3's FULL, replay
per operation within 0.7x a live durable insert, and memory per row within 1.1x the
reference's. Ratios come from each run's own side-by-side measurements, never across runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: Per-row workloads the issue wants within 1.5x of sqlite3, and the other sqlite3 bounds.
SQLITE_BOUNDS: dict[str, float] = {
    "insert_row": 1.5,
    "insert_row_indexed": 1.5,
    "update_by_key": 1.5,
    "upsert_update": 1.5,
    "select_eq_hash": 1.5,
    "load_json": 1.2,
    "wal_always_1t": 1.0,
}


def _ratios(run: dict[str, Any]) -> dict[tuple[str, int], dict[str, float | None]]:
    return {
        (r["workload"], r["size"]): {
            "reference": r.get("ours_over_reference"),
            "sqlite3": r.get("ours_over_sqlite3"),
        }
        for r in run["ratios"]
    }


def _median(run: dict[str, Any], workload: str, impl: str, size: int) -> float | None:
    for r in run["results"]:
        if (r["workload"], r["impl"], r["size"], r["status"]) == (workload, impl, size, "ok"):
            return float(r["median"])
    return None


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}x"


def _behind(workload: str, peer: str, ratio: float | None) -> bool:
    if ratio is None:
        return False
    if peer == "reference":
        return ratio > 1.0
    return ratio > SQLITE_BOUNDS.get(workload, float("inf"))


def report(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The Markdown comparison of two `results.json` documents."""
    old, new = _ratios(before), _ratios(after)
    lines = [
        "# Before and now",
        "",
        f"- before: {before['machine'].get('date', '?')}, commit "
        f"{before['machine'].get('commit', '?')}, `{before['config'].get('command', '?')}`",
        f"- now: {after['machine'].get('date', '?')}, commit "
        f"{after['machine'].get('commit', '?')}, `{after['config'].get('command', '?')}`",
        "",
        "Ratios are ours ÷ peer, each from one run's side-by-side medians; lower is better. "
        "**behind** marks a ratio above 1 against the reference, or above the goal against "
        "sqlite3 (1.5x per-row operations, 1.2x `load_json`, 1x `wal_always_1t`).",
        "",
        "| workload | size | ÷ reference before | ÷ reference now | ÷ sqlite3 before "
        "| ÷ sqlite3 now |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in sorted(set(old) & set(new), key=lambda k: (k[0], k[1])):
        workload, size = key
        cells = []
        for peer in ("reference", "sqlite3"):
            for ratios in (old, new):
                ratio = ratios[key][peer]
                mark = " **behind**" if _behind(workload, peer, ratio) else ""
                cells.append(_fmt(ratio) + mark)
        if all(c == "—" for c in cells):
            continue
        lines.append(f"| `{workload}` | {size:,} | " + " | ".join(cells) + " |")
    lines += ["", "## Goals, in the run of now", ""]
    lines += _goals(after, new)
    return "\n".join(lines) + "\n"


def _goals(
    run: dict[str, Any], ratios: dict[tuple[str, int], dict[str, float | None]]
) -> list[str]:
    out = ["| goal | size | measured | bound | met |", "|---|---:|---:|---:|---|"]
    for (workload, size), peers in sorted(ratios.items()):
        bound = SQLITE_BOUNDS.get(workload)
        ratio = peers["sqlite3"]
        if bound is not None and ratio is not None:
            met = "yes" if ratio <= bound else "no"
            out.append(f"| `{workload}` ÷ sqlite3 | {size:,} | {ratio:.3g}x | {bound}x | {met} |")
    for (workload, size), peers in sorted(ratios.items()):
        ratio = peers["reference"]
        if workload == "memory_per_row" and ratio is not None:
            met = "yes" if ratio <= 1.1 else "no"
            out.append(f"| `memory_per_row` ÷ reference | {size:,} | {ratio:.3g}x | 1.1x | {met} |")
    live = _median(run, "wal_everysec_1t", "ours", _wal_size(run))
    for size in sorted({r["size"] for r in run["results"] if r["workload"] == "wal_recovery"}):
        seconds = _median(run, "wal_recovery", "ours", size)
        if seconds is None or live is None:
            continue
        per_op = seconds / size * 1e6
        ratio = per_op / live
        met = "yes" if ratio <= 0.7 else "no"
        out.append(
            f"| replay µs/op ÷ live durable insert (`wal_everysec_1t`, {live:.3g} µs) | "
            f"{size:,} | {ratio:.3g}x ({per_op:.3g} µs/op) | 0.7x | {met} |"
        )
    return out


def _wal_size(run: dict[str, Any]) -> int:
    sizes = [r["size"] for r in run["results"] if r["workload"] == "wal_everysec_1t"]
    return max(sizes) if sizes else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    text = report(json.loads(args.before.read_text()), json.loads(args.after.read_text()))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
