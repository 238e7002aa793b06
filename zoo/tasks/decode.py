"""Decoding a detector's raw head, declared by its spec's ``decode`` table (:class:`Decode`): the candidates' boxes
and class scores, thresholded and suppressed (:func:`decode_raw`). See :mod:`zoo.tasks.detection` for the outputs
it reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from zoo._fields import check_bool, check_choice, check_int, from_mapping, set_field
from zoo.errors import SpecError, ZooInputError
from zoo.tasks.boxes import batched_nms, nms, to_xyxy

if TYPE_CHECKING:
    import numpy as np

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
NMS_PLACES = ("zoo", "graph", "none")
ACTIVATIONS = ("none", "sigmoid", "softmax")


@dataclass(frozen=True)
class Decode:
    """How a detector's outputs are read: the ``decode`` table of its spec (see the module docstring).

    ``boxes``: ``xyxy``, ``xywh`` (corner and size) or ``cxcywh`` (centre and size);
    ``normalized``: boxes as fractions of the input's width and height; ``activation``:
    applied to raw class scores (``none``, ``sigmoid``, or ``softmax`` over the classes);
    ``objectness``: a column before the class scores that multiplies them (through a
    sigmoid unless ``activation`` is ``none``); ``background``: class 0 is a background class, never reported; ``transpose``:
    candidates on the last axis; ``label_offset``: added to a class id to index the
    spec's labels; ``nms``: ``zoo`` (done here), ``graph`` (done in the model) or ``none``
    (end-to-end models); ``class_agnostic``: suppress across classes;
    ``keypoint_names`` and ``skeleton`` describe keypoints.
    """

    boxes: str = "xyxy"
    normalized: bool = False
    activation: str = "none"
    objectness: bool = False
    background: bool = False
    transpose: bool = False
    label_offset: int = 0
    nms: str = "zoo"
    class_agnostic: bool = False
    keypoint_names: tuple[str, ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        check_choice("boxes", self.boxes, BOX_FORMATS)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("nms", self.nms, NMS_PLACES)
        for name in ("normalized", "objectness", "background", "transpose", "class_agnostic"):
            check_bool(name, getattr(self, name))
        check_int("label_offset", self.label_offset, minimum=-1_000_000)
        set_field(self, "keypoint_names", tuple(self.keypoint_names))
        pairs = []
        for pair in self.skeleton:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise SpecError("skeleton", f"must be pairs of keypoint indices, got {pair!r}")
            pairs.append((check_int("skeleton", pair[0], minimum=0), check_int("skeleton", pair[1], minimum=0)))
        set_field(self, "skeleton", tuple(pairs))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decode:
        return from_mapping(cls, data, "decode")


def check_decode(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Validate a detector spec's ``decode`` table (:class:`SpecError` naming the key)."""
    decode = Decode.from_dict(data)
    return {f.name: getattr(decode, f.name) for f in fields(decode) if f.name in data}


def check_decode_with_extras(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """:func:`check_decode` for instance segmentation and keypoints: their masks and keypoints come from a graph
    that does its own NMS, since decoding raw heads reads only boxes and scores."""
    checked = check_decode(data)
    if Decode.from_dict(data).nms != "graph":
        raise SpecError("nms", "must be 'graph' for masks or keypoints (the zoo decodes only boxes and scores of raw "
                               "heads); give a postprocess function to decode a raw head's masks or keypoints")
    return checked


def _activate(values: np.ndarray, activation: str) -> np.ndarray:
    import numpy as np

    values = np.asarray(values, np.float32)
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-values))
    if activation == "softmax":
        from zoo.tasks.classification import softmax

        return softmax(values)
    return values


def candidates(outputs: Mapping[str, np.ndarray], i: int, decode: Decode) -> tuple[np.ndarray, np.ndarray]:
    """Image ``i``'s raw candidates: boxes ``(N, 4)`` in the decode's format and class scores ``(N, C)``."""
    import numpy as np

    if "predictions" in outputs or len(outputs) == 1:
        rows = np.asarray(outputs.get("predictions", next(iter(outputs.values())))[i], np.float32)
        if decode.transpose:
            rows = rows.T
        boxes, rest = rows[:, :4], rows[:, 4:]
        if decode.objectness:
            objectness = _activate(rest[:, :1], "sigmoid" if decode.activation != "none" else "none")
            if rest.shape[1] == 1:  # a one-class head: the objectness is the score
                return boxes, objectness
            return boxes, _activate(rest[:, 1:], decode.activation) * objectness
        return boxes, _activate(rest, decode.activation)
    if "boxes" in outputs and "scores" in outputs:
        boxes, scores = np.asarray(outputs["boxes"][i], np.float32), np.asarray(outputs["scores"][i], np.float32)
        if decode.transpose:
            boxes, scores = boxes.T, scores.T
        boxes = boxes.reshape(-1, 4)
        return boxes, _activate(_per_candidate(scores, len(boxes)), decode.activation)
    raise ZooInputError(f"a raw detector's outputs are 'predictions', or 'boxes' and 'scores'; got {sorted(outputs)}: "
                        f"map the graph's names with the spec's rename_outputs")


def _per_candidate(scores: np.ndarray, count: int) -> np.ndarray:
    """Class scores of ``count`` candidates as ``(count, classes)``: a 1-D score is one class; zero candidates keep
    the classes' axis (``reshape(0, -1)`` cannot infer it)."""
    if count:
        return scores.reshape(count, -1)
    return scores.reshape(0, scores.shape[-1] if scores.ndim > 1 else 1)


def decode_raw(outputs: Mapping[str, np.ndarray], i: int, decode: Decode, *, score_threshold: float,
               iou_threshold: float, max_detections: int, input_size: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes ``xyxy`` in input pixels, scores and class ids of image ``i``, after thresholding and NMS."""
    import numpy as np

    boxes, scores = candidates(outputs, i, decode)
    first = 1 if decode.background else 0
    classes = scores[:, first:]
    if not classes.shape[1]:
        classes = np.zeros((len(scores), 1), np.float32)
    best_scores = classes.max(axis=1)  # a max over every candidate is cheap; an argmax only over those kept
    kept = np.flatnonzero(best_scores >= score_threshold)
    best = classes[kept].argmax(axis=1) + first
    boxes = to_xyxy(boxes[kept], decode.boxes)
    if decode.normalized:
        boxes = boxes * np.array([input_size[1], input_size[0]] * 2, np.float32)
    best_scores, best = best_scores[kept].astype(np.float32), best.astype(np.int64)
    if decode.nms == "zoo":
        chosen = nms(boxes, best_scores, iou_threshold) if decode.class_agnostic else batched_nms(
            boxes, best_scores, best, iou_threshold)
    else:
        chosen = np.argsort(-best_scores, kind="stable")
    chosen = chosen[:max_detections]
    return boxes[chosen], best_scores[chosen], best[chosen]
