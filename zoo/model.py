"""``zoo.get``: a name in, a :class:`Model` on a verified, cached ONNX file out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo import weights as weights_module
from zoo.convert import Converted, convert
from zoo.registry import Registry, default_registry
from zoo.runtime import OnnxRuntimeSession
from zoo.spec import Artifact, ModelSpec


class Model:
    """A model ready to run: its spec, its cached ONNX file and an inference session."""

    def __init__(self, spec: ModelSpec, converted: Converted, *, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        self.spec = spec
        self.path: Path = converted.path
        #: The cache entry's metadata: sha256 and size, versions, export and parity report.
        self.metadata: dict[str, Any] = converted.metadata
        self.session = OnnxRuntimeSession(self.path, providers=providers, threads=threads)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs, by name, for an already preprocessed input batch."""
        return self.session.run(np.ascontiguousarray(batch, dtype=np.float32))

    def __repr__(self) -> str:
        return f"<zoo.Model {self.spec.name} {self.path}>"


def get(name: str | ModelSpec, *, weights: str | os.PathLike[str] | Artifact | None = None,
        sha256: str | None = None, opset: int | None = None, exporter: str | None = None,
        simplify: bool = True, providers: list[str] | None = None, threads: int | None = None) -> Model:
    """The model called ``name`` (or described by a spec), converted and cached on first use.

    ``weights`` is a weights variant's tag (``"imagenet1k_v1"``) or full name, a local
    checkpoint, a URL (with ``sha256``) or an :class:`~zoo.spec.Artifact`; the default is
    the spec's own weights (or its prebuilt ONNX file). ``opset`` and ``exporter``
    (``"torchscript"`` or ``"dynamo"``) choose the export; ``providers`` and ``threads``
    configure onnxruntime.
    """
    spec, converted = prepare(name, weights=weights, sha256=sha256, opset=opset, exporter=exporter,
                              simplify=simplify)
    return Model(spec, converted, providers=providers, threads=threads)


def prepare(name: str | ModelSpec, *, weights: str | os.PathLike[str] | Artifact | None = None,
            sha256: str | None = None, opset: int | None = None, exporter: str | None = None,
            simplify: bool = True) -> tuple[ModelSpec, Converted]:
    """Resolve the name and the weights and return the cached ONNX file (built if needed), without a session.

    The arguments are those of :func:`get`; ``zoo export`` uses this directly.
    """
    registry = default_registry()
    spec = name if isinstance(name, ModelSpec) else registry.get(name)
    variant = _variant(registry, spec, weights)
    if variant is not None:
        spec, weights = variant, None
    source = weights_module.resolve(weights, sha256, default=spec.weights)
    info = registry.plugin_manager.infos.get(spec.plugin)
    converted = convert(spec, source, prebuilt=opset is None and exporter is None, exporter=exporter, opset=opset,
                        simplify=simplify, plugin_version=info.version if info else None)
    return spec, converted


def _variant(registry: Registry, spec: ModelSpec, weights: object) -> ModelSpec | None:
    """The spec of the weights variant that ``weights`` names (``default``, a tag or a full name), if any."""
    if not isinstance(weights, str) or "/" in weights or os.sep in weights:
        return None
    wanted = weights.strip().lower()
    if wanted == "default":
        return registry.get(spec.arch) if spec.arch in registry else spec
    for candidate in (f"{spec.arch}.{wanted}", wanted):
        if candidate in registry and registry.get(candidate).arch == spec.arch:
            return registry.get(candidate)
    return None
