"""int8 models (zoo.quantize): made from the float32 entry, checked on held images, refused when they disagree.

The digits model and hand-made ONNX classifiers need no torch: these run in the torch-free job
too. The torchvision classifier at the end needs the export extra.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

import zoo
from zoo import cache, quantize
from zoo.convert import is_current, make_key, plan
from zoo.registry import default_registry

HAVE_DIGITS = "digits" in zoo.list_models()
needs_digits = pytest.mark.skipif(not HAVE_DIGITS, reason="the zoo-digits plugin is not installed")


def gemm_classifier(folder: Path, *, ties: bool, classes: int = 10, seed: int = 0) -> zoo.ModelSpec:
    """A prebuilt ONNX classifier of 8x8 RGB images: Flatten then one Gemm (node ``head``).

    Without ``ties``, its first rows are the held photos' mean pictures (centred, as a
    trained classifier's prototypes), so that each held photo's views score their own class
    well above the others. With ``ties`` every row is one row plus noise of 1e-5: its logits
    differ by less than int8 rounding changes them, so an int8 version picks other top classes.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    preprocess = zoo.Preprocess(resize=(8, 8))
    if ties:
        rows = rng.normal(size=(1, 192)) + 1e-5 * rng.normal(size=(classes, 192))
    else:
        held = quantize.zoo_photos().held
        views = len(quantize.HELD_VIEWS)
        means = np.stack([preprocess.apply(held[i:i + views]).reshape(views, -1).mean(0)
                          for i in range(0, len(held), views)])
        means -= means.mean(0)
        rows = 0.1 * rng.normal(size=(classes, 192))
        rows[:len(means)] = 10 * means / np.linalg.norm(means, axis=1, keepdims=True)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], name="flatten"),
         helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"], name="head", transB=1)],
        "gemm", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(rows.astype(np.float32), "weight"),
         numpy_helper.from_array(np.zeros(classes, np.float32), "bias")])
    path = folder / f"gemm-{'ties' if ties else 'apart'}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    data = path.read_bytes()
    return zoo.ModelSpec(name=f"gemm-{'ties' if ties else 'apart'}", task="image-classification",
                         preprocess=preprocess, labels=tuple(f"c{i}" for i in range(classes)),
                         outputs=("logits",), onnx=zoo.Artifact(url=path.as_uri(), sha256=hashlib.sha256(data).hexdigest(),
                                                                size=len(data)))


def ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_an_int8_model_is_made_from_the_float32_entry_with_its_figures_stored(zoo_cache_dir, tmp_path):
    spec = gemm_classifier(tmp_path, ties=False)
    model = zoo.get(spec, precision="int8")
    figures = model.metadata["int8"]
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops(model.path)  # QDQ: weights int8, activations uint8
    assert figures["agreement"] >= 0.98 and figures["max_difference"] <= 0.25 and figures["flipped_margin"] == 0
    assert figures["calibration_images"] == len(quantize.zoo_photos().calibration) >= 40  # a few dozen views
    assert figures["held_images"] == len(quantize.zoo_photos().held) == 64
    entries = {e.key: e for e in cache.entries(spec.name)}
    assert len(entries) == 2 and model.metadata["source_entry"] in entries  # the float32 entry, cached as well
    fp32 = zoo.get(spec)
    assert "QuantizeLinear" not in ops(fp32.path) and fp32.path.parent.name == model.metadata["source_entry"]
    photo = quantize.zoo_photos().held[0]
    assert model.predict(photo).label == fp32.predict(photo).label
    again = zoo.get(spec, precision="int8")
    assert again.path == model.path and again.metadata["created"] == model.metadata["created"]  # a cache hit
    assert len(cache.entries(spec.name)) == 2


def test_the_precision_the_calibration_images_and_the_limits_are_in_the_key(tmp_path):
    spec = gemm_classifier(tmp_path, ties=False)
    keys = {make_key(plan(spec)), make_key(plan(spec, precision="int8"))}
    photos = quantize.zoo_photos()
    fewer = quantize.Photos(calibration=photos.calibration[:8], held=photos.held)
    for changed in ({"calibration": lambda: fewer}, {"int8": {"min_agreement": 0.9}}, {"int8": {"exclude": ["head"]}},
                    {"preprocess": zoo.Preprocess(resize=(8, 8), std=(0.2, 0.2, 0.2))}):
        keys.add(make_key(plan(dataclasses.replace(spec, **changed), precision="int8")))
    assert len(keys) == 6  # the prebuilt float32 file's key is its sha256 alone: int8's must see the preprocessing
    inputs = plan(spec, precision="int8")
    assert inputs["source"] == plan(spec)["source"]  # made from the float32 file the key also names
    assert inputs["precision"]["onnxruntime"] == quantize.onnxruntime_version()
    assert inputs["precision"]["reduce_range"] == quantize.reduced_range()


