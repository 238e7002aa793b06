"""zoo-torchvision's models.toml against torchvision's own weights metadata and transforms."""

from __future__ import annotations

import dataclasses

import pytest

torchvision = pytest.importorskip("torchvision")
import zoo_torchvision
from torchvision.models import get_model_weights, list_models

import zoo

SPECS = {spec.name: spec for spec in zoo_torchvision.load_specs()}
CLASSIFIERS = list_models(module=torchvision.models)
WEIGHTS = [(arch, w) for arch in CLASSIFIERS for w in get_model_weights(arch) if w.meta.get("categories")]


def test_every_classifier_and_variant_is_registered():
    assert len(CLASSIFIERS) == 80
    registered = {(s.extra["torchvision"]["arch"], s.extra["torchvision"]["weights"]) for s in SPECS.values()}
    assert registered == {(arch, w.name) for arch, w in WEIGHTS}
    assert len(SPECS) == len(WEIGHTS) == 114
    for tutorial in ("alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101",
                     "resnet152", "squeezenet1_0", "squeezenet1_1", "resnext50_32x4d", "resnext101_32x8d",
                     "wide_resnet50_2", "wide_resnet101_2"):
        assert tutorial in SPECS


@pytest.mark.parametrize(("arch", "weights"), WEIGHTS, ids=[f"{a}.{w.name.lower()}" for a, w in WEIGHTS])
def test_spec_matches_torchvision(arch, weights):
    enum = get_model_weights(arch)
    name = arch if weights == enum.DEFAULT else f"{arch}.{weights.name.lower()}"
    spec = SPECS[name]
    transform = weights.transforms()
    pre = spec.preprocess
    assert pre.resize == transform.resize_size[0]  # an int: the shorter side, as torchvision's Resize([n])
    assert pre.crop == (transform.crop_size[0],) * 2
    assert pre.interpolation == transform.interpolation.value
    assert pre.antialias is bool(transform.antialias)
    assert pre.mean == pytest.approx(transform.mean) and pre.std == pytest.approx(transform.std)
    assert (pre.channels, pre.layout, pre.scale) == ("RGB", "NCHW", 1 / 255)
    assert spec.labels == tuple(weights.meta["categories"])
    assert spec.weights.url == weights.url
    assert weights.url.rsplit("/", 1)[-1].split("-")[-1].startswith(spec.weights.sha256)
    metrics = weights.meta["_metrics"]["ImageNet-1K"]
    assert spec.metrics == {"acc@1": metrics["acc@1"], "acc@5": metrics["acc@5"],
                            "params": weights.meta["num_params"], "gflops": weights.meta["_ops"]}
    if weights == enum.DEFAULT:
        assert spec.aliases == (f"{arch}.{weights.name.lower()}",)
    assert zoo.get_spec(name) == dataclasses.replace(spec, plugin="torchvision")
