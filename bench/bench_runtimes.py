"""Runtimes and precisions: what ``runtime="auto"`` chooses on this machine, and ``model.run``'s overhead on OpenVINO.

    python bench/bench_runtimes.py [--models resnet50 ssdlite320_mobilenet_v3_large lraspp_mobilenet_v3_large]
                                   [--blocks 9] [--calls 5] [--overhead-blocks 20] [--cache DIR] [--results DIR]
    python bench/bench_runtimes.py --quick    # resnet18, few blocks: a smoke run; writes nothing unless --results

Issue 33: the fastest verified way to run each model here, OpenVINO, bf16 and int8 chosen by
measurement. Each model is built from a checkpoint made here (nothing is downloaded): a
classifier gets perturbed random weights (``zoo.testing.randomize``) and a last layer fitted to
tell the zoo's photos apart (``zoo.testing.decisive_classifier``, as ``bench_int8.py`` does:
random top classes are ties, and agreement would measure ties); the detector and the segmenter
get ``randomize``, and the detector also ``zoo_torchvision.graphs.decisive`` (random weights
score every class near 1/91, under the default threshold of 0.25: the gate would compare no
detections), its count on the 64 held views printed.

Per model, ``zoo.model.tuned(name, BuildOptions(weights=checkpoint), again=True)`` opens every
candidate (``zoo.tune.CANDIDATES``: reduced precisions pass the agreement gate against
onnxruntime float32 on 64 held views, or are refused) and times those that open on one held
view, in interleaved blocks (``--blocks`` of ``--calls`` calls); the speed-up is the median over
blocks of onnxruntime float32's time over the candidate's, with its lowest and highest. The
cache is a new temporary folder (``--cache`` to keep one): the gate and the tuning are measured
now. Then ``model.run(batch)`` on OpenVINO float32 is timed against a hand-written infer request
of the same compiled model on the same batch (interleaved blocks): the zoo's overhead.
Results go to ``--results`` (default ``bench/results``) as ``runtimes.md`` and ``runtimes.json``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from _common import (
    RESULTS,
    Row,
    fail,
    header,
    markdown_table,
    notes,
    random_weights,
    require,
    require_plugin_model,
    results_table,
    write_json,
)

MODELS = ("resnet50", "ssdlite320_mobilenet_v3_large", "lraspp_mobilenet_v3_large")
#: ``graphs.decisive``'s spread of the detector's class logits: about 13 detections a held view at score 0.25, the
#: best near 0.5 (1.2 gives 75, 3 gives 100 near-certain ones on every view, cut by max_detections; 0.8 almost none).
SPREAD = 1.0
FLAGS = ("amx", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx2")


def cpu_flags() -> dict[str, bool]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(next((line.partition(":")[2].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {name: any(f == name or name == "amx" and f.startswith("amx_") for f in flags) for name in FLAGS}


def checkpoint(name: str, folder: Path) -> tuple[Path, str]:
    """A state-dict file of non-degenerate random weights for ``name`` (a zoo-torchvision model), and how made."""
    import torch

    from zoo import quantize
    from zoo.testing import decisive_classifier, randomize

    spec = require_plugin_model(name, "torchvision", "a zoo-torchvision model (its network is built here)")
    if spec.task == "image-classification":  # exactly as bench_int8.py
        path, _, module = random_weights(spec, folder)
        groups = [views for _, views in quantize.photo_views().values()]
        torch.save(decisive_classifier(module, spec, groups).state_dict(), path)
        return path, "randomize, decisive_classifier"
    import zoo_torchvision
    from zoo_torchvision import graphs

    from zoo.convert import sample_inputs

    torch.manual_seed(0)
    module = randomize(zoo_torchvision.build(spec, None), spec)
    how = "randomize"
    if isinstance(module, graphs.Detector):
        graphs.decisive(module, torch.from_numpy(sample_inputs(spec)), spread=SPREAD)
        how += f", graphs.decisive(spread={SPREAD})"
    path = folder / f"{name}-random.pth"
    torch.save(module.model.state_dict(), path)  # torchvision's own layout, which the plugin loads
    return path, how


def detections(name: str, weights: Path) -> str:
    """How many detections float32 makes on the held views at the default score threshold (none: stop)."""
    import zoo
    from zoo.quantize import photos

    model = zoo.get(name, weights=weights)
    counts = [len(result) for result in model.predict(photos(model.spec).held)]
    if not sum(counts):
        fail(f"{name}'s random weights detect nothing on the held views at score {model.options['score_threshold']}: "
             f"the gate would compare nothing; change SPREAD")
    return (f"{sum(counts)} detections on {len(counts)} held views at score >= {model.options['score_threshold']} "
            f"(per view: min {min(counts)}, median {statistics.median(counts):g}, max {max(counts)})")


def short(reason: str) -> str:
    """A refusal's reason, in a few words for the table (the full text is printed below it)."""
    text = reason.split("is refused: ", 1)[-1]
    text = re.split(r" \(|; |: use |\. Use ", text)[0]
    return text if len(text) <= 64 else text[:61] + "..."


