"""zoo-torchvision end to end: builder arguments, exports, and the OpenCV tutorial's 16 predicting.

CI exports a representative few; ``python -m pytest -m slow tests/test_torchvision_exports.py``
exports one model per distinct ONNX graph (86, covering all 114 variants) and runs the
tutorial's 16 end to end with weights served from a local HTTP server.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
skimage_data = pytest.importorskip("skimage.data")

import cv2
import zoo_torchvision
from conftest import ROOT, run_zoo
from fileserver import FileServer
from PIL import Image
from torchvision.models import get_model_weights

import zoo
from zoo import cache, testing

sys.path.insert(0, str(ROOT / "plugins" / "zoo-torchvision"))
import check_exports

SPECS = {spec.name: spec for spec in zoo_torchvision.load_specs() if spec.task == "image-classification"}
GRAPHS = check_exports.representatives()
#: Cheap, and between them: fire modules, depthwise and squeeze-excitation blocks, channel
#: shuffle, inception branches with transform_input, shifted-window attention.
REPRESENTATIVE = ["squeezenet1_1", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5", "googlenet",
                  "swin_t"]
TUTORIAL = ["alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101",
            "resnet152", "squeezenet1_0", "squeezenet1_1", "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
            "wide_resnet101_2"]
PHOTOS = {"chelsea": skimage_data.chelsea(), "coffee": skimage_data.coffee(), "astronaut": skimage_data.astronaut(),
          "rocket": skimage_data.rocket()}


def torchvision_weights(spec: zoo.ModelSpec):
    info = spec.extra["torchvision"]
    return get_model_weights(info["arch"])[info["weights"]]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_build_matches_what_torchvision_loads_its_weights_into(name, monkeypatch):
    """The plugin's model has exactly the parameters (names, shapes) torchvision's builder loads the
    checkpoint into, and the same input transform. Built on the meta device where possible: no
    memory, no initialisation time."""
    spec = SPECS[name]
    loaded_into = []

    def capture(module, state_dict, *args, **kwargs):
        loaded_into.append({k: tuple(v.shape) for k, v in module.state_dict().items()})
        loaded_into.append(getattr(module, "transform_input", None))

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", lambda self, *a, **k: {})
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", capture)
    weights = torchvision_weights(spec)
    # RegNet's constructor computes its widths with tensors, which the meta device cannot hold
    device = "cpu" if spec.name.startswith("regnet") else "meta"
    with torch.device(device):
        reference = torchvision.models.get_model(spec.extra["torchvision"]["arch"], weights=weights)
        ours = zoo_torchvision.build(spec, None)
    assert loaded_into[0] == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert loaded_into[1] == getattr(ours, "transform_input", None)
    assert not ours.training and reference is not None


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_representative_exports(name, tmp_path):
    row = check_exports.check(name, tmp_path)
    assert row["exported"], row.get("error")
    assert row["top1"] == 1.0 and row["simplified"]
    assert row["opencv"] == "agrees" and row["opencv_top1"], row
    assert row["openvino"] == "agrees" and row["openvino_top1"], row


@pytest.mark.slow
@pytest.mark.parametrize("name", list(GRAPHS))
def test_every_graph_exports(name, tmp_path):
    row = check_exports.check(name, tmp_path)
    assert row["exported"], row.get("error")
    assert row["top1"] == 1.0


# -- the tutorial's pipeline: weights from a server, export, predict ------------------------


@pytest.fixture(scope="module")
def server():
    with FileServer() as running:
        yield running


def serve_random_weights(server: FileServer, spec: zoo.ModelSpec, filename: str) -> tuple[str, str, torch.nn.Module]:
    """Perturbed random weights for ``spec`` served as ``filename``: (url, sha256, the PyTorch model)."""
    net = testing.randomize(zoo_torchvision.build(spec, None), spec)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    data = buffer.getvalue()
    return server.add(filename, data), hashlib.sha256(data).hexdigest(), net


def torchvision_top5(net: torch.nn.Module, spec: zoo.ModelSpec, photo: np.ndarray) -> tuple[list[int], np.ndarray]:
    """What a torchvision user gets: the weights' own transforms on a PIL image, then softmax."""
    batch = torchvision_weights(spec).transforms()(Image.fromarray(photo)).unsqueeze(0)
    with torch.inference_mode():
        probabilities = net(batch).softmax(1)[0].numpy()
    return list(np.argsort(-probabilities)[:5]), probabilities


def test_zoo_predict_resnet50_with_weights_from_a_server(server, tmp_path):
    spec = SPECS["resnet50"]
    url, sha256, net = serve_random_weights(server, spec, "resnet50-random.pth")
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), PHOTOS["chelsea"][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    result = run_zoo("predict", "resnet50", str(photo), "--weights", url, "--sha256", sha256, "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    ids, probabilities = torchvision_top5(net, spec, np.asarray(Image.open(photo).convert("RGB")))
    assert [p["class_id"] for p in row["result"]["topk"]] == ids
    assert row["result"]["label"] == spec.labels[ids[0]]
    assert row["result"]["score"] == pytest.approx(float(probabilities[ids[0]]), abs=1e-3)
    assert "exporting resnet50" in result.stderr


def test_torchvision_url_is_verified_by_the_hash_in_its_file_name(server, tmp_path, monkeypatch):
    """The plugin's own URL (through ZOO_MIRROR, served here) is checked against the 8 hex digits of
    torchvision's file name: random weights under that name are refused and nothing is cached."""
    spec = SPECS["squeezenet1_1"]
    filename = spec.weights.url.rsplit("/", 1)[-1]
    assert filename.startswith("squeezenet1_1-") and spec.weights.sha256 in filename
    server.add(filename, b"not the published weights" * 1000)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), PHOTOS["coffee"])
    mirror = server.url(filename).rsplit("/", 1)[0]
    result = run_zoo("predict", "squeezenet1_1", str(photo), env={"ZOO_MIRROR": mirror})
    assert result.returncode == 1
    assert spec.weights.sha256 in result.stderr and filename in result.stderr
    assert not cache.entries("squeezenet1_1")
    assert not list((cache.cache_root() / "downloads").glob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", TUTORIAL)
def test_tutorial_model_predicts_like_torchvision(name, server):
    spec = SPECS[name]
    url, sha256, net = serve_random_weights(server, spec, f"{name}-random.pth")
    model = zoo.get(name, weights=url, sha256=sha256)
    assert model.metadata["parity"]["logits"]["top1_agreement"] == 1.0
    results = model.predict(list(PHOTOS.values()))
    for result, photo in zip(results, PHOTOS.values()):
        ids, probabilities = torchvision_top5(net, spec, photo)
        assert result.class_id == ids[0]
        assert result.score == pytest.approx(float(probabilities[ids[0]]), abs=2e-3)
