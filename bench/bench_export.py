"""`zoo export` in a fresh process with an empty cache against a script doing the raw export work; where the time goes.

    python bench/bench_export.py [--model resnet50] [--runs 3] [--breakdown-runs 1] [--json PATH]

The model gets random weights (``zoo.testing.randomize``, saved with ``torch.save``),
passed as a ``file://`` URL with their sha256. Each run, in alternation, median wall time
of ``--runs`` fresh processes:

* ``zoo export MODEL --weights file:///...pth --sha256 HEX -o OUT.onnx``, each time with a
  new, empty ``ZOO_CACHE_DIR``;
* the reference: a ``python -c`` script doing only the raw work: import torch and
  torchvision, build the network, load the same state dict, ``torch.onnx.export``
  (``dynamo=False``, opset 17, input ``input``, output ``logits``, dynamic batch axis),
  ``onnxsim.simplify``, ``onnx.save``.

Target: zoo export at most 1.3x the reference. zoo does more than the reference: it
copies and hashes the weights into its cache, runs the network in PyTorch on 3 inputs for
the parity check, runs ``onnx.checker`` (full check) on the file it keeps, compares
onnxruntime against PyTorch, hashes and commits the file, and copies it to ``-o``. The second table says how much each of those costs: ``zoo export`` runs in-process
(``--breakdown-runs`` times, before the timed runs, which also warms the file cache) with
timers wrapped around the library functions it calls (torch.onnx.export, onnx.checker,
onnxsim.simplify, ...; each stage's time excludes the stages nested in it), next to the
reference script's own timers.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import (
    Row,
    fail,
    fmt,
    header,
    markdown_table,
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

IMPORT_TORCH = "import torch, torchvision"
IMPORT_ONNX = "import onnx, onnxsim (which imports onnxruntime)"
BUILD = "build + load weights"
EXPORT = "torch.onnx.export (TorchScript)"
SAVE_LOAD = "onnx.load / onnx.save"
SIMPLIFY = "onnxsim.simplify"
FORWARD = "PyTorch forward on the parity inputs (reference)"
STAGE_ORDER = ("import zoo.cli", IMPORT_TORCH, IMPORT_ONNX,
               "fetch weights into the cache (copy + sha256)", BUILD, FORWARD, EXPORT, "onnx.checker (full_check)",
               SAVE_LOAD, SIMPLIFY, "onnxruntime parity (session + run)", "commit to the cache (sha256 + move)",
               "copy to -o", "other (registry, cache key, locks, CLI, versions)")

#: The raw work, timed by stage; argv: arch, weights file, output file, opset.
REFERENCE = f"""
import time
last = time.perf_counter()
stages = {{}}
def done(label):
    global last
    now = time.perf_counter()
    stages[label] = now - last
    last = now
import json, sys, warnings
import torch, torchvision
done({IMPORT_TORCH!r})
import onnx, onnxsim
done({IMPORT_ONNX!r})
arch, weights, output, opset = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = torchvision.models.get_model(arch, weights=None)
model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
model.eval()
done({BUILD!r})
warnings.simplefilter("ignore")
torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), output, dynamo=False, opset_version=opset,
                  input_names=["input"], output_names=["logits"],
                  dynamic_axes={{"input": {{0: "batch"}}, "logits": {{0: "batch"}}}})
done({EXPORT!r})
loaded = onnx.load(output)
done("load")
simplified, ok = onnxsim.simplify(loaded)
assert ok, "onnxsim could not validate its result"
done({SIMPLIFY!r})
onnx.save(simplified, output)
done("save")
stages[{SAVE_LOAD!r}] = stages.pop("load") + stages.pop("save")
print("ZOO_BENCH_STAGES " + json.dumps(stages), file=sys.stderr)
"""


class Timers:
    """Exclusive seconds per label: a wrapped call's time, minus that of wrapped calls nested in it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[list] = []  # [label, seconds of nested timed calls]

    def wrap(self, owner: object, attribute: str, label: str, when=None) -> None:
        original = getattr(owner, attribute)
        timers = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if when is not None and not when(timers.stack):
                return original(*args, **kwargs)
            timers.stack.append([label, 0.0])
            timers.calls[label] += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                nested = timers.stack.pop()[1]
                timers.seconds[label] += elapsed - nested
                if timers.stack:
                    timers.stack[-1][1] += elapsed

        setattr(owner, attribute, timed)

    def block(self, label: str, function) -> None:
        start = time.perf_counter()
        function()
        self.seconds[label] += time.perf_counter() - start
        self.calls[label] += 1