def status(row: dict, margin: float) -> str:
    if row["refused"]:
        return f"refused: {short(row['refused'])}"
    if row["chosen"]:
        return "**chosen**"
    if (row["runtime"], row["precision"]) == ("onnxruntime", "fp32"):
        return "reference"
    return "slower" if row["speedup"] < 1 else f"under the {margin}x margin" if row["speedup"] < margin else \
        "slower than the choice"


def table(record: dict) -> str:
    body = []
    for row in record["rows"]:
        figures = row.get("figures") or {}
        low, high = row.get("speedup_range") or (None, None)
        body.append([row["runtime"], row["precision"], "-" if row["ms"] is None else f"{row['ms']:.2f}",
                     "-" if row["speedup"] is None else f"{row['speedup']:.2f}x",
                     "-" if low is None else f"{low:.2f}-{high:.2f}",
                     f"{figures['agreement']:.1%}" if "agreement" in figures else "-",
                     f"{figures['max_difference']:.3g}" if "max_difference" in figures else "-",
                     status(row, record["timing"]["margin"])])
    return markdown_table(["runtime", "precision", "ms (median)", "speed-up", "range", "agreement", "max diff.",
                           "status"], body, "llrrrrrl")


def overhead(name: str, weights: Path, blocks: int, calls: int) -> dict:
    """``model.run(batch)`` on OpenVINO float32 against a raw infer request of the same compiled model."""
    import zoo
    from zoo.quantize import interleaved_ms, photos

    model = zoo.get(name, weights=weights, runtime="openvino")
    batch = model.preprocess(photos(model.spec).held[0])
    compiled = model.session.compiled
    (feed,) = model.feeds  # the image: every model here takes nothing else
    request, ports = compiled.create_infer_request(), list(compiled.outputs)

    def raw() -> list:
        result = request.infer({feed: batch})
        return [result[port] for port in ports]

    times = interleaved_ms({"raw": raw, "run": partial(model.run, batch)}, blocks=blocks, calls=calls)
    ratios = [run / raw for run, raw in zip(times["run"], times["raw"], strict=True)]
    return {"run_ms": statistics.median(times["run"]), "raw_ms": statistics.median(times["raw"]),
            "ratio": statistics.median(ratios), "range": [min(ratios), max(ratios)], "blocks": blocks, "calls": calls}


