"""zoo-timm's preprocessing against timm's own eval transform (``create_transform(**resolve_data_config(...))`` on a
PIL image), on photos: within one grey level, for each crop mode and interpolation the catalogue has.

``pytest plugins/zoo-timm -k faithful -s`` prints the largest difference found per mode.
"""

from __future__ import annotations

import tomllib

import cv2
import numpy as np
import pytest

import zoo
from zoo._resample import vertical_first

timm = pytest.importorskip("timm")
skimage_data = pytest.importorskip("skimage.data")
zoo_timm = pytest.importorskip("zoo_timm", reason="zoo-timm is not installed: pip install -e plugins/zoo-timm")

from PIL import Image
from timm.data import create_transform, resolve_data_config
from timm.data.transforms import CenterCropOrPad, ResizeKeepRatio
from timm.models import get_pretrained_cfg
from torchvision import transforms

DATA = tomllib.loads((zoo_timm.HERE / "models.toml").read_text(encoding="utf-8"))
PREPROCESS = {key: zoo.Preprocess.from_dict(fields) for key, fields in DATA["preprocess"].items()}


def photos() -> dict[str, np.ndarray]:
    """scikit-image's photos, a portrait one, a large one (the zoo averages blocks first: within a grey level of
    Pillow), small ones (enlarged, or padded by a crop larger than them) and noise of odd sizes."""
    found = {name: getattr(skimage_data, name)() for name in ("chelsea", "coffee", "astronaut", "rocket")}
    found["rocket-portrait"] = np.ascontiguousarray(np.rot90(found["rocket"]))
    found["chelsea-4000x3000"] = cv2.resize(found["chelsea"], (4000, 3000), interpolation=cv2.INTER_CUBIC)
    found["astronaut-61x47"] = cv2.resize(found["astronaut"], (47, 61), interpolation=cv2.INTER_AREA)
    found["noise-97x301"] = np.random.default_rng(0).integers(0, 256, (97, 301, 3), dtype=np.uint8)
    found["noise-333x120"] = np.random.default_rng(1).integers(0, 256, (333, 120, 3), dtype=np.uint8)
    found["coffee-tall-900x300"] = cv2.resize(found["coffee"], (300, 900), interpolation=cv2.INTER_AREA)
    return found


PHOTOS = photos()


def timm_transform(tag: str):
    return create_transform(**resolve_data_config({}, pretrained_cfg=get_pretrained_cfg(tag).to_dict()))


def modes() -> dict[tuple[str, str], list[str]]:
    """The tags of each (crop_mode, interpolation) in the catalogue, in its order."""
    found: dict[tuple[str, str], list[str]] = {}
    for tag in DATA["models"]:
        data = resolve_data_config({}, pretrained_cfg=get_pretrained_cfg(tag).to_dict())
        found.setdefault((data["crop_mode"], data["interpolation"]), []).append(tag)
    return found


MODES = modes()
#: One tag per mode, and those whose crop is not square or whose crop_pct is 1 (the resize is the crop).
PICKED = sorted({tags[0] for tags in MODES.values()} | {
    "vit_base_patch16_sapiens2.fb",  # squash to 1024x768
    "resnet50.a1_in1k",  # center, 0.95: resize 235, crop 224
    "deepseek_vit_412m.deepseek_v4_1_flash",  # border, 546x546, padded with grey 128
    "volo_d4_448.sail_in1k",  # center, crop_pct 1.15: a crop larger than the resized image, padded as torchvision pads
})
WORST: dict[str, float] = {}


def test_32_1_the_catalogue_has_these_modes():
    counts = {mode: len(tags) for mode, tags in MODES.items()}
    assert counts == {("center", "bicubic"): 1519, ("center", "bilinear"): 151, ("squash", "bicubic"): 122,
                      ("squash", "bilinear"): 9, ("border", "bicubic"): 6}, counts  # timm 1.0.31's


def resized(preprocess: zoo.Preprocess, height: int, width: int) -> tuple[int, int]:
    """The size an image is resized to, before the crop (or the letterbox's padding)."""
    if isinstance(preprocess.resize, int):
        short, long = sorted((height, width))
        long = int(preprocess.resize * long / short)
        return (preprocess.resize, long) if height <= width else (long, preprocess.resize)
    if preprocess.resize == "letterbox":
        factor = min(preprocess.size[0] / height, preprocess.size[1] / width)
        return round(height * factor), round(width * factor)
    return preprocess.resize


