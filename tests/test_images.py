"""Image loading: every kind of input, EXIF orientation, odd modes, bombs, and bad input that must fail clearly."""

from __future__ import annotations

import io
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin

skimage_data = pytest.importorskip("skimage.data")

import zoo
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


def test_codec_messages_stay_on_the_codec_threads_and_the_programs_own_lines_are_kept(capfd):
    damaged = bytearray(encode(Image.fromarray(RGB), "JPEG", quality=95))
    end = damaged.rfind(b"\xff\xd9")
    damaged[end - 20:end - 20] = bytes(5)  # libjpeg prints "Corrupt JPEG data" and decodes
    broken = bytearray(PNG)
    broken[len(broken) // 2] ^= 0xFF  # libpng prints "libpng error" and gives up
    for _ in range(3):
        os.write(2, b"libpng warning: a line of the program's own\n")
        assert images.decode(bytes(damaged), "odd.jpg").shape == RGB.shape
        with pytest.raises(ZooInputError, match=r"image broken.png is damaged or truncated \(.+\)"):
            images.decode(bytes(broken), "broken.png")
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("", "libpng warning: a line of the program's own\n" * 3)


def test_codecs_run_on_the_callers_thread_where_a_thread_cannot_have_files_of_its_own(monkeypatch):
    from zoo import _codec_threads

    def refused() -> None:
        raise PermissionError(1, "Operation not permitted")  # as a seccomp profile that refuses unshare answers

    monkeypatch.setattr(_codec_threads, "_unshare_file_table", refused)
    threads = _codec_threads._CodecThreads()
    if not threads.possible:
        pytest.skip("codec threads need Linux")
    assert threads.run(threading.get_ident, ())[1] == ""  # made on the thread that could not be set up
    assert not threads.possible
    assert threads.run(threading.get_ident, ()) == (threading.get_ident(), "")


# -- issue 28: hostile images ------------------------------------------------------------------


def chunk(kind: bytes, payload: bytes) -> bytes:
    """A PNG chunk: length, type, payload, CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_of_zeros(width: int, height: int) -> bytes:
    """A grey PNG of ``width`` x ``height`` zeros: a few kilobytes for millions of pixels."""
    return cv2.imencode(".png", np.zeros((height, width), np.uint8))[1].tobytes()


def ico_holding(png: bytes) -> bytes:
    """An .ico whose one entry says 16x16 and holds ``png``."""
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22) + png


def icns_holding(png: bytes) -> bytes:
    """An .icns whose one entry is of the 128x128 type (ic07) and holds ``png``."""
    entry = b"ic07" + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(entry)) + entry


def sun_raster_in_im_clothing(width: int, height: int) -> bytes:
    """A Sun raster of ``width`` x ``height`` (what OpenCV reads) whose first bytes are also an IM header that Pillow
    reads as 512x512: the raster's header ends the first IM line, and the IM lines go on in the pixel data."""
    header = struct.pack(">8I", 0x59A66A95, width, height, 24, width * height * 3, 1, 0, 0)
    assert b"\n" not in header and b":" not in header
    im_lines = b": polyglot\nName: polyglot\n\x1a"
    return header + im_lines + bytes(width * height * 3 - len(im_lines))


def tiff_with_a_large_second_page(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (16, 16)).save(buffer, "TIFF", save_all=True, append_images=[Image.new("L", (width, height))])
    return buffer.getvalue()


def mpo_with_a_large_second_frame(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (width, height))])
    return buffer.getvalue()


def gif_with_a_large_second_frame(width: int, height: int) -> bytes:
    """A GIF of a 16x16 screen whose second frame's descriptor says ``width`` x ``height`` (each frame's data is
    one pixel: the size is what a decoder allocates by)."""
    def frame(w: int, h: int) -> bytes:
        return b"," + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02\x02\x44\x01\x00"  # LZW of one pixel

    screen = struct.pack("<HHBBB", 16, 16, 0x80, 0, 0) + bytes(6)  # a global palette of two colours
    return b"GIF89a" + screen + frame(1, 1) + frame(width, height) + b";"


def apng_declaring_frames(count: int) -> bytes:
    """A 16x16 PNG whose animation control chunk declares ``count`` frames."""
    png = png_of_zeros(16, 16)
    return png[:33] + chunk(b"acTL", struct.pack(">II", count, 0)) + png[33:]


