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
DETECTORS = list_models(module=torchvision.models.detection)
SEGMENTERS = list_models(module=torchvision.models.segmentation)
TASK_WEIGHTS = [(arch, w) for arch in DETECTORS + SEGMENTERS for w in get_model_weights(arch)]


def name_of(arch, weights):
    return arch if weights == get_model_weights(arch).DEFAULT else f"{arch}.{weights.name.lower()}"


def test_every_classifier_detector_segmenter_and_variant_is_registered():
    assert (len(CLASSIFIERS), len(DETECTORS), len(SEGMENTERS)) == (80, 12, 6)
    registered = {(s.extra["torchvision"]["arch"], s.extra["torchvision"]["weights"]) for s in SPECS.values()}
    assert registered == {(arch, w.name) for arch, w in WEIGHTS + TASK_WEIGHTS}
    assert len(WEIGHTS) == 114 and len(TASK_WEIGHTS) == 19 and len(SPECS) == 133
    for name in ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
                 "fasterrcnn_mobilenet_v3_large_320_fpn", "fcos_resnet50_fpn", "retinanet_resnet50_fpn",
                 "retinanet_resnet50_fpn_v2", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "maskrcnn_resnet50_fpn",
                 "maskrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn.coco_legacy",
                 "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "deeplabv3_resnet101", "fcn_resnet50",
                 "fcn_resnet101", "lraspp_mobilenet_v3_large"):
        assert name in SPECS
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


@pytest.mark.parametrize(("arch", "weights"), TASK_WEIGHTS, ids=[name_of(a, w) for a, w in TASK_WEIGHTS])
def test_detector_and_segmenter_specs_match_torchvision(arch, weights):
    spec = SPECS[name_of(arch, weights)]
    meta = weights.meta
    assert spec.labels == tuple(meta["categories"])
    assert spec.weights.url == weights.url and spec.license == "BSD-3-Clause"
    (metrics,) = meta["_metrics"].values()
    assert spec.metrics == {**metrics, "params": meta["num_params"], "gflops": meta["_ops"]}
    pre = spec.preprocess
    assert (pre.channels, pre.layout, pre.scale) == ("RGB", "NCHW", 1 / 255)
    if arch in SEGMENTERS:  # SemanticSegmentation: the shorter side to 520, no crop, ImageNet statistics
        transform = weights.transforms()
        assert spec.task == "semantic-segmentation" and pre.resize == transform.resize_size[0] == 520
        assert pre.crop is None and pre.interpolation == "bilinear" and pre.antialias
        assert pre.mean == pytest.approx(transform.mean) and pre.std == pytest.approx(transform.std)
        return
    # ObjectDetection: the image in [0, 1]; the graph resizes, normalises and maps boxes back itself
    assert pre.resize is None and pre.mean == (0.0,) and pre.std == (1.0,) and pre.dynamic
    assert not spec.batch_axis and spec.decode["nms"] == "graph"
    if "keypoint_names" in meta:
        assert spec.task == "keypoint-detection" and spec.decode["keypoint_names"] == tuple(meta["keypoint_names"])
        assert len(spec.decode["skeleton"]) == 19 and spec.outputs[-1] == "keypoints"
    elif arch.startswith("maskrcnn"):
        assert spec.task == "instance-segmentation" and spec.outputs[-1] == "masks"
    else:
        assert spec.task == "object-detection" and spec.outputs == ("boxes", "scores", "class_ids")


def test_opencv_is_refused_where_check_exports_found_it_crashes_or_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    assert "crashes the process" in SPECS["maxvit_t"].unsupported["opencv"]
    with pytest.raises(zoo.UsageError, match=r"'maxvit_t' does not run on opencv: OpenCV DNN crashes the process"):
        zoo.get("maxvit_t", runtime="opencv")  # before any download: there is no network here
    assert not list(tmp_path.iterdir())
    assert "opencv" not in SPECS["resnet50"].unsupported