def compare(tag: str, vertically_first: bool) -> float:
    """The largest difference from timm's transform, in grey levels, over the photos that Pillow resizes
    vertically first (or the others), each checked within one grey level."""
    preprocess = PREPROCESS[DATA["models"][tag][4]]
    transform = timm_transform(tag)
    data = resolve_data_config({}, pretrained_cfg=get_pretrained_cfg(tag).to_dict())
    std = np.asarray(data["std"], np.float32)[:, None, None]
    worst = 0.0
    for name, pixels in PHOTOS.items():
        to = resized(preprocess, *pixels.shape[:2])
        if vertical_first(pixels.shape[:2], to) != vertically_first:  # Pillow 13's order, and the zoo's
            continue
        expected = transform(Image.fromarray(pixels)).numpy()
        actual = preprocess.apply([pixels])[0]
        assert actual.shape == expected.shape, name
        grey_levels = float((np.abs(actual - expected) * std * 255).max())
        assert grey_levels <= 1.0 + 1e-3, (name, grey_levels)
        if not name.startswith("chelsea-"):  # no averaging of blocks below a 10x reduction: Pillow to the bit
            assert grey_levels < 1e-3, (name, grey_levels)
        worst = max(worst, grey_levels)
    return worst


@pytest.mark.parametrize("tag", PICKED)
def test_32_1_faithful_to_timm_within_one_grey_level(tag):
    worst = compare(tag, vertically_first=False)
    data = resolve_data_config({}, pretrained_cfg=get_pretrained_cfg(tag).to_dict())
    mode = f"{data['crop_mode']} {data['interpolation']}"
    WORST[mode] = max(WORST.get(mode, 0.0), worst)
    print(f"\n{tag} ({mode}): at most {worst:.4f} grey levels from timm's transform")


@pytest.mark.parametrize("tag", ["coat_lite_medium_384.in1k", "resnet50.a1_in1k"])
def test_32_1_faithful_where_pillow_resizes_vertically_first(tag):
    """Pillow 13 runs the vertical pass first where the height shrinks by over twice as many pixels as the width
    (squash on a portrait photo, any resize of one taller than 2:1): bicubic's clipped overshoot differed by up to
    7 grey levels until the zoo did the same."""
    compare(tag, vertically_first=True)


@pytest.mark.parametrize("key", sorted(PREPROCESS))
def test_32_1_every_preprocessing_is_timm_transform_step_by_step(key):
    """Each distinct preprocessing against the steps of timm's transform for the first tag that uses it: the
    sizes, interpolation, fill and statistics its torchvision and timm transforms hold."""
    tag = next(tag for tag, row in DATA["models"].items() if row[4] == key)
    preprocess = PREPROCESS[key]
    resize, crop, _, normalize = timm_transform(tag).transforms
    assert isinstance(normalize, transforms.Normalize)
    assert preprocess.mean == pytest.approx(tuple(normalize.mean.tolist()))
    assert preprocess.std == pytest.approx(tuple(normalize.std.tolist()))
    assert (preprocess.antialias, preprocess.scale, preprocess.channels, preprocess.layout) == (True, 1 / 255, "RGB",
                                                                                               "NCHW")
    assert preprocess.interpolation == resize.interpolation.value
    if isinstance(resize, ResizeKeepRatio):  # border: the longer side fitted, padded with the mean's grey
        assert isinstance(crop, CenterCropOrPad) and resize.longest == 1.0
        assert preprocess.resize == "letterbox" and preprocess.size == tuple(resize.size) == tuple(crop.size)
        assert {preprocess.pad_value} == set(crop.fill)
        return
    assert isinstance(resize, transforms.Resize) and isinstance(crop, transforms.CenterCrop)
    assert resize.antialias in (True, None)  # on a PIL image: Pillow's resize, antialiased
    size = resize.size if isinstance(resize.size, int) else tuple(resize.size)
    assert preprocess.resize == (size[0] if isinstance(size, tuple) and len(size) == 1 else size)
    assert preprocess.crop == tuple(crop.size)


def test_32_1_worst_differences_per_mode():
    """Run after the photos: the largest difference per mode (printed with -s)."""
    if not WORST:
        pytest.skip("run with the photo comparisons")
    print("\n" + "\n".join(f"{mode}: {value:.4f} grey levels" for mode, value in sorted(WORST.items())))
    assert max(WORST.values()) <= 1.0 + 1e-3
