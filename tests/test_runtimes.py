"""OpenVINO as a runtime, reduced precisions checked by the agreement gate, and ``runtime="auto"`` (issue 33).

The digits model and ONNX graphs made here need no torch: the first tests run in the torch-free job too; the
detector and segmenter at the end export torchvision models with perturbed random weights.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import zoo
from zoo import cache, gate, tune
from zoo.errors import PrecisionError, UsageError
from zoo.model import tuned

ov = pytest.importorskip("openvino")
if "digits" not in zoo.list_models():
    pytest.skip("the zoo-digits plugin is not installed", allow_module_level=True)

CAPABILITIES = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
needs_bf16 = pytest.mark.skipif("BF16" not in CAPABILITIES, reason="this CPU has no bf16 instructions (AMX or "
                                                                   "AVX-512 BF16): OpenVINO refuses bf16 here")


def digit() -> np.ndarray:
    """The digits plugin's sample of a one."""
    from conftest import ROOT

    return zoo.images.load(ROOT / "plugins" / "zoo-digits" / "samples" / "1.png")


def blobs(model: zoo.Model) -> list[str]:
    return sorted(p.name for p in model.path.parent.glob("*.ovblob"))


def test_33_1_openvino_runs_the_zoo_file_as_onnxruntime_does_in_float32(zoo_cache_dir):
    reference = zoo.get("digits")
    model = zoo.get("digits", runtime="openvino", threads=1)
    assert (model.runtime, model.precision) == ("openvino", "fp32") and model.path == reference.path
    batch = reference.preprocess([digit(), digit()[:, ::-1]])
    np.testing.assert_allclose(model.run(batch)["logits"], reference.run(batch)["logits"], rtol=1e-4, atol=1e-5)
    assert model.predict(digit()).to_dict()["label"] == reference.predict(digit()).to_dict()["label"] == "1"
    placement = model.placement()
    assert placement["devices"] == ["CPU"] and placement["nodes"] > 5
    assert set(placement["precisions"]) <= {"f32", "i32", "i64", "u8", "boolean"}  # float32 really: no silent bf16
    assert model.session.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    [record] = model.metadata["checks"].values()  # another engine's kernels: checked once on this machine
    assert (record["runtime"], record["precision"], record["refused"]) == ("openvino", "fp32", None)
    assert record["agreement"] == 1.0 and record["max_difference"] < 1e-4 and record["compared"] == 64


def test_33_1_the_compiled_model_is_kept_in_the_entry_verified_and_replaced_when_damaged(zoo_cache_dir, caplog):
    first = zoo.get("digits", runtime="openvino")
    [name] = blobs(first)
    saved = first.path.parent / name
    assert first.session.opened == first.path and cache.read_metadata(first.path.parent)["optimized"][name]["sha256"] \
        == cache.sha256_of(saved)  # recorded with its hash, as onnxruntime's optimised graph is
    want = first.predict(digit()).to_dict()
    again = zoo.get("digits", runtime="openvino")
    assert again.session.opened == saved and again.predict(digit()).to_dict() == want
    assert blobs(zoo.get("digits", runtime="openvino", threads=1)) != [name]  # other settings, another file
    data = bytearray(saved.read_bytes())
    data[-200:-100] = bytes(255 - b for b in data[-200:-100])
    saved.write_bytes(bytes(data))
    assert [ok for path, ok in cache.optimized_checks(first.path.parent) if path == saved] == [False]
    caplog.clear()
    recovered = zoo.get("digits", runtime="openvino")
    assert recovered.session.opened == recovered.path and recovered.predict(digit()).to_dict() == want
    assert any("sha256 differs" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert zoo.get("digits", runtime="openvino").session.opened == saved  # written and recorded anew


def test_33_1_dynamic_sizes_and_named_inputs(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from zoo.runtime import OnnxRuntimeSession
    from zoo.runtime_openvino import OpenVinoSession

    rng = np.random.default_rng(0)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], rng.normal(size=108).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Mul", ["conv", "scale"], ["scaled"]), helper.make_node("Relu", ["scaled"], ["out"])],
        "two-inputs", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"]),
                       helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, "H", "W"])], [weight])
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    session, reference = OpenVinoSession(path), OnnxRuntimeSession(path)
    assert session.inputs == {"image": [None, 3, None, None], "scale": [1]} and session.outputs == ["out"]
    for height, width in ((17, 23), (40, 8)):
        feeds = {"image": rng.normal(size=(2, 3, height, width)).astype(np.float32),
                 "scale": np.array([0.5], np.float32)}
        got = session.run(feeds)["out"]
        assert got.shape == (2, 4, height, width)
        np.testing.assert_allclose(got, reference.run(feeds)["out"], rtol=1e-4, atol=1e-5)


