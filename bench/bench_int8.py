"""int8 against float32: ``model.run`` at batch 1, agreement on held photos, and the settings the zoo chose.

    python bench/bench_int8.py [--runs 30] [--models resnet50 mobilenet_v3_large ...] [--sweep resnet50 ...]
                               [--json PATH]

Each torchvision classifier gets perturbed random weights (``zoo.testing.randomize``) and a
last layer fitted to tell the zoo's photos apart (``zoo.testing.decisive_classifier``: with
random weights alone the top classes are near-ties, and agreement would measure ties; the
first resnet50 row shows it). It is exported to float32 and quantized as ``zoo.get(name,
precision="int8")`` does (calibrated on the zoo's photos, checked on the held ones). Both
files then run one preprocessed photo, alternately, in blocks (one engine's spinning
threads never slow the other's timed calls): median of ``--runs`` calls each.

The sweep quantizes the ``--sweep`` models with every calibration method, with and without
``reduce_range`` (7-bit weights, onnxruntime's advice for CPUs without VNNI, whose u8s8
instructions can saturate) and without onnxruntime's pre-processing, and prints agreement
and speed for each: the figures the zoo's :data:`zoo.quantize.SETTINGS` were chosen from. The digits row is zoo-digits' own
accuracy on its held-out split (scikit-learn's digits), float32 against int8.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _common import (
    Row,
    fail,
    header,
    markdown_table,
    measure,
    notes,
    random_weights,
    require,
    require_torchvision_model,
    results_table,
    write_json,
)

MODELS = ("resnet50", "mobilenet_v3_large", "efficientnet_b0", "vit_b_16")
SWEEP = ("resnet50", "mobilenet_v3_large")
METHODS = ("MinMax", "Entropy", "Percentile")


def digits_accuracy() -> tuple[float, float]:
    """zoo-digits' held-out accuracy in float32 and in int8, in percent."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import zoo

    digits = load_digits()
    _, test = train_test_split(np.arange(len(digits.target)), test_size=0.2, stratify=digits.target, random_state=0)
    pictures = list(np.round(255 * (1 - digits.images[np.sort(test)] / 16)).astype(np.uint8))
    truth = digits.target[np.sort(test)]
    found = []
    for precision in ("fp32", "int8"):
        results = zoo.get("digits", precision=precision).predict(pictures, batch_size=64)
        found.append(100 * float(np.mean([r.class_id == t for r, t in zip(results, truth)])))
    return found[0], found[1]


def in_float(path: Path, folder: Path) -> str:
    """The operators onnxruntime's optimised int8 graph still runs in float (between dequantize and quantize)."""
    from collections import Counter

    import onnx
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(folder / f"{path.stem}-optimized.onnx")
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    plain = ("QuantizeLinear", "DequantizeLinear", "Transpose", "Flatten", "Reshape", "Shape", "Gather", "Concat",
             "Unsqueeze", "Squeeze", "Slice")
    ops = Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node
                  if not n.op_type.startswith(("QLinear", "QGemm", "MatMulInteger", "DynamicQuantize", "Nhwc"))
                  and n.op_type not in plain)
    return ", ".join(f"{op} x{count}" for op, count in ops.most_common()) or "none"


