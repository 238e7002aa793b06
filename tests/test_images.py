"""Image loading: every kind of input, EXIF orientation, odd modes, bombs, and bad input that must fail clearly."""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps, JpegImagePlugin

skimage_data = pytest.importorskip("skimage.data")

from zoo import images
from zoo.errors import ZooError, ZooInputError

RGB = np.ascontiguousarray(skimage_data.astronaut()[::4, ::3])  # 128x171, not square: orientation shows


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_every_kind_of_source_gives_the_same_pixels(tmp_path):
    data = encode(Image.fromarray(RGB), "PNG")
    path = tmp_path / "kätzchen 猫.png"  # non-ASCII names
    path.write_bytes(data)
    for source in (path, str(path), data, bytearray(data), memoryview(data), Image.open(io.BytesIO(data)), RGB):
        assert np.array_equal(images.load(source), RGB), images.describe(source)
    assert np.array_equal(images.load(RGB[:, :, ::-1], channels="BGR"), RGB)
    assert images.load(RGB[::2, ::2]).flags.c_contiguous  # views are fine


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_is_applied_the_same_way_for_every_source(tmp_path, orientation, fmt):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(RGB), fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    path.write_bytes(data)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    from_path, from_bytes = images.load(path), images.load(data)
    from_pil = images.load(Image.open(io.BytesIO(data)))
    assert from_path.shape == from_bytes.shape == from_pil.shape == reference.shape
    assert np.array_equal(from_path, from_bytes)
    tolerance = 0 if fmt == "PNG" else 8  # two JPEG decoders (OpenCV's, Pillow's) may differ slightly
    assert np.abs(from_path.astype(int) - from_pil).max() <= tolerance
    assert np.abs(from_path.astype(int) - reference).max() <= tolerance


def test_modes_are_converted():
    gray = RGB[:, :, 0]
    assert np.array_equal(images.load(encode(Image.fromarray(gray), "PNG")), np.repeat(gray[:, :, None], 3, 2))
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])
    assert np.array_equal(images.load(encode(Image.fromarray(rgba), "PNG")), RGB)  # alpha dropped, like PIL
    assert np.array_equal(images.load(rgba), RGB)
    palette = Image.fromarray(RGB).convert("P")
    assert np.array_equal(images.load(encode(palette, "PNG")), np.asarray(palette.convert("RGB")))
    cmyk = encode(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=95)
    assert np.abs(images.load(cmyk).astype(int) - np.asarray(Image.open(io.BytesIO(cmyk)).convert("RGB"))).max() <= 8
    sixteen = (RGB.astype(np.uint16) * 257 + 100)
    ok, png16 = cv2.imencode(".png", sixteen[:, :, ::-1])
    assert ok and np.array_equal(images.load(png16.tobytes()), (sixteen >> 8).astype(np.uint8))
    gray16 = sixteen[:, :, 0]
    ok, png16 = cv2.imencode(".png", gray16)
    expected = np.repeat((gray16 >> 8).astype(np.uint8)[:, :, None], 3, 2)
    assert np.array_equal(images.load(png16.tobytes()), expected)
    assert np.array_equal(images.load(Image.open(io.BytesIO(png16.tobytes()))), expected)


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    ok, bomb = cv2.imencode(".png", np.zeros((11_000, 10_000), np.uint8))  # 110 megapixels in ~100 kB
    assert ok and len(bomb) < 1_000_000
    with pytest.raises(ZooInputError, match="10000x11000, 110,000,000 pixels, over the limit of 100,000,000 \\(ZOO_MAX_PIXELS\\)"):
        images.load(bomb.tobytes())
    small = encode(Image.fromarray(RGB), "PNG")
    monkeypatch.setenv("ZOO_MAX_PIXELS", "1000")
    with pytest.raises(ZooInputError, match="raise ZOO_MAX_PIXELS"):
        images.load(small)
    assert images.load(small, limit=10**6).shape == RGB.shape


def test_bad_inputs_name_themselves(tmp_path):
    jpeg = encode(Image.fromarray(RGB), "JPEG", quality=90)
    png = encode(Image.fromarray(RGB), "PNG")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is text, not a photo")
    (tmp_path / "page.jpg").write_text("<!DOCTYPE html><html>login</html>")
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "folder.jpg").mkdir()
    cases = {
        "missing.jpg": "does not exist",
        "folder.jpg": "is a directory",
        "empty.jpg": "is empty",
        "notes.jpg": "not an image",
        "page.jpg": "an HTML page",
        "cut.jpg": "truncated JPEG",
        "cut.png": "damaged or truncated",
    }
    for name, message in cases.items():
        with pytest.raises(ZooInputError, match=message) as error:
            images.load(tmp_path / name)
        assert name in str(error.value)
        assert isinstance(error.value, ValueError) and isinstance(error.value, ZooError)
    for array, message in ((RGB.astype(np.float32), "must be uint8"), (RGB[:, :, :2], "must have shape"),
                           (np.zeros((0, 5, 3), np.uint8), "must have shape"), (np.zeros(5, np.uint8), "must have shape")):
        with pytest.raises(ZooInputError, match=message):
            images.load(array)
    with pytest.raises(ZooInputError, match="cannot use <builtins.int> as an image"):
        images.load(42)
    with pytest.raises(ZooInputError, match="channels must be"):
        images.load(RGB, channels="RGBA")


