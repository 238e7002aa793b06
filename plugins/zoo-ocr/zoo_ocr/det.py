"""DB (Differentiable Binarization) text detection: from a probability map to four-point text boxes.

The steps, as PaddleOCR and RapidOCR take them: threshold the map (and dilate it by 2x2), find the contours,
fit each a minimum-area rectangle, score it by the mean probability inside, grow it by ``area * unclip_ratio /
perimeter`` with rounded corners (as Clipper offsets a polygon, which RapidOCR uses through pyclipper: the
integer arithmetic is reproduced here, so neither pyclipper nor shapely is needed), fit the grown shape a
rectangle again, and scale it to the image's pixels (whole pixels, as RapidOCR rounds them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import zoo
from zoo_ocr.result import TextLines, lines_from

if TYPE_CHECKING:
    import numpy as np

    from zoo.plugin import Geometry

#: A box whose shorter side is under this many pixels of the map is dropped (under this plus 2 once grown).
MIN_SIZE = 3
#: Clipper's default arc tolerance: how far a rounded corner's chords may fall inside the arc, in pixels.
ARC_TOLERANCE = 0.25
SCORE_MODES = ("fast", "slow")


def postprocess(outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], threshold: float = 0.3,
                box_threshold: float = 0.5, unclip_ratio: float = 1.6, max_candidates: int = 1000,
                dilation: bool = True, score_mode: str = "fast") -> list[TextLines]:
    """Text boxes for each image of one run: ``outputs["maps"]`` holds the ``(N, 1, H, W)`` probability maps.

    ``threshold`` binarizes the map, ``box_threshold`` is the least mean probability of a box kept,
    ``unclip_ratio`` how much a box grows, ``max_candidates`` the most contours looked at, ``dilation`` whether
    the binary map is dilated, ``score_mode`` ``fast`` (mean inside the rectangle) or ``slow`` (inside the
    contour). The defaults are RapidOCR's.
    """
    if score_mode not in SCORE_MODES:
        raise zoo.UsageError(f"score_mode must be one of {', '.join(SCORE_MODES)}, got {score_mode!r}")
    maps = outputs["maps"]
    return [detect(maps[i, 0], geometry, threshold=threshold, box_threshold=box_threshold, unclip_ratio=unclip_ratio,
                   max_candidates=max_candidates, dilation=dilation, score_mode=score_mode)
            for i, geometry in enumerate(geometries)]


def detect(probability: np.ndarray, geometry: Geometry, *, threshold: float, box_threshold: float,
           unclip_ratio: float, max_candidates: int, dilation: bool, score_mode: str) -> TextLines:
    """The text boxes of one probability map, clockwise from the top-left corner, in the original image's pixels."""
    import cv2
    import numpy as np

    bitmap = (probability > threshold).astype(np.uint8)
    if dilation:
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    height, width = geometry.original
    # the resized image's size: RapidOCR scales by it, in float32 (an image padded in a batch keeps its own)
    resized = (round(geometry.scale[0] * height), round(geometry.scale[1] * width))
    boxes, scores = [], []
    for contour in contours[:max_candidates]:
        points, side = mini_box(contour)
        if side < MIN_SIZE:
            continue
        score = box_score(probability, points if score_mode == "fast" else contour.reshape(-1, 2))
        if box_threshold > score:
            continue
        box, side = mini_box(unclip(points, unclip_ratio))
        if side < MIN_SIZE + 2:
            continue
        box[:, 0] = np.clip(np.round((box[:, 0] - np.float32(geometry.offset[1])) / resized[1] * width), 0, width)
        box[:, 1] = np.clip(np.round((box[:, 1] - np.float32(geometry.offset[0])) / resized[0] * height), 0, height)
        box = clockwise(box.astype(np.int32))
        box[:, 0] = np.minimum(box[:, 0], width - 1)  # RapidOCR keeps corners inside the image's last pixel
        box[:, 1] = np.minimum(box[:, 1], height - 1)
        if int(np.linalg.norm(box[0] - box[1])) <= MIN_SIZE or int(np.linalg.norm(box[0] - box[3])) <= MIN_SIZE:
            continue
        boxes.append(box)
        scores.append(score)
    return lines_from(boxes, scores, None, (height, width))


def mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """The minimum-area rectangle around ``contour``: its corners (float32, from the left: top-left, top-right,
    bottom-right, bottom-left as PaddleOCR orders them) and its shorter side."""
    import cv2
    import numpy as np

    rectangle = cv2.minAreaRect(contour)
    points = cv2.boxPoints(rectangle)
    points = points[np.argsort(points[:, 0], kind="stable")]
    left = (0, 1) if points[1, 1] > points[0, 1] else (1, 0)  # (top, bottom) of the two leftmost
    right = (2, 3) if points[3, 1] > points[2, 1] else (3, 2)
    return points[[left[0], right[0], right[1], left[1]]], min(rectangle[1])


