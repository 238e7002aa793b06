"""ModelSpec, Preprocess and Artifact: valid specs build, bad ones name the field."""

from __future__ import annotations

import pytest
from conftest import make_spec

import zoo
from zoo.errors import SpecError


def test_valid_spec_normalises_lists_and_hashes():
    spec = make_spec(
        aliases=["tiny-alias"], labels=["a", "b"],
        weights={"url": "https://example.org/w/tiny-0123abcd.pth", "sha256": "SHA256:0123ABCD"},
        preprocess={"resize": 10, "crop": 8, "mean": [0.5, 0.5, 0.5], "std": 0.5},
        metrics={"acc@1": 50.0},
    )
    assert spec.aliases == ("tiny-alias",) and spec.labels == ("a", "b")
    assert spec.weights.sha256 == "0123abcd" and not spec.weights.is_full_hash
    assert spec.weights.filename == "tiny-0123abcd.pth"
    assert spec.preprocess.crop == (8, 8) and spec.preprocess.std == (0.5,)
    assert spec.preprocess.input_shape == (3, 8, 8)
    with pytest.raises(TypeError):
        spec.metrics["acc@1"] = 1.0  # read-only


def test_arch_and_tag_split_the_name():
    spec = make_spec("resnet50.imagenet1k_v1")
    assert (spec.arch, spec.tag) == ("resnet50", "imagenet1k_v1")
    assert (make_spec("resnet50").arch, make_spec("resnet50").tag) == ("resnet50", "")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "Tiny"}, "name"),
        ({"name": "../etc"}, "name"),
        ({"name": "a/b/c"}, "name"),
        ({"name": "a//b"}, "name"),
        ({"name": "a/../b"}, "name"),
        ({"name": "/abs"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"task": "Image Classification"}, "task"),
        ({"preprocess": "resize 224"}, "preprocess"),
        ({"preprocess": {"resize": "letterbox"}}, "preprocess.size"),
        ({"preprocess": {"resize": "longer", "size": 960, "crop": 32}}, "preprocess.crop"),
        ({"preprocess": {"resize": (8, 8), "interpolation": "lanczos"}}, "preprocess.interpolation"),
        ({"preprocess": {"resize": (8, 8), "mean": [0.1, 0.2]}}, "preprocess.mean"),
        ({"preprocess": {"resize": (8, 8), "std": [0.0]}}, "preprocess.std"),
        ({"preprocess": {"resize": (8, 8), "channels": "rgb"}}, "preprocess.channels"),
        ({"preprocess": {"resize": (8, 8), "size": 3}}, "preprocess.size"),
        ({"preprocess": {"resize": (0, 8)}}, "preprocess.resize"),
        ({"aliases": "tiny2"}, "aliases"),
        ({"aliases": ["Tiny2"]}, "aliases"),
        ({"labels": ["a", 1]}, "labels"),
        ({"weights": {"url": "ftp://x/y.pth", "sha256": "0123abcd"}}, "weights.url"),
        ({"weights": {"url": "https://x/y.pth", "sha256": "xyz"}}, "weights.sha256"),
        ({"weights": {"url": "https://x/y.pth", "sha256": "0123abc"}}, "weights.sha256"),
        ({"weights": "https://x/y.pth"}, "weights"),
        ({"build": "module:function"}, "build"),
        ({"build": None}, "build"),
        ({"postprocess": 3}, "postprocess"),
        ({"outputs": []}, "outputs"),
        ({"outputs": ["a", "a"]}, "outputs"),
        ({"opset": 3}, "opset"),
        ({"atol": -1}, "atol"),
        ({"rtol": float("nan")}, "rtol"),
        ({"metrics": {"acc@1": "high"}}, "metrics.acc@1"),
        ({"extra": ["not", "a", "mapping"]}, "extra"),
    ],
)
def test_bad_field_is_named(fields, field):
    with pytest.raises(SpecError) as info:
        make_spec(**fields)
    assert info.value.field == field
    assert repr(field) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_prebuilt_onnx_is_enough_without_build():
    spec = make_spec(build=None, onnx=zoo.Artifact(url="file:///models/tiny.onnx", sha256="ab" * 32))
    assert spec.onnx.is_full_hash and spec.build is None


def test_preprocess_round_trips_through_dict():
    pre = zoo.Preprocess(resize=256, crop=224, interpolation="bicubic", mean=zoo.IMAGENET_MEAN, std=zoo.IMAGENET_STD,
                         channels="BGR", layout="NHWC")
    assert zoo.Preprocess.from_dict(pre.to_dict()) == pre
    assert pre.input_shape == (224, 224, 3)


def test_gray_preprocess_takes_one_mean():
    pre = zoo.Preprocess(resize=(8, 8), channels="GRAY", mean=0.5, std=0.25)
    assert pre.input_shape == (1, 8, 8)
    with pytest.raises(SpecError, match="mean"):
        zoo.Preprocess(resize=(8, 8), channels="GRAY", mean=[0.1, 0.2, 0.3])


def test_to_dict_is_json_ready():
    import json

    data = make_spec(weights=zoo.Artifact(url="https://x/y-0123abcd.pth", sha256="0123abcd")).to_dict()
    text = json.dumps(data)
    assert data["build"].endswith("<lambda>") and "0123abcd" in text and data["num_labels"] == 2


def test_a_runtime_known_not_to_run_a_model_is_refused_before_anything_is_built():
    def build(spec, weights):
        raise AssertionError("nothing is built for a runtime the spec rules out")

    spec = make_spec(build=build, unsupported={"opencv": "OpenCV DNN crashes the process on this graph"})
    with pytest.raises(zoo.UsageError, match=r"does not run on opencv: OpenCV DNN crashes the process on this graph; "
                                             r"use runtime='onnxruntime'"):
        zoo.get(spec, runtime="opencv")
    assert spec.to_dict()["unsupported"] == {"opencv": "OpenCV DNN crashes the process on this graph"}
    with pytest.raises(SpecError, match=r"unsupported' must be one of 'onnxruntime', 'opencv', 'openvino', got 'tensorrt'"):
        make_spec(unsupported={"tensorrt": "not tried"})
    with pytest.raises(SpecError, match=r"unsupported.opencv.*must say what happens"):
        make_spec(unsupported={"opencv": ""})
