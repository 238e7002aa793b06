"""``zoo.get``: a name in, a :class:`Model` on a verified, cached ONNX file out."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo import cache, gate, images, onnxfile, onnxmeta, quantize, tune
from zoo import weights as weights_module
from zoo._fields import check_count
from zoo.convert import BuildOptions, Converted, convert, exported_elsewhere, make_key, pin_hub_file, plan
from zoo.errors import (
    CacheError,
    DownloadError,
    OfflineError,
    PrecisionError,
    SpecError,
    UsageError,
    WeightsError,
    ZooInputError,
)
from zoo.geometry import Geometry
from zoo.preprocess import Preprocess
from zoo.registry import Registry, default_registry
from zoo.runtime import Session, check_runtime, fell_back, input_feeds, open_session
from zoo.spec import RUNTIMES, Artifact, HubFile, ModelSpec
from zoo.specfile import labels_file, labels_loaded
from zoo.tasks import (
    Task,
    accepted_options,
    call_declared,
    merge_options,
    postprocess,
)

log = logging.getLogger(__name__)


class Model:
    """A model ready to run: its spec, its task, its cached ONNX file and a runtime session.

    ``predict`` is safe to call from several threads.
    """

    def __init__(self, spec: ModelSpec, converted: Converted, *, runtime: str = "onnxruntime",
                 providers: list[str] | None = None, threads: int | None = None, batch_size: int = 8,
                 task: Task | None = None, precision: str = "fp32") -> None:
        check_count("batch_size", batch_size)
        check_count("threads", threads, optional=True)
        if spec.labels_from is not None:  # read now that they are needed (the model file's: now that it is here)
            kind, _, where = spec.labels_from.partition(":")
            labels = onnxmeta.labels(converted.path, where) if kind == "metadata" else labels_file(where)
            spec = dataclasses.replace(spec, labels=labels, labels_from=None)
        self.spec = spec
        #: The model's task (None for a task no plugin registered: predict returns raw outputs).
        self.task = task
        #: The options ``predict`` takes, with this model's defaults.
        self.options: dict[str, Any] = accepted_options(spec, self.task)
        #: The ONNX file and its record: a cache entry, or a file used in place.
        self.converted = converted
        self.path: Path = converted.path
        #: The cache entry's metadata: sha256 and size, versions, export and parity report.
        self.metadata: dict[str, Any] = converted.metadata
        sha256, folder = converted.optimized or (None, None)
        self.session: Session = open_session(self.path, runtime, spec.outputs, providers=providers, threads=threads,
                                             keep_optimized=sha256, optimized_in=folder, precision=precision)
        self.feeds = self._check_graph()
        self.batch_size = batch_size
        #: The runtime's thread count (None: its own).
        self.threads = threads
        if runtime == "onnxruntime" and self.session.providers[0] != "CPUExecutionProvider":  # type: ignore[attr-defined]
            self._warn_fallback()  # once an entry, providers and machine

    def _check_graph(self) -> dict[str, str]:
        """Graph input name -> source; :class:`SpecError` unless the ONNX file takes and returns what the spec says."""
        spec = self.spec
        inputs, outputs = self.session.inputs, self.session.outputs
        if spec.inputs:
            if set(spec.inputs) != set(inputs):
                problem = f"names the inputs {sorted(spec.inputs)}, but the ONNX file's inputs are {sorted(inputs)}"
                raise SpecError("inputs", problem, model=spec.name, plugin=spec.plugin)
            feeds = dict(spec.inputs)
        elif len(inputs) != 1:
            problem = (f"feeds one image tensor, but the ONNX file has {len(inputs)} inputs: {inputs}; say what "
                       f"feeds each with the spec's inputs")
            raise SpecError("preprocess", problem, model=spec.name, plugin=spec.plugin)
        else:
            feeds = {next(iter(inputs)): "image"}
        name = next(n for n, source in feeds.items() if source == "image")
        shape, want = inputs[name], [None, *spec.preprocess.input_shape]
        mismatch = len(shape) != len(want) or any(  # a size the spec leaves free may be fixed by the graph: run checks
            isinstance(have, int) and have > 0 and wanted is not None and have != wanted
            for have, wanted in zip(shape, want))
        if mismatch:
            show = ["N" if i == 0 else "?" if d is None else d for i, d in enumerate(want)]
            problem = (f"makes inputs of shape {show}{' (?: any size)' * ('?' in show)}, but the ONNX file's input "
                       f"{name!r} has shape "
                       f"{[d if isinstance(d, int) else 'N' if i == 0 else d for i, d in enumerate(shape)]}")
            raise SpecError("preprocess", problem, model=spec.name, plugin=spec.plugin)
        missing = [o for o in spec.outputs if o not in outputs]
        if missing:
            problem = f"names {list(spec.outputs)}, but the ONNX file's outputs are {outputs}"
            raise SpecError("outputs", problem, model=spec.name, plugin=spec.plugin)
        return feeds

    @property
    def runtime(self) -> str:
        return self.session.name

    @property
    def precision(self) -> str:
        """The precision it runs in: ``fp32``, ``bf16``, ``fp16`` or ``int8``."""
        return self.session.precision

    def placement(self) -> dict[str, Any]:
        """Where the model runs, from one run on the spec's first held image: onnxruntime's nodes per execution
        provider and the operators each ran; OpenVINO's devices and the precision each operation runs in."""
        batch, geometries = self.transform(quantize.photos(self.spec).held[0])
        return self.session.placement(input_feeds(self.feeds, batch, geometries, self.session.input_types,
                                                  model=self.spec.name))

    def _warn_fallback(self) -> None:
        """Warn where an accelerator left part of the graph to the CPU, naming the operators: once, when the
        placement is first measured for this entry, providers and machine (recorded in the entry)."""
        folder = self.converted.record_folder
        key = f"{','.join(self.session.providers)}/{gate.machine_key()}"  # type: ignore[attr-defined]
        if cache.recorded(folder, "placements", key) is not None:
            return
        try:
            placement = self.placement()
        except Exception as error:  # noqa: BLE001 - a report, never a reason not to open the model
            log.info("%s: where each node runs could not be measured (%s)", self.spec.name, error)
            return
        if folder is not None:
            cache.record(folder, "placements", key, placement)
        operators = fell_back(placement)
        if operators:
            log.warning("%s: %d of %d nodes run on the CPU, not on %s: %s (onnxruntime has no %s kernel for them, or "
                        "moved them there); 'model.placement()' says where each provider ran", self.spec.name,
                        placement["providers"].get("CPUExecutionProvider", 0), placement["nodes"],
                        placement["devices"][0], ", ".join(operators), placement["devices"][0])

    def transform(self, x: Any, *, channels: str = "RGB") -> tuple[np.ndarray, list[Geometry]]:
        """The input batch for one image or a list of them, and each image's :class:`~zoo.geometry.Geometry`.

        Images are decoded one at a time (see :func:`zoo.images.load`), each resized before
        the next is decoded; images of different sizes are padded to the largest.
        """
        items = list(x) if isinstance(x, (list, tuple)) else [x]
        return self.spec.preprocess.batch(images.load(item, channels=channels) for item in items)

    def preprocess(self, x: Any, *, channels: str = "RGB") -> np.ndarray:
        """The input batch for one image or a list of them (:meth:`transform` without the geometries)."""
        return self.transform(x, channels=channels)[0]

    def run(self, batch: np.ndarray, geometries: list[Geometry] | None = None) -> dict[str, np.ndarray]:
        """Raw outputs, by name, for a preprocessed input batch (see :meth:`transform`).

        ``geometries`` are needed by a graph that also takes the images' sizes or scales.
        """
        batch = np.asarray(batch)
        want = self.spec.preprocess.input_shape
        image_input = next(name for name, source in self.feeds.items() if source == "image")
        graph = self.session.inputs[image_input][1:]  # where the spec allows any size, the graph may fix one
        fixed = tuple(w if w is not None or not isinstance(g, int) or g <= 0 else g
                      for w, g in zip(want, [*graph, *[None] * len(want)]))
        if batch.ndim != len(fixed) + 1 or not len(batch) or any(
                w is not None and have != w for have, w in zip(batch.shape[1:], fixed)):
            shape = ", ".join("?" if w is None else str(w) for w in fixed)
            how = ("; the ONNX file fixes sizes the spec's preprocessing leaves free: feed it tensors of that size "
                   "(a pipeline's crops)" if fixed != want else "; Model.preprocess(images) makes them")
            raise ZooInputError(f"model {self.spec.name!r} takes input batches of shape (N, {shape}) with N >= 1, "
                                f"got {batch.shape}{how}")
        return self.session.run(input_feeds(self.feeds, batch, geometries, self.session.input_types,
                                            model=self.spec.name))

    def predict(self, x: Any, *, batch_size: int | None = None, channels: str = "RGB", **options: Any) -> Any:
        """The result for one image, or a list of results for a list of images, run in batches.

        An image is a path, encoded bytes, a uint8 array (``channels`` says its order), a uint8
        ``torch.Tensor`` (``(C, H, W)`` as ``torchvision.io.read_image`` gives it, or ``(H, W, C)``) or a
        PIL image. ``options`` are those of the model's task and postprocessing, e.g.
        ``topk=5`` for a classifier, ``score_threshold=0.3``, ``iou_threshold=0.5``,
        ``max_detections=100`` for a detector (:attr:`options` lists them with their
        defaults). Results are in the original image's pixels.
        """
        options = merge_options(self.spec, self.options, options)  # before any image is decoded
        check_count("batch_size", batch_size, optional=True)
        single = not isinstance(x, (list, tuple))
        items = [x] if single else list(x)
        pre = self.spec.preprocess
        size = 1 if not self.spec.batch_axis or pre.dynamic and pre.batching == "single" else (
            batch_size or self.batch_size)
        results: list[Any] = []
        for start in range(0, len(items), size):
            batch, geometries = self.transform(items[start:start + size], channels=channels)
            results += self._postprocess(self.run(batch, geometries), geometries, options)
        return results[0] if single else results

    def postprocess(self, outputs: dict[str, np.ndarray], geometries: list[Geometry] | None = None,
                    **options: Any) -> list[Any]:
        """Results for one run's raw outputs: the spec's postprocessing, or the task's (see :mod:`zoo.tasks`).

        Without ``geometries``, the outputs are taken to be of images fed at the input's own size.
        """
        options = merge_options(self.spec, self.options, options)
        if geometries is None:
            if self.spec.preprocess.dynamic:
                raise UsageError(f"model {self.spec.name!r} takes images of any size: pass the geometries from "
                                 f"Model.transform(images) to postprocess, so that results map back to the images")
            count = len(next(iter(outputs.values()))) if self.spec.batch_axis else 1
            height, width = (d or 1 for d in self.spec.preprocess.input_size)
            geometries = [Geometry.identity(height, width)] * count
        return self._postprocess(outputs, geometries, options)

    def _postprocess(self, outputs: dict[str, np.ndarray], geometries: list[Geometry],
                     options: dict[str, Any]) -> list[Any]:
        if not self.spec.batch_axis:  # one image's outputs: postprocessing always sees a batch axis
            outputs = {name: value[None] for name, value in outputs.items()}
        return postprocess(self.spec, self.task, outputs, geometries, options)

    def __repr__(self) -> str:
        precision = f" in {self.precision}" if self.precision != "fp32" else ""
        return f"<zoo.Model {self.spec.name} on {self.runtime}{precision} {self.path}>"


