"""One chart of every benchmark: each measure's ratio against its reference, with its target.

    python bench/plot.py [--results bench/results] [--output bench/results.png]

Reads the JSON files that ``bench_predict.py``, ``bench_cold.py`` and ``bench_export.py``
write with ``--json`` (``run_all.py`` puts them in ``bench/results/``). Each measure is a
bar from the reference (1x) to its ratio, on a log axis, green where its target is met,
red where it is missed, grey where there is no target; the target is a black tick on the
bar's row. An absolute target (``zoo list`` under 0.5 s) is drawn in the same units, as a
multiple of the reference measured in that run. Yes/no checks (torch not imported) are
listed under the chart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import RESULTS, fail, fmt, fmt_ratio, require

ORDER = ("bench_predict", "bench_cold", "bench_export")
SHORT = {"bench_predict": "predict", "bench_cold": "cold start", "bench_export": "export"}
COLOURS = {True: "#2e7d32", False: "#c62828", None: "#9e9e9e"}
SYMBOL = {"<=": "\u2264", ">=": "\u2265", "==": "="}


def load(folder: Path) -> list[dict]:
    files = sorted(folder.glob("*.json"))
    if not files:
        fail(f"no JSON results in {folder}; run the benchmarks with --json {folder}/NAME.json, or bench/run_all.py")
    runs = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data["rows"], list) or not isinstance(data["script"], str):
                raise TypeError("'rows' must be a list and 'script' a string")
        except (ValueError, KeyError, TypeError) as error:
            fail(f"{path} is not a benchmark result ({type(error).__name__}: {error})")
        data["path"] = path
        runs.append(data)
    runs.sort(key=lambda d: (ORDER.index(d["script"]) if d["script"] in ORDER else len(ORDER), d["script"]))
    return runs


def target_text(row: dict) -> str:
    if row.get("target_op") is None:
        return "no target"
    return f"target {row['target_text']}" if row.get("target_text") else f"target {SYMBOL[row['target_op']]} " \
        f"{fmt_ratio(row['target'])}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of JSON results (default bench/results)")
    parser.add_argument("--output", type=Path, default=RESULTS.parent / "results.png",
                        help="PNG to write (default bench/results.png)")
    args = parser.parse_args()
    require("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import NullFormatter
    from matplotlib.transforms import blended_transform_factory

    runs = load(args.results)
    bars, checks = [], []
    for run in runs:
        for row in run["rows"]:
            if isinstance(row.get("ratio"), (int, float)) and row["ratio"] > 0:
                bars.append((SHORT.get(run["script"], run["script"]), row))
            else:
                checks.append(row)
    if not bars:
        fail(f"no measure with a ratio in {args.results}")

    rows_height = 0.62 * len(bars)
    height = rows_height + 1.5 + 0.2 * len(checks)
    fig, ax = plt.subplots(figsize=(9, height), dpi=110)
    values = [row["ratio"] for _, row in bars] + [row["target"] for _, row in bars if row.get("target")] + [1.0]
    low, high = min(values) / 1.5, max(values) * 4
    label_at = blended_transform_factory(ax.transAxes, ax.transData)
    for y, (group, row) in enumerate(bars):
        ratio = row["ratio"]
        ax.barh(y + 0.12, ratio - 1, left=1, height=0.36, color=COLOURS[row.get("met")], zorder=2)
        if row.get("target"):
            ax.plot([row["target"]] * 2, [y - 0.12, y + 0.36], color="black", linewidth=2.5, zorder=3)
        end = max(ratio, 1.0, row.get("target") or 0.0)
        ax.annotate(f"{fmt_ratio(ratio)}  ({fmt(row['value'], row['unit'])})", (end, y + 0.12), xytext=(5, 0),
                    textcoords="offset points", ha="left", va="center", fontsize=8.5, zorder=4)
        ax.text(0.006, y - 0.3, f"{group}: {row['measure']}  vs {row['reference']}  [{row['ratio_of']}; "
                f"{target_text(row)}]", transform=label_at, fontsize=8.3, va="center", ha="left", zorder=5,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6})
    ax.set_yticks([])
    ax.set_ylim(len(bars) - 0.45, -0.65)
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.axvline(1, color="#555555", linestyle="--", linewidth=1, zorder=1)
    ax.grid(axis="x", which="major", color="#d0d0d0", linewidth=0.7, zorder=0)
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if low <= t <= high]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=8.5)
    ax.set_xlabel("ratio against the reference measured in the same run (log scale; dashed line: 1x)", fontsize=9)
    for y in range(1, len(bars)):
        if bars[y][0] != bars[y - 1][0]:
            ax.axhline(y - 0.52, color="#9e9e9e", linewidth=0.8)
    machine = runs[0].get("machine", {})
    dates = sorted(r.get("created", "?")[:10] for r in runs)
    ax.set_title(f"onnx-zoo benchmarks: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
                 f"{dates[0]}{' to ' + dates[-1] if dates[-1] != dates[0] else ''}", fontsize=10, loc="left")
    handles = [Patch(color=COLOURS[True], label="target met"), Patch(color=COLOURS[False], label="target missed"),
               Patch(color=COLOURS[None], label="no target"),
               Line2D([], [], color="black", linewidth=2.5, label="target")]
    footer = 0.35 + 0.2 * len(checks)
    fig.legend(handles=handles, loc="lower right", ncol=4, fontsize=8, frameon=False,
               bbox_to_anchor=(0.99, 0.2 * len(checks) / height))
    if checks:
        lines = [f"{row['measure']}: {row['value']} ("
                 + (f"target {row['target_text'] or row['target']}: {'met' if row.get('met') else 'MISSED'})"
                    if row.get("target_op") else "no target)") + (f" - {row['note'][:100]}" if row.get("note") else "")
                 for row in checks]
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=8.5, va="bottom", ha="left")
    fig.tight_layout(rect=(0, footer / height, 1, 1))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output)
    print(f"wrote {args.output} ({len(bars)} measures from {', '.join(str(r['path'].name) for r in runs)})")


if __name__ == "__main__":
    main()
