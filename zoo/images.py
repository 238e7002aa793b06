"""Turning what a user passes to ``predict`` into RGB pixels, or a clear :class:`ZooInputError`.

Accepted: a path (``str`` or :class:`os.PathLike`, any characters), encoded bytes, a
numpy array (``uint8``, ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``, channel
order given by the caller, ``RGB`` unless said), or a PIL image. The result is always a
``(H, W, 3)`` ``uint8`` RGB array:

* encoded images are decoded by OpenCV (fast) and, for what OpenCV cannot read, by Pillow;
  the header is read first by Pillow, so that an image over the pixel cap (a decompression
  bomb) is refused before any pixel is decoded: :data:`MAX_PIXELS`, or ``ZOO_MAX_PIXELS``.
  A format whose header Pillow cannot read is refused, since its size cannot be checked;
  the codecs' own warnings (libpng, libjpeg, OpenCV) are kept off the terminal;
* the EXIF orientation is applied in the same way to paths, bytes and PIL images (arrays
  carry none);
* grey, grey+alpha, palette, RGBA (alpha dropped, as ``PIL.Image.convert("RGB")`` does),
  CMYK and 16-bit images (scaled to 8 bits) are converted;
* a JPEG whose end marker is missing (a truncated download) is refused rather than
  returned with a grey bottom half.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import UsageError, ZooInputError

#: Largest image, in pixels, that is decoded (100 megapixels); ``ZOO_MAX_PIXELS`` overrides it.
MAX_PIXELS = 100_000_000
CHANNEL_ORDERS = ("RGB", "BGR")
_ORIENTATION_TAG = 0x0112


def max_pixels() -> int:
    """The pixel cap in force: ``ZOO_MAX_PIXELS`` (a number of pixels) or :data:`MAX_PIXELS`."""
    value = os.environ.get("ZOO_MAX_PIXELS", "").strip().replace("_", "").replace(",", "")
    if not value:
        return MAX_PIXELS
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"ZOO_MAX_PIXELS must be a positive whole number of pixels (e.g. 200000000), got "
                         f"{os.environ['ZOO_MAX_PIXELS']!r}")
    return int(value)


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
    raise ZooInputError(f"cannot use {name} as an image: pass a path, bytes, a uint8 numpy array or a PIL image")


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
    import cv2

    if not len(data):
        raise ZooInputError(f"image {name} is empty (0 bytes)")
    header = _header(data, name, limit)
    if header is None:
        if bytes(data[:8]).startswith(_SIGNATURES):
            raise ZooInputError(f"image {name} is damaged or truncated (its header cannot be read)")
        start = data[:16].lstrip()
        what = "an HTML page" if start[:1] == b"<" else f"a file that starts with {data[:12]!r}"
        raise ZooInputError(f"image {name} is not an image format the zoo reads ({what}); JPEG, PNG, WebP, TIFF, "
                            f"BMP and GIF are read, among others")
    if header[1] in ("JPEG", "MPO") and _truncated_jpeg(data):
        raise ZooInputError(f"image {name} is a truncated JPEG (its end marker is missing); download it again")
    buffer = np.frombuffer(data, np.uint8)
    with _codec_messages_hidden():
        pixels = cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    del buffer  # a view of a mapped file keeps it from closing
    if pixels is None or pixels.ndim != 3:
        return _decode_with_pillow(data, name, limit)
    return _orient(pixels, header[2])


def _truncated_jpeg(data: bytes) -> bool:
    """Whether a scan (SOS marker) starts after the last end-of-image marker, or there is no end: the
    file was cut. Searching forward from the end marker reads a few bytes, not the compressed data."""
    end = data.rfind(b"\xff\xd9")
    return data.find(b"\xff\xda", end + 2 if end >= 0 else 0) >= 0


#: How the formats the zoo reads begin: such a file whose header cannot be read is damaged.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")

#: Lines the image codecs write to stderr themselves (libpng, libjpeg, libtiff, OpenCV's log).
_CODEC_LINE = re.compile(rb"^(libpng (warning|error)|Corrupt JPEG|Premature end of JPEG|Invalid SOS|"
                         rb"Unsupported marker|Bogus |TIFF|\[ ?(WARN|ERROR|INFO|DEBUG):)")


class _StderrFilter:
    """While any decode runs, file descriptor 2 goes to a temporary file; then the codecs' lines
    are dropped and everything else (another thread's output) is written to stderr after all.

    The file is made once and emptied after each use: making one per decode cost a small
    JPEG's decode a tenth of its time (``bench/bench_decode.py``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = -1
        self._capture: Any = None

    def enter(self) -> None:
        with self._lock:
            if self._depth == 0:
                saved = -1
                try:
                    if self._capture is None:
                        self._capture = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the process
                    saved = os.dup(2)
                    os.dup2(self._capture.fileno(), 2)
                    self._saved = saved
                except OSError:  # no temporary folder, or no stderr (a daemon): this decode runs as is
                    if saved >= 0:
                        os.close(saved)
            self._depth += 1

    def forked(self) -> None:
        """In a child process: stderr back to where it was, and a capture file of its own (the parent's
        is shared, offset included)."""
        self._restore()
        self._lock, self._depth, self._capture = threading.Lock(), 0, None

    def _restore(self) -> None:
        """File descriptor 2 back to what it was before the capture, if it is captured."""
        if self._saved >= 0:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = -1

    def leave(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth or self._saved < 0:
                return
            self._restore()
            if not os.fstat(self._capture.fileno()).st_size:
                return
            self._capture.seek(0)
            written = self._capture.read()
            self._capture.seek(0)
            self._capture.truncate()
        kept = b"".join(line for line in written.splitlines(keepends=True) if not _CODEC_LINE.match(line))
        if kept:
            os.write(2, kept)


_stderr_filter = _StderrFilter()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_stderr_filter.forked)


@contextmanager
def _codec_messages_hidden() -> Iterator[None]:
    _stderr_filter.enter()
    try:
        yield
    finally:
        _stderr_filter.leave()


def _header(data: bytes | mmap.mmap, name: str, limit: int | None) -> tuple[tuple[int, int], str, int] | None:
    """Size, format and EXIF orientation from the header, without decoding pixels (None: unknown to Pillow)."""
    from PIL import Image

    if isinstance(data, mmap.mmap):
        data.seek(0)  # Pillow reads the mapped file as a file, from its start
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(data if isinstance(data, mmap.mmap) else io.BytesIO(data))
            size, fmt = image.size, image.format or ""
            if fmt == "PNG" and "exif" not in image.info:  # Pillow's getexif would decode the pixels to look further
                exif = Image.Exif()
                exif.load(_png_exif_after_pixels(data))
                orientation = int(exif.get(_ORIENTATION_TAG, 1) or 1)
            elif fmt in ("JPEG", "MPO") and not {"exif", "xmp"} & set(image.info):  # no EXIF nor XMP: upright
                orientation = 1
            else:
                orientation = int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Image.DecompressionBombError as error:  # over Pillow's own cap, which may be below ours
        found = re.search(r"\((\d+) pixels\)", str(error))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ZooInputError(f"image {name} has {pixels}, over Pillow's limit of {2 * Image.MAX_IMAGE_PIXELS:,} "
                            f"(PIL.Image.MAX_IMAGE_PIXELS), which the zoo also keeps") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for what it cannot parse
        return None
    _check_size(size, name, limit)
    return size, fmt, orientation


def _png_exif_after_pixels(data: bytes) -> bytes:
    """The payload of a PNG's eXIf chunk placed after its pixel data (``b""``: none), found by walking the chunks'
    headers (length, type) without decompressing anything."""
    position = 8  # after the signature
    while position + 8 <= len(data):
        length, kind = int.from_bytes(data[position:position + 4], "big"), data[position + 4:position + 8]
        if kind == b"eXIf":
            return data[position + 8:position + 8 + length]
        if kind == b"IEND":
            break
        position += 12 + length  # length, type, data, CRC
    return b""


def _check_size(size: tuple[int, int], name: str, limit: int | None) -> None:
    cap = max_pixels() if limit is None else limit
    pixels = size[0] * size[1]
    if pixels > cap:
        raise ZooInputError(
            f"image {name} is {size[0]}x{size[1]}, {pixels:,} pixels, over the limit of {cap:,} (ZOO_MAX_PIXELS); "
            f"if you trust it, raise ZOO_MAX_PIXELS"
        )


def _decode_with_pillow(data: bytes | mmap.mmap, name: str, limit: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(bytes(data)))
            _check_size(image.size, name, limit)
            image.load()
    except ZooInputError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to decode is the input's fault
        raise ZooInputError(f"image {name} is damaged or truncated ({type(error).__name__}: {error})") from None
    return _from_pil(image, name, limit)


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