def flips(report: dict) -> str:
    """Where int8 and float32 disagree, how near a tie float32's top two classes were."""
    if report["agreement"] == 1:
        return ""
    return (f"where the top class changed, float32's top two were at most {report['flipped_margin']:.1%} of the "
            f"outputs' range apart (the largest change: {report['max_difference']:.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--sweep", nargs="*", default=list(SWEEP), help="models to quantize with every setting")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()
    require("torch", "torchvision", "onnxsim", "pytest", "sklearn")
    folder = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    os.environ["ZOO_CACHE_DIR"] = str(folder / "cache")
    import zoo
    from zoo import quantize
    from zoo.convert import sample_photo
    from zoo.runtime import OnnxRuntimeSession

    if "digits" not in zoo.list_models():
        fail("the digits row needs the zoo-digits plugin: pip install -e plugins/zoo-digits")
    import torch

    from zoo.testing import decisive_classifier

    rows, sweep_rows = [], []
    groups = [views for _, views in quantize.photo_views().values()]
    for name in args.models:
        spec = require_torchvision_model(name)
        weights, _, module = random_weights(spec, folder)
        if name == "resnet50":  # the same, before the last layer is fitted: its top classes are ties
            raw = quantize.measure(spec, Path(zoo.get(spec, weights=weights).path), folder / "raw.onnx",
                                   quantize.key_inputs(spec, "int8"))
            rows.append(Row(f"{name} int8 top-1 agreement, random last layer", raw["agreement"], "", "float32's top-1",
                            1.0, raw["agreement"], "fraction of held views", target_text="reported", note=flips(raw)))
        torch.save(decisive_classifier(module, spec, groups).state_dict(), weights)
        print(f"{name}: exporting and quantizing", file=sys.stderr, flush=True)
        fp32 = zoo.get(spec, weights=weights)
        batch = fp32.preprocess(sample_photo())
        paths = {"fp32": Path(fp32.path)}
        try:
            int8 = zoo.get(spec, weights=weights, precision="int8")
            report, paths["int8"], refused = int8.metadata["int8"], Path(int8.path), ""
        except zoo.QuantizationError as error:  # its figures come with the refusal; the file is made again, to time
            paths["int8"], refused, report = folder / f"{name}-refused.onnx", f"; refused by zoo.get: {error}", error.report
            quantize.measure(spec, paths["fp32"], paths["int8"], quantize.key_inputs(spec, "int8"))
        del fp32  # the timing opens its own sessions, alternately in blocks
        sessions = {precision: OnnxRuntimeSession(path) for precision, path in paths.items()}
        times = measure({p: lambda s=s, b=batch: s.run({"input": b}) for p, s in sessions.items()}, args.runs,
                        block=3)
        del sessions
        target = (1.8, ">=", "at least 1.8x faster") if name == "resnet50" else (None, None, "reported")
        rows.append(Row(f"{name} int8 model.run, batch 1", times["int8"], "s", "float32 model.run", times["fp32"],
                        times["fp32"] / times["int8"], "reference / time (speed-up)", *target,
                        note=f"largest output change {report['max_difference']:.1%} of the outputs' range; operators "
                             f"onnxruntime runs in float in the int8 graph: {in_float(paths['int8'], folder)}{refused}"))
        agrees = (0.98, ">=", "at least 98%") if name in ("resnet50", "mobilenet_v3_large") else (None, None, "reported")
        rows.append(Row(f"{name} int8 top-1 agreement, {report['held_images']} held views", report["agreement"], "",
                        "float32's top-1", 1.0, report["agreement"], "fraction of held views", *agrees,
                        note=flips(report)))
        if name in args.sweep:
            source = paths["fp32"]
            chosen = quantize.key_inputs(spec, "int8")
            variants = [{"method": m, "reduce_range": r} for m in METHODS for r in (False, True)]
            for changed in [*variants, {"prepare": False}]:
                settings = {**chosen, **changed}
                print(f"{name}: {changed}", file=sys.stderr, flush=True)
                figures = quantize.measure(spec, source, folder / f"{name}-variant.onnx", settings)
                print(f"  {figures}", file=sys.stderr, flush=True)
                sweep_rows.append([name, settings["method"], str(settings["reduce_range"]), str(settings["prepare"]),
                                   f"{figures['agreement']:.1%}", f"{figures['max_difference']:.1%}",
                                   f"{figures['int8_ms']:.1f} ms", f"{figures['seconds']:.0f} s"])
    fp32_accuracy, int8_accuracy = digits_accuracy()
    rows.append(Row("digits int8 held-out accuracy (360 images)", int8_accuracy, "%", "its float32 accuracy",
                    fp32_accuracy, int8_accuracy - fp32_accuracy, "points over reference", -1.0, ">=",
                    "at most 1 point lower"))
    print(header("## int8 against float32", f"; median of {args.runs} calls, batch 1"))
    print()
    print(results_table(rows))
    print()
    print(notes(rows))
    if sweep_rows:
        print("\n### Settings (QDQ, per-channel int8 weights, uint8 activations)\n")
        print(markdown_table(["model", "calibration", "reduce_range", "pre-processed", "top-1 agreement",
                              "largest change", "int8 run", "quantizing"], sweep_rows, "llllrrrr"))
        print("\nint8 run: quantize's own median of 10 calls, one image (no alternation with float32: compare "
              "the rows of this table with each other, not with the table above).")
    write_json(args.json, "bench_int8", args, rows, {"settings": sweep_rows})


if __name__ == "__main__":
    main()
