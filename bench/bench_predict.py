"""Inference: zoo's predict against hand-written code, onnxruntime against PyTorch and OpenCV DNN, batching, GFLOP/s.

    python bench/bench_predict.py [--model resnet50] [--threads N] [--runs 30] [--batch-runs 5] [--json PATH]

The model gets random weights (``zoo.testing.randomize`` on the torchvision network,
saved with ``torch.save``; nothing is downloaded) and is exported into a temporary
``ZOO_CACHE_DIR``, so the user's cache is untouched. Every runtime gets the same thread
count (``--threads``, default ``os.cpu_count()``): onnxruntime's ``intra_op_num_threads``,
``torch.set_num_threads``, ``cv2.setNumThreads``, and numpy's BLAS through threadpoolctl
(``threadpool_limits``, which also caps any OpenMP pool). The input is scikit-image's
chelsea photo (451x300, RGB array). Each row is the median of ``--runs`` timings
(``time.perf_counter``, two warm-up calls first); cases compared with each other are timed
in alternation, so that they see the same machine load. The rows, each with its reference
measured in the same run:

* ``model.predict(array)`` against the code a user writes by hand with the spec's numbers
  (``cv2.resize`` of the shorter side to 232 with ``INTER_LINEAR``, centre crop 224, /255,
  ImageNet mean and std, HWC to CHW, batch axis, a raw ``onnxruntime.InferenceSession``,
  softmax and top-5): the zoo's overhead. Target: at most 5%.
* ``model.run(batch)`` (onnxruntime) against PyTorch eager (``torch.inference_mode()``,
  same weights, same batch): the speed-up. Target: at least 1.5x.
* OpenCV DNN (``runtime="opencv"``) against onnxruntime: reported, no target.
* 32 different images (crops, flips and rescalings of scikit-image photos of various
  sizes, so that no cache helps) as one ``predict(list, batch_size=32)`` against 32 calls
  of ``predict(image)``: images per second. Target: at least 1.2x. ``predict(list)`` with
  the default ``batch_size`` (8) is reported too.
* GFLOP/s achieved by onnxruntime at batch 1 and 32, against a float32 GEMM peak measured
  with numpy in the same run (``a @ b`` on 2048x2048, median, ``2 n^3 / t``). ResNet-50
  is 4.09 G multiply-adds per image (torchvision's ``_ops`` metadata counts multiply-adds),
  so 8.18 GFLOP.

* Two sessions run in turn (a two-model pipeline in one process): two ``zoo.get`` models
  against two ``InferenceSession`` with onnxruntime's default options, time per run;
  reported, no target. The zoo's sessions stop their threads spinning after each run.

A second table splits predict's time (preprocessing, inference, postprocessing) against
the hand-written code, to explain the overhead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    Row,
    fail,
    fmt,
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

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
GEMM_SIZE = 2048
PIL_FILTERS = {"nearest": 0, "bilinear": 2, "bicubic": 3, "area": 4}  # PIL.Image.Resampling values
#: Calls per case in a row when engines are compared; the first of each is not timed (see measure).
BLOCK = 5


def photo_set(count: int, seed: int = 0) -> list:
    """``count`` different RGB arrays: random crops of scikit-image photos, some flipped, some rescaled."""
    import cv2
    import numpy as np
    import skimage.data

    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        photo = photos[i % len(photos)]
        height, width = photo.shape[:2]
        ch, cw = int(height * rng.uniform(0.55, 1.0)), int(width * rng.uniform(0.55, 1.0))
        top, left = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
        image = photo[top:top + ch, left:left + cw]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        if i % 3 == 1:
            factor = float(rng.uniform(0.6, 1.6))
            image = cv2.resize(np.ascontiguousarray(image), None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        images.append(np.ascontiguousarray(image))
    return images


def handwritten(spec, session):
    """The obvious numpy/OpenCV code with the spec's numbers: (preprocess, postprocess, predict)."""
    import cv2
    import numpy as np

    pre = spec.preprocess
    if not isinstance(pre.resize, int) or pre.crop is None or pre.layout != "NCHW" or pre.channels != "RGB":
        fail(f"{spec.name}: the hand-written reference handles 'resize shorter side, centre crop, RGB, NCHW'; "
             f"this spec has resize={pre.resize!r}, crop={pre.crop!r}, {pre.channels}, {pre.layout}")
    flag = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
            "area": cv2.INTER_AREA}[pre.interpolation]
    size, (crop_h, crop_w) = pre.resize, pre.crop
    mean = np.asarray(pre.mean, np.float32)
    std = np.asarray(pre.std, np.float32)
    labels = spec.labels
    input_name = session.get_inputs()[0].name

    def preprocess(image):
        height, width = image.shape[:2]
        scale = size / min(height, width)
        new_w, new_h = round(width * scale), round(height * scale)
        resized = cv2.resize(image, (new_w, new_h), interpolation=flag)
        top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
        x = resized[top:top + crop_h, left:left + crop_w].astype(np.float32) / 255.0
        x = (x - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def postprocess(logits):
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        top = np.argsort(p[0])[::-1][:5]
        return [(labels[i], float(p[0, i])) for i in top]

    def predict(image):
        return postprocess(session.run(None, {input_name: preprocess(image)})[0])

    def pillow_preprocess(image):  # what torchvision's transforms compute: Pillow's antialiased resize
        from PIL import Image

        height, width = image.shape[:2]
        new_w, new_h = (size, int(size * height / width)) if width <= height else (int(size * width / height), size)
        resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), PIL_FILTERS[pre.interpolation]))
        top, left = round((new_h - crop_h) / 2), round((new_w - crop_w) / 2)
        x = resized[top:top + crop_h, left:left + crop_w].astype(np.float32) / 255.0
        x = (x - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def pillow_predict(image):
        return postprocess(session.run(None, {input_name: pillow_preprocess(image)})[0])

    return preprocess, postprocess, predict, pillow_preprocess, pillow_predict


def gemm_peak(threads: int, runs: int) -> tuple[float, str]:
    """Median float32 GEMM GFLOP/s with numpy (``2 n^3 / t``), and what BLAS ran it with how many threads."""
    import numpy as np
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    b = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    seconds = measure({"gemm": lambda: a @ b}, runs)["gemm"]
    libraries = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    mine = [i for i in libraries if "numpy" in i.get("filepath", "")] or libraries
    what = ", ".join(f"{i.get('internal_api')} {i.get('version')}, {i.get('num_threads')} threads" for i in mine)
    return 2 * GEMM_SIZE**3 / seconds / 1e9, what or f"unknown BLAS, {threads} threads requested"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="a zoo-torchvision classifier (default resnet50)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for every runtime and for numpy's BLAS (default: os.cpu_count())")
    parser.add_argument("--runs", type=int, default=30, help="timings per batch-1 row (median; default 30)")
    parser.add_argument("--batch-runs", type=int, default=None,
                        help="timings per 32-image row (default: runs // 6, at least 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()
    if args.runs < 1 or args.threads < 1:
        fail("--runs and --threads must be at least 1")
    batch_runs = args.batch_runs or max(1, args.runs // 6)
    require("numpy", "cv2", "onnxruntime", "skimage", "torch", "torchvision", "onnxsim", "pytest", "threadpoolctl",
            "zoo")

    import cv2
    import numpy as np
    import onnxruntime
    import skimage.data
    import torch
    import torchvision
    from threadpoolctl import threadpool_limits

    import zoo

    threads = args.threads
    threadpool_limits(limits=threads)  # numpy's BLAS (and any OpenMP pool) for the whole run
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)

    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        os.environ["ZOO_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["ZOO_OFFLINE"] = "1"
        spec = require_torchvision_model(args.model)
        info = spec.extra["torchvision"]
        try:
            macs = float(torchvision.models.get_model_weights(info["arch"])[info["weights"]].meta["_ops"])
        except (KeyError, ValueError) as error:
            fail(f"torchvision has no operation count for {info['arch']} {info['weights']}: {error}")
        flop = 2 * macs * 1e9

        started = time.perf_counter()
        weights, _, net = random_weights(spec, Path(tmp))
        model = zoo.get(spec.name, weights=weights, threads=threads)
        try:
            opencv = zoo.get(spec.name, weights=weights, threads=threads, runtime="opencv")
            opencv_error = ""
        except zoo.ZooError as error:  # OpenCV lacks some operators: reported, not fatal
            opencv, opencv_error = None, str(error)
        print(f"setup: random weights and export in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        raw = onnxruntime.InferenceSession(str(model.path), sess_options=options,
                                           providers=["CPUExecutionProvider"])
        preprocess, postprocess, predict, pillow_preprocess, pillow_predict = handwritten(spec, raw)
        photo = np.ascontiguousarray(skimage.data.chelsea())
        batch = model.preprocess(photo)
        tensor = torch.from_numpy(batch)

        def torch_run() -> object:
            with torch.inference_mode():
                return net(tensor)

        # sanity: the same weights everywhere, and what the two pipelines feed the network
        ort_logits = model.run(batch)["logits"]
        torch_diff = float(np.abs(torch_run().numpy() - ort_logits).max())
        opencv_diff = float(np.abs(opencv.run(batch)["logits"] - ort_logits).max()) if opencv else float("nan")
        grey = np.abs(batch - preprocess(photo)) * np.asarray(spec.preprocess.std, np.float32)[:, None, None] * 255
        print(f"timing: {args.runs} runs per batch-1 row, {batch_runs} per 32-image row, {threads} threads",
              file=sys.stderr)

        runtimes = {"onnxruntime": lambda: model.run(batch), "torch": torch_run}
        if opencv is not None:
            runtimes["opencv"] = lambda: opencv.run(batch)
        engines = measure(runtimes, args.runs, block=BLOCK)
        overhead = measure({"zoo": lambda: model.predict(photo), "hand": lambda: predict(photo),
                            "pillow": lambda: pillow_predict(photo)}, args.runs, block=BLOCK)
        pillow_grey = float((np.abs(batch - pillow_preprocess(photo))
                             * np.asarray(spec.preprocess.std, np.float32)[:, None, None] * 255).max())
        outputs = model.run(batch)
        logits = outputs["logits"]
        stages = measure({"zoo pre": lambda: model.preprocess(photo), "hand pre": lambda: preprocess(photo),
                          "zoo post": lambda: model.postprocess(outputs), "hand post": lambda: postprocess(logits)},
                         max(50, 10 * args.runs))
        peak, blas = gemm_peak(threads, max(3, args.runs // 3))

        second = zoo.get(spec.name, weights=weights, threads=threads)
        raw2 = onnxruntime.InferenceSession(str(model.path), sess_options=options, providers=["CPUExecutionProvider"])
        name = raw.get_inputs()[0].name
        pairs = measure({"zoo": lambda: (model.run(batch), second.run(batch)),
                         "raw": lambda: (raw.run(None, {name: batch}), raw2.run(None, {name: batch}))},
                        args.runs // 2, block=BLOCK)

        images = photo_set(32)
        batch32 = model.preprocess(images)
        multi = measure({"one batch of 32": lambda: model.predict(images, batch_size=32),
                         "batches of 8": lambda: model.predict(images),
                         "32 single calls": lambda: [model.predict(image) for image in images],
                         "preprocess 32": lambda: model.preprocess(images),
                         "run 32": lambda: model.run(batch32)}, batch_runs, warmup=1)

    ort, torch_s, opencv_s = engines["onnxruntime"], engines["torch"], engines.get("opencv")
    singles = multi["32 single calls"]
    sizes = sorted(image.shape[0] * image.shape[1] for image in images)
    pre32, run32, batched = multi["preprocess 32"] / 32, multi["run 32"] / 32, multi["one batch of 32"] / 32
    rows = [
        Row("model.predict(array), batch 1", overhead["zoo"], "s", "hand-written cv2/numpy + InferenceSession",
            overhead["hand"], overhead["zoo"] / overhead["hand"], "time / reference", 1.05, "<=", "overhead <= 5%",
            note=f"overhead {100 * (overhead['zoo'] / overhead['hand'] - 1):+.1f}%; the two inputs differ by "
                 f"{grey.mean():.2f} grey levels on average, {grey.max():.0f} at most (the zoo resizes with "
                 f"antialiasing, as Pillow and torchvision do; cv2.INTER_LINEAR does not)"),
        Row("model.predict(array), batch 1 ", overhead["zoo"], "s",
            "hand-written Pillow resize + numpy + InferenceSession", overhead["pillow"],
            overhead["zoo"] / overhead["pillow"], "time / reference", 1.05, "<=", "overhead <= 5%",
            note=f"overhead {100 * (overhead['zoo'] / overhead['pillow'] - 1):+.1f}% against the code that computes "
                 f"what torchvision's transforms compute (the inputs differ by {pillow_grey:.2f} grey levels at most)"),
        Row("onnxruntime model.run, batch 1", ort, "s", "PyTorch eager (inference_mode)", torch_s, torch_s / ort,
            "speed-up (ref. time / time)", 1.5, ">=", ">= 1.5x faster",
            note=f"logits agree with PyTorch to {torch_diff:.2g} (max abs diff)"),
        Row("OpenCV DNN model.run, batch 1", opencv_s if opencv else "fails", "s", "onnxruntime model.run", ort,
            opencv_s / ort if opencv_s else None, "time / reference",
            note=f"logits agree with onnxruntime to {opencv_diff:.2g} (max abs diff)" if opencv else opencv_error),
        Row("predict(32 images, batch_size=32)", 32 / multi["one batch of 32"], "img/s", "32 x predict(image)",
            32 / singles, singles / multi["one batch of 32"], "throughput / reference", 1.2, ">=", ">= 1.2x",
            note=f"32 different images of {sizes[0] / 1e6:.2f} to {sizes[-1] / 1e6:.2f} megapixels. Per image: "
                 f"{fmt(singles / 32, 's')} in single calls, {fmt(batched, 's')} in the batch, of which onnxruntime "
                 f"takes {fmt(run32, 's')} ({100 * run32 / batched:.0f}%; {fmt(ort, 's')} at batch 1, so batching "
                 f"speeds inference up by only {ort / run32:.3f}x: both run near the GEMM peak, rows below) and "
                 f"preprocessing {fmt(pre32, 's')} (measured alone)"),
        Row("predict(32 images), default batch_size 8", 32 / multi["batches of 8"], "img/s", "32 x predict(image)",
            32 / singles, singles / multi["batches of 8"], "throughput / reference"),
        Row("2 models run in turn, per run", pairs["zoo"] / 2, "s", "2 default InferenceSessions in turn",
            pairs["raw"] / 2, pairs["raw"] / pairs["zoo"], "speed-up (ref. time / time)",
            note="a two-model pipeline in one process; onnxruntime's default threads keep spinning after a run "
                 "and slow the other session's run"),
        Row("onnxruntime GFLOP/s, batch 1", flop / ort / 1e9, "GFLOP/s", f"numpy float32 GEMM {GEMM_SIZE}^3",
            peak, flop / ort / 1e9 / peak, "fraction of GEMM peak",
            note=f"{macs:.2f} G multiply-adds = {flop / 1e9:.2f} GFLOP per image; numpy's GEMM: {blas} (set with "
                 f"threadpoolctl)"),
        Row("onnxruntime GFLOP/s, batch 32", 32 * flop / multi["run 32"] / 1e9, "GFLOP/s",
            f"numpy float32 GEMM {GEMM_SIZE}^3", peak, 32 * flop / multi["run 32"] / 1e9 / peak,
            "fraction of GEMM peak", note=f"model.run on a preprocessed batch of 32: {fmt(multi['run 32'], 's')}"),
    ]
    breakdown = [
        ("preprocess (1 image)", stages["zoo pre"], stages["hand pre"]),
        ("inference (onnxruntime, batch 1)", ort, ort),
        ("postprocess (softmax, top-5)", stages["zoo post"], stages["hand post"]),
    ]
    total_zoo, total_hand = sum(z for _, z, _ in breakdown), sum(h for _, _, h in breakdown)
    breakdown.append(("sum of the stages", total_zoo, total_hand))
    breakdown.append(("measured end to end", overhead["zoo"], overhead["hand"]))

    print(header(f"## {spec.name}: predict, runtimes, batching, GFLOP/s",
                 f"; {threads} threads everywhere; median of {args.runs} runs (32-image rows: {batch_runs})"))
    print()
    print(results_table(rows))
    print()
    print(notes(rows))
    print()
    print(f"Where predict's time goes (medians of {max(50, 10 * args.runs)} runs; inference: the onnxruntime row "
          f"above):")
    print()
    print(markdown_table(["stage", "zoo", "hand-written", "zoo - hand-written", "share of predict"],
                         [[label, fmt(z, "s"), fmt(h, "s"), f"{(z - h) * 1e3:+.2f} ms",
                           f"{100 * z / overhead['zoo']:.1f}%"] for label, z, h in breakdown]))
    write_json(args.json, "bench_predict", args, rows,
               {"breakdown": [{"stage": label, "zoo_s": z, "handwritten_s": h} for label, z, h in breakdown],
                "gemm": {"size": GEMM_SIZE, "gflops": peak, "blas": blas}, "threads": threads,
                "batch_runs": batch_runs})


if __name__ == "__main__":
    main()
