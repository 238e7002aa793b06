"""zoo-ssrnet: registration, the network against the public checkpoint's layout and the paper's
formula, preprocessing against the seed's OpenCV pipeline, postprocessing, export, and weights."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import cv2
import numpy as np
import pytest

import zoo
import zoo.testing

torch = pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")
zoo_ssrnet = pytest.importorskip("zoo_ssrnet", reason="zoo-ssrnet is not installed: pip install -e plugins/zoo-ssrnet")

from zoo_ssrnet.net import SSRNet  # after the checks above: it imports torch

ENV_VARS = (zoo_ssrnet.WEIGHTS_ENV, zoo_ssrnet.SHA256_ENV)

# The state dict of the public checkpoint (oukohou/SSR_Net_Pytorch,
# pretrained_model/model_Adam_MSELoss_LRDecay_weightDecay0.0001_batch50_lr0.0005_epoch90_64x64.pth),
# read off SSR_models/SSR_Net_model.py there: names (the "funsion" misspelling included) and shapes.
_BN32 = {"weight": (32,), "bias": (32,), "running_mean": (32,), "running_var": (32,), "num_batches_tracked": ()}
_BN16 = {"weight": (16,), "bias": (16,), "running_mean": (16,), "running_var": (16,), "num_batches_tracked": ()}
PUBLIC_CHECKPOINT_SHAPES: dict[str, tuple[int, ...]] = {
    # stream 1: conv 3x3 + BN + ReLU + average pooling; the deepest block has a second conv and no pooling
    "stream1_stage3.0.weight": (32, 3, 3, 3), "stream1_stage3.0.bias": (32,),
    **{f"stream1_stage3.1.{k}": v for k, v in _BN32.items()},
    "stream1_stage2.0.weight": (32, 32, 3, 3), "stream1_stage2.0.bias": (32,),
    **{f"stream1_stage2.1.{k}": v for k, v in _BN32.items()},
    "stream1_stage1.0.weight": (32, 32, 3, 3), "stream1_stage1.0.bias": (32,),
    **{f"stream1_stage1.1.{k}": v for k, v in _BN32.items()},
    "stream1_stage1.4.weight": (32, 32, 3, 3), "stream1_stage1.4.bias": (32,),
    **{f"stream1_stage1.5.{k}": v for k, v in _BN32.items()},
    # stream 2: conv 3x3 + BN + Tanh + max pooling, 16 channels
    "stream2_stage3.0.weight": (16, 3, 3, 3), "stream2_stage3.0.bias": (16,),
    **{f"stream2_stage3.1.{k}": v for k, v in _BN16.items()},
    "stream2_stage2.0.weight": (16, 16, 3, 3), "stream2_stage2.0.bias": (16,),
    **{f"stream2_stage2.1.{k}": v for k, v in _BN16.items()},
    "stream2_stage1.0.weight": (16, 16, 3, 3), "stream2_stage1.0.bias": (16,),
    **{f"stream2_stage1.1.{k}": v for k, v in _BN16.items()},
    "stream2_stage1.4.weight": (16, 16, 3, 3), "stream2_stage1.4.bias": (16,),
    **{f"stream2_stage1.5.{k}": v for k, v in _BN16.items()},
    # fusion: 1x1 conv to 10 channels, then (after dropout at index 0) a linear layer to the 3 bins
    "funsion_block_stream1_stage_3_before_PB.0.weight": (10, 32, 1, 1),
    "funsion_block_stream1_stage_3_before_PB.0.bias": (10,),
    "funsion_block_stream1_stage_3_prediction_block.1.weight": (3, 160),
    "funsion_block_stream1_stage_3_prediction_block.1.bias": (3,),
    "funsion_block_stream1_stage_2_before_PB.0.weight": (10, 32, 1, 1),
    "funsion_block_stream1_stage_2_before_PB.0.bias": (10,),
    "funsion_block_stream1_stage_2_prediction_block.1.weight": (3, 160),
    "funsion_block_stream1_stage_2_prediction_block.1.bias": (3,),
    "funsion_block_stream1_stage_1_before_PB.0.weight": (10, 32, 1, 1),
    "funsion_block_stream1_stage_1_before_PB.0.bias": (10,),
    "funsion_block_stream1_stage_1_prediction_block.1.weight": (3, 640),
    "funsion_block_stream1_stage_1_prediction_block.1.bias": (3,),
    "funsion_block_stream2_stage_3_before_PB.0.weight": (10, 16, 1, 1),
    "funsion_block_stream2_stage_3_before_PB.0.bias": (10,),
    "funsion_block_stream2_stage_3_prediction_block.1.weight": (3, 160),
    "funsion_block_stream2_stage_3_prediction_block.1.bias": (3,),
    "funsion_block_stream2_stage_2_before_PB.0.weight": (10, 16, 1, 1),
    "funsion_block_stream2_stage_2_before_PB.0.bias": (10,),
    "funsion_block_stream2_stage_2_prediction_block.1.weight": (3, 160),
    "funsion_block_stream2_stage_2_prediction_block.1.bias": (3,),
    "funsion_block_stream2_stage_1_before_PB.0.weight": (10, 16, 1, 1),
    "funsion_block_stream2_stage_1_before_PB.0.bias": (10,),
    "funsion_block_stream2_stage_1_prediction_block.1.weight": (3, 640),
    "funsion_block_stream2_stage_1_prediction_block.1.bias": (3,),
    # per stage: 3 -> 6 hidden, 6 -> 3 probabilities, 6 -> 3 index offsets, embedding -> 1 dynamic range
    "stage3_FC_after_PB.0.weight": (6, 3), "stage3_FC_after_PB.0.bias": (6,),
    "stage3_prob.0.weight": (3, 6), "stage3_prob.0.bias": (3,),
    "stage3_index_offsets.0.weight": (3, 6), "stage3_index_offsets.0.bias": (3,),
    "stage3_delta_k.0.weight": (1, 160), "stage3_delta_k.0.bias": (1,),
    "stage2_FC_after_PB.0.weight": (6, 3), "stage2_FC_after_PB.0.bias": (6,),
    "stage2_prob.0.weight": (3, 6), "stage2_prob.0.bias": (3,),
    "stage2_index_offsets.0.weight": (3, 6), "stage2_index_offsets.0.bias": (3,),
    "stage2_delta_k.0.weight": (1, 160), "stage2_delta_k.0.bias": (1,),
    "stage1_FC_after_PB.0.weight": (6, 3), "stage1_FC_after_PB.0.bias": (6,),
    "stage1_prob.0.weight": (3, 6), "stage1_prob.0.bias": (3,),
    "stage1_index_offsets.0.weight": (3, 6), "stage1_index_offsets.0.bias": (3,),
    "stage1_delta_k.0.weight": (1, 640), "stage1_delta_k.0.bias": (1,),
}

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


# -- helpers -----------------------------------------------------------------------------------


def seed_preprocess(bgr: np.ndarray) -> np.ndarray:
    """Seed 2's OpenCV preprocessing, step by step, for a BGR uint8 image (as cv2.imread gives)."""
    image = cv2.resize(bgr, (64, 64))
    image = image.astype(np.float32) / 255.0
    image[:, :, 0] = (image[:, :, 0] - 0.485) / 0.229
    image[:, :, 1] = (image[:, :, 1] - 0.456) / 0.224
    image[:, :, 2] = (image[:, :, 2] - 0.406) / 0.225
    return np.expand_dims(image.transpose((2, 0, 1)), 0)


