"""Drawing helpers shared by the results' ``draw`` methods (OpenCV, on RGB uint8 copies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX, without importing cv2 at module level


def canvas(image: Any) -> np.ndarray:
    """A writable RGB uint8 copy of ``image`` (a path, bytes, an array or a PIL image)."""
    import numpy as np

    from zoo import images

    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image).copy()
    return np.ascontiguousarray(images.load(image)).copy()


def color(index: int) -> tuple[int, int, int]:
    """A bright colour per index, distinct for neighbours (golden-ratio hues)."""
    import cv2
    import numpy as np

    hue = int((index * 0.618033988749895 % 1.0) * 180)
    rgb = cv2.cvtColor(np.uint8([[[hue, 200, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def scale_for(image: np.ndarray) -> tuple[float, int]:
    """A font scale and line thickness that read well at the image's size."""
    side = min(image.shape[:2])
    return max(0.35, side / 900), max(1, round(side / 400))


def label(image: np.ndarray, text: str, x: int, y: int, rgb: Sequence[int]) -> None:
    """``text`` on a filled box of colour ``rgb`` whose bottom-left corner is at ``(x, y)``, kept inside the image."""
    import cv2

    font_scale, thickness = scale_for(image)
    (w, h), base = cv2.getTextSize(text, FONT, font_scale, thickness)
    x = int(min(max(x, 0), max(image.shape[1] - w - 2, 0)))
    y = int(min(max(y, h + base + 2), image.shape[0] - 1))
    cv2.rectangle(image, (x, y - h - base - 2), (x + w + 2, y), tuple(int(c) for c in rgb), -1)
    ink = (0, 0, 0) if sum(rgb) > 382 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, y - base - 1), FONT, font_scale, ink, thickness, cv2.LINE_AA)


def blend(image: np.ndarray, mask: np.ndarray, rgb: Sequence[int], alpha: float = 0.5) -> None:
    """Tint the pixels where ``mask`` is true with ``rgb``, ``alpha`` opaque."""
    import numpy as np

    if mask.any():
        tinted = image[mask].astype(np.float32) * (1 - alpha) + np.asarray(rgb, np.float32) * alpha
        image[mask] = tinted.round().astype(np.uint8)