def breakdown_child(name: str, url: str, sha256: str, output: str) -> None:
    """``zoo export`` in this process with timers around the library calls; prints the stages as JSON."""
    import importlib

    start = time.perf_counter()
    timers = Timers()
    timers.block("import zoo.cli", lambda: importlib.import_module("zoo.cli"))
    timers.block(IMPORT_TORCH, lambda: [importlib.import_module(m) for m in ("torch", "torchvision")])
    timers.block(IMPORT_ONNX, lambda: [importlib.import_module(m) for m in ("onnx", "onnxsim", "onnxruntime")])
    import onnx
    import onnxsim
    import torch
    import torchvision

    import zoo
    import zoo.cache
    import zoo.cli
    import zoo.download
    import zoo.export

    timers.wrap(zoo.download, "fetch", "fetch weights into the cache (copy + sha256)")
    timers.wrap(torchvision.models, "get_model", BUILD)
    getattr(zoo, "load_state_dict")  # noqa: B009 - resolves the lazy attribute before it is replaced
    timers.wrap(zoo, "load_state_dict", BUILD)
    timers.wrap(torch.nn.Module, "load_state_dict", BUILD)
    timers.wrap(torch.nn.Module, "__call__", FORWARD,
                when=lambda stack: not any(label in (FORWARD, EXPORT) for label, _ in stack))
    timers.wrap(torch.onnx, "export", EXPORT)
    timers.wrap(onnx.checker, "check_model", "onnx.checker (full_check)")
    timers.wrap(onnx, "load", SAVE_LOAD)
    timers.wrap(onnx, "save", SAVE_LOAD)
    timers.wrap(onnxsim, "simplify", SIMPLIFY)
    timers.wrap(zoo.export, "_run_onnx", "onnxruntime parity (session + run)")
    timers.wrap(zoo.cache, "commit", "commit to the cache (sha256 + move)")
    timers.wrap(zoo.cli, "_copy_model", "copy to -o")
    status = zoo.cli.main(["export", name, "--weights", url, "--sha256", sha256, "-o", output])
    if status != 0:
        raise SystemExit(status)
    total = time.perf_counter() - start
    stages = dict(timers.seconds)
    stages["other (registry, cache key, locks, CLI, versions)"] = total - sum(stages.values())
    print("ZOO_BENCH_STAGES " + json.dumps({"stages": stages, "calls": timers.calls, "total": total}), file=sys.stderr)