def paper_forward(state: dict, x, stages=(3, 3, 3), lambda_local=1.0, lambda_d=1.0, age_range=101.0):
    """SSR-Net computed from a state dict with torch.nn.functional, bin by bin as the paper writes it."""
    functional = torch.nn.functional

    def block(x, prefix, i, activation):
        x = functional.conv2d(x, state[f"{prefix}.{i}.weight"], state[f"{prefix}.{i}.bias"], padding=1)
        bn = f"{prefix}.{i + 1}"
        x = functional.batch_norm(x, state[f"{bn}.running_mean"], state[f"{bn}.running_var"], state[f"{bn}.weight"],
                                  state[f"{bn}.bias"], training=False, eps=1e-5)
        return activation(x)

    def linear(x, name):
        return functional.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])

    relu, tanh, avg, mx = functional.relu, torch.tanh, functional.avg_pool2d, functional.max_pool2d
    a3 = avg(block(x, "stream1_stage3", 0, relu), 2)
    a2 = avg(block(a3, "stream1_stage2", 0, relu), 2)
    a1 = block(avg(block(a2, "stream1_stage1", 0, relu), 2), "stream1_stage1", 4, relu)
    b3 = mx(block(x, "stream2_stage3", 0, tanh), 2)
    b2 = mx(block(b3, "stream2_stage2", 0, tanh), 2)
    b1 = block(mx(block(b2, "stream2_stage1", 0, tanh), 2), "stream2_stage1", 4, tanh)
    age, denominator = 0.0, 1.0
    for k, (a, b, pool) in enumerate(((a1, b1, 1), (a2, b2, 4), (a3, b3, 8)), start=1):
        fa = relu(functional.conv2d(a, state[f"funsion_block_stream1_stage_{k}_before_PB.0.weight"],
                                    state[f"funsion_block_stream1_stage_{k}_before_PB.0.bias"]))
        fb = relu(functional.conv2d(b, state[f"funsion_block_stream2_stage_{k}_before_PB.0.weight"],
                                    state[f"funsion_block_stream2_stage_{k}_before_PB.0.bias"]))
        fa, fb = avg(fa, pool).flatten(1), mx(fb, pool).flatten(1)
        delta = tanh(linear(fa * fb, f"stage{k}_delta_k.0"))[:, 0]
        fused = (relu(linear(fa, f"funsion_block_stream1_stage_{k}_prediction_block.1"))
                 * relu(linear(fb, f"funsion_block_stream2_stage_{k}_prediction_block.1")))
        hidden = relu(linear(fused, f"stage{k}_FC_after_PB.0"))
        p = relu(linear(hidden, f"stage{k}_prob.0"))
        eta = tanh(linear(hidden, f"stage{k}_index_offsets.0"))
        denominator = denominator * stages[k - 1] * (1 + lambda_d * delta)
        age = age + sum((i + lambda_local * eta[:, i]) * p[:, i] for i in range(stages[k - 1])) / denominator
    return age_range * age


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def spec(clean_env: pytest.MonkeyPatch) -> zoo.ModelSpec:
    (found,) = zoo.testing.registered_specs(zoo_ssrnet, "ssrnet")
    return found