def test_33_2_a_task_without_an_agreement_is_compared_on_raw_outputs_in_float32_only():
    rng = np.random.default_rng(0)
    want = [{"age": rng.normal(size=(1, 3)).astype(np.float32), "var": rng.normal(size=(1, 1)).astype(np.float32)}
            for _ in range(4)]
    same = gate.outputs_agreement(want, [{k: v * (1 + 1e-6) for k, v in w.items()} for w in want])
    assert same["agreement"] == 1.0 and 0 < same["max_difference"] < 1e-5 and same["compared"] == 4
    moved = [dict(w) for w in want]
    moved[2] = {**moved[2], "age": moved[2]["age"] + 0.1}
    off = gate.outputs_agreement(want, moved)
    assert off["agreement"] == 0.75 and off["max_difference"] > 0.01
    quiet = [{"map": np.full((1, 8, 8), v, np.float32)} for v in (0.9, 1e-9)]  # a text map with nothing found
    calm = gate.outputs_agreement(quiet, [{"map": w["map"] + 2e-8} for w in quiet])
    assert calm["agreement"] == 1.0 and calm["max_difference"] < 1e-7  # relative to the map's scale over the images
    reshaped = gate.outputs_agreement(want[:1], [{"age": want[0]["age"][:, :2], "var": want[0]["var"]}])
    assert reshaped["agreement"] == 0.0  # another shape disagrees
    spec = zoo.get_spec("digits")
    assert gate.comparison(spec, None, "fp32") == (gate.outputs_agreement, gate.RAW_LIMITS)
    with pytest.raises(UsageError, match="whose results the zoo cannot compare with float32's; precision 'bf16'"):
        gate.comparison(spec, None, "bf16")


def test_33_2_precision_errors_name_what_to_do(zoo_cache_dir):
    for runtime in ("onnxruntime", "opencv"):
        with pytest.raises(UsageError, match=r"precision 'bf16' runs on OpenVINO \(runtime='openvino'"):
            zoo.get("digits", runtime=runtime, precision="bf16")
    with pytest.raises(UsageError, match="unknown precision 'fp8'"):
        zoo.get("digits", runtime="openvino", precision="fp8")
    if "FP16" not in CAPABILITIES:  # a CPU without fp16 units: refused, not emulated
        with pytest.raises(UsageError, match="precision 'fp16' needs fp16 units"):
            zoo.get("digits", runtime="openvino", precision="fp16")
    with pytest.raises(UsageError, match="OpenVINO has none"):
        zoo.get("digits", runtime="openvino", providers=["CPUExecutionProvider"])
    with pytest.raises(UsageError, match="unknown runtime 'tensorrt'; choose one of onnxruntime, opencv, openvino or auto"):
        zoo.get("digits", runtime="tensorrt")


