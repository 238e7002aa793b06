"""Preprocessing against its references: torchvision's transforms on real photos, and cv2.dnn.blobFromImage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")
try:  # the torchvision references need the export extra; blobFromImage and Pillow ones do not
    import torch
    import torchvision
except ImportError:
    torch = torchvision = None
from PIL import Image

import zoo
from zoo.errors import SpecError
from zoo.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from zoo.testing import randomize


def photos() -> dict[str, np.ndarray]:
    found = {name: getattr(skimage_data, name)() for name in ("chelsea", "coffee", "astronaut", "rocket")}
    found["rocket-portrait"] = np.ascontiguousarray(np.rot90(found["rocket"]))
    found["chelsea-4000x3000"] = cv2.resize(found["chelsea"], (4000, 3000), interpolation=cv2.INTER_CUBIC)
    return found


PHOTOS = photos()


def torchvision_specs() -> list[zoo.ModelSpec]:
    """One torchvision spec per distinct preprocessing (resize, crop, interpolation)."""
    unique = {}
    for name in zoo.list_models(plugin="torchvision"):
        spec = zoo.get_spec(name)
        unique.setdefault(spec.preprocess, spec)
    return list(unique.values())


SPECS = torchvision_specs() if torchvision is not None else []
needs_torchvision = pytest.mark.skipif(torchvision is None, reason="needs torch and torchvision (the export extra)")


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_matches_torchvision_transforms_within_one_grey_level(spec):
    info = spec.extra["torchvision"]
    transforms = torchvision.models.get_weight(f"{info['arch']}_Weights.{info['weights']}".replace(
        info["arch"], _weights_enum_prefix(info["arch"]), 1)).transforms()
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    for name, pixels in PHOTOS.items():
        expected = transforms(Image.fromarray(pixels)).numpy()
        actual = spec.preprocess.apply([pixels])[0]
        assert actual.shape == expected.shape, name
        grey_levels = np.abs(actual - expected) * std * 255
        assert grey_levels.max() <= 1.0 + 1e-3, (name, float(grey_levels.max()))
        if not name.startswith("chelsea-"):  # no pre-averaging under 10x reduction: Pillow to the bit
            assert grey_levels.max() < 1e-3, (name, float(grey_levels.max()))


def _weights_enum_prefix(arch: str) -> str:
    """torchvision's weights enum name for an architecture (ResNet50_Weights for resnet50)."""
    builder = torchvision.models.get_model_builder(arch)
    return torchvision.models.get_model_weights(builder).__name__.removesuffix("_Weights")


@needs_torchvision
def test_classifier_top1_is_the_same_as_with_torchvision():
    torch.manual_seed(0)
    net = randomize(torchvision.models.resnet18(), zoo.get_spec("resnet18"))  # random but not degenerate
    spec = zoo.get_spec("resnet18")
    transforms = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    ours = torch.from_numpy(spec.preprocess.apply(list(PHOTOS.values())))
    theirs = torch.stack([transforms(Image.fromarray(p)) for p in PHOTOS.values()])
    with torch.no_grad():
        assert torch.equal(net(ours).argmax(1), net(theirs).argmax(1))


@pytest.mark.parametrize("crop", [True, False])
@pytest.mark.parametrize("name", list(PHOTOS))
def test_blob_from_image_semantics_are_reproduced_exactly(name, crop):
    rgb = PHOTOS[name]
    mean = tuple(m * 255 for m in IMAGENET_MEAN)  # pixel units: subtracted before scaling
    blob = cv2.dnn.blobFromImage(rgb[:, :, ::-1].copy(), 1 / 255, (224, 224), mean, swapRB=True, crop=crop)
    spec = Preprocess(resize="cover" if crop else (224, 224), crop=224 if crop else None, antialias=False,
                      scale=1 / 255, mean=IMAGENET_MEAN, std=(1.0,))
    assert np.array_equal(spec.apply([rgb]), blob)