@pytest.fixture(scope="module")
def random_net():
    return zoo.testing.randomize(SSRNet(), (3, 64, 64))


@pytest.fixture(scope="module")
def random_weights(random_net, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ssrnet-weights") / "random.pth"
    torch.save(random_net.state_dict(), path)
    return path


# -- registration ------------------------------------------------------------------------------


def test_registers_ssrnet_with_the_seed_preprocessing_and_no_weights(spec: zoo.ModelSpec):
    assert (spec.name, spec.task, spec.outputs, spec.plugin) == ("ssrnet", "age-estimation", ("age",), "ssrnet")
    assert spec.weights is None and spec.onnx is None
    assert spec.build is zoo_ssrnet.build and spec.postprocess is zoo_ssrnet.postprocess
    pre = spec.preprocess
    assert (pre.resize, pre.crop, pre.interpolation, pre.antialias) == ((64, 64), None, "bilinear", False)
    assert (pre.channels, pre.layout, pre.input_shape) == ("BGR", "NCHW", (3, 64, 64))
    assert pre.scale == pytest.approx(1 / 255)
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)
    assert "weights_problem" not in spec.extra
    json.dumps(spec.to_dict(), allow_nan=False)


def test_registration_imports_neither_torch_nor_numpy():
    code = ("import sys, zoo_ssrnet\n"
            "from zoo.plugins import PluginManager\n"
            "from zoo.registry import Registry\n"
            "manager = PluginManager()\n"
            "info = manager.add_plugin(zoo_ssrnet, 'ssrnet')\n"
            "assert info.error is None, info.error\n"
            "assert 'ssrnet' in Registry.from_plugins(manager)\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'numpy', 'cv2') if m in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- the network -------------------------------------------------------------------------------


def test_state_dict_names_and_shapes_are_the_public_checkpoints():
    state = SSRNet().state_dict()
    assert {name: tuple(t.shape) for name, t in state.items()} == PUBLIC_CHECKPOINT_SHAPES
    params = sum(p.numel() for p in SSRNet().parameters())
    assert params == zoo_ssrnet.make_spec({}).metrics["params"]


def test_forward_is_the_papers_soft_stagewise_regression(random_net):
    noise = torch.randn((3, 3, 64, 64), generator=torch.Generator().manual_seed(3))
    photos = torch.from_numpy(zoo_ssrnet.PREPROCESS.apply([getattr(skimage_data, p)() for p in PHOTOS]))
    x = torch.cat([noise, photos])
    state = random_net.state_dict()
    with torch.inference_mode():
        got = random_net(x)
        want = paper_forward(state, x)
        # The comparison can tell the terms apart: without the index offsets or the dynamic ranges it differs.
        for changed in (paper_forward(state, x, lambda_local=0.0), paper_forward(state, x, lambda_d=0.0)):
            assert float((changed - want).abs().max()) > 1e-2
    assert got.shape == (len(x),)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_a_checkpoint_saved_as_the_reference_saves_it_loads(random_net, spec: zoo.ModelSpec, tmp_path: Path):
    # train_SSR-Net.py saves {"epoch", "state_dict", "optimizer_state_dict"}; old PyTorch lacks num_batches_tracked.
    trained = SSRNet()
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-3, weight_decay=1e-4)
    trained(torch.randn(2, 3, 64, 64)).sum().backward()
    optimizer.step()  # the optimiser's state now holds tensors and numbers, as a real checkpoint's does
    state = {k: v for k, v in random_net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "model.pth"
    torch.save({"epoch": 90, "state_dict": state, "optimizer_state_dict": optimizer.state_dict()}, path)
    net = zoo_ssrnet.build(spec, path)
    assert not net.training
    for name, value in random_net.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(net.state_dict()[name], value), name


def test_another_checkpoint_is_refused_with_a_weights_error(random_net, spec: zoo.ModelSpec, tmp_path: Path):
    state = dict(random_net.state_dict())
    state["stage1_prob.0.weight"] = torch.zeros(5, 6)
    del state["stage2_delta_k.0.bias"]
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(zoo.WeightsError, match="does not fit the model SSR-Net") as caught:
        zoo_ssrnet.build(spec, tmp_path / "other.pth")
    assert "stage2_delta_k.0.bias" in str(caught.value) and "stage1_prob.0.weight is [5, 6]" in str(caught.value)


# -- preprocessing and postprocessing ----------------------------------------------------------


@pytest.mark.parametrize("photo", PHOTOS)
def test_preprocessing_is_the_seeds_opencv_pipeline(photo: str):
    rgb = getattr(skimage_data, photo)()
    got = zoo_ssrnet.PREPROCESS.apply([rgb])  # the zoo takes RGB and converts to BGR itself
    want = seed_preprocess(np.ascontiguousarray(rgb[:, :, ::-1]))
    assert got.shape == want.shape == (1, 3, 64, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    # Not vacuous: RGB order would move the means onto the wrong channels.
    assert np.abs(seed_preprocess(rgb) - want).max() > 0.1


def test_preprocessing_from_a_file_is_the_seeds(tmp_path: Path):
    from zoo import images

    path = tmp_path / "chelsea.png"  # lossless, so that both decoders give the same pixels
    cv2.imwrite(str(path), skimage_data.chelsea()[:, :, ::-1])
    got = zoo_ssrnet.PREPROCESS.apply([images.load(str(path))])
    np.testing.assert_allclose(got, seed_preprocess(cv2.imread(str(path))), rtol=0, atol=2e-6)


def test_postprocessing_gives_the_age_with_its_interval_clipped_to_0_100(spec: zoo.ModelSpec):
    ages = np.array([30.0, 41.25, 1.0, 0.0, 98.5, 100.0, 101.0], np.float32)
    results = spec.postprocess(spec, {"age": ages})
    assert all(isinstance(r, zoo.Regression) and r.unit == "years" for r in results)
    got = [(r.value, r.low, r.high) for r in results]
    assert got == [(30.0, 28.0, 33.0), (41.25, 39.25, 44.25), (1.0, 0.0, 4.0), (0.0, 0.0, 3.0),
                   (98.5, 96.5, 100.0), (100.0, 98.0, 100.0), (101.0, 99.0, 100.0)]
    json.dumps([r.to_dict() for r in results], allow_nan=False)


# -- export and prediction ---------------------------------------------------------------------


def test_random_weights_pass_the_conformance_checks(zoo_cache_dir: Path, spec: zoo.ModelSpec, random_weights: Path):
    report = zoo.testing.check_model(spec, weights=random_weights)
    assert report.source == "export" and report.input_shape == (3, 64, 64)
    assert report.opencv == "agrees", f"OpenCV DNN (zoo predict --runtime opencv): {report.opencv}"
    assert report.parity["age"]["max_abs"] <= 1e-3
    assert all(r["unit"] == "years" and r["low"] <= r["high"] for r in report.results)
    values = [r["value"] for r in report.results]
    assert max(values) - min(values) > 0.1, f"the random net gives one age for every image: {values}"


def test_onnx_age_equals_pytorch_on_a_photo(zoo_cache_dir: Path, spec: zoo.ModelSpec, random_net,
                                            random_weights: Path):
    rgb = skimage_data.astronaut()
    model = zoo.get(spec, weights=random_weights)
    result = model.predict(rgb)
    with torch.inference_mode():
        want = float(random_net(torch.from_numpy(seed_preprocess(np.ascontiguousarray(rgb[:, :, ::-1]))))[0])
    assert isinstance(result, zoo.Regression)
    assert result.value == pytest.approx(want, rel=1e-5, abs=1e-4)
    assert (result.low, result.high) == pytest.approx((max(want - 2, 0), min(want + 3, 100)), rel=1e-5, abs=1e-4)


# -- weights: missing, and configured by the environment ---------------------------------------


def test_without_weights_the_error_says_where_to_get_them(zoo_cache_dir: Path, spec: zoo.ModelSpec):
    with pytest.raises(zoo.WeightsError) as caught:
        zoo.get(spec)
    message = str(caught.value)
    for needed in ("no default weights", zoo_ssrnet.REFERENCE, zoo_ssrnet.CHECKPOINT, "--weights", "weights=",
                   "ZOO_SSRNET_WEIGHTS", "ZOO_SSRNET_SHA256"):
        assert needed in message
    assert not list((zoo_cache_dir / "models").glob("ssrnet*")), "a failed build left a cache entry"


@pytest.mark.skipif(not entry_points(group="zoo", name="ssrnet"), reason="zoo-ssrnet is not installed")
def test_zoo_predict_without_weights_prints_the_error_and_exits_1(tmp_path: Path):
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), skimage_data.astronaut()[:, :, ::-1])
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(ZOO_CACHE_DIR=str(tmp_path / "cache"), ZOO_LOAD_PLUGINS="ssrnet")
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "predict", "ssrnet", str(image)], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "zoo: error: model 'ssrnet' has no default weights" in done.stderr
    assert zoo_ssrnet.REFERENCE in done.stderr and "ZOO_SSRNET_WEIGHTS" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_weights_file_in_the_environment_becomes_the_default(zoo_cache_dir: Path, clean_env: pytest.MonkeyPatch,
                                                               random_weights: Path):
    clean_env.setenv(zoo_ssrnet.WEIGHTS_ENV, str(random_weights))
    (spec,) = zoo.testing.registered_specs(zoo_ssrnet, "ssrnet")
    assert spec.weights == zoo.Artifact(url=random_weights.resolve().as_uri(),
                                        sha256=hashlib.sha256(random_weights.read_bytes()).hexdigest())
    photo = skimage_data.chelsea()
    configured = zoo.get(spec)  # no weights= : the environment's
    explicit = zoo.get(spec, weights=random_weights)
    assert configured.path == explicit.path  # the same weights hash, so the same cache entry
    assert configured.predict(photo).value == pytest.approx(explicit.predict(photo).value)


