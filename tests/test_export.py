"""Export with real torch, onnx, onnxsim and onnxruntime, on small models with perturbed random weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from tinymodels import make_net

import zoo
from zoo import export
from zoo.errors import ExportError
from zoo.testing import randomize


def build_tiny(spec, weights):
    return make_net()


def build_resnet18(spec, weights):
    import torchvision

    return randomize(torchvision.models.resnet18(num_classes=10), (3, 64, 64))


def spec_for(build, **fields):
    values = dict(name="tiny", task="image-classification", preprocess=zoo.Preprocess(resize=(32, 32)),
                  build=build, outputs=("logits",))
    values.update(fields)
    return zoo.ModelSpec(**values)


@pytest.mark.parametrize("build", [build_tiny, build_resnet18])
def test_export_checks_simplifies_and_reports_parity(tmp_path, build):
    path = tmp_path / "model.onnx"
    report = export.export(spec_for(build), None, path, random_weights=True)
    onnx.checker.check_model(str(path), full_check=True)
    assert report.exporter == "torchscript" and report.opset == 17 and report.samples == 2
    assert report.simplified, report.simplify_note
    logits = report.parity["logits"]
    assert logits.max_abs < 1e-3 and logits.top1_agreement == 1.0
    assert set(report.versions) == {"torch", "onnx", "onnxsim", "onnxruntime"}
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (batch,) = session.run(None, {"input": np.zeros((3, 3, 32, 32), np.float32)})  # the batch axis is dynamic
    assert batch.shape[0] == 3
    assert [o.name for o in session.get_outputs()] == ["logits"]


def test_dynamo_exporter(tmp_path):
    report = export.export(spec_for(build_tiny), None, tmp_path / "model.onnx", exporter="dynamo", opset=20, random_weights=True)
    assert report.exporter == "dynamo" and report.opset == 20 and report.parity["logits"].top1_agreement == 1.0


def test_parity_beyond_tolerance_names_the_output_and_numbers(tmp_path):
    strict = spec_for(build_resnet18, atol=0.0, rtol=0.0)
    with pytest.raises(ExportError, match=r"output 'logits' differs .* max abs diff [0-9.e-]+, max rel diff") as info:
        export.export(strict, None, tmp_path / "model.onnx", simplify=False, random_weights=True)
    assert isinstance(info.value, zoo.ZooError)


def test_wrong_number_of_outputs_is_reported(tmp_path):
    with pytest.raises(ExportError, match="returns 1 outputs but its spec names 2"):
        export.export(spec_for(build_tiny, outputs=("a", "b")), None, tmp_path / "m.onnx", random_weights=True)


def test_an_unsupported_operator_raises_export_error(tmp_path):
    class Eigen(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x[:, 0]).real  # no ONNX operator at opset 17

    with pytest.raises(ExportError, match="torchscript exporter .*linalg_eigvals"):
        export.export(spec_for(lambda s, w: Eigen().eval(), outputs=("y",)), None, tmp_path / "m.onnx", random_weights=True)


def test_a_trace_that_froze_values_is_caught_by_parity(tmp_path):
    class Frozen(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(x.numpy().copy())  # the tracer records the dummy input as a constant

    with pytest.raises(ExportError, match="onnxruntime cannot run"):  # the tracer's warning is silenced
        export.export(spec_for(lambda s, w: Frozen().eval(), outputs=("y",)), None, tmp_path / "m.onnx", random_weights=True)


def test_simplifier_failure_keeps_the_checked_model(tmp_path, monkeypatch):
    import onnxsim

    def broken(model, *args, **kwargs):
        raise RuntimeError("simplifier crashed")

    monkeypatch.setattr(onnxsim, "simplify", broken)
    report = export.export(spec_for(build_tiny), None, tmp_path / "model.onnx", random_weights=True)
    assert not report.simplified and "simplifier crashed" in report.simplify_note
    onnx.checker.check_model(str(tmp_path / "model.onnx"), full_check=True)
    assert not (tmp_path / "model.onnx.sim").exists()
    assert dataclasses.asdict(report)["parity"]["logits"]["top1_agreement"] == 1.0


def test_a_torchvision_plugin_model_exports_through_its_build(tmp_path):
    spec = zoo.get_spec("squeezenet1_1")  # random init: no weights are downloaded here
    report = export.export(spec, None, tmp_path / "squeezenet1_1.onnx", samples=2, random_weights=True)
    assert report.parity["logits"].top1_agreement == 1.0
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "squeezenet1_1.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, 224, 224]


# -- issue 27 -------------------------------------------------------------------------------------------------


class WeightlessPlugin:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        from tinymodels import tiny_spec

        register(tiny_spec(summary="a tiny net (published top-1 99.9%)", metrics={"acc@1": 99.9}))


def test_27_05_a_spec_without_weights_is_refused_unless_random_weights_are_asked_for(zoo_cache_dir, monkeypatch,
                                                                                      capsys, tmp_path):
    from conftest import registry_with

    from zoo import cache, cli

    monkeypatch.setattr(zoo.registry, "_default", registry_with(weightless=WeightlessPlugin()))
    with pytest.raises(zoo.WeightsError, match=r"no weights to export with .* --weights FILE .* --weights random"):
        zoo.get("tiny")
    assert cache.entries() == []  # nothing half-made is left
    image = tmp_path / "grey.png"
    import cv2

    cv2.imwrite(str(image), np.full((40, 40, 3), 128, np.uint8))
    assert cli.main(["predict", "tiny", str(image)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: model 'tiny' has no weights") and "Traceback" not in err

    model = zoo.get("tiny", weights="random")  # asked for: exported, and recorded as such
    assert model.metadata["weights"]["tag"] == "random" and model.metadata["key_inputs"]["source"]["weights_sha256"] == (
        "random")
    assert model.spec.metrics == {} and "random weights" in model.spec.summary
    assert cli.main(["predict", "tiny", str(image), "--weights", "random"]) == 0
    capsys.readouterr()
    assert cli.main(["info", "tiny"]) == 0
    shown = capsys.readouterr().out
    assert "RANDOM weights (asked for with --weights random)" in shown
    assert "none published: --weights FILE (or --weights random)" in shown


def test_27_06_published_metrics_belong_to_the_published_weights_only(zoo_cache_dir, monkeypatch, capsys, tmp_path):
    from conftest import registry_with
    from tinymodels import save_weights

    from zoo import cli

    monkeypatch.setattr(zoo.registry, "_default", registry_with(weightless=WeightlessPlugin()))
    mine = save_weights(tmp_path / "finetuned.pth")
    model = zoo.get("tiny", weights=mine)
    assert model.spec.metrics == {} and "99.9" not in model.spec.summary and "finetuned.pth" in model.spec.summary
    assert zoo.get_spec("tiny").metrics == {"acc@1": 99.9}  # the registered spec keeps its published figures
    assert cli.main(["info", "tiny"]) == 0
    shown = capsys.readouterr().out
    assert "metrics of the published weights above, not of other checkpoints" in shown
    assert "your weights finetuned.pth (" in shown and "no published metrics" in shown


def test_27_17_a_tolerance_reaches_a_classifiers_comparison_and_an_unknown_one_is_named():
    from tinymodels import tiny_spec

    from zoo.geometry import Geometry

    spec, geometry = tiny_spec(), [Geometry.identity(32, 32)]
    task = zoo.registry.default_registry().task(spec.task)
    want = [np.array([[4.0, 1.0, 0.0, 0.0, 0.0]], np.float32)]
    got = [np.array([[4.2, 1.0, 0.0, 0.0, 0.0]], np.float32)]  # the same top class, its probability 0.016 higher
    with pytest.raises(ExportError, match="top probability"):
        export.results_agree(spec, task, want, got, geometry)  # the spec's own tolerance: atol + rtol, 0.0011
    assert export.results_agree(spec, task, want, got, geometry, score_tolerance=0.02)
    with pytest.raises(zoo.UsageError, match="takes no tolerance 'iou'; it takes score_tolerance"):
        export.results_agree(spec, task, want, got, geometry, iou=0.5)
