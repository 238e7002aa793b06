"""``zoo.get``: a name in, a :class:`Model` on a verified, cached ONNX file out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo import images
from zoo import weights as weights_module
from zoo.convert import Converted, convert
from zoo.errors import ZooError
from zoo.registry import Registry, default_registry
from zoo.results import classify
from zoo.runtime import Session, open_session
from zoo.spec import Artifact, ModelSpec


class Model:
    """A model ready to run: its spec, its cached ONNX file and a runtime session.

    ``predict`` is safe to call from several threads.
    """

    def __init__(self, spec: ModelSpec, converted: Converted, *, runtime: str = "onnxruntime",
                 providers: list[str] | None = None, threads: int | None = None, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ZooError(f"batch_size must be at least 1, got {batch_size}")
        self.spec = spec
        self.path: Path = converted.path
        #: The cache entry's metadata: sha256 and size, versions, export and parity report.
        self.metadata: dict[str, Any] = converted.metadata
        self.session: Session = open_session(self.path, runtime, spec.outputs, providers=providers, threads=threads)
        self.batch_size = batch_size

    @property
    def runtime(self) -> str:
        return self.session.name

    def preprocess(self, x: Any, *, channels: str = "RGB") -> np.ndarray:
        """The input batch for one image or a list of them (see :func:`zoo.images.load`).

        Images are decoded one at a time, each preprocessed before the next is decoded, so a
        batch of photos never holds more than one of them decoded.
        """
        items = list(x) if isinstance(x, (list, tuple)) else [x]
        spec = self.spec.preprocess
        batch = np.empty((len(items), *spec.input_shape), np.float32)
        for i, item in enumerate(items):
            batch[i] = spec.apply([images.load(item, channels=channels)])[0]
        return batch

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs, by name, for an already preprocessed input batch."""
        return self.session.run(np.ascontiguousarray(batch, dtype=np.float32))

    def predict(self, x: Any, *, topk: int = 5, batch_size: int | None = None, channels: str = "RGB") -> Any:
        """The result for one image, or a list of results for a list of images, run in batches.

        An image is a path, encoded bytes, a uint8 array (``channels`` says its order) or a
        PIL image. Classifiers return :class:`~zoo.results.Classification` with ``topk``
        classes; other models what their plugin's postprocessing returns.
        """
        single = not isinstance(x, (list, tuple))
        items = [x] if single else list(x)
        size = batch_size or self.batch_size
        results: list[Any] = []
        for start in range(0, len(items), size):
            batch = self.preprocess(items[start:start + size], channels=channels)
            results += self.postprocess(self.run(batch), topk=topk)
        return results[0] if single else results

    def postprocess(self, outputs: dict[str, np.ndarray], *, topk: int = 5) -> list[Any]:
        """Results for a batch of raw outputs: the spec's postprocessing, or the task's default."""
        spec = self.spec
        if spec.postprocess is not None:
            return list(spec.postprocess(spec, outputs))
        if spec.task == "image-classification":
            first = spec.outputs[0]
            return classify(outputs[first], spec.labels, topk, logits=True if first == "logits" else None)
        names = list(outputs)
        return [{name: outputs[name][i] for name in names} for i in range(len(outputs[names[0]]))]

    def __repr__(self) -> str:
        return f"<zoo.Model {self.spec.name} on {self.runtime} {self.path}>"


def get(name: str | ModelSpec, *, weights: str | os.PathLike[str] | Artifact | None = None,
        sha256: str | None = None, opset: int | None = None, exporter: str | None = None,
        simplify: bool = True, runtime: str = "onnxruntime", providers: list[str] | None = None,
        threads: int | None = None, batch_size: int = 8) -> Model:
    """The model called ``name`` (or described by a spec), converted and cached on first use.

    ``weights`` is a weights variant's tag (``"imagenet1k_v1"``) or full name, a local
    checkpoint, a URL (with ``sha256``) or an :class:`~zoo.spec.Artifact`; the default is
    the spec's own weights (or its prebuilt ONNX file). ``opset`` and ``exporter``
    (``"torchscript"`` or ``"dynamo"``) choose the export; ``runtime`` is ``"onnxruntime"``
    (``providers`` and ``threads`` configure it) or ``"opencv"``; ``batch_size`` is how many
    images ``predict`` runs at once.
    """
    spec, converted = prepare(name, weights=weights, sha256=sha256, opset=opset, exporter=exporter,
                              simplify=simplify)
    return Model(spec, converted, runtime=runtime, providers=providers, threads=threads, batch_size=batch_size)


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
