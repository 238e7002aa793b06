"""The declarative preprocessing spec: how an image becomes the model's input tensor.

A :class:`Preprocess` is plain data, readable from a TOML table, so that the pipeline a
model was trained with can be stated without code and checked against its reference.
The steps run in this order:

1. convert to the channel order the model expects (``RGB``, ``BGR`` or ``GRAY``);
2. ``resize``, one of:

   * an integer: the *shorter* side to that length, keeping the aspect ratio
     (torchvision's ``Resize(256)``, long side truncated as torchvision does);
   * ``[height, width]``: exactly that size;
   * ``"cover"``: one factor that makes the image cover the crop, as
     ``cv2.dnn.blobFromImage(..., crop=True)`` does (its rounding included);
   * ``"letterbox"``: one factor that makes the image fit inside ``size``
     (``[height, width]``), sides rounded, the rest padded with ``pad_value``, the image
     centred or at the top left (``pad_position``), as YOLO exporters do;
   * ``"pad-resize"``: the other way round, as NudeNet and several YOLO exporters do: the
     image padded to a square (its longer side) with the pixel ``pad_value``, centred or at
     the top left, then that square resized to ``size`` (``[height, width]``);
   * ``"height"``: the height to ``size[0]`` and the width from the aspect ratio, rounded up
     (text recognisers), the tensor padded on the right to at least ``size[1]`` wide;
   * ``"longer"`` / ``"shorter"``: limit a side to ``size`` (an integer): the longer side
     is shrunk to at most ``size``, or the shorter side enlarged to at least ``size``;
     then each side, truncated to whole pixels, is rounded to a multiple of ``multiple`` (at
     least one multiple), as PaddleOCR's text detector does; the result has a size of its own per image;
   * nothing: the image keeps its size (models that resize inside their graph, fully
     convolutional networks); each side is padded at the bottom and right up to a
     multiple of ``multiple``.

   ``interpolation`` is nearest, bilinear, bicubic or area; ``antialias`` (bilinear and
   bicubic) widens the filter when shrinking and reproduces Pillow's ``Image.resize``,
   which torchvision's transforms use on PIL images; without it, ``cv2.resize`` runs
   (what OpenCV pipelines do);
3. ``crop``: a centre crop to ``[height, width]`` (an integer means a square), offsets
   rounded as torchvision rounds them, padded where the image is smaller (not with
   ``letterbox``, ``longer`` or ``shorter``);
4. ``value = (pixel * scale - mean) / std`` per channel, in ``float32``, computed as
   ``(pixel - mean / scale) * (scale / std)``: OpenCV's order (mean subtracted before
   scaling), so that a blobFromImage pipeline is reproduced to the bit. Padding is the
   pixel value ``pad_value`` normalised like the image, or, with ``pad_normalized``,
   ``pad_value`` itself in the tensor;
5. ``layout``: ``NCHW`` or ``NHWC``, with a leading batch axis.

``min_size`` (``[height, width]``, or an integer for both) is the smallest image the model
takes after the resize (a network whose strides need 12 pixels): a smaller one is refused
with :class:`~zoo.errors.ZooInputError` saying so.

The input size (:attr:`Preprocess.input_size`) is fixed by a crop, an exact resize, a
letterbox or a pad-resize; otherwise it is **dynamic** (``None`` per free side) and ``batching`` says
how a batch of images of different sizes is run: ``"single"`` (one image at a time, the
default) or ``"pad"`` (padded at the bottom and right to the largest, the padding
recorded in each image's :class:`~zoo.geometry.Geometry`).

:meth:`Preprocess.transform` returns each image's tensor with its geometry, which maps
model coordinates back to the original pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from zoo._fields import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_numbers,
    check_size,
    from_mapping,
    set_field,
)
from zoo.errors import SpecError, ZooInputError
from zoo.geometry import Geometry

if TYPE_CHECKING:
    import numpy as np

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
CHANNELS = ("RGB", "BGR", "GRAY")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32",)
#: The resize modes named by a string (an integer or a pair are the others).
RESIZE_MODES = ("cover", "letterbox", "pad-resize", "height", "longer", "shorter")
#: The resize modes whose ``size`` is a ``[height, width]``.
SIZED = ("letterbox", "pad-resize", "height")
PAD_POSITIONS = ("center", "top-left")
BATCHING = ("single", "pad")
_CV2_FLAGS = {"nearest": "INTER_NEAREST_EXACT", "bilinear": "INTER_LINEAR", "bicubic": "INTER_CUBIC", "area": "INTER_AREA"}

#: ImageNet statistics used by torchvision and most classifiers, for inputs scaled to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How an image is turned into a model input. See the module docstring for the order."""

    resize: int | tuple[int, int] | str | None = None
    crop: tuple[int, int] | None = None
    #: The target of ``letterbox``/``pad-resize`` and ``height``'s height and least width (``[height, width]``),
    #: or the limit of ``longer``/``shorter`` (an integer).
    size: int | tuple[int, int] | None = None
    #: Each side of a dynamic input is made a multiple of this (by the resize, or by padding).
    multiple: int = 1
    interpolation: str = "bilinear"
    antialias: bool = True
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channels: str = "RGB"
    layout: str = "NCHW"
    dtype: str = "float32"
    #: The value of padding: a pixel value (0 to 255), or with ``pad_normalized`` the tensor's value.
    pad_value: float = 0.0
    pad_normalized: bool = False
    #: Where a letterboxed image sits: ``center`` or ``top-left``.
    pad_position: str = "center"
    #: How images of different sizes are batched when the size is dynamic: ``single`` or ``pad``.
    batching: str = "single"
    #: The smallest resized image the model takes (``[height, width]``, or an integer for both); None: any.
    min_size: int | tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self._check_geometry()
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        for name in ("antialias", "pad_normalized"):
            check_bool(name, getattr(self, name))
        check_number("scale", self.scale, positive=True)
        check_number("pad_value", self.pad_value)
        check_choice("channels", self.channels, CHANNELS)
        check_choice("layout", self.layout, LAYOUTS)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("pad_position", self.pad_position, PAD_POSITIONS)
        check_choice("batching", self.batching, BATCHING)
        n = self.num_channels
        for name in ("mean", "std"):
            values = check_numbers(name, getattr(self, name), positive=name == "std")
            if len(values) not in (1, n):
                raise SpecError(name, f"must hold 1 or {n} values for {self.channels} input, got {len(values)}")
            set_field(self, name, values)

    def _check_geometry(self) -> None:
        resize, crop, size = self.resize, self.crop, self.size
        check_int("multiple", self.multiple)
        if crop is not None:
            set_field(self, "crop", check_size("crop", crop))
        if isinstance(resize, str):
            check_choice("resize", resize, RESIZE_MODES)
        elif isinstance(resize, int) and not isinstance(resize, bool):
            check_size("resize", resize)
        elif resize is not None:
            set_field(self, "resize", check_size("resize", resize))
        if resize == "cover" and crop is None:
            raise SpecError("resize", "'cover' scales the image to cover the crop: give a crop too")
        if self.min_size is not None:
            set_field(self, "min_size", check_size("min_size", self.min_size))
        if resize in (*SIZED, "longer", "shorter"):
            if crop is not None:
                raise SpecError("crop", f"does not go with resize {resize!r}, which sets the size itself")
            if resize in SIZED:
                if size is None:
                    raise SpecError("size", f"is needed by resize {resize!r}: give the [height, width]")
                set_field(self, "size", check_size("size", size))
                if resize == "height" and self.multiple != 1:
                    raise SpecError("multiple", "does not go with resize 'height', whose width follows the aspect "
                                                "ratio (the tensor is padded to at least size[1])")
                if resize == "pad-resize" and self.pad_normalized:
                    raise SpecError("pad_normalized", "does not go with 'pad-resize', whose padding is resized with "
                                                      "the image: give pad_value as a pixel value")
            elif isinstance(size, bool) or not isinstance(size, int):
                raise SpecError("size", f"must be the integer that resize {resize!r} limits the side to, got {size!r}")
            else:
                check_int("size", size)
        elif size is not None:
            raise SpecError("size", f"is used only by resize {', '.join(repr(m) for m in RESIZE_MODES[1:])}")
        fixed = crop is not None or isinstance(self.resize, tuple) or resize in ("letterbox", "pad-resize")
        if fixed and self.min_size is not None:
            size = self.input_size
            if self.min_size[0] > size[0] or self.min_size[1] > size[1]:  # type: ignore[operator]
                raise SpecError("min_size", f"is {list(self.min_size)}, larger than the {list(size)} input this "
                                            f"preprocessing always makes")
        if self.multiple != 1 and fixed:
            raise SpecError("multiple", "applies to a dynamic size only; this crop, exact resize or letterbox fixes it")

    @property
    def num_channels(self) -> int:
        """Number of channels of the input tensor: 1 for ``GRAY``, else 3."""
        return 1 if self.channels == "GRAY" else 3

    @property
    def input_size(self) -> tuple[int | None, int | None]:
        """The ``(height, width)`` of the tensor this pipeline produces; ``None`` where it depends on the image."""
        if self.crop is not None:
            return self.crop
        if isinstance(self.resize, tuple):
            return self.resize
        if self.resize in ("letterbox", "pad-resize"):
            assert isinstance(self.size, tuple)
            return self.size
        if self.resize == "height":
            assert isinstance(self.size, tuple)
            return (self.size[0], None)
        return (None, None)

    @property
    def dynamic(self) -> bool:
        """Whether the input size depends on the image."""
        return None in self.input_size

    @property
    def input_shape(self) -> tuple[int | None, int | None, int | None]:
        """The shape of one image's tensor, without the batch axis, in :attr:`layout` order (None: dynamic)."""
        h, w = self.input_size
        c = self.num_channels
        return (c, h, w) if self.layout == "NCHW" else (h, w, c)

    def apply(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The input batch for RGB ``uint8`` images of shape ``(height, width, 3)`` (see :meth:`batch`)."""
        return self.batch(images)[0]

    def batch(self, images: Iterable[np.ndarray]) -> tuple[np.ndarray, list[Geometry]]:
        """The input batch and each image's geometry.

        Images of different sizes (a dynamic input) are padded at the bottom and right to
        the largest; run them one at a time where the spec's ``batching`` is ``single``.
        ``images`` may be a generator: each is resized before the next is taken from it.
        """
        import numpy as np

        placed = [self._checked(self._place(self._channels(image))) for image in images]
        height = max((p[2].input[0] for p in placed), default=1)
        width = max((p[2].input[1] for p in placed), default=1)
        c = self.num_channels
        offset, factor = self._normalisation()
        shape = (len(placed), c, height, width) if self.layout == "NCHW" else (len(placed), height, width, c)
        batch = np.empty(shape, np.float32)
        fill = np.full(c, self.pad_value, np.float32) if self.pad_normalized else (
            np.float32(self.pad_value) - offset) * factor
        geometries = []
        for i, (pixels, (top, left), geometry) in enumerate(placed):
            geometries.append(geometry if geometry.input == (height, width) else geometry.padded(height, width))
            rows, cols = slice(top, top + pixels.shape[0]), slice(left, left + pixels.shape[1])
            if self.layout == "NHWC":
                if pixels.shape[:2] != (height, width):
                    batch[i] = fill
                np.subtract(pixels, offset, out=batch[i, rows, cols], dtype=np.float32)
                batch[i, rows, cols] *= factor
                continue
            for k in range(c):  # written plane by plane: no transposed copy of the batch
                if pixels.shape[:2] != (height, width):
                    batch[i, k] = fill[k]
                np.subtract(pixels[:, :, k], offset[k], out=batch[i, k, rows, cols], dtype=np.float32)
                batch[i, k, rows, cols] *= factor[k]
        return batch, geometries

    def _checked(self, placed: tuple[np.ndarray, tuple[int, int], Geometry]) -> tuple[
            np.ndarray, tuple[int, int], Geometry]:
        """``placed``, unless its resized image is smaller than :attr:`min_size` (:class:`ZooInputError`)."""
        if self.min_size is not None:
            pixels, geometry = placed[0], placed[2]
            if pixels.shape[0] < self.min_size[0] or pixels.shape[1] < self.min_size[1]:
                height, width = geometry.original
                raise ZooInputError(f"the image is {width}x{height} pixels, {pixels.shape[1]}x{pixels.shape[0]} once "
                                    f"resized; this model takes images of at least {self.min_size[1]}x"
                                    f"{self.min_size[0]} (width x height)")
        return placed

    def transform(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """One RGB ``uint8`` image's tensor (no batch axis) and its :class:`~zoo.geometry.Geometry`."""
        batch, (geometry,) = self.batch([image])
        return batch[0], geometry

    def _normalisation(self) -> tuple[np.ndarray, np.ndarray]:
        """Per channel ``offset`` and ``factor``: ``value = (pixel - offset) * factor``."""
        import numpy as np

        c = self.num_channels
        offset = np.broadcast_to(np.asarray(self.mean, np.float64) / self.scale, (c,)).astype(np.float32)
        factor = np.broadcast_to(self.scale / np.asarray(self.std, np.float64), (c,)).astype(np.float32)
        return offset, factor

    def _channels(self, rgb: np.ndarray) -> np.ndarray:
        if self.channels == "BGR":
            return rgb[:, :, ::-1]
        if self.channels == "GRAY":
            import cv2

            return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
        return rgb

    def _place(self, pixels: np.ndarray) -> tuple[np.ndarray, tuple[int, int], Geometry]:
        """The resized (and cropped) pixels, where they go in the tensor, and the geometry.

        Only the kept pixels are computed by the antialiased resize.
        """
        height, width = pixels.shape[:2]
        if self.resize == "cover":
            kept, (top, left), size = _cover(pixels, self.input_size, _CV2_FLAGS[self.interpolation])
            return kept, (0, 0), _geometry((height, width), size, self.crop, (-top, -left))
        if self.resize == "pad-resize":
            return self._pad_resize(pixels)
        if self.resize == "height":
            assert isinstance(self.size, tuple)
            size = (self.size[0], max(1, math.ceil(self.size[0] * width / height)))
            outer = (size[0], max(size[1], self.size[1]))
            return self._resize(pixels, size, (0, size[0]), (0, size[1])), (0, 0), _geometry(
                (height, width), size, outer, (0, 0))
        if self.resize in ("letterbox", "longer", "shorter"):
            size = self._fitted_size(height, width)
            kept = self._resize(pixels, size, (0, size[0]), (0, size[1]))
            outer = self.size if self.resize == "letterbox" else size
            assert isinstance(outer, tuple)
            top = (outer[0] - size[0]) // 2 if self.pad_position == "center" else 0
            left = (outer[1] - size[1]) // 2 if self.pad_position == "center" else 0
            return kept, (top, left), _geometry((height, width), size, outer, (top, left))
        if isinstance(self.resize, int):
            short, long = sorted((height, width))
            new_long = int(self.resize * long / short)
            size = (self.resize, new_long) if height <= width else (new_long, self.resize)
        else:
            assert not isinstance(self.resize, str)
            size = self.resize or (height, width)
        if self.crop is None:
            outer = tuple(-(-side // self.multiple) * self.multiple for side in size)
            return self._resize(pixels, size, (0, size[0]), (0, size[1])), (0, 0), _geometry(
                (height, width), size, outer, (0, 0))
        ch, cw = self.crop
        top, left = _crop_start(size[0], ch), _crop_start(size[1], cw)
        rows = (max(top, 0), min(top + ch, size[0]))
        cols = (max(left, 0), min(left + cw, size[1]))
        kept = self._resize(pixels, size, rows, cols)
        return kept, (rows[0] - top, cols[0] - left), _geometry((height, width), size, self.crop, (-top, -left))

    def _pad_resize(self, pixels: np.ndarray) -> tuple[np.ndarray, tuple[int, int], Geometry]:
        """The image padded to a square with the pixel ``pad_value``, then resized to ``size``."""
        import numpy as np

        assert isinstance(self.size, tuple)
        height, width = pixels.shape[:2]
        side = max(height, width)
        top, left = ((side - height) // 2, (side - width) // 2) if self.pad_position == "center" else (0, 0)
        square = np.full((side, side, pixels.shape[2]), np.clip(round(self.pad_value), 0, 255), pixels.dtype)
        square[top:top + height, left:left + width] = pixels
        fy, fx = self.size[0] / side, self.size[1] / side
        geometry = Geometry(original=(height, width), input=self.size, scale=(fy, fx), offset=(top * fy, left * fx))
        return self._resize(square, self.size, (0, self.size[0]), (0, self.size[1])), (0, 0), geometry

    def _fitted_size(self, height: int, width: int) -> tuple[int, int]:
        """The resized ``(height, width)`` of a ``letterbox``, ``longer`` or ``shorter`` resize."""
        if self.resize == "letterbox":
            assert isinstance(self.size, tuple)
            factor = min(self.size[0] / height, self.size[1] / width)
            return (min(self.size[0], max(1, round(height * factor))), min(self.size[1], max(1, round(width * factor))))
        assert isinstance(self.size, int)
        if self.resize == "longer":
            factor = min(1.0, self.size / max(height, width))
        else:
            factor = max(1.0, self.size / min(height, width))
        m = self.multiple  # each side truncated (float noise aside), then rounded to the multiple, as PaddleOCR does
        return (max(m, round(int(height * factor + 1e-6) / m) * m), max(m, round(int(width * factor + 1e-6) / m) * m))

    def _resize(self, pixels: np.ndarray, size: tuple[int, int], rows: tuple[int, int],
                cols: tuple[int, int]) -> np.ndarray:
        """Rows ``rows`` and columns ``cols`` of ``pixels`` resized to ``size``."""
        import cv2
        import numpy as np

        from zoo import _resample

        height, width, channels = pixels.shape
        if size == (height, width):
            return pixels[rows[0]:rows[1], cols[0]:cols[1]]
        if self.antialias and self.interpolation in _resample.FILTERS:
            return _resample.resize(np.ascontiguousarray(pixels), size, self.interpolation, rows, cols)
        flag = getattr(cv2, _CV2_FLAGS[self.interpolation])
        resized = cv2.resize(np.ascontiguousarray(pixels), (size[1], size[0]), interpolation=flag)
        return resized.reshape(size[0], size[1], channels)[rows[0]:rows[1], cols[0]:cols[1]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON- and TOML-ready dict; :meth:`from_dict` reads it back."""
        data = asdict(self)
        if data["min_size"] is None:  # left out when unset: the dicts (and the keys hashed from them) stay as they were
            del data["min_size"]
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: Any, field: str = "preprocess") -> Preprocess:
        """Read a TOML table or a dict; unknown keys and bad values raise :class:`SpecError`."""
        return from_mapping(cls, data, field)


def _crop_start(side: int, crop: int) -> int:
    """Where a centre crop of ``crop`` pixels starts on a side of ``side``, as torchvision's ``CenterCrop`` puts it:
    half the difference, rounded half to even; a crop larger than the side pads ``(crop - side) // 2`` before it."""
    return round((side - crop) / 2) if side >= crop else -((crop - side) // 2)


def _geometry(original: tuple[int, int], resized: tuple[int, int], tensor: tuple[int, ...] | None,
              offset: tuple[int, int]) -> Geometry:
    """The geometry of an image resized to ``resized`` and placed at ``offset`` in a ``tensor`` of that size."""
    return Geometry(original=original, input=(int(tensor[0]), int(tensor[1])) if tensor else resized,
                    scale=(resized[0] / original[0], resized[1] / original[1]),
                    offset=(float(offset[0]), float(offset[1])))


def _cover(pixels: np.ndarray, size: tuple[int, int], flag: str) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """``cv2.dnn.blobFromImage(crop=True)``: scale by one factor to cover ``size``, crop the centre.

    Returns the crop, its top-left corner in the resized image, and the resized size.
    """
    import cv2
    import numpy as np

    height, width, channels = pixels.shape
    factor = max(np.float32(size[1]) / np.float32(width), np.float32(size[0]) / np.float32(height))  # as OpenCV
    resized = cv2.resize(np.ascontiguousarray(pixels), None, fx=float(factor), fy=float(factor),
                         interpolation=getattr(cv2, flag))
    resized = resized.reshape(resized.shape[0], resized.shape[1], channels)
    top, left = int(0.5 * (resized.shape[0] - size[0])), int(0.5 * (resized.shape[1] - size[1]))
    return resized[top:top + size[0], left:left + size[1]], (top, left), resized.shape[:2]
