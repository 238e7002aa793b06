"""Self-describing ONNX files (zoo.onnxmeta): what a copied-out file says, read without the zoo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo import cache, images, onnxmeta

onnx = pytest.importorskip("onnx")

if "digits" not in zoo.list_models():
    pytest.skip("the zoo-digits plugin is not installed", allow_module_level=True)

#: Runs in a fresh interpreter that imports onnx, onnxruntime and numpy, and never the zoo: it
#: preprocesses by the file's own ``zoo.preprocess`` (this model's steps: grey, an area resize
#: by a whole factor, scale, mean, std) and names the top class by ``zoo.labels``.
ELSEWHERE = r"""
import json, sys
import numpy as np, onnx, onnxruntime
path, pixels = sys.argv[1:3]
props = {p.key: p.value for p in onnx.load(path).metadata_props}
pre, labels = json.loads(props["zoo.preprocess"]), json.loads(props["zoo.labels"])
outputs = json.loads(props["zoo.outputs"])
assert pre["channels"] == "GRAY" and pre["interpolation"] == "area" and pre["crop"] is None, pre
images = np.load(pixels).astype(np.float64)  # (N, H, W, 3) RGB, grey pictures
grey = images @ np.array([0.299, 0.587, 0.114])
height, width = pre["resize"]
n, h, w = grey.shape
small = grey.reshape(n, height, h // height, width, w // width).mean(axis=(2, 4))  # area resize by a whole factor
small = np.round(small)  # the resize works on 8-bit pixels
batch = ((small * pre["scale"] - pre["mean"][0]) / pre["std"][0])[:, None].astype(np.float32)
session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
scores = session.run(None, {session.get_inputs()[0].name: batch})[names.index(outputs["names"][0])]
if outputs["scores"] == "logits":
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
print(json.dumps({"labels": [labels[i] for i in scores.argmax(axis=1)], "scores": scores.max(axis=1).tolist(),
                  "zoo imported": "zoo" in sys.modules, "props": sorted(props)}))
"""


def samples() -> list[Path]:
    folder = Path(zoo.get_spec("digits").onnx.url.removeprefix("file://")).parent.parent / "samples"
    found = sorted(folder.glob("*.png"))
    if not found:
        pytest.skip("zoo-digits' samples are not beside its package (an editable install has them)")
    return found


def test_a_copied_out_file_predicts_like_the_zoo_with_onnx_and_numpy_alone(zoo_cache_dir, tmp_path):
    out = tmp_path / "elsewhere" / "digits.onnx"
    exported = subprocess.run([sys.executable, "-m", "zoo.cli", "export", "digits", "-o", str(out)],
                              capture_output=True, text=True, check=False)
    assert exported.returncode == 0, exported.stderr
    paths = samples()
    pixels = np.stack([images.load(p) for p in paths])
    np.save(tmp_path / "pixels.npy", pixels)
    ran = subprocess.run([sys.executable, "-c", ELSEWHERE, str(out), str(tmp_path / "pixels.npy")],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    elsewhere = json.loads(ran.stdout)
    assert not elsewhere["zoo imported"]
    assert {f"zoo.{key}" for key in ("name", "task", "labels", "preprocess", "outputs", "license", "weights",
                                     "version", "precision")} <= set(elsewhere["props"])
    results = zoo.get("digits").predict(list(pixels))
    assert elsewhere["labels"] == [r.label for r in results] == [p.stem for p in paths]
    np.testing.assert_allclose(elsewhere["scores"], [r.score for r in results], atol=0.02)


def test_the_cache_keeps_a_prebuilt_file_as_published_and_marks_what_the_zoo_makes(zoo_cache_dir, tmp_path):
    prebuilt = zoo.get("digits")
    assert onnxmeta.read(prebuilt.path) == {}  # byte for byte the plugin's file, checked by its sha256
    assert cache.sha256_of(prebuilt.path) == zoo.get_spec("digits").onnx.sha256
    int8 = zoo.get("digits", precision="int8")
    said = onnxmeta.read(int8.path)
    assert said["name"] == "digits" and said["task"] == "image-classification" and said["precision"] == "int8"
    assert said["labels"] == list(int8.spec.labels) and said["preprocess"] == int8.spec.preprocess.to_dict()
    assert said["weights"]["sha256"] == zoo.get_spec("digits").onnx.sha256  # made from the published file
    assert said["outputs"]["names"] == ["logits"] and said["outputs"]["scores"] == "logits"
    assert said["version"] == zoo.__version__ and said["license"] == "CC-BY-4.0"
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(int8.path.read_bytes())
    onnxmeta.write(copy, {"zoo.name": "renamed"})
    assert onnxmeta.read(copy) == {"name": "renamed"}  # the zoo's keys replaced, not added twice


def test_an_export_says_which_weights_it_holds(zoo_cache_dir, tmp_path):
    pytest.importorskip("torch")
    from tinymodels import LABELS, save_weights, tiny_spec

    weights = save_weights(tmp_path / "tiny.pth")
    model = zoo.get(tiny_spec(), weights=str(weights))
    said = onnxmeta.read(model.path)
    assert said["weights"]["sha256"] == cache.sha256_of(weights) and said["weights"]["file"] == "tiny.pth"
    assert "location" not in said["weights"] and str(tmp_path) not in json.dumps(said)  # no path of this machine
    assert said["labels"] == list(LABELS) and said["precision"] == "fp32" and said["name"] == "tiny"
    assert zoo.get(tiny_spec(), weights=str(weights)).run(model.preprocess(np.zeros((32, 32, 3), np.uint8)))
