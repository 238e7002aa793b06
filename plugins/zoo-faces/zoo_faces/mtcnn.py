"""MTCNN's cascade in numpy around the three ONNX networks: the algorithm of ``facenet_pytorch.MTCNN.detect``.

Written from the paper (Zhang et al., 2016) and checked step by step against facenet-pytorch 2.6.0
(``models/utils/detect_face.py``), whose arithmetic it reproduces in ``float32`` so that the same
boxes come out:

1. **Pyramid**: scales ``12 / min_face_size * factor**k`` while the shorter side, so scaled, is
   at least 12 pixels; the image is resampled to ``int(side * scale + 1)`` per side.
2. **Proposals** (PNet on each scale): a window per output cell whose face probability is at least
   ``thresholds[0]``, box ``floor((2 * cell + 1) / scale)`` to ``floor((2 * cell + 12) / scale)``;
   non-maximum suppression (IoU 0.5) per scale, then across scales (IoU 0.7); each box moved by its
   offsets (times its width and height) and made square around its centre.
3. **Refinement** (RNet on 24x24 crops, ONet on 48x48 crops): the crop is the box truncated to whole
   pixels and clipped to the image; a box is kept if its probability exceeds the stage's threshold,
   then suppressed (IoU 0.7, for ONet over the smaller box's area) and moved by its offsets
   (times its width and height plus one); RNet's boxes are made square again.
4. **Landmarks** (ONet): five points, as fractions of the box before ONet's offsets move it.

Boxes and landmarks are facenet-pytorch's numbers as it reports them (its boxes count pixels from 1,
a heritage of the original MATLAB code; its landmarks from 0).

Resampling is torch's ``interpolate(mode="area")``, which is adaptive average pooling: output cell
``i`` of ``n`` over ``N`` input pixels averages pixels ``floor(i * N / n)`` to ``ceil((i + 1) * N / n)``
(OpenCV's ``INTER_AREA`` weighs fractions of pixels instead, and differs for factors that are not
whole numbers). It is computed from one summed-area table of the image, reused for every scale and
crop, and divided as torch divides (the sum by the window's height, then by its width, in float32),
which makes it the same to the bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import cv2
import numpy as np

#: PNet's window and stride in the image it runs on.
CELL, STRIDE = 12, 2
#: Non-maximum suppression thresholds: per scale, across scales, after RNet, after ONet (over the smaller box).
NMS_SCALE, NMS_ALL, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7
#: The networks' input normalisation: ``(pixel - 127.5) * 0.0078125``.
MEAN, SCALE = np.float32(127.5), np.float32(0.0078125)
#: The largest image (in pixels) whose summed-area table is kept in int32 (exact: 255 per pixel), else float64.
INT32_PIXELS = (2**31 - 1) // 255
#: The sub-models, in the cascade's order.
PNET, RNET, ONET = "mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet"

#: A network: an input batch in, its outputs by name out (``zoo.Model.run``).
Network = Callable[[np.ndarray], Mapping[str, np.ndarray]]


class Faces(NamedTuple):
    """What the cascade found: ``boxes`` ``(N, 4)`` and ``scores`` ``(N,)``, ``landmarks`` ``(N, 5, 2)``, float32."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def none(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


# -- resampling -------------------------------------------------------------------------------------


