"""``object-detection``, ``instance-segmentation``, ``keypoint-detection``: boxes, and masks or keypoints.

The result is :class:`Detections`, in the original image's pixels, torchvision's
conventions: boxes ``xyxy``, masks at the image's size, keypoints ``(x, y, score)``.

A detector that exports its raw head needs no Python: its spec's ``decode`` table
(:class:`Decode`) says how to read the outputs, and the default postprocessing decodes
the candidates, keeps those of at least ``score_threshold``, runs non-maximum
suppression (:func:`batched_nms`, torchvision's semantics) unless the graph did, keeps
the best ``max_detections`` and maps them back through each image's geometry.

The outputs it reads, by name (``rename_outputs`` maps a graph's names to these):

* raw heads (``nms = "zoo"`` or ``"none"``): ``predictions``, ``(batch, candidates,
  4 [+ 1] + classes)``: the box, the objectness when ``objectness`` is set, then the class
  scores (``transpose`` when candidates are on the last axis, as YOLOv8 exports them); or
  ``boxes`` ``(batch, candidates, 4)`` with ``scores`` ``(batch, candidates, classes)``;
* final detections (``nms = "graph"``): ``boxes`` ``(batch, n, 4)``, ``scores``
  ``(batch, n)``, ``class_ids`` ``(batch, n)``, optionally ``masks`` ``(batch, n, [1,] H, W)``
  (probabilities over the model's input) and ``keypoints`` ``(batch, n, k, 2 or 3)``; or one
  ``detections`` ``(batch, n, 6)``: box, score, class id.

A graph with a single output needs no names: it is ``predictions`` or ``detections``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo._fields import set_field
from zoo.errors import ZooInputError
from zoo.tasks import _draw, _rle, require
from zoo.tasks.boxes import MATRIX_LIMIT, batched_nms, box_iou, nms, pairwise_iou, to_xyxy
from zoo.tasks.decode import (
    ACTIVATIONS,
    BOX_FORMATS,
    NMS_PLACES,
    Decode,
    candidates,
    check_decode,
    check_decode_with_extras,
    decode_raw,
)

__all__ = ["ACTIVATIONS", "BOX_FORMATS", "MATRIX_LIMIT", "NMS_PLACES", "OPTIONS", "Decode", "Detection", "Detections",
           "agreement", "batched_nms", "box_iou", "candidates", "check_decode", "check_decode_with_extras", "compare",
           "decode_raw", "nms", "pairwise_iou", "postprocess", "to_xyxy"]

if TYPE_CHECKING:
    import numpy as np

    from zoo.geometry import Geometry
    from zoo.spec import ModelSpec

#: The options ``predict`` takes for detectors, with their defaults.
OPTIONS = {"score_threshold": 0.25, "iou_threshold": 0.5, "max_detections": 100, "mask_threshold": 0.5}


@dataclass(frozen=True)
class Detection:
    """One detected object (an item of :class:`Detections`)."""

    box: np.ndarray
    score: float
    class_id: int
    label: str
    mask: np.ndarray | None = None
    keypoints: np.ndarray | None = None


@dataclass(frozen=True)
class Detections:
    """The objects found in one image, best first, in the original image's pixels.

    ``boxes`` ``(N, 4)`` float32 ``xyxy``; ``scores`` ``(N,)`` float32; ``class_ids``
    ``(N,)`` int64; ``labels`` the N class names; ``masks`` ``(N, H, W)`` bool at the
    image's size, or None; ``keypoints`` ``(N, K, 3)`` float32 ``(x, y, score)``, or None,
    with ``keypoint_names`` and the ``skeleton``'s pairs of keypoint indices.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: tuple[str, ...]
    image_size: tuple[int, int]
    masks: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    keypoint_names: tuple[str, ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        import numpy as np

        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids, np.int64).reshape(-1)
        n = len(scores)
        if not len(boxes) == len(class_ids) == len(self.labels) == n:
            raise ValueError(f"Detections needs as many boxes ({len(boxes)}), class ids ({len(class_ids)}) "
                             f"and labels ({len(self.labels)}) as scores ({n})")
        order = np.argsort(-scores, kind="stable")
        set_field(self, "boxes", boxes[order])
        set_field(self, "scores", scores[order])
        set_field(self, "class_ids", class_ids[order])
        set_field(self, "labels", tuple(self.labels[i] for i in order))
        if self.masks is not None:
            set_field(self, "masks", np.asarray(self.masks, bool).reshape(n, *self.image_size)[order])
        if self.keypoints is not None:
            points = np.asarray(self.keypoints, np.float32)
            count = points.shape[-2] if points.ndim == 3 else points.size // max(3 * n, 1)  # K, also when n is 0
            set_field(self, "keypoints", points.reshape(n, count, 3)[order])

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, which: Any) -> Detections:
        """The detections that ``which`` selects, best first still: an index, a slice, a boolean mask
        (``d[d.scores > 0.5]``, ``d[d.class_ids == 0]``) or an array of indices, as supervision's ``Detections``."""
        import numpy as np

        index = np.arange(len(self))[which]
        index = np.sort(np.atleast_1d(index))  # kept in their order, best first
        return dataclasses.replace(
            self, boxes=self.boxes[index], scores=self.scores[index], class_ids=self.class_ids[index],
            labels=tuple(self.labels[i] for i in index),
            masks=None if self.masks is None else self.masks[index],
            keypoints=None if self.keypoints is None else self.keypoints[index])

    def summary(self) -> str:
        """One line: how many, and each one's label and score, best first (the first ten): ``2 detections: person
        0.98, dog 0.91``."""
        found = ", ".join(f"{label} {score:.2f}" for label, score in zip(self.labels[:10], self.scores[:10]))
        more = f", ... ({len(self) - 10} more)" if len(self) > 10 else ""
        return f"{len(self)} detection{'' if len(self) == 1 else 's'}" + (f": {found}{more}" if found else "")

    def __iter__(self) -> Iterator[Detection]:
        for i in range(len(self)):
            yield Detection(box=self.boxes[i], score=float(self.scores[i]), class_id=int(self.class_ids[i]),
                            label=self.labels[i], mask=None if self.masks is None else self.masks[i],
                            keypoints=None if self.keypoints is None else self.keypoints[i])

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: one entry per detection; masks as COCO run-length encodings."""
        items = []
        for detection in self:
            item: dict[str, Any] = {"label": detection.label, "class_id": detection.class_id,
                                    "score": round(detection.score, 6),
                                    "box": [round(float(v), 3) for v in detection.box]}
            if detection.mask is not None:
                item["mask"] = _rle.encode(detection.mask)
            if detection.keypoints is not None:
                item["keypoints"] = [[round(float(v), 3) for v in point] for point in detection.keypoints]
            items.append(item)
        data: dict[str, Any] = {"image_size": list(self.image_size), "detections": items}
        if self.keypoints is not None:
            data["keypoint_names"] = list(self.keypoint_names)
            data["skeleton"] = [list(pair) for pair in self.skeleton]
        return data

    def draw(self, image: Any) -> np.ndarray:
        """An RGB uint8 copy of ``image``: masks tinted, boxes outlined with label and score, keypoints and skeleton."""
        import cv2

        canvas = _draw.canvas(image)
        _, thickness = _draw.scale_for(canvas)
        for detection in reversed(list(self)):  # the best drawn last, on top
            rgb = _draw.color(detection.class_id + 1)
            if detection.mask is not None and detection.mask.shape == canvas.shape[:2]:
                _draw.blend(canvas, detection.mask, rgb)
            x1, y1, x2, y2 = (round(float(v)) for v in detection.box)
            cv2.rectangle(canvas, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), rgb, thickness)
            if detection.keypoints is not None:
                self._draw_keypoints(canvas, detection.keypoints, rgb, thickness)
            _draw.label(canvas, f"{detection.label} {detection.score:.2f}", x1, y1, rgb)
        return canvas

    def _draw_keypoints(self, canvas: np.ndarray, points: np.ndarray, rgb: tuple[int, int, int],
                        thickness: int) -> None:
        import cv2

        xy = [(round(float(x)), round(float(y))) for x, y, _ in points]
        for a, b in self.skeleton:
            if a < len(xy) and b < len(xy):
                cv2.line(canvas, xy[a], xy[b], rgb, thickness, cv2.LINE_AA)
        for point in xy:
            cv2.circle(canvas, point, thickness + 2, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(canvas, point, thickness + 1, rgb, -1, cv2.LINE_AA)


def postprocess(spec: ModelSpec, outputs: Mapping[str, np.ndarray], geometries: list[Geometry],
                score_threshold: float = 0.25, iou_threshold: float = 0.5, max_detections: int = 100,
                mask_threshold: float = 0.5) -> list[Detections]:
    """The detection tasks' default: decode (see the module docstring), threshold, NMS, map back."""
    import numpy as np

    _check_options(score_threshold, iou_threshold, max_detections, mask_threshold)
    decode = Decode.from_dict(spec.decode)
    results = []
    for i, geometry in enumerate(geometries):
        masks = keypoints = None
        if decode.nms == "graph":
            boxes, scores, class_ids, masks, keypoints = _final(outputs, i, decode, geometry, score_threshold,
                                                                max_detections)
        else:
            boxes, scores, class_ids = decode_raw(outputs, i, decode, score_threshold=score_threshold,
                                                  iou_threshold=iou_threshold, max_detections=max_detections,
                                                  input_size=geometry.input)
        if masks is not None:
            masks = geometry.to_original_mask(masks, interpolation="bilinear") > mask_threshold
        if keypoints is not None:
            points = np.zeros((*keypoints.shape[:2], 3), np.float32)
            points[..., :2] = geometry.to_original_points(keypoints[..., :2])
            points[..., 2] = keypoints[..., 2] if keypoints.shape[-1] > 2 else 1.0
            keypoints = points
        labels = tuple(_label(spec.labels, int(c) + decode.label_offset) for c in class_ids)
        results.append(Detections(boxes=geometry.to_original_boxes(boxes), scores=scores, class_ids=class_ids,
                                  labels=labels, image_size=geometry.original, masks=masks, keypoints=keypoints,
                                  keypoint_names=decode.keypoint_names, skeleton=decode.skeleton))
    return results


