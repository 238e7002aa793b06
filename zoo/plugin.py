"""The plugin author's whole API: everything a plugin needs, so that it imports only ``zoo`` and ``zoo.plugin``.

A plugin is a distribution with an entry point in the group ``zoo`` whose module implements
hooks (:mod:`zoo.hookspecs`, the manual) marked with :data:`hookimpl`::

    from zoo.plugin import ModelSpec, Preprocess, hookimpl, load_specs

    @hookimpl
    def zoo_register_models(register):
        for spec in load_specs(Path(__file__).with_name("models.toml")):
            register(spec)

A data-only plugin keeps its specs in TOML (:func:`load_specs`); code goes where data cannot:
``build`` (:class:`BuildFn`, exporting from PyTorch with :func:`load_weights`), ``postprocess``
(:data:`PostprocessFn`, returning :class:`Result` objects), a pipeline's ``run``
(:data:`PipelineFn`) and ``calibration`` (:class:`CalibrationFn`, returning :class:`Photos`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.errors import SpecError, WeightsError, ZooError, ZooInputError
from zoo.geometry import Geometry
from zoo.hookspecs import hookimpl
from zoo.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from zoo.spec import Artifact, BuildFn, CalibrationFn, HubFile, ModelSpec, Photos, PipelineFn, PostprocessFn
from zoo.specfile import load_specs
from zoo.tasks import Result, Task
from zoo.tasks.classification import Classification, Prediction
from zoo.tasks.detection import Decode, Detection, Detections
from zoo.tasks.embedding import Embedding
from zoo.tasks.regression import Regression
from zoo.tasks.segmentation import Segmentation
from zoo.weights import load_state_dict, load_weights

if TYPE_CHECKING:
    import numpy as np



def load_image(source: Any, *, channels: str = "RGB") -> np.ndarray:
    """An image as an RGB ``uint8`` array, from a path, encoded bytes, an array or a PIL image (see
    :func:`zoo.images.load`: every decoder capped, EXIF orientation applied); imported when first used, so
    that registering a plugin stays cheap."""
    from zoo.images import load

    return load(source, channels=channels)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Artifact",
    "HubFile",
    "BuildFn",
    "CalibrationFn",
    "Classification",
    "Decode",
    "Detection",
    "Detections",
    "Embedding",
    "Geometry",
    "ModelSpec",
    "Photos",
    "PipelineFn",
    "PostprocessFn",
    "Prediction",
    "Preprocess",
    "Regression",
    "Result",
    "Segmentation",
    "SpecError",
    "Task",
    "WeightsError",
    "ZooError",
    "ZooInputError",
    "hookimpl",
    "load_image",
    "load_specs",
    "load_state_dict",
    "load_weights",
]
