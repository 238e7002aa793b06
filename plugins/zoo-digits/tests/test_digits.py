"""Tests of zoo-digits. None needs torch: they run in the plugin's own, torch-free install."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import zoo_digits

import zoo
from zoo.testing import check_model, registered_specs

PLUGIN = Path(zoo_digits.__file__).resolve().parent.parent
RECORD = tomllib.loads((Path(zoo_digits.__file__).with_name("model.toml")).read_text(encoding="utf-8"))


def test_registers_digits() -> None:
    [spec] = registered_specs(zoo_digits, "digits")
    assert spec.name == "digits" and spec.task == "image-classification"
    assert spec.labels == tuple("0123456789") and spec.outputs == ("logits",)
    assert spec.build is None and spec.onnx is not None and spec.onnx.url.startswith("file://")
    assert spec.metrics["acc@1"] == RECORD["metrics"]["acc@1"]
    assert spec.preprocess.input_shape == (1, 8, 8)


def test_packaged_model_matches_its_record() -> None:
    [spec] = registered_specs(zoo_digits, "digits")
    data = Path(zoo_digits.__file__).with_name("digits.onnx").read_bytes()
    assert spec.onnx is not None
    assert hashlib.sha256(data).hexdigest() == spec.onnx.sha256 and len(data) == spec.onnx.size


def test_conforms(zoo_cache_dir: Path) -> None:
    report = check_model("digits")
    assert report.source == "prebuilt" and report.input_shape == (1, 8, 8)
    assert report.opencv == "agrees"


def held_out_images() -> tuple[np.ndarray, np.ndarray]:
    """train.py's held-out images as uint8 pictures (dark ink on white paper, 8x8) and their digits."""
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    digits = datasets.load_digits()
    _, test = model_selection.train_test_split(np.arange(len(digits.target)), test_size=0.2,
                                               stratify=digits.target, random_state=0)
    test = np.sort(test)
    fingerprint = hashlib.sha256(test.astype("<i8").tobytes()).hexdigest()
    assert fingerprint == RECORD["data"]["test_indices_sha256"], (
        "this scikit-learn splits the data differently from the one train.py used: retrain")
    return np.round(255 * (1 - digits.images[test] / 16)).astype(np.uint8), digits.target[test]


# Nearest upscaling is undone exactly by the area resize; a smooth upscale blurs the strokes a
# little (at most 0.37 off on the model's 0..1 scale) and costs 3 of the 360 images (0.8 points).
@pytest.mark.parametrize(("interpolation", "margin"), [("nearest", 0.3), ("linear", 1.5)])
def test_pipeline_reaches_the_recorded_accuracy(zoo_cache_dir: Path, interpolation: str, margin: float) -> None:
    import cv2

    images, digits = held_out_images()
    flag = cv2.INTER_NEAREST if interpolation == "nearest" else cv2.INTER_LINEAR
    pictures = [cv2.resize(image, (64, 64), interpolation=flag) for image in images]
    results = zoo.get("digits").predict(pictures, batch_size=64)
    accuracy = 100 * np.mean([result.label == str(digit) for result, digit in zip(results, digits)])
    assert accuracy >= RECORD["metrics"]["acc@1"] - margin


def predict_in_fresh_process(image: Path, cache: Path, **env: str) -> tuple[list[dict], bool]:
    """``zoo predict digits IMAGE --json`` in a new interpreter: the rows, and whether torch got imported."""
    code = ("import sys, zoo.cli; status = zoo.cli.main(sys.argv[1:]); "
            "print('torch' in sys.modules, file=sys.stderr); sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", code, "predict", "digits", str(image), "--json"],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "ZOO_CACHE_DIR": str(cache), **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr.strip().endswith("True")


def test_predict_command_needs_no_torch_and_no_network(tmp_path: Path) -> None:
    sample = PLUGIN / "samples" / "7.png"
    for env in ({}, {"ZOO_OFFLINE": "1"}):  # the first call fills the cache from the packaged file
        rows, torch_imported = predict_in_fresh_process(sample, tmp_path, **env)
        assert rows[0]["result"]["label"] == "7" and not torch_imported, env


def test_offline_on_an_empty_cache(tmp_path: Path) -> None:
    rows, _ = predict_in_fresh_process(PLUGIN / "samples" / "7.png", tmp_path, ZOO_OFFLINE="1")
    assert rows[0]["result"]["label"] == "7"


@pytest.mark.slow
def test_retraining_reproduces_the_packaged_files(tmp_path: Path) -> None:
    for name in ("torch", "onnxsim", "sklearn"):
        pytest.importorskip(name)
    if {name: metadata.version(name) for name in RECORD["versions"]} != RECORD["versions"]:
        pytest.skip(f"the packaged model was trained with {RECORD['versions']}")
    (tmp_path / "zoo_digits").mkdir()
    shutil.copy(PLUGIN / "train.py", tmp_path)  # train.py writes beside itself
    subprocess.run([sys.executable, str(tmp_path / "train.py")], check=True, timeout=600)
    for name in ("zoo_digits/digits.onnx", "zoo_digits/model.toml", *(f"samples/{d}.png" for d in range(10))):
        assert (tmp_path / name).read_bytes() == (PLUGIN / name).read_bytes(), name
