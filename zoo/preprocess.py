"""The declarative preprocessing spec: how an image becomes the model's input tensor.

A :class:`Preprocess` is plain data, readable from a TOML table, so that the pipeline a
model was trained with can be stated without code and checked against its reference.
The steps run in this order:

1. convert to the channel order the model expects (``RGB``, ``BGR`` or ``GRAY``);
2. ``resize``: an integer resizes the *shorter* side to that length and keeps the aspect
   ratio (torchvision's ``Resize(256)``, long side truncated as torchvision does); a
   ``[height, width]`` pair resizes to exactly that size; ``"cover"`` scales the image so
   that it covers the crop, as ``cv2.dnn.blobFromImage(..., crop=True)`` does (its
   rounding included). ``interpolation`` is nearest, bilinear, bicubic or area;
   ``antialias`` (bilinear and bicubic) widens the filter when shrinking and reproduces
   Pillow's ``Image.resize``, which torchvision's transforms use on PIL images; without
   it, ``cv2.resize`` runs (what OpenCV pipelines do);
3. ``crop``: a centre crop to ``[height, width]`` (an integer means a square), offsets
   rounded as torchvision rounds them, zero padding where the image is smaller;
4. ``value = (pixel * scale - mean) / std`` per channel, in ``float32``, computed as
   ``(pixel - mean / scale) * (scale / std)``: OpenCV's order (mean subtracted before
   scaling), so that a blobFromImage pipeline is reproduced to the bit;
5. ``layout``: ``NCHW`` or ``NHWC``, with a leading batch axis.

The final spatial size (:attr:`Preprocess.input_size`) must be fixed by the crop or by an
exact resize, so that images can be batched and a model exported with a known shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from zoo._fields import check_choice, check_number, check_numbers, check_size, from_mapping, set_field
from zoo.errors import SpecError

if TYPE_CHECKING:
    import numpy as np

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
CHANNELS = ("RGB", "BGR", "GRAY")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32",)
_CV2_FLAGS = {"nearest": "INTER_NEAREST_EXACT", "bilinear": "INTER_LINEAR", "bicubic": "INTER_CUBIC", "area": "INTER_AREA"}

#: ImageNet statistics used by torchvision and most classifiers, for inputs scaled to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How an image is turned into a model input. See the module docstring for the order."""

    resize: int | tuple[int, int] | str | None = None
    crop: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    antialias: bool = True
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channels: str = "RGB"
    layout: str = "NCHW"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.resize == "cover":
            if self.crop is None:
                raise SpecError("resize", "'cover' scales the image to cover the crop: give a crop too")
        elif self.resize is not None:
            if isinstance(self.resize, int) and not isinstance(self.resize, bool):
                check_size("resize", self.resize)
            else:
                set_field(self, "resize", check_size("resize", self.resize))
        if self.crop is not None:
            set_field(self, "crop", check_size("crop", self.crop))
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        if not isinstance(self.antialias, bool):
            raise SpecError("antialias", f"must be true or false, got {self.antialias!r}")
        check_number("scale", self.scale, positive=True)
        check_choice("channels", self.channels, CHANNELS)
        check_choice("layout", self.layout, LAYOUTS)
        check_choice("dtype", self.dtype, DTYPES)
        n = self.num_channels
        for name in ("mean", "std"):
            values = check_numbers(name, getattr(self, name), positive=name == "std")
            if len(values) not in (1, n):
                raise SpecError(name, f"must hold 1 or {n} values for {self.channels} input, got {len(values)}")
            set_field(self, name, values)
        if self.crop is None and not isinstance(self.resize, tuple):
            raise SpecError("crop", "is needed to fix the input size: give a crop, or resize to an exact [height, width]")

    @property
    def num_channels(self) -> int:
        """Number of channels of the input tensor: 1 for ``GRAY``, else 3."""
        return 1 if self.channels == "GRAY" else 3

    @property
    def input_size(self) -> tuple[int, int]:
        """The ``(height, width)`` of the tensor this pipeline produces."""
        if self.crop is not None:
            return self.crop
        assert isinstance(self.resize, tuple)
        return self.resize

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one image's tensor, without the batch axis, in :attr:`layout` order."""
        h, w = self.input_size
        c = self.num_channels
        return (c, h, w) if self.layout == "NCHW" else (h, w, c)

    def apply(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The input batch for RGB ``uint8`` images of shape ``(height, width, 3)``."""
        import numpy as np

        h, w = self.input_size
        c = self.num_channels
        offset = np.broadcast_to(np.asarray(self.mean, np.float64) / self.scale, (c,)).astype(np.float32)
        factor = np.broadcast_to(self.scale / np.asarray(self.std, np.float64), (c,)).astype(np.float32)
        if self.layout == "NHWC":
            batch = np.empty((len(images), h, w, c), np.float32)
            for i, image in enumerate(images):
                np.subtract(self._geometry(self._channels(image)), offset, out=batch[i], dtype=np.float32)
                batch[i] *= factor
            return batch
        batch = np.empty((len(images), c, h, w), np.float32)
        for i, image in enumerate(images):  # written plane by plane: no transposed copy of the batch
            pixels = self._geometry(self._channels(image))
            for k in range(c):
                np.subtract(pixels[:, :, k], offset[k], out=batch[i, k], dtype=np.float32)
                batch[i, k] *= factor[k]
        return batch

    def _channels(self, rgb: np.ndarray) -> np.ndarray:
        if self.channels == "BGR":
            return rgb[:, :, ::-1]
        if self.channels == "GRAY":
            import cv2

            return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
        return rgb

    def _geometry(self, pixels: np.ndarray) -> np.ndarray:
        """Resize, then centre crop; only the kept pixels are computed by the antialiased resize."""
        import cv2
        import numpy as np

        from zoo import _resample

        height, width, channels = pixels.shape
        if self.resize == "cover":
            return _cover(pixels, self.input_size, _CV2_FLAGS[self.interpolation])
        if isinstance(self.resize, int):
            short, long = sorted((height, width))
            new_long = int(self.resize * long / short)
            size = (self.resize, new_long) if height <= width else (new_long, self.resize)
        else:
            assert not isinstance(self.resize, str)
            size = self.resize or (height, width)
        ch, cw = self.crop or size
        top, left = round((size[0] - ch) / 2), round((size[1] - cw) / 2)
        rows = (max(top, 0), min(top + ch, size[0]))
        cols = (max(left, 0), min(left + cw, size[1]))
        if size == (height, width):
            kept = pixels[rows[0]:rows[1], cols[0]:cols[1]]
        elif self.antialias and self.interpolation in _resample.FILTERS:
            kept = _resample.resize(np.ascontiguousarray(pixels), size, self.interpolation, rows, cols)
        else:
            flag = getattr(cv2, _CV2_FLAGS[self.interpolation])
            resized = cv2.resize(np.ascontiguousarray(pixels), (size[1], size[0]), interpolation=flag)
            kept = resized.reshape(size[0], size[1], channels)[rows[0]:rows[1], cols[0]:cols[1]]
        if kept.shape[:2] != (ch, cw):  # the image is smaller than the crop: pad with zeros, centred
            pad_top, pad_left = rows[0] - top, cols[0] - left
            padded = np.zeros((ch, cw, channels), np.uint8)
            padded[pad_top:pad_top + kept.shape[0], pad_left:pad_left + kept.shape[1]] = kept
            kept = padded
        return kept

    def to_dict(self) -> dict[str, Any]:
        """A JSON- and TOML-ready dict; :meth:`from_dict` reads it back."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: Any, field: str = "preprocess") -> Preprocess:
        """Read a TOML table or a dict; unknown keys and bad values raise :class:`SpecError`."""
        return from_mapping(cls, data, field)


def _cover(pixels: np.ndarray, size: tuple[int, int], flag: str) -> np.ndarray:
    """``cv2.dnn.blobFromImage(crop=True)``: scale by one factor to cover ``size``, crop the centre."""
    import cv2
    import numpy as np

    height, width, channels = pixels.shape
    factor = max(np.float32(size[1]) / np.float32(width), np.float32(size[0]) / np.float32(height))  # as OpenCV
    resized = cv2.resize(np.ascontiguousarray(pixels), None, fx=float(factor), fy=float(factor),
                         interpolation=getattr(cv2, flag))
    resized = resized.reshape(resized.shape[0], resized.shape[1], channels)
    top, left = int(0.5 * (resized.shape[0] - size[0])), int(0.5 * (resized.shape[1] - size[1]))
    return resized[top:top + size[0], left:left + size[1]]