def test_27_18_registration_leaves_the_weights_file_unread_until_the_model_is_built(
        zoo_cache_dir: Path, clean_env: pytest.MonkeyPatch, random_weights: Path, tmp_path: Path):
    configured = tmp_path / "ssrnet.pth"
    configured.write_bytes(b"not the checkpoint yet")
    clean_env.setenv(zoo_ssrnet.WEIGHTS_ENV, str(configured))
    (spec,) = zoo.testing.registered_specs(zoo_ssrnet, "ssrnet")  # every zoo command registers it
    configured.write_bytes(random_weights.read_bytes())  # replaced after registration: what is built is what is there
    assert spec.weights == zoo.Artifact(url=configured.resolve().as_uri(),
                                        sha256=hashlib.sha256(random_weights.read_bytes()).hexdigest())
    photo = skimage_data.chelsea()
    explicit = zoo.get(spec, weights=random_weights).predict(photo).value
    assert zoo.get(spec).predict(photo).value == pytest.approx(explicit)
    (again,) = zoo.testing.registered_specs(zoo_ssrnet, "ssrnet")
    configured.unlink()  # gone by the time the model is built: the error names the setting
    with pytest.raises(zoo.WeightsError, match=f"{zoo_ssrnet.WEIGHTS_ENV} names .*ssrnet.pth.*cannot be read"):
        zoo.get(again)


