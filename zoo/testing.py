"""``zoo.testing``: the plugin author's test kit, loaded by pytest as a plugin.

Installing onnx-zoo registers this module under pytest's ``pytest11`` entry point, so any
plugin's test suite gets, with no import:

* the fixture ``zoo_cache_dir``: an empty cache directory (``ZOO_CACHE_DIR``) for the
  test, and a process-wide registry rebuilt from the test's environment;
* the fixture ``zoo_plugin_manager``: a fresh plugin manager with nothing loaded but the
  built-in tasks; pass
  it to :func:`registered_specs` or add plugins to it yourself;
* the fixture ``local_hub``: a stand-in for the Hugging Face Hub (:mod:`zoo.localhub`) that
  ``HF_ENDPOINT`` points at, for models whose weights are a :class:`~zoo.spec.HubFile`.

And, to import from ``zoo.testing``:

* :func:`registered_specs` runs one plugin's registration hook in isolation and fails
  with the plugin's own error if it breaks;
* :func:`randomize` gives a PyTorch module perturbed random weights that make a parity
  check meaningful;
* :func:`check_model` is the conformance check every model should pass: spec valid and
  serialisable, preprocessing sane on awkward images, export (or prebuilt download)
  verified with PyTorch parity, predictions consistent between single images and batches
  and serialisable to JSON.

torch is imported only by the functions that need it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoo.errors import SpecError, ZooInputError
from zoo.localhub import LocalHub
from zoo.plugins import PluginManager
from zoo.preprocess import Preprocess
from zoo.registry import Registry, reset_default_registry
from zoo.spec import Artifact, ModelSpec

__all__ = ["Conformance", "check_model", "randomize", "registered_specs", "sample_images"]


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def zoo_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cache directory for this test (``ZOO_CACHE_DIR``); the registry is rebuilt around it."""
    folder = tmp_path_factory.mktemp("zoo-cache")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(folder))
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    reset_default_registry()
    yield folder
    reset_default_registry()


@pytest.fixture
def local_hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """A stand-in for the Hugging Face Hub on 127.0.0.1 (:class:`zoo.localhub.LocalHub`): ``HF_ENDPOINT`` points
    at it, and huggingface_hub's cache is the test's own (``HF_HUB_CACHE``). Put files in it with
    ``local_hub.add(repo, filename, data)``."""
    import sys

    folder = tmp_path_factory.mktemp("hf") / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    if "huggingface_hub.constants" in sys.modules:  # huggingface_hub reads its settings when it is imported
        monkeypatch.setattr(sys.modules["huggingface_hub.constants"], "HF_HUB_CACHE", str(folder))
        monkeypatch.setattr(sys.modules["huggingface_hub.constants"], "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "ZOO_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with LocalHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield hub


@pytest.fixture
def zoo_plugin_manager() -> PluginManager:
    """A fresh plugin manager: no entry points loaded, no plugins registered but the built-in tasks."""
    return PluginManager()


# -- helpers -----------------------------------------------------------------------------------


def registered_specs(plugin: object, name: str = "plugin", manager: PluginManager | None = None) -> list[ModelSpec]:
    """The specs ``plugin`` (a module or object with hook implementations) registers under ``name``.

    Raises the plugin's :class:`~zoo.errors.PluginError` if loading or registering fails,
    so a test shows the plugin's own traceback.
    """
    manager = manager if manager is not None else PluginManager()
    info = manager.add_plugin(plugin, name)
    registry = Registry.from_plugins(manager)
    if info.error is not None:
        raise info.error
    return [spec for spec in registry if spec.plugin == name]


def randomize(module: Any, spec: ModelSpec | tuple[int, ...], *, seed: int = 1, scale: float = 0.5,
              batches: int = 3, batch_size: int = 2) -> Any:
    """Perturb every parameter of ``module`` in place and return it in eval mode.

    Random initialisation can make a parity check prove nothing: torchvision leaves a
    ViT's head at zero (every output 0) and an EfficientNet's outputs near 1e-20. Each
    parameter gets Gaussian noise of ``scale`` times its own standard deviation (0.02 for
    constant tensors such as zero biases or unit norm weights). Then, if the module has
    BatchNorm layers, ``batches`` forward passes recompute their running statistics, with
    only those layers in training mode (dropout and stochastic depth would skew them);
    frozen BatchNorm (a layer with ``running_mean`` and ``running_var`` buffers that is not
    a BatchNorm, such as torchvision's ``FrozenBatchNorm2d`` in its detectors' backbones)
    takes the statistics of its input in those passes (the last pass's). The
    passes see ``batch_size`` Gaussian inputs and, when ``spec`` is a spec rather than an
    input shape (C, H, W), the sample photo preprocessed by it and its mirror image:
    statistics from noise alone let a deep network's activations on a real photo grow
    without bound (10^6 at EfficientNet-B4's last block), and parity on such numbers is
    chaos, not a test.
    """
    import torch

    from zoo.convert import sample_inputs

    shape = tuple(spec.preprocess.input_shape) if isinstance(spec, ModelSpec) else tuple(spec)
    photos = None
    if isinstance(spec, ModelSpec):
        photo = torch.from_numpy(sample_inputs(spec))
        photos = torch.cat([photo, photo.flip(-1)])
        shape = tuple(photo.shape[1:])  # a dynamic size takes the photo's
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            spread = float(p.std()) if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * (scale * spread or 0.02))
        norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        frozen = [m for m in module.modules() if not isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                  and isinstance(getattr(m, "running_mean", None), torch.Tensor)
                  and isinstance(getattr(m, "running_var", None), torch.Tensor)]
        module.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batches
            m.train()
        hooks = [m.register_forward_pre_hook(_take_statistics) for m in frozen]
        try:
            for _ in range(batches if norms or frozen else 0):
                noise = torch.randn((batch_size, *shape), generator=generator)
                module(noise if photos is None else torch.cat([noise, photos]))
        finally:
            for hook in hooks:
                hook.remove()
    return module.eval()


