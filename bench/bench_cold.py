"""Fresh-process wall times with a warm cache: `zoo list` and `zoo predict`, and proof that predict imports no torch.

    python bench/bench_cold.py [--model resnet50] [--runs 7] [--json PATH]

In a temporary ``ZOO_CACHE_DIR`` (with ``ZOO_OFFLINE=1``), the model gets random weights
(``zoo.testing.randomize``, saved with ``torch.save``) passed as a ``file://`` URL with
their ``--sha256``, so that a warm start hashes nothing. The cache is warmed by one
``zoo predict`` (which exports the model), then each command runs ``--runs`` times in a
fresh process, the commands in alternation (median wall time, start to exit):

* ``python -c pass``: the reference, a bare interpreter start in the same run;
* ``zoo list`` (every installed plugin). Target: at most 0.5 s;
* ``zoo predict MODEL IMG.jpg --weights file:///...pth --sha256 HEX`` (scikit-image's
  chelsea photo as a JPEG). Target: at most 0.6 s (issue 17; 1.0 s before).

A third row opens the model's onnxruntime session in this process, from the optimised graph
the warm cache keeps beside the model (:mod:`zoo.runtime`), against from ``model.onnx``
itself (the graph optimised again), alternately: median of ``--runs`` each.

``zoo`` is the installed console script (``python -m zoo.cli`` if there is none). One more
predict runs through ``zoo.cli.main`` in ``python -c`` and reports which heavy modules
its process imported: torch must not be among them. A second table splits a warm
predict process into its stages (in-process timers around the same calls
``zoo predict`` makes, median of up to 3 processes), to explain a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    Row,
    fail,
    fmt,
    header,
    markdown_table,
    measure,
    median,
    notes,
    random_weights,
    require,
    require_torchvision_model,
    results_table,
    run_checked,
    write_json,
    zoo_command,
)

HEAVY = ("torch", "torchvision", "onnxsim", "onnxscript")

#: ``zoo.cli.main`` in a process that then says which heavy modules it imported.
CHECK = f"""
import json, sys
import zoo.cli
status = zoo.cli.main(sys.argv[1:])
print("ZOO_BENCH_MODULES " + json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}), file=sys.stderr)
sys.exit(status)
"""

#: What ``zoo predict NAME IMAGE --weights URL --sha256 HEX`` does, with a timer around each step.
STAGES = """
import time
last = time.perf_counter()
stages = {}
def done(label):
    global last
    now = time.perf_counter()
    stages[label] = now - last
    last = now