def _final(outputs: Mapping[str, np.ndarray], i: int, decode: Decode, geometry: Geometry, score_threshold: float,
           max_detections: int) -> tuple[np.ndarray, ...]:
    """Image ``i``'s detections from a graph that did its own NMS, above the threshold, best first."""
    import numpy as np

    if "boxes" in outputs:
        boxes = np.asarray(outputs["boxes"][i], np.float32).reshape(-1, 4)
        scores = np.asarray(outputs["scores"][i], np.float32).reshape(-1)
        ids = outputs.get("class_ids", outputs.get("labels"))
        if ids is None:
            raise ZooInputError(f"a detector with NMS in the graph outputs 'boxes', 'scores' and 'class_ids' (or "
                                f"'labels'); got {sorted(outputs)}: map the graph's names with rename_outputs")
        class_ids = np.asarray(ids[i]).reshape(-1).astype(np.int64)
    else:
        rows = np.asarray(outputs.get("detections", next(iter(outputs.values())))[i], np.float32).reshape(-1, 6)
        boxes, scores, class_ids = rows[:, :4], rows[:, 4], rows[:, 5].round().astype(np.int64)
    boxes = to_xyxy(boxes, decode.boxes)
    if decode.normalized:
        boxes = boxes * np.array([geometry.input[1], geometry.input[0]] * 2, np.float32)
    chosen = np.argsort(-scores, kind="stable")
    chosen = chosen[scores[chosen] >= score_threshold][:max_detections]
    masks = outputs.get("masks")
    if masks is not None:
        masks = np.asarray(masks[i], np.float32)
        masks = masks.reshape(len(scores), *masks.shape[-2:])[chosen]
    keypoints = outputs.get("keypoints")
    if keypoints is not None:
        keypoints = np.asarray(keypoints[i], np.float32)
        keypoints = keypoints.reshape(len(scores), *keypoints.shape[-2:])[chosen]  # -1 cannot be inferred for 0
    return boxes[chosen], scores[chosen], class_ids[chosen], masks, keypoints


