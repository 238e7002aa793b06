"""Cut-out lines of text, classified by direction and read: their input batches (a fixed height, the width from the
aspect ratio, padded on the right) and the CTC decoding."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from zoo_ocr.result import TextLines, lines_from

if TYPE_CHECKING:
    import numpy as np

    from zoo.plugin import Geometry, ModelSpec

#: The height both networks read lines at, and the classifier's width (its input is 48x192).
HEIGHT = 48
CLS_WIDTH = 192
#: The recogniser's narrowest batch: lines are padded to at least this width (RapidOCR's ``rec_img_shape``).
REC_MIN_WIDTH = 320


def line_batch(crops: Sequence[np.ndarray], width: int, height: int = HEIGHT) -> np.ndarray:
    """The ``(N, 3, height, width)`` input of RGB ``crops``: each resized (bilinear) to ``height`` and a width from
    its aspect ratio, rounded up and at most ``width``, in BGR order scaled to ``[-1, 1]``, zeros on its right."""
    import cv2
    import numpy as np

    batch = np.zeros((len(crops), 3, height, width), np.float32)
    for i, crop in enumerate(crops):
        h, w = crop.shape[:2]
        fitted = min(math.ceil(height * (w / h)), width)
        pixels = cv2.resize(crop, (fitted, height))[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255
        pixels -= 0.5
        pixels /= 0.5
        batch[i, :, :, :fitted] = pixels
    return batch


def batch_width(crops: Sequence[np.ndarray], height: int = HEIGHT) -> int:
    """The width of a recogniser batch, as RapidOCR sets it: its widest line's at ``height``, truncated (so that
    line is squeezed by up to a pixel), and at least :data:`REC_MIN_WIDTH`."""
    ratio = max([REC_MIN_WIDTH / height] + [crop.shape[1] * 1.0 / crop.shape[0] for crop in crops])
    return int(height * ratio)


def by_aspect_ratio(crops: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    """The crops' indices, narrowest first (as RapidOCR sorts them), in batches of ``batch_size``."""
    import numpy as np

    order = np.argsort(np.array([crop.shape[1] / float(crop.shape[0]) for crop in crops])).tolist()
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def ctc_decode(probabilities: np.ndarray, characters: Sequence[str]) -> list[tuple[str, float]]:
    """Each row's text and score: the most probable class per step, repeats merged, blanks (class 0) dropped;
    ``characters`` are the classes from 1 on. The score is the mean probability of the characters kept (0 if none)."""
    import numpy as np

    classes = ("", *characters, " ")  # PaddleOCR's CTC classes: blank, the dictionary, a space
    best, probability = probabilities.argmax(axis=2), probabilities.max(axis=2)
    decoded = []
    for indices, probs in zip(best, probability):
        keep = np.ones(len(indices), bool)
        keep[1:] = indices[1:] != indices[:-1]
        keep &= indices != 0
        kept = probs[keep].astype(np.float64)
        decoded.append(("".join(classes[i] for i in indices[keep]), float(np.mean(kept)) if len(kept) else 0.0))
    return decoded


def postprocess(spec: ModelSpec, outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry]) -> list[TextLines]:
    """Each image read as one line of text: its polygon the whole image, its text and score from the CTC decoding
    (the characters are the spec's labels, which the zoo reads from the ONNX file's ``metadata_props``)."""
    found = ctc_decode(outputs["probabilities"], spec.labels)
    return [lines_from([_frame(g.original)], [score], [text], g.original) for (text, score), g in zip(found, geometries)]


def _frame(size: tuple[int, int]) -> list[tuple[float, float]]:
    height, width = size
    return [(0.0, 0.0), (float(width), 0.0), (float(width), float(height)), (0.0, float(height))]