def _cells(length: int | np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive pooling's windows: for each of ``count`` outputs over ``length`` inputs (a number, or one per row),
    the first input and one past the last."""
    i = np.arange(count)
    if np.ndim(length):
        length = np.asarray(length)[:, None]
    return (i * length) // count, -(-(i + 1) * length // count)


class AreaSampler:
    """torch's ``interpolate(mode="area")`` of any window of one RGB ``uint8`` image, normalised for the networks,
    from a summed-area table per channel (``(3, H + 1, W + 1)``, OpenCV's ``integral``: exact in int32 up to
    8 megapixels, in float64 beyond)."""

    def __init__(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        depth = cv2.CV_32S if height * width <= INT32_PIXELS else cv2.CV_64F
        self.table = np.stack([cv2.integral(np.ascontiguousarray(image[..., c]), sdepth=depth) for c in range(3)])

    def image(self, height: int, width: int) -> np.ndarray:
        """The whole image resampled to ``height x width``: ``(1, 3, height, width)`` float32."""
        rows0, rows1 = _cells(self.table.shape[1] - 1, height)
        cols0, cols1 = _cells(self.table.shape[2] - 1, width)
        band = np.take(self.table, rows1, axis=1) - np.take(self.table, rows0, axis=1)
        sums = (np.take(band, cols1, axis=2) - np.take(band, cols0, axis=2)).astype(np.float32)
        heights, widths = (rows1 - rows0).astype(np.float32), (cols1 - cols0).astype(np.float32)
        return _normalised(sums / heights[:, None] / widths)[None]

    def crops(self, windows: np.ndarray, size: int) -> np.ndarray:
        """Each window ``(top, bottom, left, right)`` (pixel rows and columns, ends excluded) resampled to
        ``size x size``: ``(N, 3, size, size)`` float32."""
        top, bottom, left, right = windows.T
        rows0, rows1 = (rows[:, :, None] + top[:, None, None] for rows in _cells(bottom - top, size))
        cols0, cols1 = (cols[:, None, :] + left[:, None, None] for cols in _cells(right - left, size))
        t = self.table
        sums = (t[:, rows1, cols1] - t[:, rows0, cols1] - t[:, rows1, cols0] + t[:, rows0, cols0]).astype(np.float32)
        heights, widths = (rows1 - rows0).astype(np.float32), (cols1 - cols0).astype(np.float32)
        return _normalised((sums / heights / widths).transpose(1, 0, 2, 3))


def _normalised(pixels: np.ndarray) -> np.ndarray:
    """Pixel values as the networks take them, in float32 as facenet-pytorch computes them."""
    return np.ascontiguousarray((pixels - MEAN) * SCALE)


# -- boxes ------------------------------------------------------------------------------------------


def pyramid(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """The scales PNet runs at: faces of ``min_face_size`` pixels become 12, then smaller by ``factor`` each step."""
    scale = 12.0 / min_face_size
    shorter = min(height, width) * scale
    scales = []
    while shorter >= 12:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def proposals(probabilities: np.ndarray, offsets: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """PNet's windows of one scale at or above ``threshold``: ``(N, 9)`` float32 rows of the box in the image
    (``x1, y1, x2, y2``), the score and the four offsets; ``probabilities`` ``(h, w)``, ``offsets`` ``(4, h, w)``."""
    rows, cols = np.nonzero(probabilities >= np.float32(threshold))
    cells = np.stack([cols, rows], axis=1).astype(np.float32)
    scale = np.float32(scale)
    first = np.floor((STRIDE * cells + 1) / scale)
    last = np.floor((STRIDE * cells + CELL) / scale)
    return np.concatenate([first, last, probabilities[rows, cols, None], offsets[:, rows, cols].T], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, over: str = "union") -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first.

    ``over="union"``: torchvision's ``nms`` (areas ``(x2 - x1) * (y2 - y1)``, ties in score kept in
    their order, a box suppressed when its IoU exceeds ``threshold``); ``"min"``: facenet-pytorch's
    own for ONet (areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``, overlap over the smaller area, suppressed
    when it exceeds ``threshold``, ties in score ordered by numpy's ``argsort``).
    """
    x1, y1, x2, y2 = boxes[:, :4].T
    plus = np.float32(1 if over == "min" else 0)
    areas = (x2 - x1 + plus) * (y2 - y1 + plus)
    order = np.argsort(-scores, kind="stable") if over == "union" else np.argsort(scores)[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        width = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + plus)
        height = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + plus)
        inter = width * height
        overlap = inter / (np.minimum(areas[i], areas[rest]) if over == "min" else areas[i] + areas[rest] - inter)
        order = rest[overlap <= np.float32(threshold)]
    return np.array(keep, np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
    """The boxes made square around their centres, side the longer side (facenet-pytorch's ``rerec``)."""
    out = boxes.copy()
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    out[:, 0] = boxes[:, 0] + width * np.float32(0.5) - side * np.float32(0.5)
    out[:, 1] = boxes[:, 1] + height * np.float32(0.5) - side * np.float32(0.5)
    out[:, 2:4] = out[:, :2] + side[:, None]
    return out


def moved(boxes: np.ndarray, offsets: np.ndarray, plus: float = 1.0) -> np.ndarray:
    """The boxes' corners moved by ``offsets`` times their width and height (plus ``plus``: 0 after PNet, 1 after
    RNet and ONet, as facenet-pytorch measures them)."""
    out = boxes.copy()
    size = boxes[:, 2:4] - boxes[:, 0:2] + np.float32(plus)
    out[:, :4] = boxes[:, :4] + offsets[:, :4] * np.concatenate([size, size], axis=1)
    return out


def windows(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The pixels each box crops, ``(top, bottom, left, right)`` (ends excluded): its corners truncated to whole
    pixels, counted from 1, and clipped to the image (facenet-pytorch's ``pad``)."""
    x1, y1, x2, y2 = np.trunc(boxes[:, :4]).astype(np.int32).T
    return np.stack([np.maximum(y1, 1) - 1, np.minimum(y2, height), np.maximum(x1, 1) - 1, np.minimum(x2, width)], 1)


# -- the cascade ------------------------------------------------------------------------------------


def detect(pnet: Network, rnet: Network, onet: Network, image: np.ndarray, *, min_face_size: float = 20,
           thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709) -> Faces:
    """The faces in an RGB ``uint8`` image, as ``facenet_pytorch.MTCNN(min_face_size, thresholds, factor)``'s
    ``detect`` finds them (in the order its last suppression keeps them)."""
    height, width = image.shape[:2]
    sampler = AreaSampler(image)
    boxes = propose(pnet, sampler, pyramid(height, width, min_face_size, factor), thresholds[0])
    boxes = refine(rnet, sampler, boxes, thresholds[1])
    return output(onet, sampler, boxes, thresholds[2])


def propose(pnet: Network, sampler: AreaSampler, scales: Sequence[float], threshold: float) -> np.ndarray:
    """Stage 1: PNet's square candidates ``(N, 5)`` (box, score) over every scale."""
    height, width = sampler.table.shape[1] - 1, sampler.table.shape[2] - 1
    found = []
    for scale in scales:
        out = pnet(sampler.image(int(height * scale + 1), int(width * scale + 1)))
        found.append(one_scale(out["probabilities"][0, 1], out["offsets"][0], scale, threshold))
    return merged(found)


def one_scale(probabilities: np.ndarray, offsets: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """PNet's candidates at one scale (see :func:`proposals`), suppressed among themselves."""
    candidates = proposals(probabilities, offsets, scale, threshold)
    return candidates[nms(candidates, candidates[:, 4], NMS_SCALE)]


def merged(found: Sequence[np.ndarray]) -> np.ndarray:
    """The candidates of every scale suppressed together, moved by their offsets and squared: ``(N, 5)``."""
    boxes = np.concatenate(found) if found else np.zeros((0, 9), np.float32)
    boxes = boxes[nms(boxes, boxes[:, 4], NMS_ALL)]
    return square(moved(boxes[:, :5], boxes[:, 5:], plus=0))


def _crop_and_run(net: Network, sampler: AreaSampler, boxes: np.ndarray, size: int
                  ) -> tuple[np.ndarray, Mapping[str, np.ndarray] | None]:
    """The boxes that crop at least a pixel, and the network's outputs on their crops (None if there are none)."""
    height, width = sampler.table.shape[1] - 1, sampler.table.shape[2] - 1
    cropped = windows(boxes, height, width)
    some = (cropped[:, 1] > cropped[:, 0]) & (cropped[:, 3] > cropped[:, 2])
    return boxes[some], net(sampler.crops(cropped[some], size)) if some.any() else None


def refine(rnet: Network, sampler: AreaSampler, boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Stage 2: the candidates RNet keeps, moved and made square, ``(N, 5)``."""
    boxes, out = _crop_and_run(rnet, sampler, boxes, 24)
    if out is None:
        return boxes
    score = out["probabilities"][:, 1]
    kept = score > np.float32(threshold)
    boxes = np.concatenate([boxes[kept, :4], score[kept, None]], axis=1)
    chosen = nms(boxes, boxes[:, 4], NMS_RNET)
    return square(moved(boxes[chosen], out["offsets"][kept][chosen]))


def output(onet: Network, sampler: AreaSampler, boxes: np.ndarray, threshold: float) -> Faces:
    """Stage 3: the faces ONet keeps, with their landmarks."""
    boxes, out = _crop_and_run(onet, sampler, boxes, 48)
    if out is None:
        return Faces.none()
    score = out["probabilities"][:, 1]
    kept = score > np.float32(threshold)
    boxes = np.concatenate([boxes[kept, :4], score[kept, None]], axis=1)
    points = out["landmarks"][kept].reshape(-1, 2, 5).transpose(0, 2, 1)  # (N, 5, [x, y])
    size = boxes[:, 2:4] - boxes[:, 0:2] + np.float32(1)
    landmarks = size[:, None, :] * points + boxes[:, None, 0:2] - np.float32(1)
    boxes = moved(boxes, out["offsets"][kept])
    chosen = nms(boxes, boxes[:, 4], NMS_ONET, over="min")
    return Faces(boxes[chosen, :4], boxes[chosen, 4], landmarks[chosen])
