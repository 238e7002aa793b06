"""Tests of zoo-ocr: parity with RapidOCR (rapidocr-onnxruntime 1.4.4, its reference implementation) on text images
made here, the models' conformance with their real weights, and the ``ocr`` result.

The weights come the way users get them, as members of RapidOCR's wheel, through the zoo's download, from a server
on 127.0.0.1 (``ZOO_MIRROR``) that serves the wheel ``pip download`` fetched: nothing but the package index is
reached. Parity needs the reference installed beside the zoo (its wheel asks for opencv-python, which
opencv-python-headless already provides)::

    pip install --no-deps rapidocr-onnxruntime==1.4.4 && pip install pyclipper shapely pyyaml six
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo_ocr
from zoo_ocr import det
from zoo_ocr.result import TextLines, ascii_text, compare, lines_from

import zoo
from zoo.testing import check_model, registered_specs, sample_images

WHEEL = "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
REFERENCE = "rapidocr-onnxruntime==1.4.4"
INSTALL = f"pip install --no-deps {REFERENCE} && pip install pyclipper shapely pyyaml six"
MODELS = ("ppocr-det", "ppocr-cls", "ppocr-rec")


# -- the images ---------------------------------------------------------------------------------------------------


@functools.cache
def font(name: str, size: int) -> Any:
    """A TrueType font of the system by file name, or Pillow's own scalable default where it is missing."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype(name, size)
    except OSError:
        return ImageFont.load_default(size=size)


