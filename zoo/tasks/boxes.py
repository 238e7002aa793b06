"""Boxes: intersection over union, non-maximum suppression with torchvision's semantics, and box formats."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``xyxy`` box with each of ``boxes`` (torchvision's formula)."""
    return pairwise_iou(box[None], boxes)[0]


#: Up to this many boxes, NMS works on their IoU matrix (4 MB of float32 at 1,024 boxes); beyond, box by box.
MATRIX_LIMIT = 1024


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The ``(len(a), len(b))`` IoU matrix of two sets of ``xyxy`` boxes, in float32 as torchvision computes it."""
    import numpy as np

    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: 0 / 0, never over a threshold
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, by decreasing score.

    A box is dropped when its IoU with a better kept box is greater than ``iou_threshold``,
    as ``torchvision.ops.nms`` does.
    """
    import numpy as np

    boxes = np.asarray(boxes, np.float32)
    order = np.argsort(-np.asarray(scores), kind="stable")
    if len(order) > MATRIX_LIMIT:
        return _nms_box_by_box(boxes, order, iou_threshold)
    ordered = boxes[order]
    overlaps = np.triu(pairwise_iou(ordered, ordered) > iou_threshold, k=1)  # row i: later boxes that i suppresses
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= overlaps[i]
    return order[np.asarray(keep, np.int64)]


def _nms_box_by_box(boxes: np.ndarray, order: np.ndarray, iou_threshold: float) -> np.ndarray:
    import numpy as np

    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        order = rest[~(box_iou(boxes[best], boxes[rest]) > iou_threshold)]  # NaN (empty boxes) is not over
    return np.asarray(keep, np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """:func:`nms` within each class, as ``torchvision.ops.batched_nms``: boxes of different classes never
    suppress each other. The kept indices are by decreasing score."""
    import numpy as np

    boxes, scores, class_ids = np.asarray(boxes, np.float32), np.asarray(scores), np.asarray(class_ids)
    if len(boxes) <= MATRIX_LIMIT:  # one matrix: each class's boxes shifted apart, beyond any coordinate
        span = float(boxes.max(initial=0.0) - boxes.min(initial=0.0)) + 1  # wider than any box, negative or not
        offsets = (class_ids - class_ids.min(initial=0)).astype(np.float32) * span
        return nms(boxes + offsets[:, None], scores, iou_threshold)
    by_class = np.argsort(class_ids, kind="stable")
    ordered = class_ids[by_class]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1, len(ordered)]
    kept = [members[nms(boxes[members], scores[members], iou_threshold)]
            for members in (by_class[a:b] for a, b in itertools.pairwise(starts))]
    kept_all = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return kept_all[np.argsort(-scores[kept_all], kind="stable")]


# -- decoding ----------------------------------------------------------------------------------


def to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """Boxes ``(..., 4)`` in ``box_format`` as ``xyxy``."""
    import numpy as np

    boxes = np.asarray(boxes, np.float32)
    if box_format == "xyxy":
        return boxes
    out = np.empty_like(boxes)
    if box_format == "xywh":
        out[..., :2] = boxes[..., :2]
        out[..., 2:] = boxes[..., :2] + boxes[..., 2:]
    else:
        half = boxes[..., 2:] / 2
        out[..., :2] = boxes[..., :2] - half
        out[..., 2:] = boxes[..., :2] + half
    return out