def test_33_2_int8_on_openvino_is_checked_once_on_this_machine_and_recorded(zoo_cache_dir, monkeypatch):
    model = zoo.get("digits", runtime="openvino", precision="int8")
    assert (model.runtime, model.precision) == ("openvino", "int8")
    [(key, record)] = model.metadata["checks"].items()
    assert key == f"openvino/int8/{gate.machine_key()}" and record["refused"] is None
    assert record["compared"] == record["images"] == 64 and record["agreement"] >= 0.98
    assert cache.read_metadata(model.path.parent)["checks"][key] == record  # in the int8 entry
    monkeypatch.setattr(gate, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert zoo.get("digits", runtime="openvino", precision="int8").predict(digit()).label == "1"


def test_33_2_a_precision_that_fails_the_gate_is_refused_with_its_figures_and_stays_refused(zoo_cache_dir,
                                                                                            monkeypatch):
    zoo.get("digits", precision="int8")  # built, and passed int8's own check on onnxruntime
    strict = {"min_agreement": 0.98, "max_difference": 0.0}  # no change at all allowed on OpenVINO
    monkeypatch.setattr(gate, "limits", lambda spec, task_limits: strict)
    with pytest.raises(PrecisionError, match=r"in int8 on openvino is refused: a result moves by") as refused:
        zoo.get("digits", runtime="openvino", precision="int8")
    report = refused.value.report
    assert report["max_difference"] > 0 and report["limits"] == strict and report["compared"] == 64
    monkeypatch.setattr(gate, "measure", lambda *a, **k: pytest.fail("measured again"))
    with pytest.raises(PrecisionError):  # the recorded refusal, not measured again
        zoo.get("digits", runtime="openvino", precision="int8")


def test_33_2_an_int8_entry_or_file_runs_in_int8_wherever_it_is_opened_from(zoo_cache_dir, tmp_path):
    import shutil

    int8 = zoo.get("digits", precision="int8")
    entry = f"digits/{int8.path.parent.name}"
    model = zoo.get(entry, runtime="openvino")  # by NAME/KEY: checked as int8, against its float32 source entry
    assert model.precision == "int8" and gate.check_key("openvino", "int8") in model.metadata["checks"]
    with pytest.raises(UsageError, match="is built already, in int8: it cannot run in bf16"):
        zoo.get(entry, runtime="openvino", precision="bf16")
    copied = tmp_path / "digits-int8.onnx"  # a file used in place, which says it is int8: no float32 beside it
    shutil.copyfile(int8.path, copied)
    in_place = zoo.get(copied, runtime="openvino")
    [record] = in_place.metadata["checks"].values()  # against onnxruntime on the same file, kept in its folder
    assert in_place.precision == "int8" and record["refused"] is None and record["agreement"] == 1.0
    assert cache.read_metadata(in_place.converted.record_folder)["checks"] == in_place.metadata["checks"]


def test_33_2_a_recorded_pass_is_judged_again_by_todays_limits(zoo_cache_dir, monkeypatch):
    passed = zoo.get("digits", runtime="openvino", precision="int8").metadata["checks"]
    assert [r["refused"] for r in passed.values()] == [None]
    monkeypatch.setattr(gate, "measure", lambda *a, **k: pytest.fail("measured again"))
    monkeypatch.setattr(gate, "limits", lambda spec, task_limits: {"min_agreement": 0.98, "max_difference": 0.0})
    with pytest.raises(PrecisionError, match="a result moves by"):  # the same figures, today's limits
        zoo.get("digits", runtime="openvino", precision="int8")


def test_33_1_without_openvino_the_error_says_how_to_install_it(zoo_cache_dir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # as where the extra is not installed
    with pytest.raises(UsageError, match=r"pip install 'onnx-zoo\[openvino\]'"):
        zoo.get("digits", runtime="openvino")
    record = tuned("digits")  # tuning goes on without it
    rows = {(r["runtime"], r["precision"]): r for r in record["rows"]}
    assert "onnx-zoo[openvino]" in rows["openvino", "fp32"]["refused"] and rows["onnxruntime", "fp32"]["ms"] > 0


@needs_bf16
def test_33_2_bf16_runs_in_bf16_passes_the_gate_and_zoo_info_shows_it(zoo_cache_dir):
    from conftest import run_zoo

    model = zoo.get("digits", runtime="openvino", precision="bf16")
    assert model.precision == "bf16" and "bf16" in model.placement()["precisions"]
    record = model.metadata["checks"][f"openvino/bf16/{gate.machine_key()}"]
    assert record["refused"] is None and record["agreement"] >= 0.98 and 0 < record["max_difference"] < 0.25
    assert model.path == zoo.get("digits").path  # the float32 file, run in bf16
    shown = run_zoo("info", "digits")
    assert shown.returncode == 0 and "openvino bf16  passed (agreement" in shown.stdout, shown.stdout


def test_33_3_auto_tunes_once_remembers_the_choice_and_zoo_tune_shows_the_table(zoo_cache_dir, monkeypatch):
    from conftest import run_zoo

    shown = run_zoo("tune", "digits", "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    rows = {(r["runtime"], r["precision"]): r for r in record["rows"]}
    assert set(rows) == set(tune.CANDIDATES) and record["machine_key"] == gate.machine_key()
    chosen = [r for r in record["rows"] if r["chosen"]]
    assert len(chosen) == 1 and (chosen[0]["runtime"], chosen[0]["precision"]) == tuple(record["choice"].values())
    assert chosen[0] is rows[tune.REFERENCE] or chosen[0]["speedup"] >= tune.MARGIN  # never slower than the default
    assert all(r["ms"] > 0 for r in rows.values() if not r["refused"])
    assert rows["onnxruntime", "int8"]["figures"]["agreement"] >= 0.98
    if "FP16" not in CAPABILITIES:
        assert "fp16 units" in rows["openvino", "fp16"]["refused"]
    with_providers = tuned("digits", providers=["CPUExecutionProvider"])  # its own record
    assert not any(r["refused"] for r in with_providers["rows"] if r["runtime"] == "openvino" and r["precision"] in
                   ("fp32", "int8"))  # providers go to onnxruntime only
    monkeypatch.setattr(tune, "tune", lambda *a, **k: pytest.fail("tuned again"))
    model = zoo.get("digits", runtime="auto")
    assert (model.runtime, model.precision) == (record["choice"]["runtime"], record["choice"]["precision"])
    text = run_zoo("tune", "digits")
    assert text.returncode == 0 and "CHOSEN" in text.stdout and "chosen:" in text.stderr
    assert "tuned" in run_zoo("info", "digits").stdout


def test_33_3_a_file_used_in_place_keeps_its_tuning_and_an_int8_entry_is_tuned_by_its_name(zoo_cache_dir, tmp_path,
                                                                                             monkeypatch):
    import shutil

    copied = tmp_path / "digits.onnx"
    shutil.copyfile(zoo.get("digits").path, copied)
    first = tuned(copied)
    monkeypatch.setattr(tune, "tune", lambda *a, **k: pytest.fail("tuned again"))
    assert tuned(copied) == first  # read back from the file's cache folder, nothing opened
    int8 = zoo.get("digits", precision="int8")
    with pytest.raises(UsageError, match=r"is built in int8 already: tune the model by its name"):
        tuned(f"digits/{int8.path.parent.name}")


def test_33_5_predict_takes_the_runtime_and_precision(zoo_cache_dir):
    from conftest import ROOT, run_zoo

    image = ROOT / "plugins" / "zoo-digits" / "samples" / "1.png"
    done = run_zoo("predict", "digits", str(image), "--runtime", "openvino", "--precision", "int8", "--json")
    assert done.returncode == 0, done.stderr
    [answer] = json.loads(done.stdout)
    assert answer["result"]["label"] == "1", answer
    refused = run_zoo("predict", "digits", str(image), "--precision", "bf16")
    assert refused.returncode == 2 and "--runtime openvino" in refused.stderr


def test_33_4_placement_says_where_each_node_ran_and_names_what_fell_back_to_the_cpu(zoo_cache_dir):
    from zoo.runtime import fell_back

    model = zoo.get("digits")
    placement = model.placement()  # from onnxruntime's profile of one run
    assert placement["devices"] == ["CPUExecutionProvider"] and placement["providers"] == {
        "CPUExecutionProvider": placement["nodes"]} and "Conv" in placement["operators"]["CPUExecutionProvider"]
    assert fell_back(placement) == []  # the CPU was asked for: nothing fell back
    on_gpu = {**placement, "devices": ["CUDAExecutionProvider", "CPUExecutionProvider"]}  # as a CUDA session with
    assert fell_back(on_gpu) == placement["operators"]["CPUExecutionProvider"]  # these nodes on the CPU reports them
    assert zoo.get("digits", runtime="opencv").placement()["devices"] == ["CPU"]


def test_33_4_the_placement_of_an_accelerated_model_is_measured_once_and_kept(zoo_cache_dir, monkeypatch, caplog):
    model = zoo.get("digits")
    model._warn_fallback()  # what opening does on CUDA or TensorRT; here, on the CPU, nothing fell back
    [(key, placement)] = cache.read_metadata(model.path.parent)["placements"].items()
    assert key.startswith("CPUExecutionProvider/") and placement == model.placement()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    monkeypatch.setattr(zoo.Model, "placement", lambda self: pytest.fail("measured again"))
    zoo.get("digits")._warn_fallback()


@pytest.mark.skipif("CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
                    reason="no CUDA in this onnxruntime (no GPU here): the CUDA placement is checked on a GPU machine")
def test_33_4_cuda_reports_its_nodes(zoo_cache_dir):
    model = zoo.get("digits", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    placement = model.placement()
    assert placement["providers"].get("CUDAExecutionProvider", 0) > 0


def test_33_5_zoo_serve_runs_on_the_runtime_and_precision_it_is_given(tmp_path, monkeypatch):
    pytest.importorskip("uvicorn")
    from test_serve import digit_pngs, serving

    png = digit_pngs(3)[1]
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    monkeypatch.setenv("ZOO_CACHE_DIR", env["ZOO_CACHE_DIR"])  # this process reads the server's cache
    for args, runtime, precision in ((("--runtime", "openvino", "--precision", "int8"), "openvino", "int8"),
                                     (("--runtime", "auto"), None, None)):
        with serving(tmp_path, "digits", *args, env=env) as server:
            answer = server.post("/v1/models/digits/predict", png)
            assert answer.status_code == 200, answer.text
            [listed] = server.get("/v1/models").json()["models"]
            if runtime is None:  # auto: the choice recorded by its tuning, in the served process
                choice = tuned("digits")["choice"]  # read back, not measured again
                runtime, precision = choice["runtime"], choice["precision"]
            assert (listed["runtime"], listed["precision"]) == (runtime, precision)
            assert answer.json()["result"]["label"] == zoo.get("digits").predict(png).label


@pytest.mark.skipif("TensorrtExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
                    reason="no TensorRT in this onnxruntime (no GPU here): engine caching is checked on a GPU machine")
def test_33_4_tensorrt_engines_are_built_once_into_the_entry(zoo_cache_dir):
    from zoo.runtime import TENSORRT_ENGINES

    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    model = zoo.get("digits", providers=providers)
    engines = model.path.parent / TENSORRT_ENGINES
    assert any(engines.iterdir()) and model.predict(digit()).label == "1"
    built = {p: p.stat().st_mtime_ns for p in engines.iterdir()}
    zoo.get("digits", providers=providers).predict(digit())
    assert {p: p.stat().st_mtime_ns for p in engines.iterdir()} == built  # reused, not built again


def test_33_4_only_tensorrt_gets_an_engine_cache(tmp_path):
    from zoo.runtime import with_engine_cache

    assert with_engine_cache("CUDAExecutionProvider", tmp_path) == "CUDAExecutionProvider"
    name, options = with_engine_cache("TensorrtExecutionProvider", tmp_path)
    assert options["trt_engine_cache_enable"] and options["trt_engine_cache_path"] == str(tmp_path / "tensorrt")


# -- torchvision models with perturbed random weights: a detector and a segmenter ------------------------------


@pytest.fixture(scope="module")
def torchvision_specs():
    pytest.importorskip("torch")
    pytest.importorskip("zoo_torchvision")
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "plugins" / "zoo-torchvision"))
    import check_exports
    import zoo_torchvision

    specs = {spec.name: spec for spec in zoo_torchvision.load_specs()}
    return lambda name: dataclasses.replace(check_exports.randomized(specs.get(name) or zoo.get_spec(name)),
                                            weights=None)


@pytest.mark.parametrize("name", ["ssdlite320_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_33_2_the_gate_compares_a_detectors_boxes_and_a_segmenters_pixels(zoo_cache_dir, torchvision_specs, name,
                                                                           monkeypatch):
    from zoo.quantize import photos

    spec = torchvision_specs(name)
    reference = zoo.get(spec, weights="random")
    model = zoo.get(spec, weights="random", runtime="openvino")
    task = zoo.default_registry().task(spec.task)
    record = gate.check(reference.spec, task, model, reference, runtime="openvino", precision="fp32",
                        images=photos(reference.spec).held, options=reference.options)
    assert record["compared"] > 0, "float32 found nothing to compare: the test would prove nothing"
    assert record["refused"] is None and record["agreement"] >= 0.99, record  # OpenVINO float32 agrees
    if "BF16" in CAPABILITIES:  # the gate decides; either way the figures are there
        try:
            checked = zoo.get(spec, weights="random", runtime="openvino", precision="bf16").metadata["checks"]
            figures = checked[gate.check_key("openvino", "bf16")]  # beside OpenVINO float32's own check
        except PrecisionError as error:
            figures = error.report
        assert figures["compared"] > 0 and 0 <= figures["agreement"] <= 1
    try:  # int8 on onnxruntime: the detector's and segmenter's own comparison as it is built, not quantize's
        int8 = zoo.get(spec, weights="random", precision="int8")
        figures = int8.metadata["checks"][gate.check_key("onnxruntime", "int8")]
        assert "agreement" not in int8.metadata["int8"] and figures["refused"] is None
    except PrecisionError as error:
        figures = error.report
        monkeypatch.setattr(gate, "measure", lambda *a, **k: pytest.fail("measured again"))
        with pytest.raises(PrecisionError, match="int8.exclude"):  # the recorded refusal, in the int8 entry
            zoo.get(spec, weights="random", precision="int8")
    assert figures["compared"] > 0 and figures["limits"] == task.limits and 0 <= figures["agreement"] <= 1


def test_33_2_an_embeddings_int8_is_compared_by_nearest_vector_and_cosine_and_used(zoo_cache_dir, torchvision_specs,
                                                                                    monkeypatch):
    spec = torchvision_specs("resnet18-embedding")
    try:  # it passes here (all nearest vectors kept, lowest cosine 0.9987); 7-bit weights (no VNNI) were not run
        int8 = zoo.get(spec, weights="random", precision="int8")
    except PrecisionError as error:
        assert error.report["compared"] == 64 and error.report["refused"], error.report
        return
    assert "agreement" not in int8.metadata["int8"]  # quantize reads class scores only: the gate compares it
    record = int8.metadata["checks"][gate.check_key("onnxruntime", "int8")]
    assert record["refused"] is None and record["compared"] == 64 and record["agreement"] >= 0.98
    assert 0 < record["max_difference"] <= 0.05  # 1 - the lowest cosine with float32's vector
    monkeypatch.setattr(gate, "measure", lambda *a, **k: pytest.fail("measured again"))
    again = zoo.get(spec, weights="random", precision="int8")
    float32 = zoo.get(spec, weights="random")
    got, want = again.predict(digit()).vector, float32.predict(digit()).vector
    assert got.shape == want.shape and float(got @ want) / float(np.linalg.norm(got) * np.linalg.norm(want)) > 0.95