def box_score(probability: np.ndarray, polygon: np.ndarray) -> float:
    """The mean probability inside ``polygon`` (corners or a contour, in map pixels), over its bounding box's
    pixels that the filled polygon covers."""
    import cv2
    import numpy as np

    h, w = probability.shape
    xmin, ymin = (int(np.clip(np.floor(polygon[:, k].min()), 0, n - 1)) for k, n in ((0, w), (1, h)))
    xmax, ymax = (int(np.clip(np.ceil(polygon[:, k].max()), 0, n - 1)) for k, n in ((0, w), (1, h)))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), np.uint8)
    shifted = polygon - np.array([xmin, ymin], polygon.dtype)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(probability[ymin:ymax + 1, xmin:xmax + 1], mask)[0])


def clockwise(box: np.ndarray) -> np.ndarray:
    """The four corners ordered top-left, top-right, bottom-right, bottom-left (by x, then y in each half)."""
    import numpy as np

    by_x = box[np.argsort(box[:, 0])]
    left, right = by_x[:2][np.argsort(by_x[:2, 1])], by_x[2:][np.argsort(by_x[2:, 1])]
    return np.array([left[0], right[0], right[1], left[1]], np.float32)


def unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    """The corners of ``box`` (a convex quadrilateral) grown outwards by ``area * ratio / perimeter`` with rounded
    corners: the vertices, as int32 ``(n, 1, 2)``, that Clipper's ``ClipperOffset`` (round joins, closed polygon,
    default arc tolerance) gives, its input truncated to whole pixels as pyclipper truncates it."""
    import numpy as np

    corners = box.astype(np.float64)
    x, y = corners[:, 0], corners[:, 1]
    area = abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))) / 2
    perimeter = float(np.hypot(*(np.roll(corners, -1, 0) - corners).T).sum())
    delta = area * ratio / perimeter
    path = _clipper_path(box)
    if len(path) < 3 or delta <= 0:
        return path.reshape(-1, 1, 2).astype(np.int32)
    return np.array(_offset(path, delta), np.int32).reshape(-1, 1, 2)


def _clipper_path(box: np.ndarray) -> np.ndarray:
    """The polygon as Clipper keeps it: coordinates truncated to integers, repeated points dropped, and turned
    counter-clockwise (positive area) so that outward is on the right of each edge."""
    import numpy as np

    points = np.trunc(box.astype(np.float64)).astype(np.int64)
    kept = [points[0]]
    for point in points[1:]:
        if (point != kept[-1]).any():
            kept.append(point)
    while len(kept) > 1 and (kept[-1] == kept[0]).all():
        kept.pop()
    path = np.array(kept)
    xs, ys = path[:, 0].astype(np.float64), path[:, 1].astype(np.float64)
    area = -0.5 * float(np.sum((np.roll(xs, 1) + xs) * (np.roll(ys, 1) - ys)))
    return path if area >= 0 else path[::-1]


def _offset(path: np.ndarray, delta: float) -> list[tuple[int, int]]:
    """Clipper's offset of a closed integer polygon by ``delta`` > 0 with round joins: each vertex contributes
    the points of an arc from the previous edge's normal to the next one's, in steps set by the arc tolerance."""
    tolerance = min(ARC_TOLERANCE, delta * ARC_TOLERANCE)
    steps = min(math.pi / math.acos(1 - tolerance / delta), delta * math.pi)
    sin, cos = math.sin(2 * math.pi / steps), math.cos(2 * math.pi / steps)
    steps_per_radian = steps / (2 * math.pi)
    n = len(path)
    normals = [_unit_normal(path[j], path[(j + 1) % n]) for j in range(n)]
    out: list[tuple[int, int]] = []
    k = n - 1
    for j in range(n):
        px, py = float(path[j][0]), float(path[j][1])
        (kx, ky), (jx, jy) = normals[k], normals[j]
        sin_a = kx * jy - jx * ky
        if abs(sin_a * delta) < 1.0 and kx * jx + ky * jy > 0:  # nearly straight on: one point (k stays, as in Clipper)
            out.append((_round(px + kx * delta), _round(py + ky * delta)))
            continue
        sin_a = max(-1.0, min(1.0, sin_a))
        if sin_a * delta < 0:  # a concave corner
            out += [(_round(px + kx * delta), _round(py + ky * delta)), (int(px), int(py)),
                    (_round(px + jx * delta), _round(py + jy * delta))]
        else:
            angle = math.atan2(sin_a, kx * jx + ky * jy)
            x, y = kx, ky
            for _ in range(max(_round(steps_per_radian * abs(angle)), 1)):
                out.append((_round(px + x * delta), _round(py + y * delta)))
                x, y = x * cos - sin * y, x * sin + y * cos
            out.append((_round(px + jx * delta), _round(py + jy * delta)))
        k = j
    return out


def _unit_normal(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The unit normal on the right of the edge from ``a`` to ``b`` (zero for a point)."""
    dx, dy = float(b[0] - a[0]), float(b[1] - a[1])
    if dx == 0 and dy == 0:
        return 0.0, 0.0
    f = 1.0 / math.sqrt(dx * dx + dy * dy)
    return dy * f, -dx * f


def _round(value: float) -> int:
    """Clipper's rounding: half away from zero."""
    return int(value - 0.5) if value < 0 else int(value + 0.5)
