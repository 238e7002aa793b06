"""zoo-faces: the networks load facenet-pytorch's weights as they are, every model conforms, the resampling is
torch's to the bit, and the cascade finds the faces facenet-pytorch's MTCNN finds, within a pixel.

The weights come through the zoo's real download path: facenet-pytorch's wheel is fetched once with
``pip download`` and served from 127.0.0.1 through ``ZOO_MIRROR``, into one cache for the module.
The parity tests need facenet-pytorch itself (``pip install --no-deps facenet-pytorch==2.6.0``);
they skip without it. ``pytest plugins/zoo-faces -k parity -s`` prints the differences measured.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

import zoo
from zoo.testing import check_model, registered_specs

torch = pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")
zoo_faces = pytest.importorskip("zoo_faces", reason="zoo-faces is not installed: pip install -e plugins/zoo-faces")

from zoo_faces import mtcnn  # after the checks above
from zoo_faces.net import NETWORKS  # imports torch

WHEEL = "facenet_pytorch-2.6.0-py3-none-any.whl"
NAMES = ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet", "mtcnn")
#: How far our boxes and landmarks may be from facenet-pytorch's, in pixels.
PIXELS = 1.0


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """facenet-pytorch 2.6.0's wheel, fetched with pip (from its cache when it has it)."""
    folder = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "facenet-pytorch==2.6.0",
                           "-d", str(folder)], check=False, capture_output=True, text=True)
    if done.returncode or not (folder / WHEEL).is_file():
        pytest.skip(f"pip cannot download facenet-pytorch 2.6.0's wheel (no network?): {done.stderr.strip()[-300:]}")
    return folder / WHEEL


@pytest.fixture(scope="module")
def zoo_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the module, its downloads served from 127.0.0.1 (``ZOO_MIRROR``)."""
    handler = functools.partial(_QuietHandler, directory=str(wheel.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cache = tmp_path_factory.mktemp("zoo-cache")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ZOO_CACHE_DIR", str(cache))
            patch.setenv("ZOO_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
            patch.delenv("ZOO_OFFLINE", raising=False)
            yield cache
    finally:
        server.shutdown()
        server.server_close()


#: The paths the module's server was asked for.
REQUESTS: list[str] = []


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        REQUESTS.append(self.path)


@pytest.fixture(scope="module")
def detector(zoo_env: Path) -> zoo.Pipeline:
    return zoo.get("mtcnn")


@pytest.fixture(scope="module")
def reference() -> object:
    """facenet-pytorch's MTCNN with its defaults, keeping every face."""
    facenet = pytest.importorskip("facenet_pytorch", reason=(
        "the parity tests compare with facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0"))
    return facenet.MTCNN(keep_all=True)


# -- images -----------------------------------------------------------------------------------------


def _head() -> np.ndarray:
    """The astronaut's head and shoulders, with some margin."""
    return skimage_data.astronaut()[10:230, 130:320]


def pasted(background: np.ndarray, placements: list[tuple[int, int, int, float]]) -> np.ndarray:
    """``background`` with the astronaut's head pasted at each ``(x, y, size, angle)``: centred at ``(x, y)``, its
    longer side ``size`` pixels, turned by ``angle`` degrees."""
    out = background.astype(np.float32)
    head = _head()
    height, width = head.shape[:2]
    for x, y, size, angle in placements:
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, size / max(height, width))
        matrix[:, 2] += (x - width / 2, y - height / 2)
        shape = (out.shape[1], out.shape[0])
        mask = cv2.warpAffine(np.ones((height, width), np.float32), matrix, shape)[..., None]
        out = out * (1 - mask) + cv2.warpAffine(head, matrix, shape).astype(np.float32) * mask
    return out.round().astype(np.uint8)


