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
    report = export.export(spec_for(build), None, path)
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
    report = export.export(spec_for(build_tiny), None, tmp_path / "model.onnx", exporter="dynamo", opset=20)
    assert report.exporter == "dynamo" and report.opset == 20 and report.parity["logits"].top1_agreement == 1.0


def test_parity_beyond_tolerance_names_the_output_and_numbers(tmp_path):
    strict = spec_for(build_resnet18, atol=0.0, rtol=0.0)
    with pytest.raises(ExportError, match=r"output 'logits' differs .* max abs diff [0-9.e-]+, max rel diff") as info:
        export.export(strict, None, tmp_path / "model.onnx", simplify=False)
    assert isinstance(info.value, zoo.ZooError)


def test_wrong_number_of_outputs_is_reported(tmp_path):
    with pytest.raises(ExportError, match="returns 1 outputs but its spec names 2"):
        export.export(spec_for(build_tiny, outputs=("a", "b")), None, tmp_path / "m.onnx")


def test_an_unsupported_operator_raises_export_error(tmp_path):
    class Eigen(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x[:, 0]).real  # no ONNX operator at opset 17

    with pytest.raises(ExportError, match="torchscript exporter .*linalg_eigvals"):
        export.export(spec_for(lambda s, w: Eigen().eval(), outputs=("y",)), None, tmp_path / "m.onnx")


def test_a_trace_that_froze_values_is_caught_by_parity(tmp_path):
    class Frozen(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(x.numpy().copy())  # the tracer records the dummy input as a constant

    with pytest.raises(ExportError, match="onnxruntime cannot run"):  # the tracer's warning is silenced
        export.export(spec_for(lambda s, w: Frozen().eval(), outputs=("y",)), None, tmp_path / "m.onnx")


def test_simplifier_failure_keeps_the_checked_model(tmp_path, monkeypatch):
    import onnxsim

    def broken(model, *args, **kwargs):
        raise RuntimeError("simplifier crashed")

    monkeypatch.setattr(onnxsim, "simplify", broken)
    report = export.export(spec_for(build_tiny), None, tmp_path / "model.onnx")
    assert not report.simplified and "simplifier crashed" in report.simplify_note
    onnx.checker.check_model(str(tmp_path / "model.onnx"), full_check=True)
    assert not (tmp_path / "model.onnx.sim").exists()
    assert dataclasses.asdict(report)["parity"]["logits"]["top1_agreement"] == 1.0


def test_a_torchvision_plugin_model_exports_through_its_build(tmp_path):
    spec = zoo.get_spec("squeezenet1_1")  # random init: no weights are downloaded here
    report = export.export(spec, None, tmp_path / "squeezenet1_1.onnx", samples=2)
    assert report.parity["logits"].top1_agreement == 1.0
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "squeezenet1_1.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, 224, 224]
