"""What an encoded image's bytes say before a decoder sees them, read without decoding a pixel.

* :func:`opencv_format`: the format OpenCV's ``imdecode`` takes the bytes for (it goes by their
  first bytes alone, Pillow by its own plugins in its own order: the two may disagree);
* the frames a decoder may allocate, each by its own header (as the decoder reads it) rather
  than by a directory that describes it: :func:`jpeg_frames` (MPO), :func:`png_frames` (animated
  PNG), :func:`webp_frames`, :func:`gif_frames`, :func:`ico_frames`, :func:`icns_frames`; every
  walk stops after :data:`MAX_FRAMES` frames;
* :func:`jpeg_complete`: whether a JPEG's last scan ends with an end-of-image marker;
* :func:`png_exif`: a PNG's eXIf chunk, wherever it is.

``data`` is ``bytes`` or a read-only :class:`mmap.mmap` of the file. A reader given a cut or
malformed file returns what it read before the damage; the decoder then refuses the file.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

#: Most frames (pages, icons, animation frames) an image may have: the zoo decodes one, and reads every frame's
#: header to know the largest.
MAX_FRAMES = 1000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K_SIGNATURE = b"\xff\x4f\xff\x51"


class Frames(NamedTuple):
    """The frames of an image: how many there are (at least), the ``(width, height)`` of the largest, and of the
    first (the one decoded)."""

    count: int
    largest: tuple[int, int]
    first: tuple[int, int]

    def including(self, size: tuple[int, int]) -> Frames:
        """These frames, with ``size`` counted among the candidates for the largest."""
        return self._replace(largest=max(self.largest, size, key=_pixels))


def frames_of(sizes: Iterable[tuple[int, int]], count: int = 0) -> Frames:
    """The frames of these sizes, the first one first (read up to one past :data:`MAX_FRAMES`), at least ``count``."""
    read = [size for size, _ in zip(sizes, range(MAX_FRAMES + 1))] or [(0, 0)]
    return Frames(max(count, len(read)), max(read, key=_pixels), read[0])


def _pixels(size: tuple[int, int]) -> int:
    return size[0] * size[1]


# -- the format OpenCV reads ----------------------------------------------------------------------


def opencv_format(data: Any) -> str | None:
    """The format OpenCV's decoders take ``data`` for, named as Pillow names it (None: no decoder of OpenCV's).

    OpenCV tries its decoders in turn and the first whose signature matches the first bytes decodes;
    the signatures below (those of the decoders in opencv-python's build) exclude one another.
    """
    head = bytes(data[:32])
    for name, matches in _OPENCV_SIGNATURES:
        if matches(head):
            return name
    return None


def _is_avif(head: bytes) -> bool:
    """An ISO media file whose brands (the major one, or a compatible one in the first box) name AVIF."""
    if head[4:8] != b"ftyp":
        return False
    brands = head[8:min(len(head), int.from_bytes(head[:4], "big"))]
    return any(brands[i:i + 4] in (b"avif", b"avis") for i in range(0, len(brands) - 3, 4))


_OPENCV_SIGNATURES = (
    ("BMP", lambda h: h.startswith(b"BM")),
    ("GIF", lambda h: h.startswith((b"GIF87a", b"GIF89a"))),
    ("AVIF", _is_avif),
    ("HDR", lambda h: h.startswith((b"#?RGBE", b"#?RADIANCE"))),
    ("JPEG", lambda h: h.startswith(b"\xff\xd8\xff")),
    ("WEBP", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    ("SUN", lambda h: h.startswith(b"\x59\xa6\x6a\x95")),
    ("PPM", lambda h: re.match(rb"P[1-7fF]\s", h) is not None),  # PBM, PGM, PPM; PAM; PFM
    ("TIFF", lambda h: h.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"))),
    ("PNG", lambda h: h.startswith(_PNG_SIGNATURE)),
    ("JPEG2000", lambda h: h.startswith((_JP2_SIGNATURE, _J2K_SIGNATURE))),
)


# -- PNG --------------------------------------------------------------------------------------------


def _png_chunks(data: Any) -> Iterator[tuple[bytes, int, int]]:
    """Each chunk's type, the offset of its payload and the payload's length, up to IEND or the end of ``data``."""
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        yield kind, position + 8, length
        if kind == b"IEND":
            return
        position += 12 + length  # length, type, payload, CRC


def png_size(data: Any) -> tuple[int, int]:
    """The width and height in the IHDR chunk, which libpng requires first ((0, 0): none there)."""
    if bytes(data[12:16]) != b"IHDR" or len(data) < 24:
        return 0, 0
    return struct.unpack_from(">II", data, 16)


def png_frames(data: Any) -> Frames:
    """The frames of a PNG: the image itself, and those of an animated PNG (its acTL chunk's count, or the number of
    fcTL chunks, whichever is more; each fcTL's size). A PNG without acTL before its pixels is read to there only."""
    declared, sizes = 0, []
    for kind, start, length in _png_chunks(data):
        if kind == b"acTL" and length >= 8 and start + 8 <= len(data):
            declared = struct.unpack_from(">I", data, start)[0]
        elif kind == b"fcTL" and length >= 12 and start + 12 <= len(data):
            sizes.append(struct.unpack_from(">II", data, start + 4))
            if len(sizes) > MAX_FRAMES:
                break
        elif kind == b"IDAT" and not declared:
            break
    return frames_of([png_size(data), *sizes])._replace(count=max(declared, len(sizes), 1))


def png_exif(data: Any) -> bytes:
    """The payload of a PNG's eXIf chunk (``b""``: none), found by walking the chunks' headers."""
    for kind, start, length in _png_chunks(data):
        if kind == b"eXIf":
            return bytes(data[start:start + length])
    return b""


# -- JPEG -------------------------------------------------------------------------------------------

#: Markers without a length after them: TEM, RST0..7, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xDA)}
#: Start-of-frame markers: every SOFn but DHT (C4), JPG (C8) and DAC (CC).
_FRAME_HEADERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS, _EOI = 0xDA, 0xD9
#: In entropy-coded data a 0xFF is followed by 0x00 (a stuffed byte) or a restart marker; anything else is a marker.
_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def _jpeg_markers(data: Any, start: int = 0) -> Iterator[tuple[int, int]]:
    """Each marker after the SOI at ``start`` and the offset after it, as libjpeg reads them: bytes before a 0xFF and
    fill 0xFF bytes skipped, the segments' lengths followed, and after each scan header (SOS) its entropy-coded data
    skipped to the next marker. Ends after EOI, or where ``data`` ends."""
    position = start + 2
    while True:
        position = data.find(b"\xff", position)
        while 0 <= position < len(data) - 1 and data[position + 1] == 0xFF:
            position += 1
        if position < 0 or position + 1 >= len(data):
            return
        marker, position = data[position + 1], position + 2
        if marker == 0:  # a stuffed byte, not a marker
            continue
        yield marker, position
        if marker == _EOI:
            return
        if marker in _STANDALONE:
            continue
        if position + 2 > len(data) or (length := int.from_bytes(data[position:position + 2], "big")) < 2:
            return
        position += length
        if marker == _SOS:
            found = _MARKER_IN_SCAN.search(data, position)
            if found is None:
                return
            position = found.start()


def jpeg_frames(data: Any) -> Frames:
    """The images of a JPEG file, each by its first frame header (libjpeg's reading): the image itself, and those that
    an MPO file's index (an APP2 "MPF" segment before the frame header) points to, which Pillow reads as frames."""
    first, index = _jpeg_header(data, 0)
    offsets = _mpo_offsets(data, index) if index is not None else []
    return frames_of([first, *(_jpeg_header(data, offset)[0] for offset in offsets)], 1 + len(offsets))


def _jpeg_header(data: Any, start: int) -> tuple[tuple[int, int], int | None]:
    """The size in the first frame header of the JPEG image at ``start`` ((0, 0): none before its first scan), and
    where the TIFF structure of its MPO index begins (None: it has none)."""
    index = None
    for marker, position in _jpeg_markers(data, start):
        if marker == 0xE2 and index is None and bytes(data[position + 2:position + 6]) == b"MPF\x00":
            index = position + 6
        elif marker in _FRAME_HEADERS and position + 7 <= len(data):
            height, width = struct.unpack_from(">HH", data, position + 3)
            return (width, height), index
        elif marker == _SOS:
            break
    return (0, 0), index


def _mpo_offsets(data: Any, tiff: int) -> list[int]:
    """Where the images after the first begin, from an MPO index: a TIFF structure at ``tiff`` whose first directory's
    MP Entry tag (0xB002) lists each image's 16-byte entry, its offset (from ``tiff``) at byte 8."""
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(data[tiff:tiff + 2])]
        directory = tiff + struct.unpack_from(order + "I", data, tiff + 4)[0]
        for entry in range(struct.unpack_from(order + "H", data, directory)[0]):
            tag, _, count, value = struct.unpack_from(order + "HHII", data, directory + 2 + 12 * entry)
            if tag == 0xB002:
                end = min(tiff + value + min(count, 16 * (MAX_FRAMES + 1)), len(data) - 15)
                entries = range(tiff + value, end, 16)
                offsets = [struct.unpack_from(order + "I", data, e + 8)[0] for e in entries]
                return [tiff + offset for offset in offsets if offset]  # the first image's offset is 0
    except (KeyError, struct.error):  # no index, or a cut one: the frames it names are not there
        pass
    return []


def jpeg_complete(data: Any) -> bool:
    """Whether the entropy-coded data of the last scan ends with an end-of-image marker (what follows it is a trailer,
    such as a motion photo's video). A file that ends with that marker is taken at its word; any other is walked."""
    if bytes(data[-2:]) == b"\xff\xd9":
        return True
    return any(marker == _EOI for marker, _ in _jpeg_markers(data))


# -- GIF, WebP ---------------------------------------------------------------------------------------


def gif_frames(data: Any) -> Frames:
    """The frames of a GIF, each from its image descriptor: the largest is the canvas that holds them all and the
    logical screen (Pillow grows its canvas to a frame that reaches past the screen). The blocks are walked by their
    lengths, nothing decompressed, and no further than :data:`_GIF_SUB_BLOCKS` data sub-blocks."""
    if len(data) < 13:
        return frames_of([])
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    position, end, walked, extents = 13 + _gif_palette_length(flags), len(data), 0, []
    try:
        while position < end and len(extents) <= MAX_FRAMES and walked < _GIF_SUB_BLOCKS:
            block = data[position]
            if block == 0x21:  # an extension: its label, then sub-blocks
                position += 2
            elif block == 0x2C:  # an image descriptor, its palette, the LZW code size, then sub-blocks
                left, top, w, h, flags = struct.unpack_from("<HHHHB", data, position + 1)
                extents.append((left + w, top + h))
                position += 11 + _gif_palette_length(flags)
            else:  # the trailer, or what no decoder reads on from
                break
            while position < end and walked < _GIF_SUB_BLOCKS:  # sub-blocks: a length byte, that many bytes; 0 ends
                length = data[position]
                position += 1 + length
                walked += 1
                if not length:
                    break
    except (struct.error, IndexError):  # cut short: the frames read so far
        pass
    canvas = (max([width] + [e[0] for e in extents]), max([height] + [e[1] for e in extents]))
    return Frames(max(len(extents), 1), canvas, (width, height))


#: The most data sub-blocks :func:`gif_frames` walks (a frame's data comes in blocks of up to 255 bytes): some 50 MB
#: of a GIF's usual blocks, some 0.03 s of walking for a file of the smallest ones.
_GIF_SUB_BLOCKS = 200_000


def _gif_palette_length(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _riff_chunks(data: Any) -> Iterator[tuple[bytes, int, int]]:
    """Each chunk of a RIFF file after its 12-byte header: type, offset of the payload, payload length."""
    position = 12
    while position + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, position)
        yield kind, position + 8, length
        position += 8 + length + (length & 1)


def webp_frames(data: Any) -> Frames:
    """The canvas of a WebP file, from its first chunk (VP8X's canvas, or a still image's VP8/VP8L bitstream), which
    libwebp decodes every frame into, and its number of frames (ANMF chunks). Past :data:`MAX_FRAMES` chunks of any
    kind (a WebP has a few besides its frames), the walk stops and counts one frame too many."""
    size, frames = (0, 0), 0
    for index, (kind, start, length) in enumerate(_riff_chunks(data)):
        if index == 0:
            size = _webp_size(kind, bytes(data[start:start + min(length, 10)]))
        frames += kind == b"ANMF"
        if index > MAX_FRAMES + 16:
            frames = MAX_FRAMES + 1
            break
    return Frames(max(frames, 1), size, size)


def _webp_size(kind: bytes, payload: bytes) -> tuple[int, int]:
    """The size in the first chunk of a WebP file ((0, 0): none readable)."""
    if kind == b"VP8X" and len(payload) >= 10:
        return 1 + int.from_bytes(payload[4:7], "little"), 1 + int.from_bytes(payload[7:10], "little")
    if kind == b"VP8 " and len(payload) >= 10 and payload[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", payload, 6)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(payload) >= 5 and payload[0] == 0x2F:
        bits = int.from_bytes(payload[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return 0, 0


# -- icons -------------------------------------------------------------------------------------------


def ico_frames(data: Any) -> Frames:
    """The icons of an .ico, each by its own header (a PNG's IHDR, or the bitmap's, whose height counts the AND mask
    too), not by the directory: Pillow picks an entry by what the directory says and decodes whatever it holds."""
    if len(data) < 6:
        return frames_of([])
    count = struct.unpack_from("<H", data, 4)[0]
    entries = range(min(count, MAX_FRAMES + 1))
    offsets = [struct.unpack_from("<I", data, 6 + 16 * i + 12)[0] for i in entries if 6 + 16 * i + 16 <= len(data)]
    return frames_of((_icon_size(data, offset) for offset in offsets), count)


def _icon_size(data: Any, offset: int) -> tuple[int, int]:
    """The size of the icon at ``offset`` of an .ico: a PNG's, or a bitmap's ((0, 0): unreadable)."""
    head = bytes(data[offset:offset + 24])
    if head.startswith(_PNG_SIGNATURE) and len(head) >= 24:
        return struct.unpack_from(">II", head, 16)
    if len(head) >= 12 and int.from_bytes(head[:4], "little") == 12:  # OS/2 bitmap header: 16-bit sizes
        width, height = struct.unpack_from("<HH", head, 4)
        return width, height // 2
    if len(head) >= 12:
        width, height = struct.unpack_from("<ii", head, 4)
        return abs(width), abs(height) // 2
    return 0, 0


def icns_frames(data: Any) -> Frames:
    """The icons of an .icns, each PNG or JPEG 2000 one by its own header (its type names a size, which Pillow picks
    by and then decodes whatever the entry holds); the others, raw bitmaps, have the sizes their types name."""
    position, sizes = 8, []
    while position + 8 <= len(data) and len(sizes) <= MAX_FRAMES:
        length = struct.unpack_from(">I", data, position + 4)[0]
        if length < 8:
            break
        sizes.append(_embedded_size(bytes(data[position + 8:position + length])))
        position += length
    return frames_of(sizes)


def _embedded_size(blob: bytes) -> tuple[int, int]:
    """The size of a PNG or JPEG 2000 image held in an icon entry, as Pillow reads its header ((0, 0): neither)."""
    if blob.startswith(_PNG_SIGNATURE):
        return png_size(blob)
    if blob.startswith((_JP2_SIGNATURE, _J2K_SIGNATURE)):
        from PIL import Image

        try:
            return Image.open(io.BytesIO(blob), formats=["JPEG2000"]).size  # the header only
        except Exception:  # noqa: BLE001 - Pillow raises many types for what it cannot parse; nor will it decode it
            return 0, 0
    return 0, 0
