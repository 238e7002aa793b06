"""Turning what a user passes to ``predict`` into RGB pixels, or a clear :class:`ZooInputError`.

Accepted: a path (``str`` or :class:`os.PathLike`, any characters), encoded bytes, a
numpy array (``uint8``, ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``, channel
order given by the caller, ``RGB`` unless said), or a PIL image. The result is always a
``(H, W, 3)`` ``uint8`` RGB array:

* JPEG, PNG and WebP are decoded by OpenCV (fast), every other format by Pillow. Before any
  pixel is decoded, the headers are read: Pillow's, and for each frame a decoder may allocate
  (an icon of an ICO or ICNS file, a TIFF page, an MPO frame, an animation frame) that frame's
  own, as the decoder reads it. The largest frame must be within the pixel cap
  (:data:`MAX_PIXELS`, or ``ZOO_MAX_PIXELS``: a decompression bomb is refused unread), and an
  image has at most :data:`MAX_FRAMES` frames. A file that OpenCV and Pillow read as two
  different images (a polyglot) is refused, and so is a format whose header Pillow cannot read;
* the codecs run on codec threads (:mod:`zoo._codec_threads`), whose standard error is their
  own (on Linux): what libpng, libjpeg or OpenCV print about a damaged file stays off the
  terminal, is quoted in the error, and never holds back what the program's other threads write;
* the EXIF orientation is applied in the same way to paths, bytes and PIL images (arrays
  carry none);
* grey, grey+alpha, palette, RGBA (alpha dropped, as ``PIL.Image.convert("RGB")`` does),
  CMYK and 16-bit images (scaled to 8 bits) are converted;
* a JPEG whose last scan does not end with an end marker (a truncated download) is refused
  rather than returned with a grey bottom half; data after a complete JPEG (a motion photo's
  video) is left alone. A PNG whose pixel data stops short is refused as damaged.
"""

from __future__ import annotations

import io
import itertools
import mmap
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from zoo import _codec_threads as codec_threads
from zoo import _image_headers as headers
from zoo._image_headers import MAX_FRAMES
from zoo.errors import ZooInputError
from zoo.settings import max_pixels

CHANNEL_ORDERS = ("RGB", "BGR")
_ORIENTATION_TAG = 0x0112


def describe(source: Any) -> str:
    """How an input is named in messages: its path, or its kind and size."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array of shape {source.shape}, {source.dtype}>"
    return f"<{type(source).__module__}.{type(source).__qualname__}>"


def load(source: Any, *, channels: str = "RGB", limit: int | None = None) -> np.ndarray:
    """Decode or convert ``source`` to a ``(H, W, 3)`` uint8 RGB array.

    ``channels`` is the order of a numpy array's channels (``RGB`` or ``BGR``); ``limit``
    overrides the pixel cap. Raises :class:`~zoo.errors.ZooInputError` naming the input.
    """
    if channels not in CHANNEL_ORDERS:
        raise ZooInputError(f"channels must be one of {', '.join(CHANNEL_ORDERS)}, got {channels!r}")
    name = describe(source)
    if isinstance(source, (str, os.PathLike)):
        with _mapped(Path(os.fspath(source)), name) as data:
            return decode(data, name, limit)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode(bytes(source), name, limit)
    if isinstance(source, np.ndarray):
        return _from_array(source, channels, name)
    if _is_pil_image(source):
        return _from_pil(source, name, limit)
    if _is_torch_tensor(source):
        return _from_array(_tensor_as_hwc(source), channels, name)
    raise ZooInputError(f"cannot use {name} as an image: pass a path, bytes, a uint8 numpy array or torch tensor, "
                        f"or a PIL image")


@contextmanager
def _mapped(path: Path, name: str) -> Iterator[bytes | mmap.mmap]:
    """The file's bytes, mapped from the page cache where the system allows, else read.

    Reading a file into a new ``bytes`` object made the decode that followed slower (a
    0.3 MP PNG by a fifth: ``bench/bench_decode.py``); decoding from the mapped file costs
    what ``cv2.imread`` does. An empty file, a pipe or a system without ``mmap`` is read.
    The price: a file cut short by another process while it is being decoded ends this
    process with SIGBUS instead of a damaged-image error.
    """
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed below, after the mapping
    except OSError as error:
        raise _unreadable(name, error) from None
    with file:
        try:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            try:
                data = file.read()
            except OSError as error:
                raise _unreadable(name, error) from None
            yield data
            return
        try:
            yield mapped
        finally:
            with suppress(BufferError):  # an error's traceback may still hold a view: the collector closes it
                mapped.close()


def _unreadable(name: str, error: OSError) -> ZooInputError:
    """The error for an image file that cannot be opened or read."""
    if isinstance(error, FileNotFoundError):
        return ZooInputError(f"image {name} does not exist")
    if isinstance(error, IsADirectoryError):
        return ZooInputError(f"image {name} is a directory; pass the image files in it")
    if isinstance(error, PermissionError):
        return ZooInputError(f"image {name} cannot be read: permission denied")
    return ZooInputError(f"image {name} cannot be read: {error.strerror or error}")


def decode(data: bytes, name: str = "<bytes>", limit: int | None = None) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, WebP, TIFF, BMP, GIF, ...) to RGB, oriented.

    ``data`` may also be a read-only :class:`mmap.mmap` of the file.
    """
    if not len(data):
        raise ZooInputError(f"image {name} is empty (0 bytes)")
    header = _read_header(data, name, limit)
    if header is None:
        raise _not_readable(data, name)
    fmt = _family(header.format)
    if fmt not in _OPENCV_FRAMES:
        return _decode_with_pillow(header.image, name, limit)
    if fmt == "JPEG" and not headers.jpeg_complete(data):
        raise ZooInputError(f"image {name} is a truncated JPEG (its end marker is missing); download it again")
    return _orient(_decode_with_opencv(data, name), header.orientation)