JPEG = encode(Image.fromarray(RGB), "JPEG", quality=80)
PNG = encode(Image.fromarray(RGB), "PNG")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_fuzz_arbitrary_bytes_raise_only_zoo_errors(data):
    try:
        result = images.load(data)
    except ZooError:
        return
    assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([JPEG, PNG]), st.integers(0, 10_000), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                                         max_size=8))
def test_fuzz_damaged_images_raise_only_zoo_errors(original, cut, flips):
    data = bytearray(original[: max(1, len(original) - cut)])
    for position, value in flips:
        data[position % len(data)] = value
    try:
        result = images.load(bytes(data))
    except ZooError:
        return
    assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([JPEG, PNG]), st.integers(0, 10_000), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                                         max_size=32))
def test_fuzz_damaged_images_long(original, cut, flips):
    test_fuzz_damaged_images_raise_only_zoo_errors.hypothesis.inner_test(original, cut, flips)


def _exif_moved_after_pixels(png: bytes) -> bytes:
    """``png`` with its eXIf chunk moved from before the pixel data to just before IEND (where PNG allows it too)."""
    chunks, position = [], 8
    while position < len(png):
        length = int.from_bytes(png[position:position + 4], "big")
        chunks.append(png[position:position + 12 + length])
        position += 12 + length
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    assert len(exif) == 1 and rest[-1][4:8] == b"IEND"
    return png[:8] + b"".join(rest[:-1] + exif + rest[-1:])


@pytest.mark.parametrize("exif_place", ["none", "before pixels", "after pixels"])
def test_a_png_is_decoded_once_and_its_orientation_read_from_the_chunks(monkeypatch, exif_place):
    import cv2
    from PIL import PngImagePlugin

    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(RGB), "PNG", **({} if exif_place == "none" else {"exif": exif}))
    if exif_place == "after pixels":
        data = _exif_moved_after_pixels(data)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    pillow_loads, opencv_decodes = [], []
    load, imdecode = PngImagePlugin.PngImageFile.load, cv2.imdecode
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: pillow_loads.append(1) or load(self))
    monkeypatch.setattr(cv2, "imdecode", lambda *args: opencv_decodes.append(1) or imdecode(*args))
    pixels = images.load(data)
    assert np.array_equal(pixels, reference) and pixels.shape[:2] == (RGB.shape[:2] if exif_place == "none"
                                                                       else RGB.shape[1::-1])
    assert (len(pillow_loads), len(opencv_decodes)) == (0, 1)  # the header read decodes no pixel


@pytest.mark.parametrize("with_exif", [False, True])
def test_a_jpeg_is_decoded_once_and_its_orientation_parsed_only_when_it_has_exif(monkeypatch, with_exif):
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(RGB), "JPEG", quality=95, **({"exif": exif} if with_exif else {}))
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    pillow_loads, exif_reads, opencv_decodes = [], [], []
    load, getexif, imdecode = JpegImagePlugin.JpegImageFile.load, Image.Image.getexif, cv2.imdecode
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", lambda self: pillow_loads.append(1) or load(self))
    monkeypatch.setattr(Image.Image, "getexif", lambda self: exif_reads.append(1) or getexif(self))
    monkeypatch.setattr(cv2, "imdecode", lambda *args: opencv_decodes.append(1) or imdecode(*args))
    pixels = images.load(data)
    assert np.array_equal(pixels, reference) and pixels.shape[:2] == (RGB.shape[1::-1] if with_exif else RGB.shape[:2])
    assert (len(pillow_loads), bool(exif_reads), len(opencv_decodes)) == (0, with_exif, 1)


def test_a_jpeg_oriented_by_xmp_alone_is_turned_as_pillow_turns_it():
    xmp = (b'<?xpacket begin=""?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
           b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
           b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
           b'<?xpacket end="w"?>')
    data = encode(Image.fromarray(RGB), "JPEG", quality=95, xmp=xmp)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert reference.shape[:2] == RGB.shape[1::-1]  # Pillow reads the XMP orientation
    assert np.array_equal(images.load(data), reference)


def test_codec_lines_are_dropped_and_other_lines_kept_once_over_many_decodes(capfd):
    damaged = bytearray(encode(Image.fromarray(RGB), "JPEG", quality=95))
    end = damaged.rfind(b"\xff\xd9")
    damaged[end - 20:end - 20] = bytes(5)  # libjpeg warns on stderr and decodes
    for _ in range(3):
        with images._codec_messages_hidden():
            os.write(2, b"a line of the program's own\n")
            images.decode(bytes(damaged), "odd.jpg")
    assert capfd.readouterr().err == "a line of the program's own\n" * 3