def page(size: tuple[int, int], lines: list[tuple[tuple[int, int], str, Any]], background: tuple[int, ...] = (255,) * 3,
         ink: tuple[int, ...] = (0, 0, 0)) -> Any:
    """A PIL image of ``size`` (width, height) with each ``(x, y), text, font`` written on it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    for at, text, typeface in lines:
        draw.text(at, text, fill=ink, font=typeface)
    return image


SANS, SERIF, MONO = "DejaVuSans.ttf", "LiberationSerif-Regular.ttf", "DejaVuSansMono.ttf"
QUICK = "The quick brown fox jumps over the lazy dog"
UPSIDE_DOWN = "This one is upside down"
WIDE = "A very wide line of text that runs on across the whole banner, far wider than it is tall"
NAMES = ("default-font", "light-on-dark", "mono-small", "sans-line", "serif-page", "sideways", "size-263x130",
         "skimage-text", "small", "tilted", "upside-down", "very-wide")


@functools.cache
def images() -> dict[str, np.ndarray]:
    """The parity images: RGB uint8 (scikit-image's ``text`` greyscale), several fonts and sizes, a tilted line, an
    upside-down line, light text on dark, a very wide line (shrunk and banded by RapidOCR), a small one (enlarged),
    a sideways one (its crops turned a quarter) and Pillow's default font at three sizes."""
    import skimage.data
    from PIL import ImageFont

    made = {
        "sans-line": page((820, 80), [((20, 20), QUICK, font(SANS, 32))]),
        "serif-page": page((720, 400), [
            ((30, 30), "Optical character recognition", font("LiberationSerif-Bold.ttf", 40)),
            ((30, 100), "turns pictures of text into text that a", font(SERIF, 26)),
            ((30, 140), "computer can search, copy and edit.", font(SERIF, 26)),
            ((30, 200), "Page 7 of 12, printed 2024-05-17", font("LiberationSerif-Italic.ttf", 20)),
            ((420, 330), "Total: 1,234.56 EUR", font("DejaVuSansMono-Bold.ttf", 24))]),
        "mono-small": page((260, 36), [((10, 8), "Invoice #12345: $678.90", font(MONO, 16))]),
        "tilted": page((560, 160), [((40, 60), "Rotated text reads too", font(SANS, 36))]).rotate(
            12, expand=True, fillcolor=(255, 255, 255)),
        "light-on-dark": page((640, 130), [((24, 24), "LIGHT TEXT ON A DARK BACKGROUND", font("LiberationSans-Bold.ttf", 30)),
                                           ((24, 80), "second line, smaller", font("LiberationSans-Regular.ttf", 22))],
                              background=(20, 30, 70), ink=(240, 240, 210)),
        "very-wide": page((2400, 60), [((10, 8), WIDE, font(SANS, 40))]),
        "default-font": page((700, 140), [((10, 10 + y), f"Pillow's default font at {s} px", ImageFont.load_default(size=s))
                                          for y, s in ((0, 16), (30, 24), (70, 40))]),
        "sideways": page((320, 70), [((20, 20), "Sideways label 90", font(SANS, 28))]).rotate(
            90, expand=True, fillcolor=(255, 255, 255)),
        "small": page((60, 24), [((3, 3), "OK 42", font(SANS, 16))]),
        # zoo's 'shorter' resize rounds 263x130 to a 1504-wide input where RapidOCR (PaddleOCR) makes it 1472
        "size-263x130": page((263, 130), [((8, 20), "Size 263", font(SANS, 30)), ((8, 70), "by 130 px", font(SANS, 30))]),
    }
    upright = page((520, 200), [((30, 30), "This line is upright", font(SANS, 30))])
    upright.paste(page((460, 56), [((10, 10), UPSIDE_DOWN, font(SANS, 30))]).rotate(180), (30, 110))
    made["upside-down"] = upright
    found = {name: np.asarray(image.convert("RGB")) for name, image in made.items()}
    text = skimage.data.text()
    found["skimage-text"] = np.repeat(text[:, :, None], 3, axis=2)
    assert sorted(found) == list(NAMES)
    return found


def bgr(image: np.ndarray) -> np.ndarray:
    """What RapidOCR takes an array to be: BGR."""
    return np.ascontiguousarray(image[:, :, ::-1])


# -- fixtures -----------------------------------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args: object) -> None:
        self.requests.append(self.path)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RapidOCR's wheel, from the package index (``pip download``)."""
    folder = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", REFERENCE, "-d", str(folder)],
                          check=False, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not (folder / WHEEL).is_file():
        pytest.skip(f"pip download {REFERENCE} failed (the weights are members of its wheel): {done.stderr[-300:]}")
    return folder / WHEEL


@pytest.fixture(scope="module")
def served(wheel: Path) -> Iterator[list[str]]:
    """The wheel served on 127.0.0.1 as ``ZOO_MIRROR``, in a fresh cache for this module; the paths requested."""
    requests: list[str] = []
    handler = type("Handler", (_Quiet,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(handler, directory=str(wheel.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE_DIR", str(wheel.parent.parent / "cache"))
        patch.setenv("ZOO_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
        patch.delenv("ZOO_OFFLINE", raising=False)
        yield requests
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def ppocr(served: list[str]) -> zoo.Pipeline:
    return zoo.get("ppocr")


@pytest.fixture(scope="module")
def engine() -> Any:
    """The reference: RapidOCR with its defaults."""
    rapidocr = pytest.importorskip("rapidocr_onnxruntime", reason=f"the reference is not installed: {INSTALL}")
    return rapidocr.RapidOCR()


# -- registration -------------------------------------------------------------------------------------------------


def test_registers_the_task_and_four_models() -> None:
    specs = {spec.name: spec for spec in registered_specs(zoo_ocr, "ocr")}
    assert set(specs) == {*MODELS, "ppocr"}
    assert specs["ppocr"].requires == MODELS and specs["ppocr"].task == "ocr"
    assert specs["ppocr-rec"].labels_from == "metadata:character" and specs["ppocr-cls"].labels == ("0", "180")
    assert {spec.onnx.archive_name for spec in specs.values() if spec.onnx} == {WHEEL}
    assert zoo.info("ppocr")["options"]["box_threshold"] == 0.5


def test_registering_imports_neither_numpy_nor_opencv() -> None:
    code = "import sys, zoo; assert 'ppocr' in zoo.list_models(); print(sorted({'numpy', 'cv2'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "ZOO_LOAD_PLUGINS": "ocr"}, check=True)
    assert done.stdout.strip() == "[]"


# -- weights ------------------------------------------------------------------------------------------------------


def test_the_wheel_is_fetched_once_and_its_members_verified(ppocr: zoo.Pipeline, served: list[str], wheel: Path) -> None:
    assert served.count(f"/{WHEEL}") == 1
    with zipfile.ZipFile(wheel) as zipped:
        for name, model in ppocr.models.items():
            onnx = zoo.get_spec(name).onnx
            assert hashlib.sha256(zipped.read(onnx.member)).hexdigest() == onnx.member_sha256
            assert hashlib.sha256(model.path.read_bytes()).hexdigest() == onnx.member_sha256


def test_the_reference_runs_the_same_files(engine: Any) -> None:
    installed = Path(sys.modules["rapidocr_onnxruntime"].__file__).parent
    for name in MODELS:
        onnx = zoo.get_spec(name).onnx
        member = installed / onnx.member.removeprefix("rapidocr_onnxruntime/")
        assert hashlib.sha256(member.read_bytes()).hexdigest() == onnx.member_sha256


def test_the_characters_come_from_the_onnx_file(ppocr: zoo.Pipeline) -> None:
    rec = ppocr.models["ppocr-rec"]
    assert len(rec.spec.labels) + 2 == rec.run(np.zeros((1, 3, 48, 320), np.float32))["softmax_11.tmp_0"].shape[-1]
    assert {"a", "Z", "0", "$", "中"} <= set(rec.spec.labels)


# -- parity with RapidOCR -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_reads_as_rapidocr_reads(name: str, ppocr: zoo.Pipeline, engine: Any) -> None:
    image = images()[name]
    want, _ = engine(bgr(image))
    want = want or []
    got = ppocr.predict(image)
    assert got.texts == [text for _, text, _ in want]
    difference = max((float(np.abs(np.subtract(box, line.polygon)).max()) for (box, _, _), line in zip(want, got)),
                     default=0.0)
    scores = max((abs(score - line.score) for (_, _, score), line in zip(want, got)), default=0.0)
    print(f"{name}: {len(got)} lines, largest corner difference {difference:.3g} px, score {scores:.2g}")
    assert difference <= 1.0 and scores <= 1e-4


def test_33_2_on_opencv_each_part_passes_the_first_open_check_and_reads_the_same(ppocr: zoo.Pipeline) -> None:
    on_opencv = zoo.get("ppocr", runtime="opencv")  # the text map is near zero where there is no text: a real case
    for part, model in on_opencv.models.items():  # for the raw comparison's scale
        [record] = model.metadata["checks"].values()
        assert record["runtime"] == "opencv" and record["refused"] is None and record["compared"] > 0, (part, record)
    for name in ("sans-line", "upside-down", "tilted"):
        assert on_opencv.predict(images()[name]).texts == ppocr.predict(images()[name]).texts

@pytest.mark.parametrize("name", ["serif-page", "tilted", "light-on-dark"])
def test_options_read_as_rapidocrs_read(name: str, ppocr: zoo.Pipeline, engine: Any) -> None:
    reference = type(engine)(det_score_mode="slow", det_box_thresh=0.6, det_unclip_ratio=1.8, text_score=0.7)
    want, _ = reference(bgr(images()[name]))
    got = ppocr.predict(images()[name], score_mode="slow", box_threshold=0.6, unclip_ratio=1.8, text_score=0.7)
    assert got.texts == [text for _, text, _ in want or []]
    assert np.array_equal(got.polygons, np.asarray([box for box, _, _ in want or []], np.float32).reshape(-1, 4, 2))


def test_reads_the_lines_it_should(ppocr: zoo.Pipeline) -> None:
    assert ppocr.predict(images()["sans-line"]).texts == [QUICK]
    assert ppocr.predict(images()["very-wide"]).texts == [WIDE]
    assert ppocr.predict(images()["upside-down"]).texts == ["This line is upright", UPSIDE_DOWN]
    tilted = ppocr.predict(images()["tilted"])
    assert tilted.texts == ["Rotated text reads too"] and tilted.polygons[0, 1, 1] < tilted.polygons[0, 0, 1] - 50


@pytest.mark.parametrize("name", ["serif-page", "tilted", "light-on-dark"])
def test_the_detector_alone_finds_rapidocrs_boxes(name: str, ppocr: zoo.Pipeline, engine: Any) -> None:
    want, _ = engine.text_det(bgr(images()[name]))
    got = ppocr.models["ppocr-det"].predict(images()[name])
    assert got.texts == [None] * len(want) and all(0.5 <= score <= 1 for score in got.scores)
    assert np.array_equal(got.polygons, np.asarray(want, np.float32))


def test_the_classifier_and_recogniser_alone(ppocr: zoo.Pipeline) -> None:
    line = np.asarray(page((460, 56), [((10, 10), UPSIDE_DOWN, font(SANS, 30))]))
    assert ppocr.models["ppocr-cls"].predict(line).label == "0"
    assert ppocr.models["ppocr-cls"].predict(np.ascontiguousarray(line[::-1, ::-1])).label == "180"
    read = ppocr.models["ppocr-rec"].predict(line)
    assert read.texts[0].strip() == UPSIDE_DOWN and read.scores[0] > 0.9  # the margin on the right reads as a space
    assert read.polygons.tolist() == [[[0, 0], [460, 0], [460, 56], [0, 56]]]


def test_the_unclip_is_clippers(engine: Any) -> None:
    """The boxes grown here are those RapidOCR grows with pyclipper (and shapely), to a thousandth of a pixel."""
    import cv2
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess

    reference, rng = DBPostProcess(unclip_ratio=1.6), np.random.default_rng(0)
    for _ in range(3000):
        rectangle = (tuple(rng.uniform(5, 2000, 2)), (rng.uniform(3, 400), rng.uniform(3, 60)),
                     rng.choice([0.0, 90.0, rng.uniform(-90, 90)]))
        box, _ = det.mini_box(cv2.boxPoints(rectangle).reshape(-1, 1, 2))
        want, _ = reference.get_mini_boxes(reference.unclip(box))
        got, _ = det.mini_box(det.unclip(box, 1.6))
        assert np.abs(np.asarray(want) - got).max() < 1e-2


# -- options ------------------------------------------------------------------------------------------------------


def test_options_are_rapidocrs(ppocr: zoo.Pipeline) -> None:
    page_image = images()["serif-page"]
    assert len(ppocr.predict(page_image)) == 5
    assert len(ppocr.predict(page_image, text_score=1.0)) == 0
    assert len(ppocr.predict(page_image, box_threshold=0.9)) < 5
    flipped = ppocr.predict(images()["upside-down"], use_cls=False)
    assert flipped.texts[0] == "This line is upright" and UPSIDE_DOWN not in flipped.texts
    assert ppocr.predict(page_image, score_mode="slow").texts == ppocr.predict(page_image).texts
    with pytest.raises(zoo.UsageError, match="box_threshold"):
        ppocr.predict(page_image, box_thresh=0.6)
    with pytest.raises(zoo.UsageError, match="score_mode"):
        ppocr.predict(page_image, score_mode="exact")


# -- conformance --------------------------------------------------------------------------------------------------


def test_every_model_conforms(served: list[str]) -> None:
    samples = {**sample_images(), "serif-page": images()["serif-page"], "upside-down": images()["upside-down"]}
    report = check_model("ppocr", images=samples)
    assert {name: part.source for name, part in report.parts.items()} == dict.fromkeys(MODELS, "prebuilt")
    assert [len(result["lines"]) for result in report.results] == [0, 0, 0, 0, 0, 5, 2]
    assert report.parts["ppocr-cls"].opencv == "agrees"


# -- the result ---------------------------------------------------------------------------------------------------


def test_the_result_is_json_a_line_and_a_picture() -> None:
    square = [(10.0, 10.0), (90.0, 10.0), (90.0, 40.0), (10.0, 40.0)]
    found = lines_from([square, np.add(square, 50)], [0.9, 0.8], ["Hello", "naïve 中文"], (120, 200))
    assert len(found) == 2 and [line.text for line in found] == found.texts and found[1].score == 0.8
    data = found.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["lines"][0] == {"polygon": [list(p) for p in square], "text": "Hello", "score": 0.9}
    assert found.summary() == '2 lines: "Hello" "naïve 中文"' and "\n" not in found.summary()
    assert lines_from([square], [0.7], None, (120, 200)).summary() == "1 line of text found"
    assert TextLines((), (5, 5)).summary() == "no text"
    assert ascii_text("naïve 中文") == "na?ve ??"
    canvas = np.full((120, 200, 3), 255, np.uint8)
    drawn = found.draw(canvas)
    assert drawn.shape == canvas.shape and drawn.dtype == np.uint8 and (drawn != 255).any() and (canvas == 255).all()
    assert compare(found, found)["max_polygon_difference"] == 0.0
    with pytest.raises(AssertionError, match="reads"):
        compare(found, lines_from([square, np.add(square, 50)], [0.9, 0.8], ["Hello", "naive"], (120, 200)))