def test_a_quantization_that_disagrees_is_refused_with_its_figures_and_leaves_no_entry(zoo_cache_dir, tmp_path):
    spec = gemm_classifier(tmp_path, ties=True)
    with pytest.raises(zoo.QuantizationError) as raised:
        zoo.get(spec, precision="int8")
    message = str(raised.value)
    assert "'gemm-ties'" in message and "of 64 held images (at least 98.0% wanted; where they disagree" in message
    assert "int8.exclude" in message and "precision 'fp32'" in message
    assert isinstance(raised.value, zoo.ExportError)
    [entry] = cache.entries(spec.name)  # the float32 entry alone: nothing half made
    assert entry.ok and entry.to_dict()["precision"] == "fp32"
    assert [p.name for p in entry.folder.parent.iterdir()] == [entry.key]  # no int8 folder, nothing hidden
    assert raised.value.report["agreement"] < 0.98 and raised.value.report["held_images"] == 64
    # the spec's exclusion list keeps the layer that loses the top class in float: accepted, and said so
    kept = zoo.get(dataclasses.replace(spec, int8={"exclude": ["he*"]}), precision="int8")
    assert kept.metadata["int8"]["excluded"] == ["head"] and kept.metadata["int8"]["agreement"] == 1.0


def test_int8_is_refused_for_tasks_whose_agreement_it_cannot_check(tmp_path, zoo_cache_dir):
    estimator = dataclasses.replace(gemm_classifier(tmp_path, ties=False), task="age-estimation")
    with pytest.raises(zoo.UsageError, match="age-estimation model, whose results the zoo cannot compare with "
                                             "float32's; precision 'int8' is not available for it"):
        zoo.get(estimator, precision="int8")
    assert not list(cache.entries(estimator.name))  # refused before anything was fetched or built
    with pytest.raises(zoo.UsageError, match="unknown precision 'int4'; choose one of fp32, int8"):
        plan(estimator, precision="int4")


def test_33_2_another_tasks_int8_is_compared_by_its_task_before_it_is_pulled_exported_or_used(tmp_path, zoo_cache_dir,
                                                                                               monkeypatch):
    from zoo import gate
    from zoo.model import prepare

    embedder = dataclasses.replace(gemm_classifier(tmp_path, ties=False), task="image-embedding",
                                   int8={"max_difference": 1e-9})  # no vector may move: int8 always breaks that
    with pytest.raises(zoo.PrecisionError, match=r"in int8 on onnxruntime is refused: .*int8\.exclude") as refused:
        prepare(embedder, precision="int8")  # as zoo pull and zoo export do: no int8 file leaves the zoo unchecked
    report = refused.value.report
    assert report["compared"] == 64 and report["max_difference"] > 1e-9  # 1 - the lowest cosine
    [int8] = [e for e in cache.entries(embedder.name) if cache.precision_of(e.metadata) == "int8"]
    assert "agreement" not in int8.metadata["int8"]  # quantize reads class scores only; the task compared it
    assert int8.metadata["checks"][gate.check_key("onnxruntime", "int8")] == report  # recorded in its entry
    with monkeypatch.context() as patched:
        patched.setattr(gate, "measure", lambda *a, **k: pytest.fail("measured again"))
        with pytest.raises(zoo.PrecisionError, match="int8.exclude"):
            zoo.get(embedder, precision="int8")
    loose = dataclasses.replace(embedder, int8={"min_agreement": 0.0, "max_difference": 1.0})  # the spec's limits
    model = zoo.get(loose, precision="int8")
    record = model.metadata["checks"][gate.check_key("onnxruntime", "int8")]
    assert model.precision == "int8" and record["refused"] is None and record["limits"]["max_difference"] == 1.0
    assert model.predict(np.zeros((8, 8, 3), np.uint8)).dim == 10