def tagged(stderr: str, tag: str) -> dict:
    for line in stderr.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    fail(f"the child process printed no {tag} line; its stderr ends with:\n" + "\n".join(stderr.splitlines()[-10:]))
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="a zoo-torchvision classifier (default resnet50)")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per command (median; default 3)")
    parser.add_argument("--breakdown-runs", type=int, default=1, help="in-process exports with timers (default 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    parser.add_argument("--breakdown-child", nargs=4, metavar=("NAME", "URL", "SHA256", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.breakdown_child:
        breakdown_child(*args.breakdown_child)
        return
    if args.runs < 1 or args.breakdown_runs < 1:
        fail("--runs and --breakdown-runs must be at least 1")
    require("numpy", "torch", "torchvision", "onnx", "onnxsim", "onnxruntime", "pytest", "zoo")

    from zoo.export import DEFAULT_OPSET

    zoo, zoo_label = zoo_command()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        folder = Path(tmp)
        os.environ["ZOO_OFFLINE"] = "1"
        os.environ["ZOO_CACHE_DIR"] = str(folder / "unused-cache")
        spec = require_torchvision_model(args.model)
        info = spec.extra["torchvision"]
        if info["builder_kwargs"] or len(spec.labels) != 1000 or spec.outputs != ("logits",):
            fail(f"{spec.name}: the reference script builds torchvision's default {info['arch']} with 1000 classes "
                 f"and one output 'logits'; this spec differs")
        opset = spec.opset or DEFAULT_OPSET
        weights, sha256, _ = random_weights(spec, folder)
        url = weights.as_uri()
        runs: list[int] = [0]

        def fresh(label: str) -> tuple[dict[str, str], Path]:
            runs[0] += 1
            cache = folder / f"cache-{runs[0]}"
            return {**os.environ, "ZOO_CACHE_DIR": str(cache)}, folder / f"{label}-{runs[0]}.onnx"

        def clean(env: dict[str, str], output: Path) -> int:
            size = output.stat().st_size if output.is_file() else 0
            if size == 0:
                fail(f"{output} was not written")
            shutil.rmtree(env["ZOO_CACHE_DIR"], ignore_errors=True)
            output.unlink()
            return size

        breakdowns = []
        for _ in range(args.breakdown_runs):
            env, output = fresh("breakdown")
            child = run_checked([sys.executable, __file__, "--breakdown-child", spec.name, url, sha256, str(output)],
                                env, "zoo export with timers")
            breakdowns.append(tagged(child.stderr, "ZOO_BENCH_STAGES"))
            clean(env, output)
            print(f"breakdown export: {breakdowns[-1]['total']:.1f} s in-process", file=sys.stderr)

        times: dict[str, list[float]] = {"zoo": [], "reference": []}
        reference_stages = []
        sizes = {}
        for round_ in range(args.runs):
            for which in (("zoo", "reference") if round_ % 2 == 0 else ("reference", "zoo")):
                env, output = fresh(which)
                if which == "zoo":
                    command = [*zoo, "export", spec.name, "--weights", url, "--sha256", sha256, "-o", str(output)]
                else:
                    command = [sys.executable, "-c", REFERENCE, info["arch"], str(weights), str(output), str(opset)]
                start = time.perf_counter()
                result = run_checked(command, env, f"{which} export")
                times[which].append(time.perf_counter() - start)
                if which == "reference":
                    reference_stages.append(tagged(result.stderr, "ZOO_BENCH_STAGES"))
                sizes[which] = clean(env, output)
                print(f"{which} export: {times[which][-1]:.1f} s", file=sys.stderr)

    zoo_s, ref_s = median(times["zoo"]), median(times["reference"])
    rows = [Row(f"zoo export {spec.name} (empty cache)", zoo_s, "s", "raw torch.onnx.export + onnxsim script", ref_s,
                zoo_s / ref_s, "time / reference", 1.3, "<=", "<= 1.3x",
                note=f"fresh processes; files of {sizes['zoo'] / 2**20:.1f} MiB (zoo) and "
                     f"{sizes['reference'] / 2**20:.1f} MiB (reference), opset {opset}")]
    ours = {label: median([b["stages"].get(label, 0.0) for b in breakdowns]) for label in STAGE_ORDER}
    theirs = {label: median([r.get(label, 0.0) for r in reference_stages]) for label in STAGE_ORDER}
    ours_total = median([b["total"] for b in breakdowns])
    theirs_total = sum(median([r[label] for r in reference_stages]) for label in reference_stages[0])
    calls = breakdowns[0]["calls"]
    body = [[label + (f" ({calls[label]} calls)" if calls.get(label, 0) > 1 else ""), fmt(ours[label], "s"),
             f"{100 * ours[label] / ours_total:.1f}%",
             fmt(theirs[label], "s") if label in reference_stages[0] else "-",
             f"{ours[label] - theirs[label]:+.2f} s"] for label in STAGE_ORDER]
    body.append(["total in-process", fmt(ours_total, "s"), "100.0%", fmt(theirs_total, "s"),
                 f"{ours_total - theirs_total:+.2f} s"])
    body.append(["fresh process, median (table above)", fmt(zoo_s, "s"), "", fmt(ref_s, "s"),
                 f"{zoo_s - ref_s:+.2f} s"])

    print(header(f"## zoo export {spec.name} against the raw export work",
                 f"; {zoo_label}; median of {args.runs} fresh processes each"))
    print()
    print(results_table(rows))
    print()
    print(notes(rows))
    print()
    print(f"Where zoo export's time goes (in-process timers, median of {len(breakdowns)} export(s); reference: median "
          f"of its {len(reference_stages)} timed runs):")
    print()
    print(markdown_table(["stage", "zoo export", "share", "reference", "zoo - reference"], body))
    print()
    print("The first PyTorch call in a process pays one-off costs (allocations, kernel selection): in zoo export the "
          "parity forward pays them, in the reference torch.onnx.export's trace does.")
    write_json(args.json, "bench_export", args, rows,
               {"breakdown": [{"stage": label, "zoo_s": ours[label], "zoo_calls": calls.get(label, 0),
                               "reference_s": theirs[label] if label in reference_stages[0] else None}
                              for label in STAGE_ORDER],
                "times": times, "zoo_command": zoo_label})


if __name__ == "__main__":
    main()
