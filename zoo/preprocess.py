"""The declarative preprocessing spec: how an image becomes the model's input tensor.

A :class:`Preprocess` is plain data, readable from a TOML table, so that the pipeline a
model was trained with can be stated without code and checked against its reference.
The steps run in this order:

1. convert to the channel order the model expects (``RGB``, ``BGR`` or ``GRAY``);
2. ``resize``: an integer resizes the *shorter* side to that length and keeps the aspect
   ratio (torchvision's ``Resize(256)``); a ``[height, width]`` pair resizes to exactly that
   size (``cv2.resize``); with ``interpolation`` and ``antialias`` (smoothing when
   shrinking, as PIL does);
3. ``crop``: a centre crop to ``[height, width]`` (an integer means a square);
4. ``value = (pixel * scale - mean) / std`` per channel, in ``float32``;
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
_CV2_FLAGS = {"nearest": "INTER_NEAREST", "bilinear": "INTER_LINEAR", "bicubic": "INTER_CUBIC", "area": "INTER_AREA"}

#: ImageNet statistics used by torchvision and most classifiers, for inputs scaled to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How an image is turned into a model input. See the module docstring for the order."""

    resize: int | tuple[int, int] | None = None
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
        if self.resize is not None:
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
        batch = np.empty((len(images), h, w, c), np.float32)
        scale = np.float32(self.scale) / np.asarray(self.std, np.float32)
        shift = np.asarray(self.mean, np.float32) / np.asarray(self.std, np.float32)
        for i, image in enumerate(images):
            pixels = self._geometry(self._channels(image))
            np.multiply(pixels.reshape(h, w, c), scale, out=batch[i], casting="unsafe")
            batch[i] -= shift
        return batch.transpose(0, 3, 1, 2).copy() if self.layout == "NCHW" else batch

    def _channels(self, rgb: np.ndarray) -> np.ndarray:
        if self.channels == "BGR":
            return rgb[:, :, ::-1]
        if self.channels == "GRAY":
            import cv2
            import numpy as np

            return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)[:, :, None]
        return rgb

    def _geometry(self, pixels: np.ndarray) -> np.ndarray:
        """Resize, then centre crop (padding with zeros where the image is smaller)."""
        import cv2
        import numpy as np

        height, width = pixels.shape[:2]
        if isinstance(self.resize, int):
            short, long = sorted((height, width))
            new_long = int(self.resize * long / short)
            size = (self.resize, new_long) if height <= width else (new_long, self.resize)
        else:
            size = self.resize or (height, width)
        if size != (height, width):
            shrinking = size[0] < height or size[1] < width
            flag = _CV2_FLAGS["area" if self.antialias and shrinking and self.interpolation != "nearest"
                              else self.interpolation]
            pixels = cv2.resize(np.ascontiguousarray(pixels), (size[1], size[0]), interpolation=getattr(cv2, flag))
            pixels = pixels.reshape(size[0], size[1], -1)
        if self.crop is None:
            return pixels
        (ch, cw), (height, width) = self.crop, pixels.shape[:2]
        if height < ch or width < cw:
            pad_h, pad_w = max(ch - height, 0), max(cw - width, 0)
            pixels = np.pad(pixels, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
            height, width = pixels.shape[:2]
        top, left = round((height - ch) / 2), round((width - cw) / 2)
        return pixels[top:top + ch, left:left + cw]

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
