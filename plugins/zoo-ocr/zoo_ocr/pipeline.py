"""``ppocr``: detect text lines, cut each out, turn those upside down right way up, read them; RapidOCR's steps.

1. An image whose longer side is over ``max_side_len`` is shrunk, one whose shorter side is under
   ``min_side_len`` enlarged (sides rounded to multiples of 32); a short (``min_height``) or very wide
   (``width_height_ratio``) one gets black bands above and below, so that the detector sees text of a usable size.
2. ``ppocr-det`` finds four-point boxes; they are sorted top to bottom, then left to right.
3. Each box is cut out by a perspective warp (bicubic, edges replicated) and turned a quarter anticlockwise when it
   is at least 1.5 times as tall as it is wide.
4. ``ppocr-cls`` says whether each line is upside down; those it is sure of (``cls_threshold``) are turned 180 degrees.
5. ``ppocr-rec`` reads the lines in batches of similar aspect ratio; lines read with a score under
   ``text_score`` are dropped. The boxes are mapped back to the image's pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zoo_ocr import rec
from zoo_ocr.result import TextLines, lines_from

if TYPE_CHECKING:
    import numpy as np

    from zoo import Model

CLS_LABELS = ("0", "180")


def run(models: Mapping[str, Model], image: np.ndarray, text_score: float = 0.5, use_cls: bool = True,
        cls_threshold: float = 0.9, cls_batch_size: int = 6, rec_batch_size: int = 6, threshold: float = 0.3,
        box_threshold: float = 0.5, unclip_ratio: float = 1.6, max_candidates: int = 1000, dilation: bool = True,
        score_mode: str = "fast", max_side_len: int = 2000, min_side_len: int = 30, min_height: int = 30,
        width_height_ratio: float = 8.0) -> TextLines:
    """The text lines of ``image`` (RGB uint8) in reading order; the defaults are RapidOCR's.

    ``threshold``, ``box_threshold``, ``unclip_ratio``, ``max_candidates``, ``dilation`` and ``score_mode`` go to
    the detector; ``width_height_ratio`` 0 or less never adds the bands.
    """
    prepared, ratio, top = prepare(image, max_side_len, min_side_len, min_height, width_height_ratio)
    found = models["ppocr-det"].predict(prepared, threshold=threshold, box_threshold=box_threshold,
                                        unclip_ratio=unclip_ratio, max_candidates=max_candidates, dilation=dilation,
                                        score_mode=score_mode)
    corners = found.polygons
    boxes = [corners[i] for i in reading_order(corners)]
    crops = [crop(prepared, box) for box in boxes]
    if use_cls and crops:
        crops = turn_upside_down(models["ppocr-cls"], crops, cls_threshold, cls_batch_size)
    read = recognise(models["ppocr-rec"], crops, rec_batch_size)
    kept = [i for i, (_, score) in enumerate(read) if score >= text_score]
    polygons = [to_image(boxes[i], ratio, top, image.shape[:2]) for i in kept]
    return lines_from(polygons, [read[i][1] for i in kept], [read[i][0] for i in kept], image.shape[:2])


def prepare(image: np.ndarray, max_side_len: int, min_side_len: int, min_height: int,
            width_height_ratio: float) -> tuple[np.ndarray, tuple[float, float], int]:
    """The image the detector sees and the crops are cut from, the factors ``(y, x)`` from it back to ``image``, and
    the height of the band added above it (step 1)."""
    import cv2

    height, width = image.shape[:2]
    prepared, ratio = image, (1.0, 1.0)
    if max(height, width) > max_side_len:
        prepared = _resize(prepared, max_side_len / max(height, width))
    if min(prepared.shape[:2]) < min_side_len:
        prepared = _resize(prepared, min_side_len / min(prepared.shape[:2]))
    if prepared is not image:
        ratio = (height / prepared.shape[0], width / prepared.shape[1])
    h, w = prepared.shape[:2]
    if h <= min_height or (width_height_ratio > 0 and w / h > width_height_ratio):
        band = int(abs(max(int(w / width_height_ratio) if width_height_ratio > 0 else 0, min_height) * 2 - h) / 2)
        return cv2.copyMakeBorder(prepared, band, band, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0)), ratio, band
    return prepared, ratio, 0


def to_image(box: np.ndarray, ratio: tuple[float, float], top: int, size: tuple[int, int]) -> np.ndarray:
    """A box's corners in the prepared image mapped back to the image of ``size``: the band above taken off, scaled
    by ``ratio`` ``(y, x)`` in float32 and kept inside the image, as RapidOCR maps them."""
    import numpy as np

    x = np.clip(box[:, 0] * np.float32(ratio[1]), 0, size[1])
    y = np.clip((box[:, 1] - top) * np.float32(ratio[0]), 0, size[0])
    return np.stack([x, y], 1)


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` scaled by ``factor``, each side truncated then rounded to a multiple of 32, at least 32 (bilinear;
    RapidOCR fails on a side that rounds to 0, such as a 3000x25 banner's height)."""
    import cv2

    height, width = image.shape[:2]
    size = [max(32, int(round(int(side * factor) / 32) * 32)) for side in (height, width)]
    return cv2.resize(image, (size[1], size[0]))