@pytest.mark.parametrize(("environ", "problem"), [
    ({"ZOO_SSRNET_WEIGHTS": "https://example.com/ssrnet.pth"}, "ZOO_SSRNET_SHA256 is not set"),
    ({"ZOO_SSRNET_WEIGHTS": "/nonexistent/ssrnet.pth"}, "does not exist: '/nonexistent/ssrnet.pth'"),
    ({"ZOO_SSRNET_SHA256": "ab" * 32}, "ZOO_SSRNET_WEIGHTS is not"),
    ({"ZOO_SSRNET_WEIGHTS": "https://example.com/ssrnet.pth", "ZOO_SSRNET_SHA256": "xyz"}, "hex digits"),
])
def test_an_unusable_setting_keeps_the_model_and_is_reported_when_it_is_built(environ: dict, problem: str,
                                                                              clean_env: pytest.MonkeyPatch):
    for name, value in environ.items():
        clean_env.setenv(name, value)
    (spec,) = zoo.testing.registered_specs(zoo_ssrnet, "ssrnet")
    assert spec.weights is None
    with pytest.raises(zoo.WeightsError) as caught:
        zoo_ssrnet.build(spec, None)
    assert problem in str(caught.value) and zoo_ssrnet.REFERENCE in str(caught.value)


def test_a_url_with_its_sha256_in_the_environment_becomes_the_default():
    url, digest = "https://example.com/models/ssrnet.pth", "AB" * 32
    weights, problem = zoo_ssrnet.weights_from_env({"ZOO_SSRNET_WEIGHTS": url, "ZOO_SSRNET_SHA256": digest})
    assert problem is None and weights == zoo.Artifact(url=url, sha256=digest.lower())
    assert zoo_ssrnet.weights_from_env({}) == (None, None)