class Pipeline:
    """A model made of registered models: the spec's ``run`` function gets them loaded, with each image.

    ``run`` declares only the parameters it uses, among ``models`` (the loaded
    :class:`Model` objects, by name), ``image`` (RGB uint8), ``spec``, ``options`` and
    options of its own with their defaults.
    """

    def __init__(self, spec: ModelSpec, models: dict[str, Model], task: Task | None = None) -> None:
        self.spec = spec
        #: The sub-models, by the names the spec requires.
        self.models = models
        #: The pipeline's task (None for a task no plugin registered).
        self.task = task
        #: The options ``predict`` takes (those of the spec's ``run``), with this pipeline's defaults.
        self.options: dict[str, Any] = accepted_options(spec, self.task)

    @property
    def runtime(self) -> str:
        return next(iter(self.models.values())).runtime

    @property
    def metadata(self) -> dict[str, Any]:
        """The sub-models' cache metadata, by name."""
        return {name: model.metadata for name, model in self.models.items()}

    def predict(self, x: Any, *, channels: str = "RGB", **options: Any) -> Any:
        """The result for one image, or a list of results for a list of images (one at a time)."""
        options = merge_options(self.spec, self.options, options)
        single = not isinstance(x, (list, tuple))
        results = [self._run_one(images.load(item, channels=channels), options) for item in ([x] if single else x)]
        return results[0] if single else results

    def _run_one(self, image: np.ndarray, options: dict[str, Any]) -> Any:
        spec = self.spec
        return call_declared(spec.run, {"spec": spec, "models": self.models, "image": image, "options": options,
                                        **options}, spec, "run the pipeline")

    def __repr__(self) -> str:
        return f"<zoo.Pipeline {self.spec.name} of {', '.join(self.models)}>"


