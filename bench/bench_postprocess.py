"""Detection postprocessing: decode + NMS of a YOLOv8-style raw output with 8,400 candidates.

    python bench/bench_postprocess.py [--runs 200] [--classes 80] [--confident 300] [--json PATH]

The raw output is ``(1, 4 + classes, 8400)`` (YOLOv8 at 640x640: boxes ``cxcywh`` in
pixels, then class scores), with every score under 0.2 but for ``--confident`` candidates
(300: a busy photo) that pass the 0.25 threshold. Measured, each as the median of ``--runs`` calls:

* the zoo's whole default postprocessing (``zoo.tasks.detection.postprocess``: best
  class, threshold, per-class NMS, top 100, boxes mapped back through a letterbox
  geometry into a ``zoo.Detections``), against the same decode written with torch and
  ``torchvision.ops.batched_nms`` (the reference); target: at most 2 ms;
* the NMS alone, ``zoo.tasks.detection.batched_nms`` against ``torchvision.ops.batched_nms``
  on the same thresholded boxes (reported).

Both sides run in one thread (torch.set_num_threads(1)): NMS is a sequential algorithm.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import Row, header, measure, require, results_table, write_json


def raw_output(classes: int, candidates: int = 8400, confident: int = 300, seed: int = 0) -> np.ndarray:
    """Class scores under 0.2 everywhere but for ``confident`` candidates, each sure of one class (0.25 to 1)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 640, (candidates, 2))
    sizes = rng.uniform(10, 200, (candidates, 2))
    scores = rng.uniform(0, 0.2, (candidates, classes))
    chosen = rng.choice(candidates, confident, replace=False)
    scores[chosen, rng.integers(0, classes, confident)] = rng.uniform(0.25, 1, confident)
    rows = np.concatenate([centres, sizes, scores], axis=1).astype(np.float32)
    return np.ascontiguousarray(rows.T)[None]  # C order, as onnxruntime returns it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--confident", type=int, default=300, help="candidates over the 0.25 threshold")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()
    require("torch", "torchvision")
    import torch
    import torchvision

    import zoo
    from zoo.geometry import Geometry
    from zoo.tasks import detection

    torch.set_num_threads(1)
    predictions = raw_output(args.classes, confident=args.confident)
    spec = zoo.ModelSpec(name="yolo-like", task="object-detection", labels=tuple(map(str, range(args.classes))),
                         preprocess=zoo.Preprocess(resize="letterbox", size=(640, 640)), onnx=_placeholder(),
                         decode={"boxes": "cxcywh", "transpose": True})
    geometry = Geometry(original=(480, 640), input=(640, 640), scale=(1.0, 1.0), offset=(80.0, 0.0))
    outputs = {"predictions": predictions}
    tensor = torch.from_numpy(predictions)

    def zoo_postprocess():
        return detection.postprocess(spec, outputs, [geometry], score_threshold=0.25, iou_threshold=0.5,
                                     max_detections=100)

    def torch_postprocess():
        rows = tensor[0].T
        scores, classes = rows[:, 4:].max(1)
        keep = scores >= 0.25
        boxes = torchvision.ops.box_convert(rows[keep, :4], "cxcywh", "xyxy")
        kept = torchvision.ops.batched_nms(boxes, scores[keep], classes[keep], 0.5)[:100]
        return boxes[kept], scores[keep][kept], classes[keep][kept]

    (ours,) = zoo_postprocess()
    theirs = torch_postprocess()
    if not np.array_equal(ours.class_ids, theirs[2].numpy()) or not np.allclose(ours.scores, theirs[1].numpy()):
        raise SystemExit("the zoo's detections differ from torchvision's: the comparison would be meaningless")
    rows = predictions[0].T
    best, scores = rows[:, 4:].argmax(1), rows[:, 4:].max(1)
    keep = scores >= 0.25
    boxes = detection.to_xyxy(rows[keep, :4], "cxcywh")
    candidates = (boxes, scores[keep], best[keep])
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in candidates)
    times = measure({
        "zoo": zoo_postprocess,
        "torch": torch_postprocess,
        "zoo nms": lambda: detection.batched_nms(*candidates, 0.5),
        "torch nms": lambda: torchvision.ops.batched_nms(*tensors, 0.5),
    }, args.runs, warmup=5)
    table = [
        Row(f"decode + NMS + map back, 8400 candidates, {args.classes} classes ({int(keep.sum())} over 0.25, "
            f"{len(ours)} kept)", times["zoo"], "s", "torch decode + torchvision batched_nms", times["torch"],
            times["zoo"] / times["torch"], "time / reference", 0.002 / times["torch"], "<=", "at most 2 ms"),
        Row(f"batched NMS alone ({int(keep.sum())} boxes)", times["zoo nms"], "s", "torchvision.ops.batched_nms",
            times["torch nms"], times["zoo nms"] / times["torch nms"], "time / reference"),
    ]
    print(header("## Detection postprocessing", f"; median of {args.runs} calls, one thread"))
    print()
    print(results_table(table))
    write_json(args.json, "bench_postprocess", args, table)


def _placeholder():
    import zoo

    return zoo.Artifact(url="https://example.invalid/yolo-like.onnx", sha256="0" * 64)


if __name__ == "__main__":
    main()