#: The formats OpenCV decodes (JPEG, with MPO; PNG, with APNG; WebP), named as :func:`headers.opencv_format` names
#: them, and the reader of their frames as OpenCV reads them; Pillow decodes the other formats.
_OPENCV_FRAMES = {"JPEG": headers.jpeg_frames, "PNG": headers.png_frames, "WEBP": headers.webp_frames}

#: How the formats the zoo reads begin: such a file whose header cannot be read is damaged.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")


def _family(fmt: str | None) -> str | None:
    """A format as :func:`headers.opencv_format` names it, from Pillow's name (an MPO file is a JPEG to OpenCV)."""
    return "JPEG" if fmt == "MPO" else fmt


def _not_readable(data: bytes | mmap.mmap, name: str) -> ZooInputError:
    """The error for a file whose header Pillow cannot read: a damaged image, or no image at all."""
    if bytes(data[:8]).startswith(_SIGNATURES):
        return ZooInputError(f"image {name} is damaged or truncated (its header cannot be read)")
    start = data[:16].lstrip()
    what = "an HTML page" if start[:1] == b"<" else f"a file that starts with {data[:12]!r}"
    return ZooInputError(f"image {name} is not an image format the zoo reads ({what}); JPEG, PNG, WebP, TIFF, BMP and "
                         f"GIF are read, among others")


def _decode_with_opencv(data: bytes | mmap.mmap, name: str) -> np.ndarray:
    """Pixels decoded by OpenCV on a codec thread. A file it cannot decode is damaged (what the codec said is quoted),
    and is not handed to Pillow, which would return a PNG's missing rows as zeros."""
    buffer = np.frombuffer(data, np.uint8)
    pixels, printed = codec_threads.run(_opencv_decode, buffer)
    del buffer  # a view of a mapped file keeps it from closing
    if pixels is None:
        raise _damaged(name, printed)
    return pixels


def _opencv_decode(buffer: np.ndarray) -> np.ndarray | None:
    """OpenCV's RGB pixels of an encoded image, unrotated (None: it cannot decode them)."""
    import cv2

    try:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:  # past OpenCV's own limits (OPENCV_IO_MAX_IMAGE_PIXELS), which ZOO_MAX_PIXELS may exceed
        return None
    return pixels if pixels is not None and pixels.ndim == 3 else None


def _decode_with_pillow(image: Any, name: str, limit: int | None) -> np.ndarray:
    """Pixels of the first frame of an image whose header Pillow has read, decoded on a codec thread."""
    try:
        codec_threads.run(_load_quietly, image)
    except Exception as error:  # noqa: BLE001 - any failure to decode is the input's fault
        raise _damaged(name, f"{type(error).__name__}: {error}") from None
    return _from_pil(image, name, limit)