def predict_each(model: Model | Pipeline, items: Sequence[Any], **options: Any) -> list[Any]:
    """Each item's result, or the :class:`~zoo.errors.ZooInputError` that it alone raised, in order.

    The one rule for a failing image, wherever a batch of them is predicted (``zoo predict``, the server's
    batches, Ray): the items are predicted together; if that raises a :class:`ZooInputError` (an image that
    cannot be decoded or used), each is predicted alone, and an item's own input error takes its place. Any
    other error is the model's, not an image's, and is raised.
    """
    if not items:
        return []
    try:
        return list(model.predict(list(items), **options))
    except ZooInputError as error:
        if len(items) == 1:
            return [error]
    answers: list[Any] = []
    for item in items:
        try:
            answers.append(model.predict(item, **options))
        except ZooInputError as error:
            answers.append(error)
    return answers


def get(name: str | os.PathLike[str] | ModelSpec, *, weights: str | os.PathLike[str] | Artifact | None = None,
        sha256: str | None = None, labels: Sequence[str] | None = None, opset: int | None = None,
        exporter: str | None = None, simplify: bool = True, precision: str = "fp32", runtime: str = "onnxruntime",
        providers: list[str] | None = None, threads: int | None = None, batch_size: int = 8,
        task: str | None = None, preprocess: Preprocess | Mapping[str, Any] | None = None,
        registry: Registry | None = None) -> Model | Pipeline:
    """The model called ``name`` (or described by a spec), converted and cached on first use; or the ONNX file at
    ``name`` (a path object, or text ending in ``.onnx``), run where it is.

    ``weights`` is a weights variant's tag (``"imagenet1k_v1"``) or full name, a local
    checkpoint, a URL (with ``sha256``) or an :class:`~zoo.spec.Artifact`; the default is
    the spec's own weights (or its prebuilt ONNX file). ``labels`` names the classes of a
    checkpoint fine-tuned for others (the model is built with that many). ``opset`` and
    ``exporter`` (``"torchscript"`` or ``"dynamo"``) choose the export; ``precision="int8"``
    quantizes the float32 model, checked against it on held photos (see :mod:`zoo.quantize`;
    a classifier's figures are in ``model.metadata["int8"]``, another task's, compared by the
    task, in ``model.metadata["checks"]``); ``"bf16"`` and ``"fp16"`` run the float32 model in
    that precision on OpenVINO, checked the same way once a machine (:mod:`zoo.gate`; the
    figures are in ``model.metadata["checks"]``). ``runtime`` is ``"onnxruntime"``
    (``providers`` and ``threads`` configure it), ``"opencv"``, ``"openvino"``, or ``"auto"``: the
    fastest runtime and precision that pass the check on this machine, measured once and
    remembered (:mod:`zoo.tune`; ``precision`` other than ``fp32`` narrows the choice to it and
    onnxruntime float32).
    ``batch_size`` is how many images ``predict`` runs at once.

    A pipeline (a spec with ``requires``) is returned as a :class:`Pipeline` whose
    sub-models are opened with the same precision, runtime, providers, threads and batch size.

    An ONNX file is described by its own metadata (a file the zoo wrote: ``zoo export -o``, a
    copied cache entry), by ``model.toml`` beside it, or by ``task``, ``preprocess`` (a
    :class:`~zoo.preprocess.Preprocess` or its fields) and ``labels`` (see :mod:`zoo.onnxfile`).
    ``registry`` resolves names and tasks (default: the installed plugins').
    """
    build = BuildOptions(weights=weights, sha256=sha256, labels=labels, opset=opset, exporter=exporter,
                         simplify=simplify, precision=precision)
    return open_model(name, build, runtime=runtime, providers=providers, threads=threads, batch_size=batch_size,
                      task=task, preprocess=preprocess, registry=registry)