def _mask_agreement(want: np.ndarray, got: np.ndarray, enough: float) -> float:
    """The share of pixels on which two masks agree, the second shifted by up to one pixel if that is needed.

    A mask pasted into its box at integer coordinates moves by a whole pixel when a box
    corner's rounding falls the other way (boxes that differ by 1e-4).
    """
    import numpy as np

    best = float((want == got).mean())
    for shift in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)):
        if best >= enough:
            break
        best = max(best, float((want == np.roll(got, shift, axis=(0, 1))).mean()))  # masks clear of the border
    return best


def _label(labels: Sequence[str], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) else str(index)


def _check_options(score_threshold: float, iou_threshold: float, max_detections: int, mask_threshold: float) -> None:
    from zoo.errors import UsageError

    for name, value in (("score_threshold", score_threshold), ("iou_threshold", iou_threshold),
                        ("mask_threshold", mask_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise UsageError(f"{name} must be a number from 0 to 1, got {value!r}")
    if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
        raise UsageError(f"max_detections must be an integer of at least 1, got {max_detections!r}")


# -- parity ------------------------------------------------------------------------------------


def compare(want: Detections, got: Detections, spec: ModelSpec | None = None, *, iou: float = 0.99,
            score_tolerance: float = 1e-3, mask_agreement: float = 0.995, keypoint_tolerance: float = 1.0,
            corner_tolerance: float = 0.01, max_ties: float = 0.05) -> dict[str, float]:
    """Every detection of ``want`` matched in ``got`` (and none left over): box IoU >= ``iou``, the same class,
    scores within ``score_tolerance``, masks agreeing on ``mask_agreement`` of the pixels, keypoints within
    ``keypoint_tolerance`` pixels. Returns the worst figures; raises ``AssertionError`` naming the first
    mismatch. Boxes whose corners are all within ``corner_tolerance`` pixels, or 0.25% of the box's longer
    side (the shift IoU 0.99 allows a square), match whatever their IoU: a box of a pixel or less (random
    weights make them), or of no area (flat, or clipped at the border: IoU NaN), changes its IoU by more
    than 1% when float32 rounding moves a corner. A mask one pixel off everywhere (its box's corner
    rounded the other way) may agree once shifted back.

    Rounding can break a tie the other way: NMS keeps the other of two overlapping boxes of
    the same class whose scores agree within ``score_tolerance``, or, among the lowest
    scores of both lists, the ``max_detections`` cut keeps another box of the same score.
    Such unmatched pairs are counted as ``ties``, up to ``max_ties`` of the detections (none
    in a list of fewer than ``1 / max_ties``). A keypoint is the maximum of its heatmap: one
    further than ``keypoint_tolerance`` but of the same score within ``score_tolerance`` (relative
    to the score, if over 1) found another maximum of equal height, counted in ``keypoint_ties``,
    up to ``max_ties`` of the keypoints (none for keypoints without scores).
    """
    import numpy as np

    require(len(want) == len(got), f"{len(got)} detections instead of {len(want)}")
    figures = {"detections": float(len(want)), "min_iou": 1.0, "max_score_diff": 0.0, "ties": 0.0}
    unused, unmatched = set(range(len(got))), []
    for k, detection in enumerate(want):
        same_class = [j for j in unused if got.class_ids[j] == detection.class_id]
        ious = np.nan_to_num(box_iou(detection.box, got.boxes[same_class])) if same_class else np.zeros(0)
        if len(ious):
            side = float(np.abs(detection.box[2:] - detection.box[:2]).max())  # a flat box's longer side
            near = np.abs(got.boxes[same_class] - detection.box).max(axis=1) <= max(corner_tolerance, 0.0025 * side)
            ious[near] = 1.0
        if not len(ious) or ious.max() < iou:
            unmatched.append((k, float(ious.max()) if len(ious) else None))
            continue
        j = same_class[int(ious.argmax())]
        unused.discard(j)
        score_diff = abs(float(got.scores[j]) - detection.score)
        require(score_diff <= score_tolerance, f"detection {k}: score {got.scores[j]:.6f} instead of {detection.score:.6f}")
        figures["min_iou"] = min(figures["min_iou"], float(ious.max()))
        figures["max_score_diff"] = max(figures["max_score_diff"], score_diff)
        if detection.mask is not None and got.masks is not None:
            agreement = _mask_agreement(detection.mask, got.masks[j], mask_agreement)
            require(agreement >= mask_agreement, f"detection {k}: masks agree on {agreement:.2%} of the pixels "
                                                 f"(shifted by a pixel or not)")
            figures["min_mask_agreement"] = min(figures.get("min_mask_agreement", 1.0), agreement)
        if detection.keypoints is not None and got.keypoints is not None:
            distance = np.abs(detection.keypoints[:, :2] - got.keypoints[j][:, :2]).max(axis=1)
            heights = detection.keypoints[:, 2]  # heatmap logits: rounding grows with them
            scored = bool((heights != 1).any() or (got.keypoints[j][:, 2] != 1).any())  # 1: the graph gave no score
            tied = scored & (np.abs(heights - got.keypoints[j][:, 2]) <= score_tolerance * np.maximum(1, np.abs(heights)))
            off = np.flatnonzero((distance > keypoint_tolerance) & ~tied)
            if len(off):
                name = _label(want.keypoint_names, int(off[0]))
                raise AssertionError(f"detection {k}: keypoint {name} {distance[off[0]]:.2f} pixels apart")
            figures["keypoints"] = figures.get("keypoints", 0.0) + len(distance)
            figures["keypoint_ties"] = figures.get("keypoint_ties", 0.0) + float((distance > keypoint_tolerance).sum())
            figures["max_keypoint_distance"] = max(figures.get("max_keypoint_distance", 0.0),
                                                   float(distance[distance <= keypoint_tolerance].max(initial=0.0)))
    if figures.get("keypoint_ties", 0.0) > max_ties * figures.get("keypoints", 0.0):
        raise AssertionError(f"{figures['keypoint_ties']:g} of {figures['keypoints']:g} keypoints moved to another "
                             f"maximum of the same score, more than {max_ties:.0%}")
    lowest = [float(d.scores.min()) if len(d) else 0.0 for d in (want, got)]
    detections = list(want)
    for k, best in unmatched:
        detection = detections[k]
        at_cut = detection.score <= lowest[0] + score_tolerance  # the last kept: the max_detections cut may differ
        ties = [j for j in sorted(unused) if abs(float(got.scores[j]) - detection.score) <= score_tolerance and (
            (at_cut and got.scores[j] <= lowest[1] + score_tolerance)
            or (got.class_ids[j] == detection.class_id and box_iou(detection.box, got.boxes[j:j + 1])[0] > 0.5))]
        require(bool(ties) and figures["ties"] + 1 <= max_ties * len(want), (
            f"detection {k} ({detection.label} {detection.score:.4f} at {np.round(detection.box, 1).tolist()}) has "
            f"no match of the same class at IoU >= {iou}" + (f" (best {best:.4f})" if best is not None else "")
            + (f" and is not one of at most {max_ties:.0%} ties" if ties else "")))
        unused.discard(ties[0])
        figures["ties"] += 1
    return figures


# -- agreement of a reduced precision ----------------------------------------------------------


def agreement(want: Sequence[Detections], got: Sequence[Detections], *,
              score_threshold: float = OPTIONS["score_threshold"], iou: float = 0.95,
              score_margin: float = 0.05) -> dict[str, float]:
    """How far a reduced precision's detections (``got``) are from float32's (``want``), one pair per held image.

    In each image, ``want``'s detections, best first, are matched one by one to the unused
    detection of ``got`` of the same class with the highest box IoU (NaN counted as 0), if that
    is at least ``iou``. A detection is required when its score is at least ``score_threshold +
    score_margin``: nearer the threshold, rounding may legitimately keep or drop it. A required
    detection of ``want`` left unmatched is a miss, one of ``got`` an extra.

    Figures over all images: ``agreement``, 1 - (misses + extras) / (required detections of
    ``want`` + required unmatched ones of ``got``), 1 when there are none; ``max_difference``,
    the largest change of score of a matched pair (0 if none); ``min_iou``, the lowest IoU of a
    matched pair (1 if none); ``compared``, the detections of ``want``; ``misses`` and
    ``extras``. ``ValueError`` unless the lists are of the same length.
    """
    import numpy as np

    if len(want) != len(got):
        raise ValueError(f"{len(got)} results to compare with {len(want)}: give one of each per image")
    required_score = score_threshold + score_margin
    misses = extras = required = compared = 0
    max_difference, min_iou = 0.0, 1.0
    for expected, found in zip(want, got):
        unused = np.ones(len(found), bool)
        compared += len(expected)
        for k in range(len(expected)):  # best first
            candidates = np.flatnonzero(unused & (found.class_ids == expected.class_ids[k]))
            ious = np.nan_to_num(box_iou(expected.boxes[k], found.boxes[candidates]), nan=0.0)
            is_required = bool(expected.scores[k] >= required_score)
            required += is_required
            if not len(ious) or ious.max() < iou:
                misses += is_required
                continue
            best = int(ious.argmax())
            unused[candidates[best]] = False
            max_difference = max(max_difference, abs(float(found.scores[candidates[best]]) - float(expected.scores[k])))
            min_iou = min(min_iou, float(ious[best]))
        left = int((unused & (found.scores >= required_score)).sum())
        extras += left
        required += left
    return {"agreement": 1 - (misses + extras) / max(1, required), "max_difference": max_difference,
            "min_iou": min_iou, "compared": compared, "misses": misses, "extras": extras}
