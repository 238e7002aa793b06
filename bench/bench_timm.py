"""timm models: onnxruntime (the zoo's model.run) against PyTorch eager, a CNN, a ViT and a ConvNeXt at batch 1.

    python bench/bench_timm.py [--models timm/resnet50.a1_in1k ...] [--threads N] [--runs 100] [--json PATH]

Each model is a zoo-timm tag (default: ``timm/resnet50.a1_in1k``, a CNN;
``timm/vit_small_patch16_224.augreg_in21k_ft_in1k``, a ViT; ``timm/convnext_tiny.in12k_ft_in1k``, a
ConvNeXt). Its network is built by the plugin (``zoo_timm.build``), given random weights
(``zoo.testing.randomize``, which perturbs every parameter and recalibrates BatchNorm, so that the
outputs tell inputs apart), and saved as safetensors, the layout of the Hub's timm repositories;
``zoo.get(name, weights=path)`` exports that file into a temporary ``ZOO_CACHE_DIR`` with
``ZOO_OFFLINE=1``: nothing is downloaded and the user's cache is untouched. The batch is
scikit-image's chelsea photo preprocessed by the spec (``model.preprocess``), one image.

Per model, one row: ``model.run(batch)`` (onnxruntime) against the same PyTorch module on the same
tensor under ``torch.inference_mode()``, the two timed in alternation (``_common.measure``, each
case called ``BLOCK`` times in a row, the first of them untimed, so that neither runs while the
other's worker threads still spin), medians of ``--runs``. Both get ``--threads`` threads
(onnxruntime's ``intra_op_num_threads`` through ``zoo.get(threads=)``, ``torch.set_num_threads``).
The ratio is PyTorch's time over onnxruntime's: the speed-up. No target: reported. On a 2-core
virtual machine both engines' times for ViT-S and ConvNeXt-T change by up to 1.5x from one
stretch of seconds to the next (onnxruntime's too when it runs alone, raw session or the zoo's
alike), hence 100 runs by default: the rounds of alternation then span several such stretches.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import Row, fail, header, measure, notes, require, require_plugin_model, results_table, write_json

MODELS = ("timm/resnet50.a1_in1k", "timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
          "timm/convnext_tiny.in12k_ft_in1k")
#: Calls per case in a row; the first of each is not timed (see ``_common.measure``).
BLOCK = 5


def random_timm_weights(spec, folder: Path):
    """The plugin's network for ``spec`` with perturbed random weights, saved as safetensors: (path, module)."""
    import torch
    import zoo_timm
    from safetensors.torch import save_file

    from zoo.testing import randomize

    torch.manual_seed(0)
    module = randomize(zoo_timm.build(spec, None), spec)
    path = folder / f"{spec.name.replace('/', '--')}-random.safetensors"
    save_file({key: value.contiguous() for key, value in module.state_dict().items()}, str(path))
    return path, module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), metavar="NAME",
                        help="zoo-timm models (default: " + ", ".join(MODELS) + ")")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for onnxruntime and PyTorch (default: os.cpu_count())")
    parser.add_argument("--runs", type=int, default=100, help="timings per model and runtime (median; default 100)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()
    if args.runs < 1 or args.threads < 1:
        fail("--runs and --threads must be at least 1")
    require("numpy", "onnxruntime", "skimage", "torch", "onnxsim", "pytest", "safetensors", "zoo")
    try:
        import timm
        import zoo_timm  # noqa: F401
    except ImportError as error:
        fail(f"cannot import {error.name} ({error}); pip install -e plugins/zoo-timm (it requires timm)")

    import numpy as np
    import skimage.data
    import torch

    import zoo

    torch.set_num_threads(args.threads)
    photo = np.ascontiguousarray(skimage.data.chelsea())
    rows: list[Row] = []
    details = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        os.environ["ZOO_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["ZOO_OFFLINE"] = "1"
        for name in args.models:
            spec = require_plugin_model(name, "timm", "a zoo-timm model (the plugin builds its network)")
            started = time.perf_counter()
            weights, net = random_timm_weights(spec, Path(tmp))
            model = zoo.get(name, weights=weights, threads=args.threads)
            setup = time.perf_counter() - started
            batch = model.preprocess(photo)
            tensor = torch.from_numpy(batch)
            output = spec.outputs[0]

            def torch_run(net=net, tensor=tensor) -> object:
                with torch.inference_mode():
                    return net(tensor)

            def ort_run(model=model, batch=batch) -> object:
                return model.run(batch)

            got, want = ort_run()[output], torch_run()
            want = (want[0] if isinstance(want, tuple) else want).numpy()
            diff = float(np.abs(got - want).max() / np.abs(want).max())
            top1 = bool((got.argmax(-1) == want.argmax(-1)).all())
            print(f"{name}: random weights and export in {setup:.1f} s; timing {args.runs} runs, {args.threads} "
                  f"threads", file=sys.stderr, flush=True)
            times = measure({"onnxruntime": ort_run, "torch": torch_run}, args.runs, block=BLOCK)
            ort, eager = times["onnxruntime"], times["torch"]
            params = sum(p.numel() for p in net.parameters())
            size = "x".join(str(n) for n in batch.shape[2:])
            rows.append(Row(f"{name} model.run, batch 1", ort, "s", "PyTorch eager (inference_mode)", eager,
                            eager / ort, "speed-up (ref. time / time)",
                            note=f"{params / 1e6:.1f} M parameters, input {size}; {output} agree with PyTorch to "
                                 f"{diff:.1e} of their scale (max abs diff / max abs), top-1 "
                                 f"{'the same' if top1 else 'DIFFERENT'}; export {setup:.1f} s"))
            details.append({"model": name, "params": params, "input": list(batch.shape), "onnxruntime_s": ort,
                            "torch_s": eager, "max_rel": diff, "top1_same": top1, "setup_s": setup})
            del model, net

    print(header("## timm models: onnxruntime against PyTorch eager, batch 1",
                 f"; timm {timm.__version__}; {args.threads} threads for both; median of {args.runs} runs"))
    print()
    print(results_table(rows))
    print()
    print(notes(rows))
    write_json(args.json, "bench_timm", args, rows, {"models": details, "threads": args.threads})


if __name__ == "__main__":
    main()