import json, sys
name, image, url, sha256 = sys.argv[1:5]
import zoo.cli
done("import zoo.cli (argparse, logging, filelock, platformdirs)")
from zoo.registry import default_registry
spec = default_registry().get(name)
done("load plugins, build the registry")
import numpy
done("import numpy")
from zoo.model import Model, prepare
done("import zoo.model (images, convert, runtime)")
spec, converted = prepare(name, weights=url, sha256=sha256)
done("cache lookup (key, metadata, stat)")
import onnxruntime
done("import onnxruntime")
model = Model(spec, converted, task=zoo.registry.default_registry().task(spec.task))
done("onnxruntime session (the saved optimised graph)")
import cv2
done("import cv2")
from zoo import images
pixels = images.load(image)
done("decode the JPEG")
results = model.predict([pixels])
done("predict (preprocess, inference, top-5)")
print(zoo.cli.render.format_result(image, results[0]))
done("print")
print("ZOO_BENCH_STAGES " + json.dumps(stages), file=sys.stderr)
"""


def tagged(stderr: str, tag: str) -> dict:
    for line in stderr.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    fail(f"the child process printed no {tag} line; its stderr ends with:\n" + "\n".join(stderr.splitlines()[-10:]))
    raise AssertionError("unreachable")


def session_times(spec: Any, weights: Path, sha256: str, runs: int) -> dict[str, float]:
    """Median seconds to open the cached model's session from its saved optimised graph, and from model.onnx."""
    from zoo.model import prepare
    from zoo.runtime import OnnxRuntimeSession

    _, converted = prepare(spec.name, weights=weights.as_uri(), sha256=sha256)
    model_sha256 = converted.metadata["files"]["model.onnx"]["sha256"]
    cases = {"saved": lambda: OnnxRuntimeSession(converted.path, keep_optimized=model_sha256),
             "model": lambda: OnnxRuntimeSession(converted.path)}
    if cases["saved"]().optimized is None or not cases["saved"]().optimized.exists():
        fail("the warm cache holds no optimised graph beside the model")
    return measure(cases, runs, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="a zoo-torchvision classifier (default resnet50)")
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per command (median; default 7)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()
    if args.runs < 1:
        fail("--runs must be at least 1")
    require("numpy", "cv2", "skimage", "torch", "torchvision", "onnxsim", "onnxruntime", "pytest", "zoo")
    import cv2
    import skimage.data

    zoo, zoo_label = zoo_command()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        folder = Path(tmp)
        os.environ["ZOO_CACHE_DIR"] = str(folder / "cache")
        os.environ["ZOO_OFFLINE"] = "1"
        env = dict(os.environ)
        spec = require_torchvision_model(args.model)
        weights, sha256, _ = random_weights(spec, folder)
        image = folder / "chelsea.jpg"
        ok, encoded = cv2.imencode(".jpg", skimage.data.chelsea()[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            fail("OpenCV cannot encode a JPEG")
        image.write_bytes(encoded.tobytes())
        predict_args = ["predict", spec.name, str(image), "--weights", weights.as_uri(), "--sha256", sha256]

        started = time.perf_counter()
        warm = run_checked([*zoo, *predict_args], env, "the first zoo predict (export into the cache)")
        print(f"warming the cache: the first zoo predict (export) took {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        if str(image) not in warm.stdout:
            fail(f"zoo predict printed no result for {image}:\n{warm.stdout}")
        check = run_checked([sys.executable, "-c", CHECK, *predict_args], env, "zoo predict via zoo.cli.main")
        modules = tagged(check.stderr, "ZOO_BENCH_MODULES")

        cases = {"python -c pass": [sys.executable, "-c", "pass"], "zoo list": [*zoo, "list"],
                 "zoo predict": [*zoo, *predict_args]}
        for label, command in cases.items():  # warm the file cache
            run_checked(command, env, label)
        times: dict[str, list[float]] = {label: [] for label in cases}
        names = list(cases)
        for round_ in range(args.runs):
            shift = round_ % len(names)
            for label in names[shift:] + names[:shift]:
                start = time.perf_counter()
                run_checked(cases[label], env, label)
                times[label].append(time.perf_counter() - start)
        medians = {label: median(values) for label, values in times.items()}

        stage_runs = []
        for _ in range(min(args.runs, 3)):
            child = run_checked([sys.executable, "-c", STAGES, spec.name, str(image), weights.as_uri(), sha256], env,
                                "the staged predict")
            stage_runs.append(tagged(child.stderr, "ZOO_BENCH_STAGES"))
        opening = session_times(spec, weights, sha256, args.runs)
        count = subprocess.run([*zoo, "list", "--json"], env=env, capture_output=True, text=True, check=True)
        models = len(json.loads(count.stdout))

    python, listing, predict = medians["python -c pass"], medians["zoo list"], medians["zoo predict"]
    imported = [m for m, present in modules.items() if present]
    rows = [
        Row(f"zoo list ({models} models)", listing, "s", "python -c pass", python, listing / python,
            "time / reference", 0.5 / python, "<=", "<= 0.5 s"),
        Row(f"zoo predict {spec.name} (warm cache)", predict, "s", "python -c pass", python, predict / python,
            "time / reference", 0.6 / python, "<=", "<= 0.6 s",
            note="weights given as a file:// URL with --sha256: a warm start hashes nothing"),
        Row(f"open {spec.name}'s session, saved optimised graph", opening["saved"], "s",
            "from model.onnx (optimised again)", opening["model"], opening["saved"] / opening["model"],
            "time / reference", target_text="reported"),
        Row("torch imported by zoo predict", "yes" if modules.get("torch") else "no", "", "-", None, None, "-",
            "no", "==", "no", note=f"heavy modules in the predict process: {', '.join(imported) or 'none'} "
                                   f"(checked: {', '.join(HEAVY)})"),
    ]
    labels = list(stage_runs[0])
    stages = [(label, median([run[label] for run in stage_runs])) for label in labels]
    stages.insert(0, ("interpreter start and exit (python -c pass)", python))
    total = sum(seconds for _, seconds in stages)
    print(header(f"## Fresh processes, warm cache: zoo list, zoo predict {spec.name}",
                 f"; {zoo_label}; median of {args.runs} processes each"))
    print()
    print(results_table(rows))
    print()
    print(notes(rows))
    print()
    print(f"Where a warm `zoo predict` process spends its time (median of {len(stage_runs)} processes with timers):")
    print()
    body = [[label, fmt(seconds, "s"), f"{100 * seconds / predict:.1f}%"] for label, seconds in stages]
    body.append(["sum of the stages", fmt(total, "s"), f"{100 * total / predict:.1f}%"])
    body.append(["zoo predict, measured above", fmt(predict, "s"), "100.0%"])
    print(markdown_table(["stage", "median", "share of zoo predict"], body))
    write_json(args.json, "bench_cold", args, rows,
               {"stages": [{"stage": label, "seconds": seconds} for label, seconds in stages],
                "zoo_command": zoo_label, "times": times, "modules": modules})


if __name__ == "__main__":
    main()