@pytest.mark.parametrize(("flags", "reduced"), [
    ("flags\t\t: fpu sse2 avx2 fma", True),  # AVX2 without VNNI: u8s8 saturates, 7-bit weights
    ("flags\t\t: fpu avx2 avx512f avx512_vnni", False),
    ("flags\t\t: fpu avx2 avx_vnni", False),
])
def test_weights_use_seven_bits_on_x86_without_vnni(flags, reduced):
    assert quantize.reduced_range(flags) is reduced


def test_a_spec_checks_its_int8_table(tmp_path):
    spec = gemm_classifier(tmp_path, ties=False)
    with pytest.raises(zoo.SpecError, match="int8.*unknown keys \\['tolerance'\\]"):
        dataclasses.replace(spec, int8={"tolerance": 0.1})
    with pytest.raises(zoo.SpecError, match="int8.min_agreement"):
        dataclasses.replace(spec, int8={"min_agreement": "high"})
    with pytest.raises(zoo.SpecError, match="int8.min_agreement.*a fraction from 0 to 1, got 98"):
        dataclasses.replace(spec, int8={"min_agreement": 98})
    assert dataclasses.replace(spec, int8={"exclude": ["head"]}).to_dict()["int8"] == {"exclude": ["head"]}


@needs_digits
def test_digits_in_int8_calibrates_on_digits_and_keeps_its_held_out_accuracy(zoo_cache_dir):
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    digits = datasets.load_digits()
    _, test = model_selection.train_test_split(np.arange(len(digits.target)), test_size=0.2,
                                               stratify=digits.target, random_state=0)
    pictures = list(np.round(255 * (1 - digits.images[np.sort(test)] / 16)).astype(np.uint8))
    truth = digits.target[np.sort(test)]
    accuracy = {}
    for precision in ("fp32", "int8"):
        results = zoo.get("digits", precision=precision).predict(pictures, batch_size=64)
        accuracy[precision] = 100 * np.mean([r.class_id == t for r, t in zip(results, truth)])
    assert accuracy["int8"] >= accuracy["fp32"] - 1.0, accuracy  # the bound: at most 1 point lower
    int8 = zoo.get("digits", precision="int8")
    assert int8.metadata["int8"]["calibration_images"] == 64  # the plugin's digits, not the zoo's photos
    entry = next(e for e in cache.entries("digits") if e.key == int8.path.parent.name)
    assert is_current(entry, default_registry())


