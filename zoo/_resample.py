"""Antialiased resizing that reproduces Pillow's ``Image.resize`` (what torchvision trains with).

Pillow resamples each axis with a filter stretched by the scale factor when shrinking
(triangle for bilinear, Keys cubic with a = -0.5 for bicubic), evaluated at the centres of
the source pixels and normalised to sum to one; the first pass's result is rounded and
clipped to 8 bits (which matters for bicubic overshoot). Pillow 13 runs the horizontal pass
first, except where the vertical one removes more than twice as many pixels a line
(:func:`vertical_first`; python-pillow/Pillow#9549): a squashed portrait photo, an image
taller than 2:1. This module computes the same weights and applies them in the same order as
banded float64 matrix products (BLAS), for only the output rows and columns that the centre
crop keeps.

For large reductions (a 12 MP photo to 256 pixels) the image is first averaged over
``k x k`` blocks with OpenCV's area resize, ``k`` at most a fifth of the scale factor, and
the filter is then evaluated at the block centres: the effective kernel widens by a box
of ``k`` pixels, which moves values by a fraction of a grey level (the tests measure it)
and cuts the work by ``k * k``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import numpy as np

#: Block of output rows computed by one matrix product.
BLOCK = 8
#: Pillow's fixed-point unit for 8-bit images (PRECISION_BITS = 22).
ONE = float(1 << 22)
#: Half of the weights' quantum: see _apply.
HALF_STEP = 0.5 / ONE
#: The pre-reduction factor is at most the scale factor divided by this.
PREREDUCE_RATIO = 5


def _triangle(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


FILTERS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "bilinear": (_triangle, 1.0),
    "bicubic": (_cubic, 2.0),
}


class Band(NamedTuple):
    """A banded resampling matrix restricted to the source samples that some output reads."""

    matrix: np.ndarray  #: ``(outputs, last - first)`` weights, each a multiple of 2**-22
    first: int  #: the first source sample read
    last: int  #: one past the last source sample read
    blocks: tuple[tuple[int, int, int], ...]  #: (first output row, lo, hi): the columns that block reads


@lru_cache(maxsize=64)
def weights(in_size: int, out_size: int, lo: int, hi: int, kernel: str, step: int = 1) -> Band:
    """The weights mapping source samples to outputs ``lo..hi``, as Pillow quantises them.

    Source sample ``i`` sits at ``step * (i + 0.5)`` in the original pixel coordinates;
    output ``j`` is centred at ``(j + 0.5) * in_size / out_size``, as in Pillow.
    """
    function, support = FILTERS[kernel]
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    centres = (np.arange(lo, hi, dtype=np.float64) + 0.5) * scale
    positions = (np.arange(in_size // step, dtype=np.float64) + 0.5) * step
    matrix = function((positions[None, :] - centres[:, None]) / stretch)
    matrix[np.abs(positions[None, :] - centres[:, None]) >= support * stretch] = 0.0
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = matrix / np.where(totals == 0.0, 1.0, totals)
    # Pillow's fixed point: each weight rounded (half away from zero) to a multiple of 2**-22.
    quantised = np.trunc(normalised * ONE + np.copysign(0.5, normalised)) / ONE
    used = np.flatnonzero(quantised.any(axis=0))
    first, last = int(used[0]), int(used[-1]) + 1
    quantised = np.ascontiguousarray(quantised[:, first:last])
    nonzero = quantised != 0
    starts = nonzero.argmax(axis=1)
    ends = quantised.shape[1] - nonzero[:, ::-1].argmax(axis=1)
    blocks = tuple((b, int(starts[b:b + BLOCK].min()), int(ends[b:b + BLOCK].max()))
                   for b in range(0, quantised.shape[0], BLOCK))
    quantised.flags.writeable = False  # shared through the cache
    return Band(quantised, first, last, blocks)


def _apply(band: Band, x: np.ndarray) -> np.ndarray:
    """``band.matrix @ x``, one block of output rows at a time, rounded to 8 bits as Pillow rounds.

    In float64, the products of 8-bit pixels and weights that are multiples of 2**-22, and
    their sums, are exact; Pillow's ``clip8`` rounds half up and clips to 0..255.
    """
    import cv2

    out = np.empty((band.matrix.shape[0], x.shape[1]), np.float64)
    for row, lo, hi in band.blocks:
        np.matmul(band.matrix[row:row + BLOCK, lo:hi], x[lo:hi], out=out[row:row + BLOCK])
    # floor(v + 0.5) for a multiple v of 2**-22 is OpenCV's round-half-even of v + 2**-23,
    # which cv2.add computes, clips and converts to uint8 in one pass.
    return cv2.add(out, HALF_STEP, dtype=cv2.CV_8U)  # type: ignore[call-overload]  # a scalar src2 is valid


def resize(image: np.ndarray, size: tuple[int, int], kernel: str,
           rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None) -> np.ndarray:
    """Resize an ``(H, W, C)`` uint8 image to ``size`` = (height, width), antialiased like Pillow.

    Only output ``rows`` and ``cols`` (half-open ranges, default all) are computed.
    """
    import cv2

    height, width, channels = image.shape
    original = (height, width)  # Pillow chooses the order by these sizes, before any averaging below
    out_h, out_w = size
    r0, r1 = rows or (0, out_h)
    c0, c1 = cols or (0, out_w)
    k = max(1, math.floor(min(height / out_h, width / out_w) / PREREDUCE_RATIO))
    if k > 1:
        trimmed = image[: height // k * k, : width // k * k]
        image = cv2.resize(trimmed, (width // k, height // k), interpolation=cv2.INTER_AREA)
        image = image.reshape(height // k, width // k, channels)
    wy = weights(height, out_h, r0, r1, kernel, k)
    wx = weights(width, out_w, c0, c1, kernel, k)
    # As Pillow: one pass, rounded and clipped to 8 bits, then the other; each on the source rows and
    # columns that the kept outputs read, with the axis being reduced first in memory (cv2.transpose on
    # 8-bit pixels is cheap; on floats it would not be).
    block = image[wy.first:wy.last, wx.first:wx.last]
    if vertical_first(original, size):
        vertical = _apply(wy, block.reshape(wy.last - wy.first, -1).astype(np.float64))
        columns = _transpose(vertical.reshape(r1 - r0, wx.last - wx.first, channels))
        horizontal = _apply(wx, columns.reshape(wx.last - wx.first, -1).astype(np.float64))
        return _transpose(horizontal.reshape(c1 - c0, r1 - r0, channels))
    horizontal = _apply(wx, _transpose(block).reshape(wx.last - wx.first, -1).astype(np.float64))
    rows_first = _transpose(horizontal.reshape(c1 - c0, wy.last - wy.first, channels))
    vertical = _apply(wy, rows_first.reshape(wy.last - wy.first, -1).astype(np.float64))
    return vertical.reshape(r1 - r0, c1 - c0, channels)


def vertical_first(size: tuple[int, int], out: tuple[int, int]) -> bool:
    """Whether Pillow 13 resizes ``size`` = (height, width) to ``out`` vertically first: where the vertical pass
    shrinks and removes more than twice as many pixels a line as the horizontal one (a tie goes horizontal)."""
    (height, width), (out_h, out_w) = size, out
    return out_h < height and 2 * (width - out_w) < height - out_h


def _transpose(pixels: np.ndarray) -> np.ndarray:
    """Swap the two spatial axes of an ``(H, W, C)`` uint8 array, keeping C."""
    import cv2

    swapped = cv2.transpose(np.ascontiguousarray(pixels))
    return swapped.reshape(pixels.shape[1], pixels.shape[0], pixels.shape[2])
