"""Preprocessing, decode included: the zoo against torchvision's PIL pipeline, on the same JPEG bytes.

    python bench/bench_preprocess.py [--model resnet50] [--runs 15] [--json PATH]

Three files are made from scikit-image's chelsea photo: a 4000x3000 (12 MP) JPEG upscale, and a
640x480 (0.3 MP) JPEG and PNG. For each, the median of ``--runs`` timings of

* zoo: ``zoo.images.load(bytes)`` then ``spec.preprocess.apply`` (OpenCV decode, Pillow's
  antialiased resize recomputed for the cropped pixels only, normalisation in numpy);
* torchvision (reference): ``PIL.Image.open(bytes).convert("RGB")`` then the weights'
  ``transforms()`` (what torchvision users run).

Target: faster than the reference, at most one grey level apart (the inference issue's
fidelity); each row's note gives the largest difference between the two tensors.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import cv2
import numpy as np
import skimage.data
import torch
import torchvision
from _common import Row, header, notes, results_table, write_json
from PIL import Image

import zoo
from zoo import images


def median_seconds(function, runs: int) -> float:
    function()  # warm up (caches, lazy imports)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()

    torch.set_num_threads(torch.get_num_threads())
    spec = zoo.get_spec(args.model)
    info = spec.extra["torchvision"]
    builder = torchvision.models.get_model_builder(info["arch"])
    transforms = torchvision.models.get_model_weights(builder)[info["weights"]].transforms()
    std = np.asarray(spec.preprocess.std, np.float32)[:, None, None]
    photo = skimage.data.chelsea()
    rows = []
    files = (("12 MP JPEG 4000x3000", (4000, 3000), ".jpg"), ("0.3 MP JPEG 640x480", (640, 480), ".jpg"),
             ("0.3 MP PNG 640x480", (640, 480), ".png"))
    for label, (width, height), extension in files:
        pixels = cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)
        _, encoded = cv2.imencode(extension, pixels[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92] * (extension == ".jpg"))
        data = encoded.tobytes()

        def ours(data: bytes = data) -> np.ndarray:
            return spec.preprocess.apply([images.load(data)])

        def reference(data: bytes = data) -> torch.Tensor:
            return transforms(Image.open(io.BytesIO(data)).convert("RGB"))[None]

        diff = float((np.abs(ours() - reference().numpy()) * std * 255).max())
        zoo_s, tv_s = median_seconds(ours, args.runs), median_seconds(reference, args.runs)
        rows.append(Row(f"preprocess {label}, decode included", zoo_s, "s", "torchvision transforms on PIL", tv_s,
                        tv_s / zoo_s, "speed-up (ref. time / time)", 1.0, ">=", "faster",
                        note=f"largest difference {diff:.2f} grey levels"))
    pre = spec.preprocess
    print(header(f"## {args.model}: preprocessing ({pre.resize} -> crop {pre.crop}, {pre.interpolation})",
                 f"; median of {args.runs} runs, torch threads {torch.get_num_threads()}, "
                 f"OpenCV threads {cv2.getNumThreads()}"))
    print()
    print(results_table(rows))
    print()
    print(notes(rows))
    write_json(args.json, "bench_preprocess", args, rows)


if __name__ == "__main__":
    main()
