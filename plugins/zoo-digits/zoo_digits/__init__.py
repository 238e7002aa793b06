"""zoo-digits: a handwritten digit classifier that ships its own trained ONNX file.

The smallest complete plugin, and the one to copy: the model (``digits.onnx``, about 40 KiB) is
package data, so ``zoo predict digits 7.png`` works on a machine with no network and no
torch. ``train.py`` (beside this package, not in it) trained it on scikit-learn's digits
and wrote ``model.toml``, which registration reads: the file's sha256 and size and the
held-out accuracy. Registration imports nothing but the zoo and :mod:`tomllib`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import zoo
from zoo.plugin import Photos, hookimpl, load_image

__version__ = "0.1.0"

HERE = Path(__file__).resolve().parent


def load_spec() -> zoo.ModelSpec:
    """The ``digits`` spec, built from ``model.toml``."""
    info = tomllib.loads((HERE / "model.toml").read_text(encoding="utf-8"))
    onnx = info["onnx"]
    accuracy = info["metrics"]["acc@1"]
    return zoo.ModelSpec(
        name="digits",
        task="image-classification",
        summary=f"handwritten digit 0-9, dark ink on a light background (small CNN, held-out top-1 {accuracy:.1f}%)",
        # The weights were trained on the UCI "Optical Recognition of Handwritten Digits" data
        # (E. Alpaydin, C. Kaynak, 1998; https://doi.org/10.24432/C50P49), licensed CC BY 4.0.
        license="CC-BY-4.0",
        homepage="https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
        # The data set's 8x8 images count the ink of a 32x32 bitmap in 4x4 blocks: an area
        # resize. The model was trained on 1 - count/16, so paper is 1 and ink 0: pixel / 255.
        preprocess=zoo.Preprocess(channels="GRAY", resize=(8, 8), interpolation="area",
                                  scale=1 / 255, mean=(0.0,), std=(1.0,)),
        labels=tuple(str(digit) for digit in range(10)),
        onnx=zoo.Artifact(url=(HERE / onnx["file"]).as_uri(), sha256=onnx["sha256"], size=onnx["size"]),
        outputs=("logits",),
        metrics={"acc@1": accuracy, "params": onnx["parameters"]},
        calibration=calibration,
    )


def calibration() -> Photos:
    """int8 calibration and agreement images: 64 training digits each (``calibration.png``, ``held.png``).

    Photos would set ranges for pictures this model never sees; these are its own kind.
    """
    def tiles(name: str) -> list:
        sheet = load_image(HERE / name)  # 64x64 RGB: 8 by 8 digits of 8x8
        return [sheet[row:row + 8, column:column + 8].copy() for row in range(0, 64, 8) for column in range(0, 64, 8)]

    return Photos(calibration=tiles("calibration.png"), held=tiles("held.png"))


@hookimpl
def zoo_register_models(register: Callable[[zoo.ModelSpec], None]) -> None:
    """Register ``digits``."""
    register(load_spec())