HOSTILE = {
    "an .ico that says 16x16 and holds a 3000x3000 PNG": (lambda: ico_holding(png_of_zeros(3000, 3000)),
                                                         r"3000x3000, 9,000,000 pixels, over the limit of 1,000,000"),
    "an .icns entry of 128x128 that holds a 3000x3000 PNG": (lambda: icns_holding(png_of_zeros(3000, 3000)),
                                                            r"3000x3000, 9,000,000 pixels, over the limit of 1,000,000"),
    "a Sun raster of 1500x1000 that Pillow reads as an IM file of 512x512": (
        lambda: sun_raster_in_im_clothing(1500, 1000), r"SUN.*IM.*two different images"),
    "a TIFF whose second page is 1200x1000": (lambda: tiff_with_a_large_second_page(1200, 1000),
                                              r"1200x1000, 1,200,000 pixels, over the limit of 1,000,000"),
    "an MPO whose second frame is 1200x1000": (lambda: mpo_with_a_large_second_frame(1200, 1000),
                                              r"1200x1000, 1,200,000 pixels, over the limit of 1,000,000"),
    "a GIF whose second frame says 1200x1000": (lambda: gif_with_a_large_second_frame(1200, 1000),
                                               r"1200x1000, 1,200,000 pixels, over the limit of 1,000,000"),
    "an animated PNG that declares 100,000 frames": (lambda: apng_declaring_frames(100_000),
                                                     r"100,000 frames, over the limit of"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_28_05_every_decoder_is_capped_before_it_allocates(monkeypatch, case):
    build, message = HOSTILE[case]
    data = build()
    decodes = []
    load, imdecode = ImageFile.ImageFile.load, cv2.imdecode
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decodes.append(self.format) or load(self))
    monkeypatch.setattr(cv2, "imdecode", lambda *args: decodes.append("OpenCV") or imdecode(*args))
    monkeypatch.setenv("ZOO_MAX_PIXELS", "1000000")
    with pytest.raises(ZooInputError, match=message) as error:
        images.decode(data, "hostile.img")
    assert "hostile.img" in str(error.value)
    assert decodes == [], f"decoded by {decodes} before being refused"
    with pytest.raises(ZooInputError, match=message):  # the server's admission reads the same header
        images._header(data, "hostile.img", None)


def png_with_rows(width: int, height: int, rows: int) -> bytes:
    """A grey PNG whose header says ``width`` x ``height`` and whose IDAT, a complete zlib stream, holds only the
    first ``rows`` rows (each a filter byte and ``width`` pixels), followed by a valid IEND."""
    pixels = b"".join(b"\x00" + bytes([(y + 1) % 256]) * width for y in range(rows))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


def test_28_06_damaged_and_complete_files_are_told_apart(tmp_path):
    assert images.load(png_with_rows(300, 400, 400)).shape == (400, 300, 3)
    with pytest.raises(ZooInputError, match=r"image short.png is damaged"):
        images.decode(png_with_rows(300, 400, 100), "short.png")  # not 300 rows of zeros
    rng = random.Random(28)
    progressive = encode(Image.fromarray(RGB), "JPEG", quality=90, progressive=True)
    for jpeg in (JPEG, progressive):
        alone = images.load(jpeg)
        video = b"\x00\x00\x00\x18ftypmp42" + rng.randbytes(1000) + b"\xff\xda" + rng.randbytes(1000)
        trailers = [video, b"\xff\xda\x00\x0c", b"\xff\xd9\xff\xda" + rng.randbytes(100), rng.randbytes(2_000_000)]
        trailers += [rng.randbytes(rng.randrange(10, 100_000)) + b"\xff\xda" + rng.randbytes(50) for _ in range(10)]
        for trailer in trailers:  # a motion photo: a complete JPEG, then a video
            assert np.array_equal(images.load(jpeg + trailer), alone)
        (tmp_path / "motion.jpg").write_bytes(jpeg + video)
        assert np.array_equal(images.load(tmp_path / "motion.jpg"), alone)  # read from the mapped file
        for cut in (jpeg[:-2], jpeg[: len(jpeg) * 2 // 3], jpeg[: len(jpeg) // 2] + b"\xff\xda" + bytes(100)):
            with pytest.raises(ZooInputError, match="truncated JPEG"):
                images.decode(cut, "cut.jpg")


#: ``zoo serve`` with one more thread, which writes a numbered line to stderr every 20 ms; each line says when it
#: was written and looks like a codec's line, which is exactly what must reach stderr unchanged.
SERVE_WITH_A_TICKING_THREAD = """
import os, sys, threading, time
def tick():
    for n in range(1, 10**6):
        os.write(2, f"libpng warning: tick {n} at {time.time():.3f}\\n".encode())
        time.sleep(0.02)
threading.Thread(target=tick, daemon=True).start()
from zoo.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: How the codecs' own lines begin: libpng, libjpeg, OpenCV's log.
CODEC_LINE = re.compile(r"^(libpng (warning|error)|Corrupt JPEG|Premature end of JPEG|Invalid SOS|Unsupported marker|"
                        r"Bogus |\[ ?(WARN|ERROR|INFO|DEBUG):)")


def test_28_07_concurrent_decodes_in_the_server_leave_its_stderr_alone():
    requests = pytest.importorskip("requests")
    pytest.importorskip("uvicorn")
    if "digits" not in zoo.list_models():
        pytest.skip("the zoo-digits plugin is not installed")
    gradient = np.add.outer(np.arange(1500, dtype=np.uint16), np.arange(2000, dtype=np.uint16))
    big = cv2.imencode(".png", (gradient % 256).astype(np.uint8))[1].tobytes()  # 3 MP: decodes overlap
    warning = bytearray(cv2.imencode(".jpg", cv2.resize(RGB, (1600, 1200)))[1].tobytes())
    end = warning.rfind(b"\xff\xd9")
    warning[end - 20:end - 20] = bytes(5)  # libjpeg prints "Corrupt JPEG data" and decodes it
    broken = bytearray(big)
    broken[len(broken) // 2] ^= 0xFF  # libpng prints "libpng error" and gives up
    bodies = [big, bytes(warning), bytes(broken)]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", SERVE_WITH_A_TICKING_THREAD, "serve", "digits", "--port",
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    arrived: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: arrived.extend((time.time(), line.decode(errors="replace"))
                                                            for line in process.stderr), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "".join(line for _, line in arrived)
            try:
                if requests.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
            assert time.monotonic() < deadline, "not ready in 60 s"

        def post(i: int) -> tuple[int, str]:
            answer = requests.post(url + "/v1/models/digits/predict", data=bodies[i % 3],
                                   headers={"Content-Type": "image/png"}, timeout=60)
            return answer.status_code, answer.text

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(post, range(60)))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        reader.join(timeout=10)

    assert [code for code, _ in answers[0::3]] == [200] * 20 and [code for code, _ in answers[1::3]] == [200] * 20
    assert all(code == 422 and "is damaged or truncated" in text for code, text in answers[2::3])
    ticks = [(when, re.fullmatch(r"libpng warning: tick (\d+) at ([\d.]+)\n", line)) for when, line in arrived]
    numbers = [int(m.group(1)) for _, m in ticks if m]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > 50  # none held back for good, none dropped
    late = max(when - float(m.group(2)) for when, m in ticks if m)
    assert late < 1.0, f"a line written to stderr by another thread arrived {late:.1f} s later"
    others = [line for _, line in arrived if not re.fullmatch(r"libpng warning: tick \d+ at [\d.]+\n", line)]
    assert not [line for line in others if CODEC_LINE.match(line)], "".join(others)


def test_30_04_a_torch_tensor_is_an_image_chw_as_read_image_gives_it_or_hwc(tmp_path):
    torch = pytest.importorskip("torch")
    torchvision_io = pytest.importorskip("torchvision.io")
    photo = skimage_data.astronaut()
    path = tmp_path / "astronaut.png"
    Image.fromarray(photo).save(path)
    from_file = images.load(path)
    chw = torchvision_io.read_image(str(path))  # (3, H, W) uint8, as torchvision users have it
    assert np.array_equal(images.load(chw), from_file)
    assert np.array_equal(images.load(torch.from_numpy(photo)), from_file)  # (H, W, 3)
    assert np.array_equal(images.load(chw[:1]), np.repeat(from_file[:, :, :1], 3, axis=2))  # grey, (1, H, W)
    with pytest.raises(zoo.ZooInputError, match="must be uint8"):
        images.load(chw.float() / 255)