def decisive_classifier(module: Any, spec: ModelSpec, groups: Sequence[Sequence[np.ndarray]], *,
                        spread: float = 10.0) -> Any:
    """``module`` (a classifier with random weights) made to tell ``groups`` of images apart, for tests.

    A random classifier's top classes are near-ties (on the zoo's photos, resnet50's top two
    logits differ by a median 4% of their range), so any small change of the features, such
    as int8 rounding, flips its top-1: agreement would measure ties, not the change. Here the
    last layer that outputs one score per label gets, for the ``i``-th group, the row of a
    class (spread over the labels) set to the group's mean feature (centred, unit length,
    times ``spread``), like a trained classifier's prototype of a class; the other rows are
    scaled to a tenth. The images are RGB ``uint8`` arrays, preprocessed by ``spec``.
    """
    import torch

    if len(groups) < 2:
        raise ValueError(f"{spec.name}: decisive_classifier needs at least two groups of images to tell apart")
    classes = len(spec.labels)
    layers = [m for m in module.modules() if isinstance(m, torch.nn.Linear) and m.out_features == classes
              or isinstance(m, torch.nn.Conv2d) and m.out_channels == classes and m.kernel_size == (1, 1)]
    if not layers:
        raise ValueError(f"{spec.name}: no Linear or 1x1 Conv2d layer outputs {classes} scores")
    layer = layers[-1]
    seen: list[Any] = []
    hook = layer.register_forward_pre_hook(  # a Linear's input, or a 1x1 convolution's averaged over space
        lambda _, inputs: seen.append(inputs[0] if isinstance(layer, torch.nn.Linear) else inputs[0].mean((2, 3))))
    try:
        with torch.no_grad():
            means = []
            for group in groups:
                seen.clear()
                for image in group:
                    module(torch.from_numpy(spec.preprocess.apply([image])))
                means.append(torch.cat(seen).mean(0))
    finally:
        hook.remove()
    prototypes = torch.stack(means).flatten(1)
    prototypes = prototypes - prototypes.mean(0)
    prototypes = spread * prototypes / prototypes.norm(dim=1, keepdim=True).clamp(min=1e-12)
    weight = layer.weight.view(classes, -1)
    if weight.shape[1] != prototypes.shape[1]:
        raise ValueError(f"{spec.name}: the last layer takes {weight.shape[1]} features, not {prototypes.shape[1]}")
    with torch.no_grad():
        weight.mul_(0.1)
        if layer.bias is not None:
            layer.bias.mul_(0.1)
        for i, prototype in enumerate(prototypes):
            row = (i * classes) // len(prototypes)
            weight[row] = prototype
            if layer.bias is not None:
                layer.bias[row] = 0.0
    return module


