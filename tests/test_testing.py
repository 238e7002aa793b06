"""zoo.testing, the plugin author's kit: its checks pass good models and catch broken ones."""

from __future__ import annotations

import dataclasses
import hashlib
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinymodels
from tinymodels import make_net, save_weights, tiny_spec

import zoo
from zoo import export
from zoo.testing import check_model, randomize, registered_specs


def test_fixtures_come_from_the_installed_pytest_plugin(zoo_cache_dir, zoo_plugin_manager, monkeypatch):
    import os

    assert os.environ["ZOO_CACHE_DIR"] == str(zoo_cache_dir) and not any(zoo_cache_dir.iterdir())
    assert zoo_plugin_manager.infos == {}  # no plugin loaded: only the built-in tasks, registered as pytest's are
    assert [zoo_plugin_manager.get_name(p) for p in zoo_plugin_manager.get_plugins()] == ["zoo.builtin_tasks"]


def test_a_good_model_conforms(zoo_cache_dir):
    report = check_model(tiny_spec(), weights="random")
    assert report.source == "export" and report.input_shape == (3, 32, 32)
    assert report.parity["logits"]["top1_agreement"] == 1.0
    assert report.opencv == "agrees"
    assert len(report.results) == 5 and all(r["label"] in ("cat", "dog", "bird", "fish", "frog")
                                            for r in report.results)


def test_a_result_that_is_not_json_is_caught(zoo_cache_dir):
    def postprocess(spec, outputs):
        return [{"age": float("nan")} for _ in outputs["logits"]]

    with pytest.raises(AssertionError, match="not strict JSON"):
        check_model(tiny_spec(name="nan", task="age-estimation", postprocess=postprocess), weights="random")


def test_a_result_that_depends_on_the_batch_is_caught(zoo_cache_dir):
    def postprocess(spec, outputs):
        return [{"rank": int(i), "batch": len(outputs["logits"])} for i in range(len(outputs["logits"]))]

    with pytest.raises(AssertionError, match="predicted alone gives"):
        check_model(tiny_spec(name="batchy", task="ranking", postprocess=postprocess), weights="random")


def test_an_onnx_file_whose_input_disagrees_with_the_spec_is_caught(zoo_cache_dir, tmp_path):
    path = tmp_path / "tiny.onnx"
    export.export(tiny_spec(), None, path, random_weights=True)  # 32x32 input
    artifact = zoo.Artifact(url=path.as_uri(), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    spec = tiny_spec(name="misfit", onnx=artifact, build=None, preprocess=zoo.Preprocess(resize=(16, 16)))
    with pytest.raises(AssertionError, match=r"shape \['N', 3, 16, 16\], but the ONNX file's input 'input' has shape "
                                             r"\['N', 3, 32, 32\]"):
        check_model(spec)


def test_registered_specs_runs_one_plugin_and_raises_its_error():
    good = types.SimpleNamespace(zoo_register_models=zoo.hookimpl(lambda register: register(tiny_spec())))
    assert [s.name for s in registered_specs(good, "good")] == ["tiny"]

    def broken(register):
        raise RuntimeError("no data file")

    with pytest.raises(zoo.PluginError, match="no data file"):
        registered_specs(types.SimpleNamespace(zoo_register_models=zoo.hookimpl(broken)), "broken")


def test_randomize_makes_degenerate_outputs_informative():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.Dropout(0.5), torch.nn.Linear(4 * 30 * 30, 10))
    torch.nn.init.zeros_(net[4].weight)  # as torchvision's ViT head: every output 0
    torch.nn.init.zeros_(net[4].bias)
    randomize(net, tiny_spec(preprocess=zoo.Preprocess(resize=(32, 32))))
    assert not net.training and not net[1].training
    assert net[1].num_batches_tracked == 3 and not torch.allclose(net[1].running_var, torch.ones(4))
    with torch.no_grad():
        outputs = net(torch.randn(8, 3, 32, 32)).numpy()
    assert np.abs(outputs).min() > 0 and len(set(outputs.argmax(1))) > 1
    again = make_net()
    assert torch.equal(again[0].weight, make_net()[0].weight)  # seeded: the same weights every time


class _ChannelsFirst(torch.nn.Module):
    """NHWC in, NCHW out: the tiny net behind it takes the NHWC tensor an NHWC spec feeds."""

    def forward(self, x):
        return x.permute(0, 3, 1, 2)


class _SwappedGeometry(zoo.Preprocess):
    """A preprocessing bug: the geometry says the input is (width, height), the tensor is (height, width)."""

    def transform(self, image):
        tensor, geometry = super().transform(image)
        return tensor, dataclasses.replace(geometry, input=geometry.input[::-1])


def test_27_12_check_model_checks_nhwc_layouts(zoo_cache_dir, tmp_path):
    def build(spec, weights):
        return torch.nn.Sequential(_ChannelsFirst(), tinymodels.build(spec, weights))

    weights = save_weights(tmp_path / "tiny.pth")
    good = tiny_spec(name="nhwc", build=build, preprocess=zoo.Preprocess(resize=(24, 32), layout="NHWC"))
    assert check_model(good, weights=weights, opencv=False).input_shape == (24, 32, 3)  # a right NHWC model conforms
    swapped = tiny_spec(name="nhwc-swapped", build=build, preprocess=_SwappedGeometry(resize=(24, 32), layout="NHWC"))
    with pytest.raises(AssertionError, match=r"says the input is \(32, 24\), the tensor is \(24, 32, 3\)"):
        check_model(swapped, weights=weights, opencv=False)