def open_model(name: str | os.PathLike[str] | ModelSpec, build: BuildOptions | None = None, *,
               runtime: str = "onnxruntime", providers: list[str] | None = None, threads: int | None = None,
               batch_size: int = 8, task: str | None = None, preprocess: Preprocess | Mapping[str, Any] | None = None,
               registry: Registry | None = None) -> Model | Pipeline:
    """:func:`get` with its build arguments as one :class:`~zoo.convert.BuildOptions` (what the command line,
    the server and Ray pass on)."""
    build = build if build is not None else BuildOptions()
    check_count("batch_size", batch_size)
    check_count("threads", threads, optional=True)
    registry = registry if registry is not None else default_registry()
    if runtime == tune.AUTO and not _names_pipeline(name, registry):  # a pipeline's models are tuned each
        return _open_tuned(name, build, providers=providers, threads=threads, batch_size=batch_size, task=task,
                           preprocess=preprocess, registry=registry)
    check_runtime(runtime, providers, build.precision)  # before anything is fetched or exported
    session = {"runtime": runtime, "providers": providers, "threads": threads, "batch_size": batch_size,
               "precision": build.precision}
    if onnxfile.is_file(name):
        return _open_built(*_describe_file(name, build, registry, task=task, preprocess=preprocess),  # type: ignore[arg-type]
                           registry, **session)
    _check_no_description(name, task, preprocess)
    if isinstance(name, str) and cache.ENTRY.fullmatch(name.strip()):
        return _open_built(*_describe_entry(name.strip(), build, registry), registry, **session)
    spec = name if isinstance(name, ModelSpec) else registry.get(name)
    _check_runs_on(spec, runtime)  # before anything is built
    if spec.is_pipeline:
        check_pipeline_build(spec, build)
        parts = BuildOptions(simplify=build.simplify, precision=build.precision)
        models = {required: open_model(part, parts, runtime=runtime, providers=providers, threads=threads,
                                       batch_size=batch_size, registry=registry)
                  for required, part in zip(spec.requires, registry.parts(spec))}
        return Pipeline(spec, models, registry.task(spec.task))  # type: ignore[arg-type]
    for _ in range(3):
        spec, converted = prepare(name, build, registry=registry)
        folder = converted.path.parent
        with cache.reading(folder):  # `zoo cache rm` in another process waits until the session is open
            if cache.read_entry(folder) is not None:
                return _checked(Model(spec, converted, task=registry.task(spec.task), **session))
        log.warning("%s was removed from the cache by another process as it was being opened; building it again",
                    spec.name)
    raise CacheError(f"{spec.name} was removed from the cache three times as it was being opened; stop the process "
                     f"that keeps removing it ('zoo cache rm', 'prune' or 'clear') and try again")


def _check_no_description(name: object, task: str | None, preprocess: object) -> None:
    if (task, preprocess) != (None, None):
        shown = name.name if isinstance(name, ModelSpec) else name
        raise UsageError(f"task and preprocess describe an ONNX file; {shown!r} is a model, which has its own")


def check_pipeline_build(spec: ModelSpec, build: BuildOptions) -> None:
    """:class:`UsageError` where weights, labels or an export's options are given for a pipeline (each of its
    models has its own)."""
    if spec.is_pipeline and build.chosen:
        raise UsageError(f"model {spec.name!r} is a pipeline of {', '.join(spec.requires)}; "
                         f"{', '.join(build.chosen)} cannot apply to it (give each of its models its own)")