def _take_statistics(layer: Any, inputs: tuple[Any, ...]) -> None:
    """A frozen BatchNorm's statistics set from the batch it is about to normalise."""
    (x,) = inputs[:1]
    axes = [0, *range(2, x.dim())]
    layer.running_mean.copy_(x.mean(axes))
    layer.running_var.copy_(x.var(axes).clamp(min=1e-5))


def sample_images() -> dict[str, np.ndarray]:
    """RGB uint8 images that catch preprocessing mistakes: a photo, a tall strip, a wide
    strip, a tiny image, a flat grey one."""
    from zoo.convert import sample_photo

    photo = sample_photo()
    ramp = np.linspace(0, 255, 600, dtype=np.float32)
    tall = np.stack([np.tile(ramp[:, None], (1, 40))] * 3, axis=-1).astype(np.uint8)
    return {"photo": photo, "tall": tall, "wide": np.ascontiguousarray(tall.transpose(1, 0, 2)),
            "tiny": photo[::40, ::40].copy(), "grey": np.full((50, 70, 3), 128, np.uint8)}


@dataclass
class Conformance:
    """What :func:`check_model` found (every check passed, or it raised)."""

    name: str
    source: str  # "export", "prebuilt" or "pipeline"
    path: Path | None  # None for a pipeline
    input_shape: tuple[int | None, ...]  # None where the size is dynamic
    parity: dict[str, Any] = field(default_factory=dict)  # the export's report (empty for prebuilt files)
    results: list[dict[str, Any]] = field(default_factory=list)  # to_dict() of each sample's result
    opencv: str = "not tried"  # "agrees", "differs", "fails: ..."
    #: A pipeline's sub-models, checked first, by name.
    parts: dict[str, Conformance] = field(default_factory=dict)


def check_model(model: str | ModelSpec, *, weights: str | Path | Artifact | None = None, sha256: str | None = None,
                images: dict[str, np.ndarray] | None = None, opencv: bool = True,
                options: dict[str, Any] | None = None) -> Conformance:
    """Run the conformance checks on ``model`` (a registered name or a spec); raise ``AssertionError``.

    Use it in a test with the ``zoo_cache_dir`` fixture, and random weights from
    :func:`randomize` saved with ``torch.save`` (or the spec's prebuilt ONNX)::

        def test_my_model_conforms(zoo_cache_dir, tmp_path):
            net = zoo.testing.randomize(MyNet(), (3, 64, 64))
            torch.save(net.state_dict(), tmp_path / "random.pth")
            report = zoo.testing.check_model(spec, weights=tmp_path / "random.pth")

    Checks, in order: the spec's description is JSON-serialisable and its preprocessing
    turns each of :func:`sample_images` (or ``images``) into a finite float32 tensor of
    the input shape (any size where it is dynamic) within the range its normalisation
    allows; ``zoo.get`` converts it (export with parity within the spec's tolerance, on
    several sizes when the size is dynamic, or the verified prebuilt file), and the parity
    compared something (a detector's inputs gave detections); the ONNX
    inputs and outputs match the spec; predicting a list equals predicting each image
    alone (compared by the task: boxes by IoU, masks by agreement); every result's
    ``to_dict()`` is strict JSON that reads back equal, and a result's boxes, masks and
    keypoints lie in its image; OpenCV DNN, if ``opencv``, loads the file and agrees
    with onnxruntime (reported, not required: OpenCV lacks some operators). ``options``
    go to ``predict`` (a lower ``score_threshold`` makes random weights detect).

    A pipeline is checked as one unit: each model it requires first, then the pipeline's
    own predictions.
    """
    from zoo.model import get
    from zoo.registry import default_registry

    spec = model if isinstance(model, ModelSpec) else default_registry().get(model)
    where = f"model {spec.name!r}"
    try:
        json.dumps(spec.to_dict(), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"{where}: the spec's description is not JSON-serialisable ({error}); "
                             f"keep `extra` to plain data") from error
    if spec.task.endswith("classification"):
        assert spec.labels, f"{where}: a classifier needs labels"
    samples = images if images is not None else sample_images()
    if spec.is_pipeline:
        assert weights is None and sha256 is None, f"{where}: a pipeline takes no weights; check its parts with theirs"
        parts = {name: check_model(name, images=samples, opencv=opencv) for name in spec.requires}
        loaded = get(spec)
        results = _check_predictions(loaded, samples, where, options or {})
        return Conformance(name=spec.name, source="pipeline", path=None, input_shape=(), results=results, parts=parts)
    pre = spec.preprocess
    samples = _respecting(pre, samples)
    _check_preprocessing(spec, samples, where)
    try:
        loaded = get(spec, weights=weights, sha256=sha256)  # checks the ONNX file's inputs and outputs against the spec
    except SpecError as error:
        raise AssertionError(f"{where}: {error}") from error
    source = loaded.metadata["key_inputs"]["source"]["kind"]
    assert not loaded.metadata.get("not_compared"), (
        f"{where}: the export's parity compared nothing (PyTorch gave no detection on any of its "
        f"{loaded.metadata.get('samples')} inputs): use weights that detect something (zoo.testing.randomize, or a "
        f"lower score threshold in the spec's options)")
    results = _check_predictions(loaded, samples, where, options or {})
    verdict = _check_opencv(loaded, samples) if opencv else "not tried"
    return Conformance(name=spec.name, source=source, path=loaded.path, input_shape=tuple(pre.input_shape),
                       parity=loaded.metadata.get("parity", {}), results=results, opencv=verdict)