@needs_digits
def test_zoo_export_and_predict_take_a_precision(zoo_cache_dir, tmp_path):
    def zoo_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True, check=False)

    exported = zoo_cli("export", "digits", "--precision", "int8", "--json")
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert data["key_inputs"]["precision"]["precision"] == "int8" and data["int8"]["agreement"] >= 0.98
    shown = zoo_cli("export", "digits", "--precision", "int8").stdout
    assert "agreement  top-1 agrees with float32 on" in shown and "one image" in shown
    import cv2

    digit = quantize.photos(zoo.get_spec("digits")).held[0]
    cv2.imwrite(str(tmp_path / "digit.png"), digit)
    predicted = zoo_cli("predict", "digits", str(tmp_path / "digit.png"), "--precision", "int8", "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)[0]["result"]["label"] == zoo.get("digits", precision="int8").predict(digit).label
    listed = zoo_cli("cache", "list").stdout
    assert f"int8 of entry {data['source_entry']}" in listed
    wrong = zoo_cli("predict", "digits", "x.png", "--precision", "int4")
    assert wrong.returncode == 2 and "invalid choice: 'int4'" in wrong.stderr


def test_the_photos_are_listed_with_their_licences():
    import tomllib
    from importlib.resources import files

    folder = files("zoo") / "data" / "photos"
    listed = tomllib.loads((folder / "photos.toml").read_text(encoding="utf-8"))["photo"]
    assert {p["file"] for p in listed} == {p.name for p in folder.iterdir() if p.name.endswith(".jpg")}
    assert all(p["license"] and p["source"] and p["role"] in ("calibration", "held") for p in listed)
    held = [p["file"] for p in listed if p["role"] == "held"]
    assert len(held) == 4 and len(listed) - len(held) >= 10


def test_a_torchvision_classifier_in_int8_agrees_with_float32_on_the_held_photos(zoo_cache_dir, tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    if "resnet18" not in zoo.list_models():
        pytest.skip("the zoo-torchvision plugin is not installed")
    from zoo.testing import decisive_classifier, randomize

    spec = zoo.get_spec("resnet18")
    torch.manual_seed(0)
    module = randomize(torchvision.models.resnet18(num_classes=len(spec.labels)).eval(), spec)
    decisive_classifier(module, spec, [views for _, views in quantize.photo_views().values()])
    weights = tmp_path / "resnet18-random.pth"
    torch.save(module.state_dict(), weights)
    int8 = zoo.get("resnet18", weights=str(weights), precision="int8")
    figures = int8.metadata["int8"]
    assert figures["agreement"] >= 0.98 and figures["max_difference"] <= 0.25, figures
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops(int8.path)
    fp32 = zoo.get("resnet18", weights=str(weights))
    assert int8.metadata["source_entry"] == fp32.path.parent.name
    photo = quantize.photo_views()["chelsea.jpg"][1][0]
    assert int8.predict(photo).label == fp32.predict(photo).label


def test_27_11_the_speed_up_is_the_median_of_interleaved_blocks_and_says_so(zoo_cache_dir, tmp_path):
    import time

    order = []

    def sleeper(name: str, seconds: float):
        def run() -> None:
            order.append(name)
            time.sleep(seconds)
        return run

    blocks = quantize.interleaved_ms({"fp32": sleeper("fp32", 0.004), "int8": sleeper("int8", 0.002)}, blocks=4)
    runs = quantize.CALLS + 1  # the first of a block untimed: the other model's threads may still be spinning
    assert order == (["fp32"] * runs + ["int8"] * runs + ["int8"] * runs + ["fp32"] * runs) * 2  # alternating
    assert {name: len(times) for name, times in blocks.items()} == {"fp32": 4, "int8": 4}
    figures = quantize.speed(blocks)
    ratios = sorted(f / i for f, i in zip(blocks["fp32"], blocks["int8"]))
    assert figures["speedup"] == round((ratios[1] + ratios[2]) / 2, 3) and 1.3 < figures["speedup"] < 2.5
    assert figures["speedup_range"] == [round(ratios[0], 3), round(ratios[-1], 3)]
    assert figures["timing"] == {"blocks": 4, "calls": quantize.CALLS}

    model = zoo.get(gemm_classifier(tmp_path, ties=False), precision="int8")
    stored = model.metadata["int8"]
    low, high = stored["speedup_range"]
    assert low <= stored["speedup"] <= high and stored["timing"] == {"blocks": quantize.BLOCKS, "calls": quantize.CALLS}
    from zoo.cli.render import parity_lines as _parity_lines

    speed = dict(_parity_lines(model.metadata))["speed"]
    assert f"{stored['speedup']:.2f}x" in speed and f"{low:.2f}x to {high:.2f}x" in speed
    assert f"{quantize.BLOCKS} interleaved blocks" in speed and "one image" in speed


def test_27_16_the_calibration_function_runs_once_when_the_int8_entry_is_built(zoo_cache_dir, tmp_path):
    from types import SimpleNamespace

    from conftest import registry_with

    calls = []

    def calibration() -> quantize.Photos:
        calls.append(1)
        return quantize.zoo_photos()

    def renamed() -> quantize.Photos:
        return quantize.zoo_photos()

    spec = dataclasses.replace(gemm_classifier(tmp_path, ties=False), calibration=calibration)
    registry = registry_with(gemm=SimpleNamespace(zoo_register_models=zoo.hookimpl(lambda register: register(spec))))
    spec = registry.get(spec.name)
    model = zoo.get(spec, precision="int8")
    assert len(calls) == 1 and model.metadata["int8"]["calibration_fingerprint"] == quantize.zoo_photos().fingerprint()
    again = zoo.get(spec, precision="int8")
    assert again.path == model.path and again.metadata["created"] == model.metadata["created"]
    entry = next(e for e in cache.entries(spec.name) if e.key == model.path.parent.name)
    assert is_current(entry, registry)  # as `zoo cache prune` and `zoo bundle export` ask
    assert len(calls) == 1  # neither the cache hit nor the check called the plugin's function again
    key = make_key(plan(spec, precision="int8"))
    assert make_key(plan(dataclasses.replace(spec, calibration=renamed), precision="int8")) != key
    assert make_key(plan(spec, precision="int8", plugin_version="2.0")) != key  # a new release: a new entry
    assert len(calls) == 1