def _check_runs_on(spec: ModelSpec, runtime: str) -> None:
    if runtime in spec.unsupported:
        others = [other for other in RUNTIMES if other != runtime and other not in spec.unsupported]
        advice = (f"use runtime={others[0]!r} (--runtime {others[0]})" if others else
                  "no runtime the zoo has runs it as the network does")
        raise UsageError(f"model {spec.name!r} does not run on {runtime}: {spec.unsupported[runtime]}; {advice}")


def describe(name: str | os.PathLike[str] | ModelSpec, build: BuildOptions | None = None, *,
             task: str | None = None, preprocess: Preprocess | Mapping[str, Any] | None = None,
             registry: Registry | None = None, **arguments: Any) -> tuple[ModelSpec, Converted | None]:
    """The spec that :func:`open_model` would run for these arguments, and its ONNX file where it is built already
    (None where it is not), without building, downloading or opening anything: what ``zoo info`` shows.

    ``build`` (or its fields as keywords, as :func:`get` takes them) says how it is built. A model built from your
    checkpoint has its own spec (no published metrics) and its own entry, with its parity figures; an ONNX file is
    hashed and described (:mod:`zoo.onnxfile`); ``NAME/KEY`` is that entry.
    """
    build = build if build is not None else BuildOptions(**arguments)
    registry = registry if registry is not None else default_registry()
    if onnxfile.is_file(name):
        return _describe_file(name, build, registry, task=task, preprocess=preprocess)  # type: ignore[arg-type]
    _check_no_description(name, task, preprocess)
    if isinstance(name, str) and cache.ENTRY.fullmatch(name.strip()):
        return _describe_entry(name.strip(), build, registry)
    spec, source, how = _resolve(name, build, registry)
    if spec.is_pipeline:
        return spec, None
    if isinstance(source, HubFile):
        try:  # the Hub, or its cache, says which file the revision is: which entry is this model's
            source = pin_hub_file(spec.name, source)
        except (OfflineError, WeightsError, DownloadError) as error:  # the build would say so; a description can't
            log.info("%s: which file its weights are is not known (%s)", spec.name, error)
            return spec, None
    inputs = plan(spec, source, **how)
    folder = cache.entry_dir(spec.name, make_key(inputs))
    metadata = cache.read_entry(folder)
    if metadata is None and (elsewhere := exported_elsewhere(spec.name, inputs)) is not None:
        folder, metadata = elsewhere.folder, elsewhere.metadata
    return spec, Converted(path=folder / cache.MODEL_FILE, metadata=metadata) if metadata is not None else None


def info_of(spec: ModelSpec, built: Converted | None, registry: Registry) -> dict[str, Any]:
    """:func:`zoo.info`'s data for a spec and its built file (from :func:`describe`, or a :class:`Model`'s own)."""
    from zoo.tasks import accepted_options

    data = spec.to_dict()
    registered = built is None or not built.in_place
    data["variants"] = registry.variants(registry.reference(spec)) if registered else []
    data["options"] = accepted_options(spec, registry.task(spec.task))
    data["built"] = None if built is None else {
        "path": str(built.path), "id": None if built.in_place else f"{spec.name}/{built.path.parent.name}",
        **built.metadata}
    if spec.is_pipeline:
        data["cache"] = {"entries": [e.to_dict() for part in registry.parts(spec) for e in cache.entries(part.name)]}
    elif registered:
        data["cache"] = {"dir": str(cache.model_dir(spec.name)), "entries": [e.to_dict() for e in cache.entries(spec.name)]}
    else:
        sha256 = built.metadata["files"][built.path.name]["sha256"]  # type: ignore[union-attr]
        data["cache"] = {"dir": str(cache.file_folder_of(sha256)), "entries": []}
    return data


def _describe_file(name: str | os.PathLike[str], build: BuildOptions, registry: Registry, *, task: str | None,
                   preprocess: Preprocess | Mapping[str, Any] | None) -> tuple[ModelSpec, Converted]:
    """An ONNX file used where it is: hashed now, described by itself, ``model.toml`` or the arguments."""
    _check_built_already(f"{os.fspath(name)!r} is an ONNX file", build, labels=True)  # labels describe a file
    file = onnxfile.read(name)
    spec = onnxfile.describe(file, registry, task=task, preprocess=preprocess, labels=build.labels)
    metadata = {"name": spec.name, "source": "file", "path": str(file.path), "files": file.files,
                "weights": file.props.get("weights"), "precision": file.props.get("precision", "fp32")}
    return spec, Converted(path=file.path, metadata=metadata, in_place=True)


def _check_built_already(what: str, build: BuildOptions, *, labels: bool) -> None:
    """:class:`UsageError` where ``build`` chooses how to build a model that is built already (a file, an entry);
    ``labels``: whether labels may still be given."""
    chosen = [o for o in build.chosen if not (labels and o == "labels")]
    if chosen:
        raise UsageError(f"{what}, built already: {', '.join(chosen)} cannot apply to it (give a model's name to "
                         f"build one)")