def test_opencv_tutorial_pipeline():
    """Seed 1: resize to 256x256, then blobFromImage(224, crop=True): on the 256x256 image, a spec equals it."""
    for rgb in PHOTOS.values():
        resized = cv2.resize(rgb, (256, 256))
        blob = cv2.dnn.blobFromImage(resized[:, :, ::-1].copy(), 1 / 255, (224, 224),
                                     tuple(m * 255 for m in IMAGENET_MEAN), swapRB=True, crop=True)
        spec = Preprocess(resize="cover", crop=224, antialias=False, scale=1 / 255, mean=IMAGENET_MEAN, std=(1.0,))
        assert np.array_equal(spec.apply([resized]), blob)
        # blobFromImage's crop=True rescales a square image instead of cropping it: a second resize.
        assert np.array_equal(blob, Preprocess(resize=(224, 224), antialias=False, scale=1 / 255,
                                               mean=IMAGENET_MEAN, std=(1.0,)).apply([resized]))


def test_channels_layout_and_padding():
    rgb = PHOTOS["coffee"]
    base = Preprocess(resize=(64, 96), scale=1.0)
    nchw = base.apply([rgb])
    bgr = Preprocess(resize=(64, 96), scale=1.0, channels="BGR").apply([rgb])
    assert np.array_equal(bgr, nchw[:, ::-1])
    nhwc = Preprocess(resize=(64, 96), scale=1.0, layout="NHWC").apply([rgb])
    assert np.array_equal(nhwc, nchw.transpose(0, 2, 3, 1))
    gray = Preprocess(resize=(64, 96), scale=1.0, channels="GRAY").apply([rgb])
    assert gray.shape == (1, 1, 64, 96)
    small = np.full((10, 20, 3), 200, np.uint8)  # smaller than the crop: zero padding around it, centred
    padded = Preprocess(crop=(16, 24), scale=1.0).apply([small])[0, 0]
    assert padded.shape == (16, 24) and padded[3:13, 2:22].min() == 200 and padded[:3].max() == 0


def test_nearest_and_area():
    rgb = PHOTOS["rocket"]
    for interpolation, flag in (("nearest", cv2.INTER_NEAREST_EXACT), ("area", cv2.INTER_AREA)):
        out = Preprocess(resize=(50, 70), interpolation=interpolation, scale=1.0, layout="NHWC").apply([rgb])[0]
        assert np.array_equal(out, cv2.resize(rgb, (70, 50), interpolation=flag).astype(np.float32))


@pytest.mark.parametrize("kernel", ["bilinear", "bicubic"])
def test_resize_equals_pillow_to_the_bit_on_noise(kernel):
    """Random pixels (the worst case for rounding and bicubic overshoot), sizes and crops.

    Two-axis resizes keep the aspect ratio, of a landscape or a portrait image, as a resize of
    the shorter side does; others change one axis, or squash both. Pillow 13 runs the vertical
    pass first where it removes more than twice as many pixels a line (python-pillow/Pillow#9549:
    noise 240x107 to 53x24, say), and so does the zoo: the cases cover both orders.
    """
    from zoo import _resample

    rng = np.random.default_rng(7)
    orders = set()
    for case in range(90):
        height, width = sorted(int(v) for v in rng.integers(3, 400, size=2))
        if case % 2:
            height, width = width, height  # a portrait image
        short = int(rng.integers(2, 300))
        if case % 5 == 0:  # one axis only
            out_h, out_w = (height, short) if case % 2 else (short, width)
        elif case % 5 == 1:  # both axes, to any size (timm's squash)
            out_h, out_w = short, int(rng.integers(2, 300))
        else:
            out_h, out_w = (short, int(short * width / height)) if height <= width else (int(short * height / width),
                                                                                          short)
        if min(out_h, out_w) < 1 or min(height / out_h, width / out_w) >= 2 * _resample.PREREDUCE_RATIO:
            continue
        channels = int(rng.choice([1, 3]))
        image = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
        r0 = int(rng.integers(0, out_h))
        r1 = int(rng.integers(r0 + 1, out_h + 1))
        c0 = int(rng.integers(0, out_w))
        c1 = int(rng.integers(c0 + 1, out_w + 1))
        pil = Image.fromarray(image[:, :, 0] if channels == 1 else image)
        expected = np.asarray(pil.resize((out_w, out_h), _PIL_FILTERS[kernel])).reshape(out_h, out_w, channels)
        actual = _resample.resize(image, (out_h, out_w), kernel, (r0, r1), (c0, c1))
        assert np.array_equal(actual, expected[r0:r1, c0:c1]), (height, width, out_h, out_w, r0, r1, c0, c1)
        orders.add(_resample.vertical_first((height, width), (out_h, out_w)))
    assert orders == {True, False}


_PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


# -- issue 31, item 3: what the contract could not say ---------------------------------------------


@pytest.mark.parametrize("position", ["top-left", "center"])
def test_31_03_pad_resize_pads_to_a_square_then_resizes_and_maps_points_back_exactly(position):
    image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    pre = Preprocess(resize="pad-resize", size=(320, 320), pad_value=114, pad_position=position, antialias=False,
                     scale=1.0)
    tensor, geometry = pre.transform(image)
    top = 100 if position == "center" else 0
    square = np.full((500, 500, 3), 114, np.uint8)
    square[top:top + 300] = image
    want = cv2.resize(square, (320, 320), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(tensor, want)
    assert geometry.input == (320, 320) and geometry.scale == (0.64, 0.64) and geometry.offset == (top * 0.64, 0)
    corners = np.array([[0.0, 0.0], [500.0, 300.0], [123.4, 56.7]])  # x, y in the original
    in_input = corners * 0.64 + [0, top * 0.64]
    np.testing.assert_allclose(geometry.to_original_points(in_input), corners, atol=1e-4)  # no rounding of a side
    with pytest.raises(SpecError, match="pad_normalized"):
        Preprocess(resize="pad-resize", size=(320, 320), pad_normalized=True)


def test_31_03_a_fixed_height_gives_a_width_from_the_aspect_ratio_padded_on_the_right():
    pre = Preprocess(resize="height", size=(48, 320), antialias=False, scale=1 / 127.5, mean=(1.0,),
                     pad_normalized=True, pad_value=0.0, batching="pad")
    assert pre.input_size == (48, None) and pre.dynamic
    narrow = np.full((30, 100, 3), 255, np.uint8)  # 48 * 100 / 30 = 160 wide, padded to 320
    wide = np.full((20, 300, 3), 255, np.uint8)  # 48 * 300 / 20 = 720 wide
    odd = np.full((47, 101, 3), 255, np.uint8)  # 48 * 101 / 47 = 103.1: rounded up to 104
    batch, geometries = pre.batch([narrow, wide, odd])
    assert batch.shape == (3, 3, 48, 720)
    assert (batch[0, :, :, :160] == 1).all() and (batch[0, :, :, 160:] == 0).all()  # padded on the right
    assert (batch[2, :, :, :104] == 1).all() and (batch[2, :, :, 104:] == 0).all()
    alone, geometry = pre.transform(narrow)
    assert alone.shape == (3, 48, 320) and geometry.scale == (48 / 30, 160 / 100)
    assert [g.input for g in geometries] == [(48, 720)] * 3


def test_31_03_a_declared_minimum_size_refuses_smaller_images_and_check_model_respects_it():
    from zoo.errors import ZooInputError
    from zoo.testing import _respecting, sample_images

    pre = Preprocess(min_size=12)
    assert pre.min_size == (12, 12) and "min_size" in pre.to_dict() and "min_size" not in Preprocess().to_dict()
    with pytest.raises(ZooInputError, match=r"10x8 pixels.*at least 12x12"):
        pre.transform(np.zeros((8, 10, 3), np.uint8))
    assert pre.transform(np.zeros((12, 12, 3), np.uint8))[0].shape == (3, 12, 12)
    with pytest.raises(SpecError, match=r"min_size.*larger than the \[24, 24\] input"):
        Preprocess(resize=(24, 24), min_size=32)
    samples = _respecting(Preprocess(min_size=40), sample_images())
    assert all(min(image.shape[:2]) >= 40 for image in samples.values())
