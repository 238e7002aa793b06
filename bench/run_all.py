"""Run every benchmark in order, each with --json into bench/results/, then draw bench/results.png.

    python bench/run_all.py [--quick] [--only predict cold ...]

Runs ``bench_list.py``, ``bench_preprocess.py``, ``bench_predict.py``, ``bench_cold.py``,
``bench_export.py``, ``bench_postprocess.py``, ``bench_tasks.py``, ``bench_serve.py``, ``bench_decode.py``,
``bench_int8.py`` and ``bench_ray.py`` with ``--json bench/results/NAME.json``, with the interpreter running this script. Each script's
stdout is shown and saved as ``bench/results/NAME.md``; the first failure stops the run
with its exit status. Then every row goes into one table, ``bench/results/summary.md`` (the
README's), and ``plot.py`` draws ``bench/results.png`` from the JSON files.
``--quick`` passes small ``--runs`` to check that everything works (the numbers are not
worth reporting); the default settings take several minutes on 2 cores. Run it on a quiet
machine: every number is a wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: (name, script, --quick arguments)
BENCHMARKS = (
    ("list", "bench_list.py", ["--runs", "3"]),
    ("preprocess", "bench_preprocess.py", ["--runs", "3"]),
    ("predict", "bench_predict.py", ["--runs", "3"]),
    ("cold", "bench_cold.py", ["--runs", "2"]),
    ("export", "bench_export.py", ["--runs", "1"]),
    ("postprocess", "bench_postprocess.py", ["--runs", "20"]),
    ("tasks", "bench_tasks.py", ["--runs", "3"]),
    ("serve", "bench_serve.py", ["--requests", "16"]),
    ("decode", "bench_decode.py", ["--runs", "3"]),
    ("int8", "bench_int8.py", ["--runs", "3", "--models", "resnet50", "--sweep"]),
    ("ray", "bench_ray.py", ["--images", "48", "--repeats", "1"]),
)


def run(name: str, script: str, extra: list[str]) -> None:
    command = [sys.executable, str(HERE / script), *extra, "--json", str(RESULTS / f"{name}.json")]
    print(f"\n$ python bench/{script} {' '.join(command[2:])}", flush=True)
    started = time.perf_counter()
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    if process.returncode != 0:
        print(f"run_all: bench/{script} failed with exit status {process.returncode}; stopping", file=sys.stderr)
        raise SystemExit(process.returncode)
    (RESULTS / f"{name}.md").write_text(f"$ python bench/{script} {' '.join(extra)}\n\n" + "".join(lines),
                                        encoding="utf-8")
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few runs each: checks that everything works")
    parser.add_argument("--only", nargs="+", choices=[b[0] for b in BENCHMARKS], metavar="NAME",
                        help=f"run only these ({', '.join(b[0] for b in BENCHMARKS)}); the plot uses every JSON file "
                             f"in bench/results")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    chosen = [b for b in BENCHMARKS if not args.only or b[0] in args.only]
    for name, *_ in chosen:  # no stale result survives a failed run
        for stale in (RESULTS / f"{name}.json", RESULTS / f"{name}.md"):
            stale.unlink(missing_ok=True)
    for name, script, quick in chosen:
        run(name, script, quick if args.quick else [])
    summary = summary_table()
    (RESULTS / "summary.md").write_text(summary + "\n", encoding="utf-8")
    print(f"\n## Every measure (bench/results/summary.md)\n\n{summary}", flush=True)
    print("\n$ python bench/plot.py", flush=True)
    status = subprocess.run([sys.executable, str(HERE / "plot.py"), "--results", str(RESULTS),
                             "--output", str(HERE / "results.png")], check=False).returncode
    raise SystemExit(status)


def summary_table() -> str:
    """One table of every row in bench/results/*.json, in the order of BENCHMARKS."""
    sys.path.insert(0, str(HERE))
    from _common import Row, results_table

    rows = []
    for name, *_ in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if path.exists():
            for data in json.loads(path.read_text(encoding="utf-8"))["rows"]:
                data.pop("met", None)
                rows.append(Row(**data))
    return results_table(rows)


if __name__ == "__main__":
    main()