def _describe_entry(reference: str, build: BuildOptions, registry: Registry) -> tuple[ModelSpec, Converted]:
    """The cache entry ``NAME/KEY``, as it was built; its classes are those its file records."""
    _check_built_already(f"{reference!r} is one cache entry", build, labels=False)
    match = cache.ENTRY.fullmatch(reference)
    assert match is not None
    spec = registry.get(match["name"])
    folder = cache.entry_dir(spec.name, match["key"].lower())
    missing = CacheError(f"{reference!r} is not in the cache (or is damaged); 'zoo cache list' shows the entries "
                         f"there are")
    try:
        with cache.reading(folder):  # `zoo cache rm` waits
            metadata = cache.read_entry(folder)
            if metadata is None:
                raise missing
            labels = onnxmeta.read(folder / cache.MODEL_FILE).get("labels")
    except FileNotFoundError:  # removed meanwhile
        raise missing from None
    if labels and tuple(labels) != spec.labels:  # a checkpoint fine-tuned for other classes
        spec = _with_labels(spec, labels)
    record = metadata.get("weights") or {}  # the user's checkpoint (no tag) or random weights: not the published
    if record.get("tag") in (None, weights_module.RANDOM) and (record.get("file") or record.get("tag")):
        spec = _with_own_weights(spec, record.get("file") or weights_module.RANDOM)
    return spec, Converted(path=folder / cache.MODEL_FILE, metadata=metadata)


def _open_built(spec: ModelSpec, converted: Converted, registry: Registry, **session: Any) -> Model:
    """A file or an entry that :func:`describe` found, opened as it is, under its folder's reader lock (``zoo cache
    rm`` and ``prune`` wait until the session is open). A file's optimised graph goes to its folder in the cache,
    made now where onnxruntime will keep one."""
    _check_runs_on(spec, session["runtime"])
    built, asked = _precision_of(converted), session["precision"]
    if asked not in ("fp32", built) and not (built == "fp32" and asked in ("bf16", "fp16")):
        raise UsageError(f"{spec.name} ({converted.path}) is built already, in {built}: it cannot run in {asked} "
                         f"(give the model's name to build it in {asked})")
    session = {**session, "precision": asked if built == "fp32" else built}  # an int8 file runs in int8
    files, path = converted.metadata["files"], converted.path
    if converted.in_place and list(files) == [path.name]:  # no external data: its graphs and checks kept in the cache
        converted = dataclasses.replace(converted, file_folder=cache.file_folder(path, files[path.name]))
    folder = converted.file_folder if converted.in_place else converted.path.parent
    with cache.reading(folder) if folder is not None else contextlib.nullcontext():
        if not converted.in_place and cache.read_entry(folder) is None:  # type: ignore[arg-type]
            raise CacheError(f"{spec.name} ({folder}) was removed from the cache as it was being opened; open it "
                             f"again")
        return _checked(Model(spec, converted, task=registry.task(spec.task), **session))


def _precision_of(converted: Converted) -> str:
    """The precision of a built file: ``int8`` for a quantized entry or file, else ``fp32``."""
    return converted.metadata.get("precision") or cache.precision_of(converted.metadata)


def _names_pipeline(name: object, registry: Registry) -> bool:
    if isinstance(name, ModelSpec):
        return name.is_pipeline
    return (isinstance(name, str) and not onnxfile.is_file(name) and not cache.ENTRY.fullmatch(name.strip())
            and name in registry and registry.get(name).is_pipeline)


def _open_tuned(name: str | os.PathLike[str] | ModelSpec, build: BuildOptions, **opening: Any) -> Model | Pipeline:
    """``name`` on the runtime and precision its tuning chose on this machine (:func:`tuned`); a recorded choice
    that no longer opens (today's limits refuse it, or a plugin now refuses that runtime) is tuned again, once."""
    for again in (False, True):
        choice = tuned(name, build, again=again, **opening)["choice"]
        runtime, precision = choice["runtime"], choice["precision"]
        chosen = opening if runtime == "onnxruntime" else {**opening, "providers": None}  # providers: onnxruntime's
        try:
            return open_model(name, dataclasses.replace(build, precision=precision), runtime=runtime, **chosen)
        except (PrecisionError, UsageError) as error:
            if again or (runtime, precision) == tune.REFERENCE:
                raise
            log.warning("%s: the choice recorded by its tuning, %s %s, no longer opens (%s); tuning again", name,
                        runtime, precision, error)
    raise AssertionError("unreachable")


