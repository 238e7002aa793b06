"""Where an image's pixels went on their way into the model, and the way back.

Preprocessing resizes, crops and pads; a detector's boxes and a segmenter's masks come out
in the coordinates of the model's input. Every preprocessed image carries a
:class:`Geometry` that maps them back, so that every result is in the original image's
pixels.

The transform is one scale and one offset per axis: a point ``(x, y)`` of the original
image is at ``(x * scale_x + offset_x, y * scale_y + offset_y)`` in the model's input.
Coordinates are continuous, pixel edges at integers (pixel ``i`` covers ``[i, i + 1)``),
as torchvision's boxes are. The offset is the padding before the image minus the crop
taken from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np



@dataclass(frozen=True)
class Geometry:
    """How one image was mapped into the model's input tensor.

    ``original`` and ``input`` are ``(height, width)``: of the image as loaded, and of the
    tensor it became (padding included). ``scale`` and ``offset`` are ``(y, x)`` pairs.
    """

    original: tuple[int, int]
    input: tuple[int, int]
    scale: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def identity(cls, height: int, width: int) -> Geometry:
        """The geometry of an image fed as it is."""
        return cls(original=(height, width), input=(height, width))

    def padded(self, height: int, width: int) -> Geometry:
        """This geometry in a tensor padded at the bottom and right to ``(height, width)``."""
        return Geometry(self.original, (height, width), self.scale, self.offset)

    def to_original_points(self, points: Any) -> np.ndarray:
        """``(..., 2)`` points ``(x, y)`` in model-input coordinates, in original pixels (float32)."""
        import numpy as np

        points = np.asarray(points, np.float64)
        sy, sx = self.scale
        oy, ox = self.offset
        out = np.empty(points.shape, np.float32)
        out[..., 0] = (points[..., 0] - ox) / sx
        out[..., 1] = (points[..., 1] - oy) / sy
        return out

    def to_original_boxes(self, boxes: Any, *, clip: bool = True) -> np.ndarray:
        """``(N, 4)`` boxes ``xyxy`` in model-input coordinates, in original pixels, clipped to the image."""
        import numpy as np

        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = self.to_original_points(boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        if clip:
            height, width = self.original
            np.clip(out[:, 0::2], 0, width, out=out[:, 0::2])
            np.clip(out[:, 1::2], 0, height, out=out[:, 1::2])
        return out

    def to_original_mask(self, mask: Any, *, interpolation: str = "nearest", fill: Any = 0) -> np.ndarray:
        """A mask over the model's input, ``(..., H, W)`` at any resolution, at the original image's size.

        The mask may be smaller than the input tensor (a network's output at stride 4 or
        8): it is taken to cover the whole tensor. ``interpolation`` is ``"nearest"`` (class
        maps, boolean masks; any dtype) or ``"bilinear"`` (probabilities, logits; float).
        Original pixels that the model never saw (cropped away) get ``fill``.
        """
        import numpy as np

        mask = np.asarray(mask)
        height, width = self.original
        if mask.ndim < 2:
            raise ValueError(f"a mask needs at least 2 dimensions (H, W), got shape {mask.shape}")
        mh, mw = mask.shape[-2:]
        fy, fx = mh / self.input[0], mw / self.input[1]
        # Each original pixel's centre, in the mask's pixel coordinates.
        ys = ((np.arange(height) + 0.5) * self.scale[0] + self.offset[0]) * fy - 0.5
        xs = ((np.arange(width) + 0.5) * self.scale[1] + self.offset[1]) * fx - 0.5
        if interpolation == "nearest":
            rows, cols = np.floor(ys + 0.5).astype(np.intp), np.floor(xs + 0.5).astype(np.intp)
            inside_rows, inside_cols = (rows >= 0) & (rows < mh), (cols >= 0) & (cols < mw)
            out = mask[..., np.clip(rows, 0, mh - 1)[:, None], np.clip(cols, 0, mw - 1)[None, :]]
            if not (inside_rows.all() and inside_cols.all()):
                out[..., ~(inside_rows[:, None] & inside_cols[None, :])] = fill
            return out
        if interpolation == "bilinear":
            return self._bilinear(mask.astype(np.float32, copy=False), ys, xs, fill)
        raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")

    @staticmethod
    def _bilinear(mask: np.ndarray, ys: np.ndarray, xs: np.ndarray, fill: Any) -> np.ndarray:
        import cv2
        import numpy as np

        map_x = np.broadcast_to(xs[None, :], (len(ys), len(xs))).astype(np.float32)
        map_y = np.broadcast_to(ys[:, None], (len(ys), len(xs))).astype(np.float32)
        planes = mask.reshape(-1, *mask.shape[-2:])
        out = np.empty((len(planes), len(ys), len(xs)), np.float32)
        for i, plane in enumerate(planes):  # cv2.remap takes at most 4 channels: one plane at a time
            out[i] = cv2.remap(plane, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        outside = (ys < -0.5) | (ys > mask.shape[-2] - 0.5)
        out[:, outside, :] = fill
        outside = (xs < -0.5) | (xs > mask.shape[-1] - 0.5)
        out[:, :, outside] = fill
        return out.reshape(*mask.shape[:-2], len(ys), len(xs))

    def value(self, source: str) -> tuple[float, float]:
        """What feeds a graph input named by ``source``: ``original_size`` or ``input_size`` as ``(height,
        width)``, or ``scale`` as ``(y, x)`` (see :data:`zoo.spec.INPUT_SOURCES`)."""
        return {"original_size": self.original, "input_size": self.input, "scale": self.scale}[source]

    def to_dict(self) -> dict[str, Any]:
        return {"original": list(self.original), "input": list(self.input), "scale": list(self.scale),
                "offset": list(self.offset)}