def lfw_grid(count: int = 16, cell: int = 96, margin: int = 24) -> np.ndarray:
    """Faces of Labeled Faces in the Wild (scikit-image's subset, 25x25 grey), enlarged, in a grid."""
    side = int(np.sqrt(count))
    tile = cell + 2 * margin
    grid = np.full((side * tile, side * tile), 0.5)
    for k, face in enumerate(skimage_data.lfw_subset()[:count]):
        row, col = divmod(k, side)
        top, left = row * tile + margin, col * tile + margin
        grid[top:top + cell, left:left + cell] = cv2.resize(face, (cell, cell), interpolation=cv2.INTER_CUBIC)
    return np.repeat((np.clip(grid, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def rotated(image: np.ndarray, angle: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def photos() -> dict[str, np.ndarray]:
    """Photos with faces (and two without), RGB uint8."""
    astronaut = skimage_data.astronaut()
    return {
        "astronaut": astronaut,
        "cameraman": np.repeat(skimage_data.camera()[..., None], 3, axis=2),
        "lfw-16-faces": lfw_grid(),
        "astronaut-turned-10deg": rotated(astronaut, 10),
        "astronaut-cut-by-the-border": np.ascontiguousarray(astronaut[:, 205:]),
        "4-heads-on-coffee": pasted(skimage_data.coffee(), [(100, 120, 70, 0), (300, 210, 130, -8),
                                                            (500, 100, 48, 6), (480, 300, 95, 12)]),
        "3-small-heads-on-rocket": pasted(skimage_data.rocket(), [(80, 330, 36, 0), (560, 120, 56, -5),
                                                                  (330, 380, 80, 4)]),
        "chelsea-no-face": skimage_data.chelsea(),
    }


PHOTOS = photos()


# -- registration and networks ----------------------------------------------------------------------


def test_registers_the_three_networks_and_the_cascade() -> None:
    specs = {spec.name: spec for spec in registered_specs(zoo_faces, "faces")}
    assert tuple(specs) == NAMES
    assert specs["mtcnn-pnet"].preprocess.input_shape == (3, None, None)
    assert specs["mtcnn-pnet"].preprocess.min_size == (12, 12)
    assert specs["mtcnn-rnet"].preprocess.input_shape == (3, 24, 24)
    assert specs["mtcnn-onet"].preprocess.input_shape == (3, 48, 48)
    wheels = {spec.weights.url for spec in specs.values() if spec.weights is not None}
    assert len(wheels) == 1 and wheels.pop().endswith("/" + WHEEL)
    assert specs["mtcnn"].requires == NAMES[:3]
    assert zoo.get_spec("mtcnn").license == "MIT"


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_each_network_loads_its_file_from_the_wheel_strictly(network: str, wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        path = Path(archive.extract(f"facenet_pytorch/data/{network}.pt", tmp_path))
    net = zoo.load_weights(NETWORKS[network](), path)  # strict: every key, every shape
    assert sum(p.numel() for p in net.parameters()) == zoo.get_spec(f"mtcnn-{network}").metrics["params"]


def test_the_wheel_is_downloaded_once_for_the_three_networks(detector: zoo.Pipeline) -> None:
    assert REQUESTS == [f"/{WHEEL}"]


def test_every_model_conforms_with_its_real_weights(zoo_env: Path) -> None:
    report = check_model("mtcnn")  # checks mtcnn-pnet, mtcnn-rnet and mtcnn-onet first
    assert set(report.parts) == set(NAMES[:3])
    assert all(part.source == "export" for part in report.parts.values())
    assert report.results[0]["detections"][0]["label"] == "face"  # the sample photo is the astronaut


# -- resampling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(308, 308), (24, 24), (61, 35), (700, 530)])
@pytest.mark.parametrize("table", ["int32", "float64"])
def test_area_resampling_is_torchs_to_the_bit(size: tuple[int, int], table: str, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    if table == "float64":  # the table of images over 8 megapixels
        monkeypatch.setattr(mtcnn, "INT32_PIXELS", 0)
    image = skimage_data.astronaut()[:450, :333]
    want = torch.nn.functional.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=size,
                                           mode="area")
    sampler = mtcnn.AreaSampler(image)
    assert sampler.table.dtype == table
    got = sampler.image(*size)
    assert np.array_equal(got, ((want - 127.5) * 0.0078125).numpy())


def test_crops_are_resampled_as_torch_resamples_them() -> None:
    image = skimage_data.astronaut()
    windows = np.array([[0, 100, 0, 100], [62, 171, 181, 267], [300, 311, 500, 512], [5, 60, 7, 9]])
    got = mtcnn.AreaSampler(image).crops(windows, 24)
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    for crop, (top, bottom, left, right) in zip(got, windows):
        want = torch.nn.functional.interpolate(tensor[:, :, top:bottom, left:right], size=(24, 24), mode="area")
        assert np.array_equal(crop, ((want[0] - 127.5) * 0.0078125).numpy())


# -- parity with facenet-pytorch --------------------------------------------------------------------


def facenet_faces(reference: object, image: np.ndarray, **options: object) -> mtcnn.Faces:
    """What ``facenet_pytorch.MTCNN(keep_all=True, **options).detect(image, landmarks=True)`` finds, as
    :class:`mtcnn.Faces`."""
    if options:
        reference = type(reference)(keep_all=True, **options)
    boxes, scores, points = reference.detect(image, landmarks=True)  # type: ignore[attr-defined]
    if boxes is None:
        return mtcnn.Faces.none()
    return mtcnn.Faces(np.array(boxes.tolist(), np.float32), np.array(scores.tolist(), np.float32),
                       np.array(points.tolist(), np.float32))


def differences(want: mtcnn.Faces, got: mtcnn.Faces) -> tuple[float, float, float]:
    """The largest box, landmark and score differences between two sets of faces, each matched to its nearest."""
    assert len(got.boxes) == len(want.boxes), f"{len(got.boxes)} faces instead of {len(want.boxes)}"
    if not len(want.boxes):
        return 0.0, 0.0, 0.0
    distance = np.abs(want.boxes[:, None] - got.boxes[None]).max(axis=2)
    match = distance.argmin(axis=1)
    assert len(set(match.tolist())) == len(match), "two faces matched the same face"
    box = float(np.abs(want.boxes - got.boxes[match]).max())
    landmark = float(np.abs(want.landmarks - got.landmarks[match]).max())
    return box, landmark, float(np.abs(want.scores - got.scores[match]).max())


def ours(detector: zoo.Pipeline, image: np.ndarray, **options: object) -> mtcnn.Faces:
    """The cascade on the zoo's ONNX networks, before its boxes are clipped to the image."""
    nets = [detector.models[name].run for name in NAMES[:3]]
    return mtcnn.detect(*nets, image, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(PHOTOS))
def test_parity_with_facenet_pytorch(name: str, detector: zoo.Pipeline, reference: object) -> None:
    image = PHOTOS[name]
    want, got = facenet_faces(reference, image), ours(detector, image)
    box, landmark, score = differences(want, got)
    print(f"\n{name}: {len(want.boxes)} faces; largest difference: box {box:.2g} px, landmark {landmark:.2g} px, "
          f"score {score:.2g}")
    assert box <= PIXELS and landmark <= PIXELS and score <= 1e-3
    result = detector.predict(image)  # what users get: boxes clipped to the image
    height, width = image.shape[:2]
    clipped = want._replace(boxes=np.clip(want.boxes, 0, [width, height, width, height]))
    assert differences(clipped, mtcnn.Faces(result.boxes, result.scores, result.keypoints[..., :2]))[0] <= PIXELS
    assert result.keypoint_names == zoo_faces.KEYPOINT_NAMES and set(result.labels) <= {"face"}


def test_parity_holds_with_other_options(detector: zoo.Pipeline, reference: object) -> None:
    options = {"min_face_size": 40, "thresholds": (0.5, 0.6, 0.65), "factor": 0.6}
    image = PHOTOS["4-heads-on-coffee"]
    want = facenet_faces(reference, image, **options)
    box, landmark, _ = differences(want, ours(detector, image, **options))
    assert box <= PIXELS and landmark <= PIXELS
    assert len(detector.predict(image, **options)) == len(want.boxes) == 3  # the 48-pixel head: a face under 40


def test_the_cascade_is_facenets_to_float_rounding_on_the_same_networks(reference: object) -> None:
    """The algorithm alone: with facenet-pytorch's own PyTorch networks, the same numbers."""

    def torch_net(net: object, names: tuple[str, ...]) -> mtcnn.Network:
        def run(batch: np.ndarray) -> dict[str, np.ndarray]:
            with torch.no_grad():
                outputs = net(torch.from_numpy(batch))  # type: ignore[operator]
                return {name: out.numpy() for name, out in zip(names, outputs)}
        return run

    nets = (torch_net(reference.pnet, ("offsets", "probabilities")),  # type: ignore[attr-defined]
            torch_net(reference.rnet, ("offsets", "probabilities")),  # type: ignore[attr-defined]
            torch_net(reference.onet, ("offsets", "landmarks", "probabilities")))  # type: ignore[attr-defined]
    for name in ("astronaut", "lfw-16-faces", "4-heads-on-coffee"):
        want, got = facenet_faces(reference, PHOTOS[name]), mtcnn.detect(*nets, PHOTOS[name])
        assert max(differences(want, got)) <= 1e-4, name


# -- options and edge cases -------------------------------------------------------------------------


def test_options_are_checked(detector: zoo.Pipeline) -> None:
    image = PHOTOS["astronaut"]
    assert detector.options == {"min_face_size": 20, "thresholds": (0.6, 0.7, 0.7), "factor": 0.709}
    for bad in ({"min_face_size": 0}, {"thresholds": (0.6, 0.7)}, {"thresholds": (0.6, 0.7, 1.5)}, {"factor": 1.0}):
        with pytest.raises(zoo.UsageError):
            detector.predict(image, **bad)
    assert len(detector.predict(image, min_face_size=400)) == 0  # the astronaut's face is some 90 pixels wide


def test_images_smaller_than_a_face_give_no_faces(detector: zoo.Pipeline) -> None:
    assert len(detector.predict(np.full((11, 11, 3), 128, np.uint8))) == 0
    assert len(detector.predict(np.full((30, 500, 3), 128, np.uint8))) == 0


def test_pnet_alone_proposes_windows_and_refuses_images_below_12_pixels(zoo_env: Path) -> None:
    pnet = zoo.get("mtcnn-pnet")
    small = cv2.resize(PHOTOS["astronaut"], (72, 72), interpolation=cv2.INTER_AREA)  # a face of some 12 pixels
    found = pnet.predict(small)
    assert len(found) and found.labels[0] == "face" and (found.boxes[:, 2:] <= 72).all()
    with pytest.raises(zoo.ZooInputError, match="at least 12x12"):
        pnet.predict(np.zeros((11, 40, 3), np.uint8))