def tuned(name: str | os.PathLike[str] | ModelSpec, build: BuildOptions | None = None, *, again: bool = False,
          blocks: int = tune.BLOCKS, calls: int = tune.CALLS, **opening: Any) -> dict[str, Any]:
    """The tuning of ``name`` on this machine (:mod:`zoo.tune`): the record in its float32 entry, or measured now
    (and recorded) where there is none or ``again``. ``build`` as :func:`open_model` takes it; a precision other
    than ``fp32`` narrows the choice to it. ``blocks`` and ``calls``: how a new tuning times the candidates
    (:func:`zoo.tune.tune`). ``opening``: :func:`open_model`'s other keywords."""
    build = build if build is not None else BuildOptions()
    float32 = dataclasses.replace(build, precision="fp32")
    narrowed = None if build.precision == "fp32" else build.precision
    key = tune.key(narrowed, threads=opening.get("threads"), providers=opening.get("providers"))
    description = {k: opening[k] for k in ("task", "preprocess", "registry") if k in opening}
    _, built = describe(name, float32, **description)
    if built is not None and _precision_of(built) != "fp32":
        raise UsageError(f"{os.fspath(name) if not isinstance(name, ModelSpec) else name.name!r} is built in "
                         f"{_precision_of(built)} already: tune the model by its name (zoo tune NAME --precision "
                         f"{_precision_of(built)}), which times it against its float32 source")
    if not again:  # a tuning recorded for this machine: read without opening anything
        record = cache.recorded(_record_folder(built), "tuned", key)
        if record is not None:
            return record
    reference = open_model(name, float32, runtime="onnxruntime", **opening)
    if isinstance(reference, Pipeline):
        raise UsageError(f"{reference.spec.name!r} is a pipeline: tune each of its models "
                         f"({', '.join(reference.spec.requires)}); runtime='auto' does so as it opens them")

    def open_candidate(runtime: str, precision: str) -> Model | Pipeline:
        if (runtime, precision) == tune.REFERENCE:
            return reference
        candidate = opening if runtime == "onnxruntime" else {**opening, "providers": None}  # providers: onnxruntime's
        return open_model(name, dataclasses.replace(build, precision=precision), runtime=runtime, **candidate)

    record = tune.tune(reference.spec.name, open_candidate, precision=narrowed, blocks=blocks, calls=calls)
    if reference.converted.record_folder is not None:
        cache.record(reference.converted.record_folder, "tuned", key, record)
    return record


def _record_folder(built: Converted | None) -> Path | None:
    """Where what is measured of a built file is kept: an entry's folder, or a file's cache folder (not made here)."""
    if built is None or not built.in_place:
        return built.record_folder if built is not None else None
    files = built.metadata["files"]
    return cache.file_folder_of(files[built.path.name]["sha256"]) if list(files) == [built.path.name] else None


def _checked(model: Model) -> Model:
    """``model``, once its precision on its runtime has passed the agreement gate on this machine (:mod:`zoo.gate`;
    measured once, recorded in the entry); :class:`~zoo.errors.PrecisionError` with the figures otherwise."""
    runtime, precision = model.runtime, model.precision
    if not gate.needs_check(runtime, precision, checked_as_built=not cache.compared_by_task(model.metadata)):
        return model
    key = gate.check_key(runtime, precision)
    folder = model.converted.record_folder
    record = _recorded_check(model.spec, model.task, model.metadata, folder, key)
    if record is None:
        with _float32_of(model) as float32:
            reference = Model(model.spec, float32, task=model.task, threads=model.threads,
                              providers=["CPUExecutionProvider"])
            record = gate.check(model.spec, model.task, model, reference, runtime=runtime, precision=precision,
                                images=quantize.photos(model.spec).held, options=model.options)
        if folder is not None:
            cache.record(folder, "checks", key, record)
    model.metadata = {**model.metadata, "checks": {**model.metadata.get("checks", {}), key: record}}
    gate.refuse(model.spec, record)
    return model


@contextlib.contextmanager
def _float32_of(model: Model) -> Iterator[Converted]:
    """The float32 file that ``model``'s results are checked against (under its reader lock): its own, an int8
    entry's source entry, or, for an int8 file used in place (no float32 beside it), itself on onnxruntime."""
    source = model.metadata.get("source_entry") if model.precision == "int8" else None
    if source is None:
        yield dataclasses.replace(model.converted, in_place=True, file_folder=None)  # no optimised graph saved
        return
    folder = cache.entry_dir(model.spec.name, source)
    with cache.reading(folder):
        metadata = cache.read_entry(folder)
        if metadata is None:
            raise CacheError(f"the float32 entry {model.spec.name}/{source} that this int8 model was made from is not "
                             f"in the cache: open the model in fp32 with the same weights (zoo pull "
                             f"{model.spec.name} [--weights W]) to build it again, then in int8")
        yield Converted(path=folder / cache.MODEL_FILE, metadata=metadata, in_place=True)


def prepare(name: str | ModelSpec, build: BuildOptions | None = None, *, registry: Registry | None = None,
            **arguments: Any) -> tuple[ModelSpec, Converted]:
    """Resolve the name and the weights and return the cached ONNX file (built if needed), without a session.

    ``build`` (or its fields as keywords: ``weights=``, ``precision=``, ...) says how; ``zoo export``, ``zoo pull``
    and ``zoo bundle export`` use this directly.
    """
    build = build if build is not None else BuildOptions(**arguments)
    registry = registry if registry is not None else default_registry()
    spec, source, how = _resolve(name, build, registry)
    if isinstance(source, HubFile):
        source = pin_hub_file(spec.name, source)
    converted = convert(spec, source, **how, task=registry.task(spec.task))
    return spec, _check_int8(spec, converted, registry) if cache.compared_by_task(converted.metadata) else converted


