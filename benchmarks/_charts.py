"""Render the benchmark charts: one PNG per workload group, from results.json.

Usage::

    python benchmarks/_charts.py RESULTS_JSON OUT_DIR

Run by the suite with an interpreter that has matplotlib (the reference venv's, where the
suite installs it; matplotlib is not a dependency of the project). Standalone: standard
library and matplotlib only. Prints the JSON list of the files written as its last line.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

COLORS = {"ours": "#1f77b4", "reference": "#ff7f0e", "sqlite3": "#2ca02c"}
MAX_COLUMNS = 4


def fmt(value: float) -> str:
    """Three significant digits without scientific notation for the usual ranges (also the
    report's tables: `benchmarks._report` imports it)."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:#.3g}"


def render(report: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls: list[str] = report["config"]["impls"]
    units = {name: info["unit"] for name, info in report["workloads"].items()}
    written: list[str] = []
    for group in report["groups"]:
        rows = [r for r in report["results"] if r["group"] == group["key"] and r["status"] == "ok"]
        names = [n for n in report["config"]["workloads"] if any(r["workload"] == n for r in rows)]
        if not names:
            continue
        columns = min(MAX_COLUMNS, len(names))
        lines = math.ceil(len(names) / columns)
        fig, axes = plt.subplots(
            lines, columns, figsize=(4.6 * columns, 4.2 * lines), squeeze=False
        )
        flat = [ax for line in axes for ax in line]
        for ax in flat[len(names) :]:
            ax.set_visible(False)
        for ax, name in zip(flat, names, strict=False):
            mine = [r for r in rows if r["workload"] == name]
            sizes = sorted({r["size"] for r in mine})
            present = [i for i in impls if any(r["impl"] == i for r in mine)]
            width = 0.8 / max(1, len(present))
            for i, impl in enumerate(present):
                xs, ys, lo, hi = [], [], [], []
                for x, size in enumerate(sizes):
                    hit = next((r for r in mine if r["impl"] == impl and r["size"] == size), None)
                    if hit is None:
                        continue
                    xs.append(x + (i - (len(present) - 1) / 2) * width)
                    ys.append(hit["median"])
                    lo.append(hit["median"] - hit["min"])
                    hi.append(hit["max"] - hit["median"])
                if xs:
                    bars = ax.bar(
                        xs, ys, width, yerr=[lo, hi], capsize=3, label=impl, color=COLORS.get(impl)
                    )
                    ax.bar_label(bars, labels=[fmt(y) for y in ys], fontsize=7, padding=2)
            values = [r["median"] for r in mine]
            top = max(r["max"] for r in mine)
            if min(values) > 0 and max(values) / min(values) > 20:
                ax.set_yscale("log")  # implementations differ by orders of magnitude
                ax.set_ylim(bottom=min(values) / 3, top=top * 3)
            else:
                ax.set_ylim(bottom=0, top=(top or 1) * 1.15)
            ax.set_xlim(-0.5, len(sizes) - 0.5)
            ax.set_xticks(range(len(sizes)), [f"{s:,}" for s in sizes])
            ax.set_xlabel(group.get("size_label", "rows"))
            ax.set_ylabel(f"{units.get(name, '')} (lower is better)")
            ax.set_title(name, fontsize=10)
            ax.legend(fontsize=8)
        fig.suptitle(f"dictdb benchmarks — {group['title']} (median, min-max bars)")
        fig.tight_layout()
        path = out / f"chart_{group['key']}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path.name)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    report = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(render(report, out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
