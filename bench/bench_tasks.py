"""A detector and a segmenter: zoo's predict against hand-written code, onnxruntime against PyTorch eager.

    python bench/bench_tasks.py [--runs 10] [--threads N] [--json PATH]

The models are zoo-torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn`` and
``deeplabv3_mobilenet_v3_large`` with random weights (perturbed, made to detect as in the
parity tests: ``check_exports.randomized``; nothing is downloaded), exported into a
temporary ``ZOO_CACHE_DIR``. Each case runs over four scikit-image photos (astronaut,
coffee, chelsea, rocket; one timing is the four), median of ``--runs`` rounds, cases in
alternation, in blocks so that one engine's spinning threads do not slow the next. Rows:

* ``model.predict(photo)`` against the code a user writes by hand around the same
  ``onnxruntime.InferenceSession`` (the zoo's own session, so that two sessions do not
  slow each other): the detector's input ``photo / 255`` in CHW, its boxes over 0.25; the
  segmenter's shorter side resized to 520 with ``cv2.resize`` (``INTER_AREA`` when
  shrinking, else ``INTER_LINEAR``), ImageNet mean and std, argmax over the classes and
  the class map resized back with ``INTER_NEAREST``. Target: at most 10% over.
* ``Model.run`` (onnxruntime) against the same PyTorch module in eager mode
  (``torch.inference_mode()``) on the same tensors: reported, target at least 1.3x.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from _common import Row, header, measure, require, results_table, write_json

DETECTOR, SEGMENTER = "fasterrcnn_mobilenet_v3_large_320_fpn", "deeplabv3_mobilenet_v3_large"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()
    require("torch", "torchvision", "skimage", "zoo_torchvision")
    import cv2
    import skimage.data
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    photos = [getattr(skimage.data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")]
    with tempfile.TemporaryDirectory() as folder:
        os.environ["ZOO_CACHE_DIR"] = folder
        rows = [row for name in (DETECTOR, SEGMENTER) for row in bench(name, photos, args.threads, args.runs)]
    print(header("## A detector and a segmenter", f"; {args.threads} threads, median of {args.runs} rounds of 4 photos"))
    print()
    print(results_table(rows))
    write_json(args.json, "bench_tasks", args, rows)


def bench(name: str, photos: list, threads: int, runs: int) -> list[Row]:
    """The two rows of one model."""
    import cv2
    import numpy as np
    import torch

    import zoo

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "zoo-torchvision"))
    from check_exports import randomized

    made = {}
    spec = randomized(zoo.get_spec(name))
    build = spec.build
    spec = dataclasses.replace(spec, weights=None, build=lambda s, w: made.setdefault("module", build(s, w)))
    model = zoo.get(spec, weights="random", threads=threads)
    session, module = model.session.session, made["module"]
    by_hand = hand_detector(session, cv2, np) if name == DETECTOR else hand_segmenter(session, cv2, np)
    tensors = [model.preprocess(photo) for photo in photos]
    check(model, by_hand, photos, np)

    def eager():
        with torch.inference_mode():
            return [module(torch.from_numpy(t)) for t in tensors]

    times = measure({"zoo": lambda: [model.predict(p) for p in photos],
                     "hand": lambda: [by_hand(p) for p in photos],
                     "ort": lambda: [model.run(t) for t in tensors],
                     "torch": eager}, runs, block=3)
    per = len(photos)
    return [
        Row(f"{name}: predict(photo)", times["zoo"] / per, "s", "hand-written around the same session",
            times["hand"] / per, times["zoo"] / times["hand"], "time / reference", 1.10, "<=", "at most 10% over"),
        Row(f"{name}: onnxruntime (Model.run)", times["ort"] / per, "s", "PyTorch eager, same module and tensors",
            times["torch"] / per, times["torch"] / times["ort"], "speed-up", 1.3, ">=", "at least 1.3x"),
    ]


def hand_detector(session, cv2, np):
    def run(photo):
        boxes, scores, labels = session.run(None, {"input": (photo.transpose(2, 0, 1)[None] / np.float32(255))})
        keep = scores >= 0.25
        return boxes[keep], scores[keep], labels[keep]
    return run


def hand_segmenter(session, cv2, np):
    mean, std = np.float32(IMAGENET_MEAN) * 255, np.float32(IMAGENET_STD) * 255

    def run(photo):
        height, width = photo.shape[:2]
        factor = 520 / min(height, width)
        size = (round(width * factor), round(height * factor))
        resized = cv2.resize(photo, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        tensor = ((resized - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
        (logits,) = session.run(None, {"input": tensor})
        return cv2.resize(logits[0].argmax(0).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return run


def check(model, by_hand, photos, np) -> None:
    """The two give the same answer, or the comparison would be meaningless."""
    for photo in photos:
        ours, theirs = model.predict(photo), by_hand(photo)
        if hasattr(ours, "boxes"):
            same = np.allclose(ours.boxes, theirs[0], atol=1e-3) and np.array_equal(ours.class_ids, theirs[2])
        else:
            # cv2's resize is not Pillow's, and random weights turn small differences into other classes
            same = ours.mask.shape == theirs.shape and (ours.mask == theirs).mean() > 0.5
        if not same:
            raise SystemExit(f"{model.spec.name}: the zoo's result differs from the hand-written one's")


if __name__ == "__main__":
    main()