def target(name: str, task: str, record: dict, cpu: dict[str, bool]) -> tuple[str, float | None, str]:
    """The target of ``name``'s tuned speed-up: (text, the least speed-up where it applies to this CPU, else None,
    and why it applies or not)."""
    if name == "resnet50" and cpu["amx"]:
        return "at least 4x (AMX CPUs)", 4.0, "AMX"
    if name == "resnet50":  # the 4x is an AMX CPU's; never slower than fp32 holds on every CPU
        return "no slower than fp32 (CPUs without AMX); at least 4x on AMX CPUs", 1.0, "no AMX"
    if task in ("object-detection", "semantic-segmentation"):
        passed = [f"{r['runtime']} {r['precision']}" for r in record["rows"] if r["precision"] != "fp32" and r["ms"]]
        return ("at least 1.5x where a reduced precision passes", 1.5 if passed else None,
                f"{', '.join(passed)} passed" if passed else "no reduced precision passes here")
    return "none", None, "no target for this model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), metavar="NAME")
    parser.add_argument("--blocks", type=int, default=None, help="tuning's interleaved blocks (zoo.tune.BLOCKS)")
    parser.add_argument("--calls", type=int, default=None, help="timed calls a block (zoo.tune.CALLS)")
    parser.add_argument("--overhead-blocks", type=int, default=20, help="blocks of the overhead measure")
    parser.add_argument("--cache", metavar="DIR", help="ZOO_CACHE_DIR to use (default: a new temporary one)")
    parser.add_argument("--results", metavar="DIR", help=f"where runtimes.md and .json go (default {RESULTS}; "
                                                         f"with --quick, nowhere unless given)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: resnet18, 3 blocks of 3 calls")
    args = parser.parse_args()
    if args.quick:
        args.models, args.blocks, args.calls, args.overhead_blocks = ["resnet18"], 3, 3, 4
    folder = Path(tempfile.mkdtemp(prefix="bench-runtimes-"))  # the checkpoints, and the cache unless --cache
    atexit.register(shutil.rmtree, folder, True)
    os.environ["ZOO_CACHE_DIR"] = args.cache or str(folder / "cache")  # before zoo is imported
    os.environ["ZOO_OFFLINE"] = "1"
    require("torch", "torchvision", "onnxsim", "pytest", "zoo")
    try:
        import openvino
    except ImportError:
        fail("cannot import openvino; pip install 'onnx-zoo[openvino]'")
    from zoo import tune
    from zoo.convert import BuildOptions
    from zoo.model import tuned
    from zoo.runtime_openvino import core

    args.blocks, args.calls = args.blocks or tune.BLOCKS, args.calls or tune.CALLS
    cpu = cpu_flags()
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    records, extra, rows, goals = {}, {}, [], []
    for name in args.models:
        started = time.perf_counter()
        weights, how = checkpoint(name, folder)
        task = require_plugin_model(name, "torchvision", "a zoo-torchvision model").task
        counted = detections(name, weights) if task == "object-detection" else ""
        print(f"{name}: weights ({how}) in {time.perf_counter() - started:.0f} s; {counted or 'tuning'}",
              file=sys.stderr, flush=True)
        records[name] = record = tuned(name, BuildOptions(weights=weights), again=True, blocks=args.blocks,
                                       calls=args.calls)
        print(f"{name}: tuned in {record['seconds']:.0f} s; timing the overhead", file=sys.stderr, flush=True)
        extra[name] = {"weights": how, "detections": counted,
                       "overhead": overhead(name, weights, args.overhead_blocks, args.calls)}
        chosen = next(r for r in record["rows"] if r["chosen"])
        reference = next(r for r in record["rows"] if (r["runtime"], r["precision"]) == tune.REFERENCE)
        text, goal, why = target(name, task, record, cpu)
        applies = goal is not None
        rows.append(Row(f"{name} runtime='auto' ({chosen['runtime']} {chosen['precision']}) model.run, batch 1",
                        chosen["ms"] / 1e3, "s", "onnxruntime fp32 model.run", reference["ms"] / 1e3,
                        chosen["speedup"], "speed-up (median of blocks' ratios)", goal, ">=" if applies else None,
                        text if applies else "reported" if text == "none" else f"reported ({text})",
                        note=f"target applies: {why}"))
        goals.append([f"{name} tuned: {text}", f"{'yes' if applies else 'no'} ({why})", rows[-1]])
        cost = extra[name]["overhead"]
        rows.append(Row(f"{name} OpenVINO fp32 model.run overhead, batch 1", cost["run_ms"] / 1e3, "s",
                        "raw infer request, same compiled model", cost["raw_ms"] / 1e3, cost["ratio"],
                        "time / reference (median of blocks' ratios)", 1.05, "<=", "overhead at most 5%",
                        note=f"blocks' ratios {cost['range'][0]:.3f}-{cost['range'][1]:.3f}"))
        goals.append([f"{name} OpenVINO model.run overhead at most 5%", "yes", rows[-1]])

    say(header("## Runtimes and precisions: runtime='auto' against onnxruntime fp32, batch 1",
               f"; OpenVINO {openvino.__version__.split('-')[0]}"))
    say()
    say("CPU flags that decide it: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu.items())
        + f"; OpenVINO CPU capabilities: {', '.join(core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}")
    say(f"Tuning: {args.blocks} interleaved blocks of {args.calls} calls, one held view; a choice must be "
        f"{tune.MARGIN}x onnxruntime fp32. Targets: resnet50 tuned >= 4x onnxruntime fp32 on AMX CPUs, no slower "
        f"on CPUs without AMX or VNNI; detector and segmenter >= 1.5x where a reduced precision passes; "
        f"OpenVINO model.run overhead <= 5%.")
    for name, record in records.items():
        chosen = next(r for r in record["rows"] if r["chosen"])
        say(f"\n### {name}\n")
        say(f"Weights: {extra[name]['weights']}." + (f" {extra[name]['detections']}." if extra[name]["detections"]
                                                     else ""))
        say()
        say(table(record))
        say()
        low, high = chosen.get("speedup_range") or (1, 1)
        say(f"Chosen: {chosen['runtime']} {chosen['precision']}, {chosen['speedup']:.2f}x onnxruntime fp32 "
            f"({low:.2f}-{high:.2f} over the blocks); tuning took {record['seconds']:.0f} s.")
        for row in record["rows"]:
            if row["refused"]:
                say(f"- {row['runtime']} {row['precision']} refused: {row['refused']}")
    say("\n### Targets\n")
    say(results_table(rows))
    say()
    say(notes(rows))
    say()
    say(markdown_table(["target", "applies to this CPU", "met"],
                       [[text, applies, "-" if row.met is None else "yes" if row.met else "**NO**"]
                        for text, applies, row in goals], "lll"))
    if args.quick and not args.results:
        print("\n(--quick: a smoke run; nothing written)", file=sys.stderr)
        return
    results = Path(args.results or RESULTS)
    results.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python bench/bench_runtimes.py", *sys.argv[1:]])
    (results / "runtimes.md").write_text(f"$ {command}\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    write_json(str(results / "runtimes.json"), "bench_runtimes", args, rows,
               {"tuned": records, "models": extra, "cpu_flags": cpu})


if __name__ == "__main__":
    main()