def reading_order(boxes: Sequence[np.ndarray]) -> list[int]:
    """The boxes' indices top to bottom by their first corner, then left to right among those within 10 pixels of
    height of the one before (RapidOCR's order: a sort, then a pass of swaps)."""
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][0][1], boxes[i][0][0]))
    for i in range(len(order) - 1):
        for j in range(i, -1, -1):
            a, b = boxes[order[j]][0], boxes[order[j + 1]][0]
            if abs(b[1] - a[1]) < 10 and b[0] < a[0]:
                order[j], order[j + 1] = order[j + 1], order[j]
            else:
                break
    return order


def crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The quadrilateral ``box`` of ``image`` warped to an upright rectangle (step 3)."""
    import cv2
    import numpy as np

    width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    warped = cv2.warpPerspective(image, cv2.getPerspectiveTransform(box, target), (width, height),
                                 borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.rot90(warped) if warped.shape[0] * 1.0 / warped.shape[1] >= 1.5 else warped


def turn_upside_down(model: Model, crops: list[np.ndarray], threshold: float, batch_size: int) -> list[np.ndarray]:
    """The crops, those the direction classifier calls ``180`` with a probability over ``threshold`` turned."""
    import cv2

    crops = list(crops)
    for batch in rec.by_aspect_ratio(crops, batch_size):
        probabilities = _only_output(model.run(rec.line_batch([crops[i] for i in batch], rec.CLS_WIDTH)))
        for i, row in zip(batch, probabilities):
            best = int(row.argmax())
            if CLS_LABELS[best] == "180" and row[best] > threshold:
                crops[i] = cv2.rotate(crops[i], cv2.ROTATE_180)
    return crops


def recognise(model: Model, crops: list[np.ndarray], batch_size: int) -> list[tuple[str, float]]:
    """Each crop's text and score, read in batches of similar aspect ratio (step 5).

    The batches are made here, not by ``model.transform``: RapidOCR squeezes a batch's widest line into a width
    truncated to whole pixels, where the zoo's ``height`` resize rounds it up (scores then differ by up to 0.02).
    """
    read: list[tuple[str, float]] = [("", 0.0)] * len(crops)
    for batch in rec.by_aspect_ratio(crops, batch_size):
        lines = [crops[i] for i in batch]
        probabilities = _only_output(model.run(rec.line_batch(lines, rec.batch_width(lines))))
        for i, found in zip(batch, rec.ctc_decode(probabilities, model.spec.labels)):
            read[i] = found
    return read


def _only_output(outputs: Mapping[str, Any]) -> np.ndarray:
    (value,) = outputs.values()
    return value
