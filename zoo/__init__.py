"""onnx-zoo: a model name in, a verified, cached ONNX model and a prediction out.

The public API, for users and for plugin authors::

    import zoo
    zoo.list_models("resnet*")         # names, naturally sorted
    spec = zoo.get_spec("ResNet50")    # case-insensitive, follows aliases
    model = zoo.get("resnet50")        # converted to ONNX, verified and cached on first use
    model.predict("cat.jpg")           # Classification(label='tabby', score=0.62, topk=(...))

Plugin authors implement the hooks in :mod:`zoo.hookspecs` with :data:`hookimpl` and
register :class:`ModelSpec` objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zoo._version import __version__
from zoo.errors import (
    AmbiguousModelError,
    CacheError,
    CacheLockTimeout,
    ChecksumError,
    DownloadError,
    DuplicateModelError,
    ExportError,
    OfflineError,
    PluginError,
    PluginNotInstalledError,
    PrecisionError,
    QuantizationError,
    SpecError,
    UnknownModelError,
    UsageError,
    WeightsError,
    ZooError,
    ZooInputError,
)
from zoo.hookspecs import hookimpl
from zoo.plugins import PluginInfo
from zoo.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from zoo.registry import default_registry
from zoo.spec import Artifact, HubFile, ModelSpec
from zoo.tasks import Result, Task

if TYPE_CHECKING:
    from zoo.geometry import Geometry
    from zoo.model import Model, Pipeline, get
    from zoo.results import Classification, Detection, Detections, Embedding, Prediction, Regression, Segmentation
    from zoo.weights import load_state_dict, load_weights


__all__ = [
    "__version__",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Artifact",
    "HubFile",
    "CacheError",
    "CacheLockTimeout",
    "ChecksumError",
    "Classification",
    "Detection",
    "Detections",
    "DownloadError",
    "Embedding",
    "AmbiguousModelError",
    "DuplicateModelError",
    "ExportError",
    "Geometry",
    "Model",
    "ModelSpec",
    "OfflineError",
    "Pipeline",
    "PluginError",
    "PluginInfo",
    "PluginNotInstalledError",
    "PrecisionError",
    "Prediction",
    "Preprocess",
    "QuantizationError",
    "Regression",
    "Segmentation",
    "SpecError",
    "Result",
    "Task",
    "UnknownModelError",
    "UsageError",
    "WeightsError",
    "ZooError",
    "ZooInputError",
    "get",
    "get_spec",
    "hookimpl",
    "info",
    "list_models",
    "list_plugins",
    "load_state_dict",
    "load_weights",
]

# Imported on first use, so that `import zoo` (and `zoo list`) stays free of numpy and onnxruntime.
_LAZY = {"get": "zoo.model", "Model": "zoo.model", "Pipeline": "zoo.model", "load_state_dict": "zoo.weights",
         "load_weights": "zoo.weights", "Geometry": "zoo.geometry",
         **{name: "zoo.results" for name in ("Classification", "Prediction", "Regression", "Detection", "Detections",
                                             "Segmentation", "Embedding")}}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def list_models(pattern: str | Iterable[str] | None = None, *, task: str | None = None,
                plugin: str | None = None) -> list[str]:
    """Names of the installed models, naturally sorted.

    ``pattern`` is a glob (``"resnet*"``) or a list of them, matched case-insensitively;
    ``task`` and ``plugin`` filter on the spec's fields.
    """
    return default_registry().names(pattern, task=task, plugin=plugin)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` for ``name``, matched case-insensitively and through aliases.

    Raises :class:`UnknownModelError` (a ``KeyError``) listing close matches, or
    :class:`PluginNotInstalledError` naming the distribution to install.
    """
    return default_registry().get(name)


def info(name: str | os.PathLike[str], *, weights: str | os.PathLike[str] | Artifact | None = None,
         sha256: str | None = None, labels: Sequence[str] | None = None, task: str | None = None,
         preprocess: Preprocess | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What ``zoo info NAME --json`` prints, without building anything: the spec as data
    (:meth:`ModelSpec.to_dict`), its ``variants``, the ``options`` ``predict`` takes with their defaults,
    ``built``: the ONNX file :func:`get` with these arguments would run, with its metadata (the weights' file and
    sha256, the export's parity figures) or None until it is built, and the name's ``cache`` folder and entries (a
    pipeline's are those of its models).

    ``name`` is what :func:`get` takes: a model, ``NAME/KEY`` (one cache entry) or an ONNX file (described as
    ``get`` describes it, by ``task``, ``preprocess`` and ``labels`` where it does not describe itself). With
    ``weights`` (your checkpoint) the spec is the model's with them: the published metrics are not in it.
    """
    from zoo.model import describe, info_of

    registry = default_registry()
    return info_of(*describe(name, weights=weights, sha256=sha256, labels=labels, task=task, preprocess=preprocess,
                             registry=registry), registry)


def list_plugins() -> list[PluginInfo]:
    """Every plugin that was tried, with its distribution, hooks, model count and error."""
    return list(default_registry().plugin_manager.infos.values())