def check_entry(reference: str, registry: Registry | None = None) -> None:
    """Compare the cache entry ``NAME/KEY`` on this machine if it is an int8 file that its task compares (not yet
    compared here: now); :class:`~zoo.errors.PrecisionError` where it is refused (``zoo bundle export``)."""
    registry = registry if registry is not None else default_registry()
    spec, converted = _describe_entry(reference, BuildOptions(), registry)
    if cache.compared_by_task(converted.metadata):
        _check_int8(spec, converted, registry)


def _check_int8(spec: ModelSpec, converted: Converted, registry: Registry) -> Converted:
    """``converted``, an int8 file that quantize did not compare (not a classifier's), once its task has compared it
    with float32 on this machine, as it is built, pulled or exported and not only once opened: no int8 file leaves
    the zoo unchecked. Measured once (the record in its entry, and in the metadata returned), judged by today's
    limits; :class:`~zoo.errors.PrecisionError` where it is refused."""
    task, key = registry.task(spec.task), gate.check_key("onnxruntime", "int8")
    record = _recorded_check(spec, task, converted.metadata, converted.record_folder, key)
    if record is None:  # measured now, by the check a model makes as it opens
        with cache.reading(converted.path.parent):
            return dataclasses.replace(converted, metadata=_checked(Model(spec, converted, task=task,
                                                                          precision="int8")).metadata)
    gate.refuse(spec, record)
    return converted


def _recorded_check(spec: ModelSpec, task: Task | None, metadata: Mapping[str, Any], folder: Path | None,
                    key: str) -> dict[str, Any] | None:
    """The check ``key`` measured on this machine before (in ``metadata``, or recorded in ``folder`` since), judged
    by today's limits; None where it was not measured here."""
    record = metadata.get("checks", {}).get(key) or cache.recorded(folder, "checks", key)
    return gate.rejudge(spec, task, record) if record is not None else None


def _resolve(name: str | ModelSpec, build: BuildOptions, registry: Registry) -> tuple[ModelSpec, Any, dict[str, Any]]:
    """The spec of ``name`` as ``build`` makes it (a weights variant's, or its own with your weights and labels),
    the weights to build it from, and how (:func:`zoo.convert.plan`'s keywords)."""
    weights, labels = build.weights, build.labels
    spec = labels_loaded(name) if isinstance(name, ModelSpec) else registry.get(name)
    check_pipeline_build(spec, build)
    if build.precision != "fp32":  # before it is built: a task whose results cannot be compared gets no reduced one
        gate.comparison(spec, registry.task(spec.task), build.precision)
    variant = _variant(registry, spec, weights)
    if variant is not None:
        spec, weights = variant, None
    reference = registry.reference(spec)
    variants = registry.variants(reference) if isinstance(weights, str) and reference in registry else ()
    source = weights_module.resolve(weights, build.sha256, default=spec.weights, variants=variants)
    if source is not None and source != spec.weights:
        spec = _with_own_weights(spec, source if source == weights_module.RANDOM else
                                 source.url if isinstance(source, HubFile) else
                                 source.filename if isinstance(source, Artifact) else Path(str(source)).name)
    prebuilt = build.opset is None and build.exporter is None
    if labels is not None:
        prebuilt = prebuilt and (spec.labels_from is not None or len(labels) == len(spec.labels))  # its classes
        spec = _with_labels(spec, labels)
    info = registry.plugin_manager.infos.get(spec.plugin)
    return spec, source, {"prebuilt": prebuilt, "exporter": build.exporter, "opset": build.opset,
                          "simplify": build.simplify, "plugin_version": info.version if info else None,
                          "precision": build.file_precision}


def _with_own_weights(spec: ModelSpec, weights: str) -> ModelSpec:
    """``spec`` built from ``weights`` (a checkpoint's file name, or ``"random"``) rather than its published ones:
    their metrics and summary are not this model's."""
    what = "random weights" if weights == weights_module.RANDOM else f"the weights of {weights}"
    return dataclasses.replace(spec, metrics={}, summary=f"{spec.name} with {what} (the published metrics do not "
                                                         f"apply)")


def _with_labels(spec: ModelSpec, labels: Sequence[str]) -> ModelSpec:
    """``spec`` predicting ``labels`` instead of its own (a model fine-tuned for other classes)."""
    if isinstance(labels, str) or not labels or not all(isinstance(label, str) and label for label in labels):
        raise UsageError(f"labels must be a non-empty list of class names, got {labels!r}")
    if spec.build is None and spec.labels_from is None and len(labels) != len(spec.labels):
        raise UsageError(f"model {spec.name!r} is a prebuilt file with {len(spec.labels)} classes; it cannot "
                         f"predict {len(labels)} labels")
    return dataclasses.replace(spec, labels=tuple(labels), labels_from=None)


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
    own = f"{spec.plugin}:" if spec.plugin else ""  # the variants of this plugin's architecture, not another's
    for candidate in ((spec.arch,) if wanted == "default" else (f"{spec.arch}.{wanted}", wanted)):
        found = registry.get(own + candidate) if own + candidate in registry else None
        if found is not None and found.arch == spec.arch and found.task == spec.task:  # never another task's model
            return found
    return spec if wanted == "default" else None
