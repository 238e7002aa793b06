"""``zoo.get``: a name in, a :class:`Model` on a verified, cached ONNX file out."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo import cache, images
from zoo import weights as weights_module
from zoo.convert import Converted, convert
from zoo.errors import CacheError, PluginError, SpecError, UsageError, ZooError, ZooInputError
from zoo.registry import Registry, default_registry
from zoo.results import classify
from zoo.runtime import Session, open_session
from zoo.spec import Artifact, ModelSpec

log = logging.getLogger(__name__)


def check_count(name: str, value: Any, minimum: int = 1, *, optional: bool = False) -> None:
    """:class:`UsageError` unless ``value`` is an integer of at least ``minimum`` (or None when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer of at least {minimum}, got {value!r}")


class Model:
    """A model ready to run: its spec, its cached ONNX file and a runtime session.

    ``predict`` is safe to call from several threads.
    """

    def __init__(self, spec: ModelSpec, converted: Converted, *, runtime: str = "onnxruntime",
                 providers: list[str] | None = None, threads: int | None = None, batch_size: int = 8) -> None:
        check_count("batch_size", batch_size)
        check_count("threads", threads, optional=True)
        self.spec = spec
        self.path: Path = converted.path
        #: The cache entry's metadata: sha256 and size, versions, export and parity report.
        self.metadata: dict[str, Any] = converted.metadata
        self.session: Session = open_session(self.path, runtime, spec.outputs, providers=providers, threads=threads)
        self._check_graph()
        self.batch_size = batch_size

    def _check_graph(self) -> None:
        """:class:`SpecError` unless the ONNX file has one input of the spec's shape and the spec's outputs."""
        spec = self.spec
        inputs, outputs = self.session.inputs, self.session.outputs
        want = (None, *spec.preprocess.input_shape)
        if len(inputs) != 1:
            problem = f"feeds one image tensor, but the ONNX file has {len(inputs)} inputs: {inputs}"
            raise SpecError("preprocess", problem, model=spec.name, plugin=spec.plugin)
        (name, shape), = inputs.items()
        fixed_mismatch = len(shape) != len(want) or any(
            isinstance(have, int) and wanted is not None and have != wanted for have, wanted in zip(shape, want))
        if fixed_mismatch:
            problem = (f"makes inputs of shape {['N', *want[1:]]}, but the ONNX file's input {name!r} has shape "
                       f"{[d if isinstance(d, int) else 'N' if i == 0 else d for i, d in enumerate(shape)]}")
            raise SpecError("preprocess", problem, model=spec.name, plugin=spec.plugin)
        missing = [o for o in spec.outputs if o not in outputs]
        if missing:
            problem = f"names {list(spec.outputs)}, but the ONNX file's outputs are {outputs}"
            raise SpecError("outputs", problem, model=spec.name, plugin=spec.plugin)

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
        """Raw outputs, by name, for an already preprocessed input batch (see :meth:`preprocess`)."""
        batch = np.asarray(batch)
        want = self.spec.preprocess.input_shape
        if batch.ndim != len(want) + 1 or batch.shape[1:] != want or not len(batch):
            raise ZooInputError(f"model {self.spec.name!r} takes input batches of shape (N, {', '.join(map(str, want))}) "
                                f"with N >= 1, got {batch.shape}; Model.preprocess(images) makes them")
        return self.session.run(np.ascontiguousarray(batch, dtype=np.float32))

    def predict(self, x: Any, *, topk: int = 5, batch_size: int | None = None, channels: str = "RGB") -> Any:
        """The result for one image, or a list of results for a list of images, run in batches.

        An image is a path, encoded bytes, a uint8 array (``channels`` says its order) or a
        PIL image. Classifiers return :class:`~zoo.results.Classification` with ``topk``
        classes; other models what their plugin's postprocessing returns.
        """
        check_count("topk", topk)  # before any image is decoded
        check_count("batch_size", batch_size, optional=True)
        single = not isinstance(x, (list, tuple))
        items = [x] if single else list(x)
        size = batch_size or self.batch_size
        results: list[Any] = []
        for start in range(0, len(items), size):
            batch = self.preprocess(items[start:start + size], channels=channels)
            results += self.postprocess(self.run(batch), topk=topk)
        return results[0] if single else results

    def postprocess(self, outputs: dict[str, np.ndarray], *, topk: int = 5) -> list[Any]:
        """Results for a batch of raw outputs: the spec's postprocessing, or the task's default.

        An exception in a plugin's postprocessing becomes a :class:`~zoo.errors.PluginError`
        naming the plugin and the model, with the original chained.
        """
        spec = self.spec
        check_count("topk", topk)
        if spec.postprocess is not None:
            try:
                return list(spec.postprocess(spec, outputs))
            except ZooError:
                raise
            except Exception as error:
                raise PluginError(spec.plugin or "-", f"postprocess the outputs of model {spec.name!r}", error) from error
        if spec.task == "image-classification":
            return classify(outputs[spec.outputs[0]], spec.labels, topk, logits=spec.scores == "logits")
        names = list(outputs)
        return [{name: outputs[name][i] for name in names} for i in range(len(outputs[names[0]]))]

    def __repr__(self) -> str:
        return f"<zoo.Model {self.spec.name} on {self.runtime} {self.path}>"


def get(name: str | ModelSpec, *, weights: str | os.PathLike[str] | Artifact | None = None,
        sha256: str | None = None, labels: Sequence[str] | None = None, opset: int | None = None,
        exporter: str | None = None, simplify: bool = True, runtime: str = "onnxruntime",
        providers: list[str] | None = None, threads: int | None = None, batch_size: int = 8) -> Model:
    """The model called ``name`` (or described by a spec), converted and cached on first use.

    ``weights`` is a weights variant's tag (``"imagenet1k_v1"``) or full name, a local
    checkpoint, a URL (with ``sha256``) or an :class:`~zoo.spec.Artifact`; the default is
    the spec's own weights (or its prebuilt ONNX file). ``labels`` names the classes of a
    checkpoint fine-tuned for others (the model is built with that many). ``opset`` and
    ``exporter`` (``"torchscript"`` or ``"dynamo"``) choose the export; ``runtime`` is
    ``"onnxruntime"`` (``providers`` and ``threads`` configure it) or ``"opencv"``;
    ``batch_size`` is how many images ``predict`` runs at once.
    """
    check_count("batch_size", batch_size)
    check_count("threads", threads, optional=True)
    for _ in range(3):
        spec, converted = prepare(name, weights=weights, sha256=sha256, labels=labels, opset=opset,
                                  exporter=exporter, simplify=simplify)
        folder = converted.path.parent
        with cache.reading(folder):  # `zoo cache rm` in another process waits until the session is open
            if cache.read_entry(folder) is not None:
                return Model(spec, converted, runtime=runtime, providers=providers, threads=threads,
                             batch_size=batch_size)
        log.warning("%s was removed from the cache by another process as it was being opened; building it again",
                    spec.name)
    raise CacheError(f"{spec.name} was removed from the cache three times as it was being opened; stop the process "
                     f"that keeps removing it ('zoo cache rm', 'prune' or 'clear') and try again")


def prepare(name: str | ModelSpec, *, weights: str | os.PathLike[str] | Artifact | None = None,
            sha256: str | None = None, labels: Sequence[str] | None = None, opset: int | None = None,
            exporter: str | None = None, simplify: bool = True) -> tuple[ModelSpec, Converted]:
    """Resolve the name and the weights and return the cached ONNX file (built if needed), without a session.

    The arguments are those of :func:`get`; ``zoo export`` uses this directly.
    """
    registry = default_registry()
    spec = name if isinstance(name, ModelSpec) else registry.get(name)
    variant = _variant(registry, spec, weights)
    if variant is not None:
        spec, weights = variant, None
    variants = registry.variants(spec.name) if isinstance(weights, str) and spec.name in registry else ()
    source = weights_module.resolve(weights, sha256, default=spec.weights, variants=variants)
    prebuilt = opset is None and exporter is None
    if labels is not None:
        prebuilt = prebuilt and len(labels) == len(spec.labels)  # a prebuilt file has the spec's classes
        spec = _with_labels(spec, labels)
    info = registry.plugin_manager.infos.get(spec.plugin)
    converted = convert(spec, source, prebuilt=prebuilt, exporter=exporter, opset=opset, simplify=simplify,
                        plugin_version=info.version if info else None)
    return spec, converted


def _with_labels(spec: ModelSpec, labels: Sequence[str]) -> ModelSpec:
    """``spec`` predicting ``labels`` instead of its own (a model fine-tuned for other classes)."""
    if isinstance(labels, str) or not labels or not all(isinstance(label, str) and label for label in labels):
        raise UsageError(f"labels must be a non-empty list of class names, got {labels!r}")
    if spec.build is None and len(labels) != len(spec.labels):
        raise UsageError(f"model {spec.name!r} is a prebuilt file with {len(spec.labels)} classes; it cannot "
                         f"predict {len(labels)} labels")
    return dataclasses.replace(spec, labels=tuple(labels))


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file, one a line (blank lines and surrounding spaces ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise UsageError(f"labels file {os.fspath(path)!r} cannot be read ({reason}); give a UTF-8 text file "
                         f"with one class name a line") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise UsageError(f"labels file {os.fspath(path)!r} holds no class names; write one a line")
    return labels


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