def _load_quietly(image: Any) -> None:
    """Decode a Pillow image's first frame, its warnings ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if image.tell():
            image.seek(0)  # TIFF pages were walked by their headers
        image.load()


#: OpenCV's log prefix ("[ WARN:0@0.045] global grfmt_png.cpp:793 readFromStreamOrBuffer "), left out when quoted.
_LOG_PREFIX = re.compile(r"^\[ ?[A-Z]+:[^\]]*\] (global )?\S+ \S+ ")


def _damaged(name: str, said: str) -> ZooInputError:
    """The error for a file its decoder gave up on, quoting the last thing the codec said about it."""
    lines = [_LOG_PREFIX.sub("", line).strip() for line in said.splitlines() if line.strip()]
    why = f" ({lines[-1][:200]})" if lines else ""
    return ZooInputError(f"image {name} is damaged or truncated{why}; download or export it again")


class _Header(NamedTuple):
    """What the headers of an encoded image say, before any pixel is decoded."""

    size: tuple[int, int]  # the largest frame's (width, height)
    format: str  # as Pillow names it
    orientation: int  # EXIF, 1..8
    image: Any  # Pillow's image, its header read


def _header(data: bytes | mmap.mmap, name: str, limit: int | None) -> tuple[tuple[int, int], str, int] | None:
    """The size of the largest frame, the format and the EXIF orientation, every check of :func:`_read_header` made
    (None: a format unknown to Pillow)."""
    header = _read_header(data, name, limit)
    return None if header is None else (header.size, header.format, header.orientation)


def _read_header(data: bytes | mmap.mmap, name: str, limit: int | None) -> _Header | None:
    """Read the headers, decoding no pixel, and check them (None: a format unknown to Pillow).

    First the frames read without Pillow: those of the formats OpenCV decodes, as it reads them, and the icons of an
    .ico (Pillow decodes the one it picks as it opens the file). Then Pillow's header: Pillow must read the file as
    OpenCV does (:func:`_check_one_reading`); for the formats Pillow decodes, every frame it may allocate is read
    (:func:`_frames`). The largest frame must be within the pixel cap, and there may be :data:`MAX_FRAMES` at most.
    """
    from PIL import Image

    opencv = headers.opencv_format(data)
    try:
        early = _OPENCV_FRAMES[opencv](data) if opencv in _OPENCV_FRAMES else _icons(data)
        if early is not None:
            _check_frames(early, name, limit)
        image = _opened(data)
        if image is None:
            return None
        _check_one_reading(opencv, early, image, name)
        orientation, first = _orientation(data, image), image.size
        frames = (early or _frames(data, image)).including(first)
        _check_frames(frames, name, limit)
    except Image.DecompressionBombError as error:  # over Pillow's own cap, which may be below ours
        found = re.search(r"\((\d+) pixels\)", str(error))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ZooInputError(f"image {name} has {pixels}, over Pillow's limit of {2 * Image.MAX_IMAGE_PIXELS:,} "
                            f"(PIL.Image.MAX_IMAGE_PIXELS), which the zoo also keeps") from None
    return _Header(frames.largest, image.format or "", orientation, image)


def _icons(data: bytes | mmap.mmap) -> headers.Frames | None:
    """The icons of an .ico file, each by its own header (None: not an .ico)."""
    return headers.ico_frames(data) if bytes(data[:4]) == b"\x00\x00\x01\x00" else None


def _opened(data: bytes | mmap.mmap) -> Any:
    """The Pillow image of ``data``, its header read (None: no plugin of Pillow's reads it)."""
    from PIL import Image

    if isinstance(data, mmap.mmap):
        data.seek(0)  # Pillow reads the mapped file as a file, from its start
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(data if isinstance(data, mmap.mmap) else io.BytesIO(data))
    except Image.DecompressionBombError:
        raise
    except Exception:  # noqa: BLE001 - Pillow raises many types for what it cannot parse
        return None


def _orientation(data: bytes | mmap.mmap, image: Any) -> int:
    """The EXIF orientation, 1..8, read without decoding pixels."""
    from PIL import Image

    fmt = image.format
    if fmt == "PNG" and "exif" not in image.info:  # Pillow's getexif would decode the pixels to look further
        exif = Image.Exif()
        exif.load(headers.png_exif(data))
        return int(exif.get(_ORIENTATION_TAG, 1) or 1)
    if fmt in ("JPEG", "MPO") and not {"exif", "xmp"} & set(image.info):  # no EXIF nor XMP: upright
        return 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001 - damaged metadata: the decoder decides about the rest
        return 1


#: Frame readers of the formats Pillow decodes that have more frames than its header tells of, by Pillow's names.
_FRAME_READERS = {"GIF": headers.gif_frames, "ICNS": headers.icns_frames}


def _frames(data: bytes | mmap.mmap, image: Any) -> headers.Frames:
    """Every frame Pillow may allocate: TIFF pages by its own seek (which reads their headers only), GIF and ICNS
    frames by their own headers, and for the other formats the one its header tells of."""
    if image.format == "TIFF":
        return headers.frames_of(_seek_sizes(image))
    reader = _FRAME_READERS.get(image.format)
    return reader(data) if reader else headers.frames_of([image.size])


def _seek_sizes(image: Any) -> Iterator[tuple[int, int]]:
    """The size of each frame of a Pillow image, by seeking to it."""
    from PIL import Image

    for index in itertools.count():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image.seek(index)
        except Image.DecompressionBombError:
            raise
        except Exception:  # noqa: BLE001 - EOFError past the last frame; a damaged frame is not decoded either
            return
        yield image.size


def _check_one_reading(opencv: str | None, frames: headers.Frames | None, image: Any, name: str) -> None:
    """Refuse a file that OpenCV takes for another format than Pillow does, or (for the formats OpenCV decodes) whose
    first frame OpenCV reads at another size than Pillow: the size checked is the size the decoder allocates."""
    pillow = _family(image.format)
    if opencv is not None and opencv != pillow:
        raise ZooInputError(f"image {name} is read as {opencv} by OpenCV and as {pillow} by Pillow, two different "
                            f"images in one file, which the zoo refuses; if you trust it, re-save it as PNG")
    if opencv in _OPENCV_FRAMES and frames is not None and frames.first != image.size:
        (w, h), (pw, ph) = frames.first, image.size
        raise ZooInputError(f"image {name} is {w}x{h} to OpenCV and {pw}x{ph} to Pillow, two different images in one "
                            f"file, which the zoo refuses; if you trust it, re-save it as PNG")


def _check_frames(frames: headers.Frames, name: str, limit: int | None) -> None:
    """Refuse an image with more than :data:`MAX_FRAMES` frames, or whose largest frame is over the pixel cap."""
    if frames.count > MAX_FRAMES:
        raise ZooInputError(f"image {name} has at least {frames.count:,} frames, over the limit of {MAX_FRAMES:,} "
                            f"(the zoo decodes one); save the frame you need as PNG")
    _check_size(frames.largest, name, limit, frames.count)


def _check_size(size: tuple[int, int], name: str, limit: int | None, frames: int = 1) -> None:
    """Refuse an image of more pixels than the cap: ``limit``, else ``ZOO_MAX_PIXELS``, else :data:`MAX_PIXELS`."""
    cap = max_pixels() if limit is None else limit
    pixels = size[0] * size[1]
    if pixels > cap:
        what = f"is {size[0]}x{size[1]}" if frames == 1 else f"has a frame of {size[0]}x{size[1]}"
        raise ZooInputError(f"image {name} {what}, {pixels:,} pixels, over the limit of {cap:,} (ZOO_MAX_PIXELS); "
                            f"if you trust it, raise ZOO_MAX_PIXELS")


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an ``(H, W, C)`` array."""
    if orientation in (5, 6, 7, 8):
        pixels = pixels.transpose(1, 0, 2)
    flips = {2: (slice(None), slice(None, None, -1)), 3: (slice(None, None, -1), slice(None, None, -1)),
             4: (slice(None, None, -1), slice(None)), 6: (slice(None), slice(None, None, -1)),
             7: (slice(None, None, -1), slice(None, None, -1)), 8: (slice(None, None, -1), slice(None))}
    if orientation in flips:
        pixels = pixels[flips[orientation]]
    return np.ascontiguousarray(pixels)


def _from_array(array: np.ndarray, channels: str, name: str) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ZooInputError(f"image {name} must be uint8 (0..255); convert it, e.g. with "
                            f"(array * 255).clip(0, 255).astype('uint8') for values in [0, 1]")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
        raise ZooInputError(f"image {name} must have shape (height, width) or (height, width, 1, 3 or 4 channels)")
    if array.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    array = array[:, :, :3]
    return np.ascontiguousarray(array[:, :, ::-1] if channels == "BGR" else array)


def _is_torch_tensor(source: Any) -> bool:
    """Whether ``source`` is a ``torch.Tensor``: a tensor implies torch was imported, so the zoo imports nothing."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(source, torch.Tensor)


def _tensor_as_hwc(tensor: Any) -> np.ndarray:
    """A ``torch.Tensor`` image as a ``(H, W[, C])`` array: ``(C, H, W)`` as ``torchvision.io.read_image`` gives it
    (1, 3 or 4 channels first, and a last axis that is no channel count) is moved to channels last."""
    array = tensor.detach().cpu().numpy()
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)
    return array


def _is_pil_image(source: Any) -> bool:
    import sys

    pil = sys.modules.get("PIL.Image")  # a PIL image implies PIL was imported
    return pil is not None and isinstance(source, pil.Image)


def _from_pil(image: Any, name: str, limit: int | None) -> np.ndarray:
    from PIL import ImageOps

    _check_size(image.size, name, limit)
    try:
        image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I;16") or image.mode in ("I", "F"):  # 16-bit grey: keep the high byte, as OpenCV
            values = np.asarray(image, dtype=np.float64)
            if values.max(initial=0) > 255:
                values = values / 256
            gray = np.clip(np.floor(values), 0, 255).astype(np.uint8)
            return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    except Exception as error:  # noqa: BLE001 - a lazily loaded PIL image may fail only now
        raise ZooInputError(f"image {name} cannot be converted to RGB ({type(error).__name__}: {error})") from None
