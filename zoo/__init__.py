"""onnx-zoo: a model name in, a verified, cached ONNX model and a prediction out.

The public API, for users and for plugin authors::

    import zoo
    zoo.list_models("resnet*")         # names, naturally sorted
    spec = zoo.get_spec("ResNet50")    # case-insensitive, follows aliases

Plugin authors implement the hooks in :mod:`zoo.hookspecs` with :data:`hookimpl` and
register :class:`ModelSpec` objects.
"""

from __future__ import annotations

from collections.abc import Iterable

from zoo.errors import (
    DuplicateModelError,
    PluginError,
    PluginNotInstalledError,
    SpecError,
    UnknownModelError,
    ZooError,
)
from zoo.hookspecs import hookimpl
from zoo.plugins import PluginInfo
from zoo.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from zoo.registry import default_registry
from zoo.spec import Artifact, ModelSpec

__version__ = "0.1.0"

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Artifact",
    "DuplicateModelError",
    "ModelSpec",
    "PluginError",
    "PluginInfo",
    "PluginNotInstalledError",
    "Preprocess",
    "SpecError",
    "UnknownModelError",
    "ZooError",
    "get_spec",
    "hookimpl",
    "list_models",
    "plugins",
]


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


def plugins() -> list[PluginInfo]:
    """Every plugin that was tried, with its distribution, hooks, model count and error."""
    return list(default_registry().plugin_manager.infos.values())