def _respecting(pre: Preprocess, samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The samples, each smaller than the model's declared ``min_size`` enlarged (doubled until it is not)."""
    import cv2

    if pre.min_size is None:
        return samples
    found = {}
    for label, image in samples.items():
        for _ in range(5):  # at most 32 times larger
            try:
                pre.transform(image)
                break
            except ZooInputError:
                image = cv2.resize(image, (image.shape[1] * 2, image.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
        found[label] = image
    return found


def _check_preprocessing(spec: ModelSpec, samples: dict[str, np.ndarray], where: str) -> None:
    pre = spec.preprocess
    low, high = _normalised_range(spec)
    for label, image in samples.items():
        tensor, geometry = pre.transform(image)
        shape = pre.input_shape
        assert tensor.ndim == len(shape) and all(w is None or have == w for have, w in zip(tensor.shape, shape)), (
            f"{where}: preprocessing {label!r} gave shape {tensor.shape}, expected {shape} (None: any size)")
        assert tensor.dtype == np.float32, f"{where}: preprocessing {label!r} gave {tensor.dtype}, expected float32"
        assert np.isfinite(tensor).all(), f"{where}: preprocessing {label!r} gave non-finite values"
        assert low - 1e-4 <= tensor.min() and tensor.max() <= high + 1e-4, (
            f"{where}: preprocessing {label!r} gave values in [{tensor.min():.3g}, {tensor.max():.3g}], outside "
            f"[{low:.3g}, {high:.3g}] that scale, mean, std and the padding allow")
        assert geometry.original == image.shape[:2], f"{where}: the geometry of {label!r} lost the image's size"
        size = tensor.shape[1:3] if pre.layout == "NCHW" else tensor.shape[:2]  # (height, width) in either layout
        assert geometry.input == size, (
            f"{where}: the geometry of {label!r} says the input is {geometry.input}, the tensor is {tensor.shape}")
        corners = np.array([[0.0, 0.0], [image.shape[1], image.shape[0]]])
        to_input = corners * [geometry.scale[1], geometry.scale[0]] + [geometry.offset[1], geometry.offset[0]]
        assert np.allclose(geometry.to_original_points(to_input), corners, atol=1e-3), (
            f"{where}: the geometry of {label!r} does not map its own points back")
        if pre.crop is None:  # nothing cropped: the whole image lies in the tensor
            height, width = geometry.input
            assert (to_input >= -1e-3).all() and (to_input <= [width + 1e-3, height + 1e-3]).all(), (
                f"{where}: the geometry of {label!r} puts the image at {to_input.tolist()}, outside the "
                f"{width}x{height} input")


def _check_predictions(loaded: Any, samples: dict[str, np.ndarray], where: str, options: dict[str, Any]) -> list[Any]:
    """Predict each sample alone and all in one list: the same results, strict JSON, inside their images."""
    names = list(samples)
    together = loaded.predict([samples[n] for n in names], **options)
    assert isinstance(together, list) and len(together) == len(names), f"{where}: predict(list) must return a list"
    compare = loaded.task.compare if loaded.task is not None else None
    results = []
    for name, result in zip(names, together):
        alone = loaded.predict(samples[name], **options)
        data, data_alone = _plain(result, where), _plain(alone, where)
        if compare is not None and type(result) is type(alone) is loaded.task.result:
            try:
                compare(alone, result, loaded.spec)
            except AssertionError as error:
                raise AssertionError(f"{where}: image {name!r} predicted alone and in a batch differ: {error}") from None
        else:
            assert _close(data, data_alone), (f"{where}: image {name!r} predicted alone gives {data_alone}, "
                                              f"in a batch {data}")
        _check_inside(result, samples[name].shape[:2], f"{where}, image {name!r}")
        results.append(data)
    return results


def _check_inside(result: Any, size: tuple[int, int], where: str) -> None:
    """Boxes, keypoints and masks of a result lie in an image of ``size`` (height, width)."""
    height, width = size
    boxes = getattr(result, "boxes", None)
    if boxes is not None and len(boxes):
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 2] <= width).all() and (
            boxes[:, 3] <= height).all(), f"{where}: boxes outside the {width}x{height} image: {boxes.tolist()}"
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all(), f"{where}: inverted boxes"
    masks = getattr(result, "masks", None)
    if masks is not None:
        assert masks.shape[1:] == size, f"{where}: masks of shape {masks.shape[1:]}, not the image's {size}"
    mask = getattr(result, "mask", None)
    if isinstance(mask, np.ndarray):
        assert mask.shape == size, f"{where}: a mask of shape {mask.shape}, not the image's {size}"


def _check_opencv(loaded: Any, samples: dict[str, np.ndarray]) -> str:
    """Whether OpenCV DNN loads the file and agrees with onnxruntime on the first sample (reported, not required)."""
    from zoo import export
    from zoo.runtime import OpenCvSession, input_feeds

    spec = loaded.spec
    batch, geometries = spec.preprocess.batch([next(iter(samples.values()))])
    want = loaded.run(batch, geometries)
    try:
        got = OpenCvSession(loaded.path, spec.outputs).run(input_feeds(loaded.feeds, batch, geometries))
    except Exception as error:  # noqa: BLE001 - reported, not required
        return f"fails: {type(error).__name__}: {str(error)[:200]}"
    agree = all(got[n].shape == want[n].shape and export.within_tolerance(got[n], want[n], spec) for n in spec.outputs)
    return "agrees" if agree else "differs"


def _normalised_range(spec: ModelSpec) -> tuple[float, float]:
    """The smallest and largest values the preprocessing can produce, its padding included."""
    pre = spec.preprocess
    mean = np.broadcast_to(np.asarray(pre.mean), (pre.num_channels,))
    std = np.broadcast_to(np.asarray(pre.std), (pre.num_channels,))
    ends = np.concatenate([(value * pre.scale - mean) / std for value in (0, 255)])
    pad = pre.pad_value if pre.pad_normalized else (pre.pad_value * pre.scale - mean) / std
    return min(float(ends.min()), float(np.min(pad))), max(float(ends.max()), float(np.max(pad)))


def _plain(result: Any, where: str) -> Any:
    data = result.to_dict() if hasattr(result, "to_dict") else result
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"{where}: a result is not strict JSON ({error}): {data!r}") from error
    assert json.loads(text) == data, f"{where}: a result's to_dict() does not read back equal from JSON: {data!r}"
    return data


def _close(a: Any, b: Any, tolerance: float = 1e-4) -> bool:
    """Equal, with floats compared to ``tolerance`` of their magnitude."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tolerance) for k in a)
    if isinstance(a, Sequence) and isinstance(b, Sequence) and not isinstance(a, str):
        return len(a) == len(b) and all(_close(x, y, tolerance) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=tolerance, abs_tol=tolerance)
    return bool(a == b)
