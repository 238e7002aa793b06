"""`zoo list` wall time in a fresh process, with a plugin that registers many models.

    python bench/bench_list.py [--models 500] [--runs 15] [--json PATH]

Builds a throwaway plugin distribution (a dist-info folder with an entry point, as pip
installs it) whose hook reads a TOML file of N model entries, each with 1000 labels, the
way zoo-torchvision does; then times fresh `zoo list` processes. The reference is a bare
interpreter start (`python -c pass`) measured in the same run. Target: under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Row, header, results_table, write_json

PLUGIN = '''
import tomllib
from importlib.resources import files

import zoo


@zoo.hookimpl
def zoo_register_models(register):
    data = tomllib.loads((files(__name__) / "models.toml").read_text(encoding="utf-8"))
    labels = tuple(data["labels"])
    for name, entry in data["models"].items():
        register(zoo.ModelSpec(
            name=name, task="image-classification", summary=entry["summary"], license="MIT",
            preprocess=zoo.Preprocess(resize=entry["resize"], crop=entry["crop"], mean=entry["mean"],
                                      std=entry["std"]),
            labels=labels, weights=zoo.Artifact(url=entry["url"], sha256=entry["sha256"]),
            build=print, metrics=entry["metrics"],
        ))
'''


def make_plugin(root: Path, count: int) -> None:
    package = root / "zoo_bench"
    package.mkdir()
    (package / "__init__.py").write_text(PLUGIN, encoding="utf-8")
    lines = ["labels = " + json.dumps([f"class {i}" for i in range(1000)])]
    for i in range(count):
        lines += [
            f'[models."benchnet{i}"]',
            f'summary = "benchmark model {i}"',
            "resize = 256", "crop = 224",
            "mean = [0.485, 0.456, 0.406]", "std = [0.229, 0.224, 0.225]",
            f'url = "https://example.org/benchnet{i}-{i:08x}.pth"', f'sha256 = "{i:08x}"',
            f'metrics = {{ "acc@1" = 70.5, "params" = {1000 + i} }}',
        ]
    (package / "models.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    info = root / "zoo_bench-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-bench\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[zoo]\nbench = zoo_bench\n", encoding="utf-8")


def time_command(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    subprocess.run(command, env=env, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_plugin(Path(tmp), args.models)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")]))}
        count = subprocess.run([sys.executable, "-m", "zoo.cli", "list", "--json"], env=env, capture_output=True,
                               text=True, check=True)
        total = len(json.loads(count.stdout))
        bench_only = {**env, "ZOO_LOAD_PLUGINS": "bench"}
        cases = [
            ("python -c pass (reference)", [sys.executable, "-c", "pass"], env),
            ("python -c 'import zoo'", [sys.executable, "-c", "import zoo"], env),
            (f"zoo list, bench plugin only ({args.models} models)", [sys.executable, "-m", "zoo.cli", "list"],
             bench_only),
            (f"zoo list, all plugins ({total} models)", [sys.executable, "-m", "zoo.cli", "list"], env),
        ]
        results = [(label, statistics.median(time_command(cmd, e, args.runs))) for label, cmd, e in cases]
    reference = results[0][1]
    rows = [Row(label, median, "s", "python -c pass", reference, median / reference, "time / reference",
                *((0.5 / reference, "<=", "<= 0.5 s") if label.startswith("zoo list, all") else ()))
            for label, median in results[1:]]
    print(header(f"## zoo list with a {args.models}-model plugin", f"; median of {args.runs} fresh processes"))
    print()
    print(results_table(rows))
    write_json(args.json, "bench_list", args, rows)


if __name__ == "__main__":
    main()
