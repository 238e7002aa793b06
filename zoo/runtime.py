"""Running an ONNX file: onnxruntime, OpenCV DNN or OpenVINO behind one small interface.

A session takes the inputs by name (a preprocessed image batch, and whatever else the
graph takes) and returns the raw outputs by name.
onnxruntime is the default (CUDA used when onnxruntime has it, thread count configurable);
OpenCV's DNN module is the alternative that OpenCV-only deployments use; OpenVINO
(:mod:`zoo.runtime_openvino`) runs float32 models in bf16 or fp16 where the hardware has them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from zoo import cache
from zoo._cpu import cpu_signature
from zoo._files import temporary_name
from zoo.errors import UsageError, ZooError, ZooInputError, last_line
from zoo.spec import AUTO, PRECISIONS, RUNTIMES

if TYPE_CHECKING:
    from zoo.geometry import Geometry

log = logging.getLogger(__name__)

_ORT_TYPES = {f"tensor({name})": np.dtype(name) for name in ("float", "double", "int64", "int32", "uint8", "bool")}
_ORT_TYPES["tensor(float)"] = np.dtype(np.float32)
#: Execution providers used when present, in order of preference.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
#: Providers whose optimised graph is saved in the cache (TensorRT keeps its engines instead).
KEEPS_OPTIMIZED = frozenset(PREFERRED_PROVIDERS)
TENSORRT = "TensorrtExecutionProvider"
#: The folder of an entry where TensorRT keeps the engines it builds for the model (one per GPU and shapes).
TENSORRT_ENGINES = "tensorrt"


def with_engine_cache(provider: str, folder: Path) -> str | tuple[str, dict[str, Any]]:
    """``provider`` with its options where it builds engines (TensorRT: built once into ``folder``/tensorrt and
    reused, as TensorRT checks them against the GPU and its version)."""
    if provider != TENSORRT:
        return provider
    return provider, {"trt_engine_cache_enable": True, "trt_timing_cache_enable": True,
                      "trt_engine_cache_path": os.fspath(folder / TENSORRT_ENGINES)}


class Session(Protocol):
    """What a runtime provides to :class:`zoo.Model`."""

    name: str
    #: The precision it runs in (one of :data:`zoo.spec.PRECISIONS`).
    precision: str
    #: The graph's inputs: name -> shape (an int per fixed axis, a name or None per dynamic one).
    inputs: dict[str, list[int | str | None]]
    #: The graph's inputs: name -> numpy dtype of its elements.
    input_types: dict[str, np.dtype]
    #: The graph's output names, in order.
    outputs: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw outputs, by name, for the inputs by name."""
        ...

    def placement(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        """Where the graph runs: ``devices``, ``nodes``, and what the runtime says of each node (see
        :meth:`zoo.Model.placement`)."""
        ...


class OnnxRuntimeSession:
    """An onnxruntime ``InferenceSession``; safe to call from several threads.

    ``providers`` defaults to CUDA when onnxruntime has it, else CPU; ``threads`` sets the
    intra-op thread count (default: onnxruntime's, one per physical core).
    """

    name = "onnxruntime"

    def __init__(self, path: Path, *, providers: list[str] | None = None, threads: int | None = None,
                 keep_optimized: str | None = None, optimized_in: Path | None = None,
                 precision: str = "fp32") -> None:
        import onnxruntime

        #: ``fp32``, or ``int8`` for a quantized file (onnxruntime runs a file in the precision it holds).
        self.precision = precision

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are for model authors, in colour on stderr
        if threads:
            options.intra_op_num_threads = threads
        # Worker threads spin inside a run (onnxruntime's default; turning it off cost resnet50
        # 2 ms of 42 here) but stop when the run ends: two sessions that kept spinning after
        # their runs, called in turn, slowed each other from 41 to 81 ms (bench/bench_predict.py).
        options.add_session_config_entry("session.force_spinning_stop", "1")
        check_runtime(self.name, providers)
        available = onnxruntime.get_available_providers()
        chosen = providers or [p for p in PREFERRED_PROVIDERS if p in available]
        #: The providers as the sessions get them: TensorRT with its engines built once, kept in the entry.
        self._providers: list[Any] = chosen
        if keep_optimized and TENSORRT in chosen:
            self._providers = [with_engine_cache(p, optimized_in or Path(path).parent) for p in chosen]
        #: The optimised graph saved beside the model (``keep_optimized``), opened instead of it.
        self.optimized: Path | None = None
        #: The file the session was opened from: the model, or its saved optimised graph.
        self.opened = Path(path)
        if keep_optimized and set(chosen) <= KEEPS_OPTIMIZED:
            folder = optimized_in or Path(path).parent
            self.optimized = folder / optimized_name(keep_optimized, onnxruntime.__version__, chosen)
            self.session = self._open_optimized(Path(path), options, chosen)
            if self.session is not None:
                self._describe()
                return
        try:
            self.session = onnxruntime.InferenceSession(os.fspath(path), sess_options=options,
                                                        providers=self._providers)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own Fail, InvalidGraph, NoSuchFile...
            raise ZooError(f"onnxruntime {onnxruntime.__version__} cannot load {path}: {last_line(error)}") from None
        self._describe()

    def _open_optimized(self, path: Path, options: object, providers: list[str]) -> object | None:
        """A session on the saved optimised graph (None if there is none yet, after saving it).

        Opening it skips the graph optimisations: resnet50's session opens in 27 ms instead of 125
        (``bench/bench_cold.py``).
        The file is written by onnxruntime under a temporary name, renamed and recorded in the
        entry's metadata (:func:`zoo.cache.record_optimized`), so readers never see half of it,
        and it is checked as the entry's own files are before it is opened; one that fails to open (damaged, or an onnxruntime that writes
        what it cannot read) is removed and the model opened as it is. In a read-only cache
        nothing is saved (onnxruntime fails a session whose optimised graph it cannot write).
        """
        import onnxruntime

        assert self.optimized is not None
        if cache.optimized_usable(self.optimized.parent, self.optimized.name):  # recorded in the entry and unchanged
            level = options.graph_optimization_level  # type: ignore[attr-defined]
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # type: ignore[attr-defined]
            try:
                session = onnxruntime.InferenceSession(os.fspath(self.optimized), sess_options=options,
                                                       providers=providers)
                self.opened = self.optimized
                return session
            except Exception as error:  # noqa: BLE001 - any failure: use the model itself, and save its graph again
                log.warning("%s cannot be opened (%s); optimising %s again", self.optimized, last_line(error), path.name)
                with contextlib.suppress(OSError):
                    self.optimized.unlink()
            finally:
                options.graph_optimization_level = level  # type: ignore[attr-defined]
        if not os.access(self.optimized.parent, os.W_OK):  # a read-only cache: onnxruntime would fail the whole session
            return None
        temp = temporary_name(self.optimized)
        options.optimized_model_filepath = os.fspath(temp)  # type: ignore[attr-defined]
        try:
            session = onnxruntime.InferenceSession(os.fspath(path), sess_options=options, providers=providers)
        except Exception:  # noqa: BLE001 - the caller opens the model without saving, and reports its error
            session = None
        finally:
            options.optimized_model_filepath = ""  # type: ignore[attr-defined]
        with contextlib.suppress(OSError, ValueError):  # not saved (or not recorded): optimised again next time
            if session is not None and temp.exists():
                cache.record_optimized(self.optimized, saved=temp)
        temp.unlink(missing_ok=True)
        return session

    def _describe(self) -> None:
        self.inputs = {i.name: list(i.shape) for i in self.session.get_inputs()}
        self.input_types = {i.name: _ORT_TYPES.get(i.type, np.dtype(np.float32)) for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses."""
        return list(self.session.get_providers())

    def placement(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        """Where the graph runs: its nodes per execution provider, and the operator types each ran, from one run of
        ``feeds`` in a profiled session on the same file and providers (onnxruntime assigns nodes to providers as
        a session is made, and says which in its profile)."""
        import tempfile

        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.enable_profiling = True
        with tempfile.TemporaryDirectory(prefix="zoo-profile-") as folder:
            options.profile_file_prefix = os.path.join(folder, "run")
            profiled = onnxruntime.InferenceSession(os.fspath(self.opened), sess_options=options,
                                                    providers=self._providers)
            profiled.run(None, feeds)
            events = json.loads(Path(profiled.end_profiling()).read_text(encoding="utf-8"))
        nodes: dict[str, dict[str, str]] = {}
        for event in events:
            args = event.get("args", {})
            if event.get("cat") == "Node" and "provider" in args:
                nodes.setdefault(args["provider"], {})[event["name"].removesuffix("_kernel_time")] = args["op_name"]
        return {"devices": self.providers, "nodes": sum(len(n) for n in nodes.values()),
                "providers": {provider: len(found) for provider, found in nodes.items()},
                "operators": {provider: sorted(set(found.values())) for provider, found in nodes.items()}}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(None, feeds)))


def optimized_name(model: str, version: str, providers: Sequence[str]) -> str:
    """The file name of a model's saved optimised graph: it depends on the model (``model``: its
    sha256), onnxruntime's version, the execution providers and the CPU (the graph may use
    kernels of this CPU, such as NCHWc layouts)."""
    what = {"model": model, "onnxruntime": version, "providers": list(providers), "cpu": cpu_signature()}
    return cache.derived_name(what, ".onnx")


class OpenCvSession:
    """An OpenCV DNN network; calls are serialised, since a ``cv2.dnn.Net`` is not thread-safe.

    ``threads`` is OpenCV's thread count during this network's forward calls only: the
    process's count, which the preprocessing and other models use, is left as it is.
    """

    name = "opencv"

    def __init__(self, path: Path, output_names: tuple[str, ...], *, threads: int | None = None,
                 precision: str = "fp32") -> None:
        import cv2

        self.precision = precision

        #: OpenCV's thread count while this network runs (None: the process's); see :func:`_opencv_threads`.
        self.threads = threads
        try:
            self.net = cv2.dnn.readNetFromONNX(os.fspath(path))
        except cv2.error as error:
            raise ZooError(f"OpenCV DNN cannot load {path}: {last_line(error)}; "
                           f"use runtime='onnxruntime'") from None
        self.inputs, self.outputs = graph_signature(path)
        self.input_types = {name: np.dtype(np.float32) for name in self.inputs}
        self.output_names = [name for name in output_names if name in self.outputs]
        self._lock = threading.Lock()

    def placement(self, feeds: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """OpenCV DNN runs every layer on the CPU (the zoo sets no other backend)."""
        return {"devices": ["CPU"], "nodes": len(self.net.getLayerNames())}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            for name, value in feeds.items():
                self.net.setInput(value, name)
            with _opencv_threads(self.threads):
                outputs = self.net.forward(self.output_names)
        return dict(zip(self.output_names, outputs))


#: Guards :data:`_cv_threads`: the sessions inside a forward call with their own thread count, and the
#: process's count from before the first of them, put back when the last one returns.
_cv_threads_lock = threading.Lock()
_cv_threads: dict[str, int] = {"running": 0, "saved": 0}


@contextlib.contextmanager
def _opencv_threads(threads: int | None) -> Iterator[None]:
    """OpenCV's thread count set to ``threads`` for the ``with`` block (nothing done for None).

    OpenCV has one thread count for the whole process (a ``cv2.dnn.Net`` has none of its
    own), which the preprocessing and every other model use too: it is set only around a
    forward call and put back afterwards. Overlapping calls of sessions with other counts
    run with the latest one set; the count from before the first is restored after the last.
    """
    if not threads:
        yield
        return
    import cv2

    with _cv_threads_lock:
        if _cv_threads["running"] == 0:
            _cv_threads["saved"] = cv2.getNumThreads()
        _cv_threads["running"] += 1
        cv2.setNumThreads(threads)
    try:
        yield
    finally:
        with _cv_threads_lock:
            _cv_threads["running"] -= 1
            if _cv_threads["running"] == 0:
                cv2.setNumThreads(_cv_threads["saved"])


def fell_back(placement: Mapping[str, Any]) -> list[str]:
    """The operator types that ran on the CPU although the session asked for an accelerator first (a CUDA or
    TensorRT execution provider): empty where everything ran where it was asked to, or nothing else was asked."""
    devices = placement.get("devices", [])
    if not devices or devices[0] == "CPUExecutionProvider":
        return []
    return list(placement.get("operators", {}).get("CPUExecutionProvider", []))


def input_feeds(sources: Mapping[str, str], batch: np.ndarray, geometries: Sequence[Geometry] | None,
                dtypes: Mapping[str, np.dtype] | None = None, *, model: str = "") -> dict[str, np.ndarray]:
    """A graph's inputs by name: the image batch where ``sources`` says ``image``, else each image's value from its
    geometry (``original_size``, ``input_size`` or ``scale``), in the input's dtype (float32 by default)."""
    feeds = {}
    for name, source in sources.items():
        if source == "image":
            feeds[name] = np.ascontiguousarray(batch, dtype=np.float32)
            continue
        if geometries is None or len(geometries) != len(batch):
            raise ZooInputError(f"model {model!r} also takes each image's {source} (input {name!r}): pass the "
                                f"geometries from Model.transform(images)")
        feeds[name] = np.asarray([g.value(source) for g in geometries], dtype=(dtypes or {}).get(name, np.float32))
    return feeds


def graph_signature(path: Path) -> tuple[dict[str, list[int | str | None]], list[str]]:
    """The inputs (name -> shape) and output names of an ONNX file, read without its weights."""
    import onnx

    return signature(onnx.load(os.fspath(path), load_external_data=False).graph)


def signature(graph: Any) -> tuple[dict[str, list[int | str | None]], list[str]]:
    """:func:`graph_signature` of a loaded ``onnx.GraphProto``."""
    initializers = {t.name for t in graph.initializer}

    def shape(value: Any) -> list[int | str | None]:
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in value.type.tensor_type.shape.dim]

    inputs = {v.name: shape(v) for v in graph.input if v.name not in initializers}
    return inputs, [v.name for v in graph.output]


def open_session(path: Path, runtime: str, output_names: tuple[str, ...], *, providers: list[str] | None = None,
                 threads: int | None = None, keep_optimized: str | None = None,
                 optimized_in: Path | None = None, precision: str = "fp32") -> Session:
    """A session of ``runtime`` (one of :data:`RUNTIMES`, not ``auto``) on the model at ``path``, in ``precision`` (``int8`` for
    a quantized file; ``bf16`` and ``fp16`` on OpenVINO).

    ``keep_optimized`` (the model's sha256): onnxruntime's optimised graph, or OpenVINO's compiled model,
    is saved in the cache folder ``optimized_in`` (default: the model's own, an entry's) and opened
    instead of the model next time.
    """
    check_runtime(runtime, providers, precision)
    if runtime == "opencv":
        return OpenCvSession(path, output_names, threads=threads, precision=precision)
    if runtime == "openvino":
        from zoo.runtime_openvino import OpenVinoSession

        return OpenVinoSession(path, precision=precision, threads=threads,
                               keep_compiled=keep_optimized, compiled_in=optimized_in)
    return OnnxRuntimeSession(path, providers=providers, threads=threads, keep_optimized=keep_optimized,
                              optimized_in=optimized_in, precision=precision)


def check_runtime(runtime: str, providers: Sequence[str] | None = None, precision: str = "fp32") -> None:
    """:class:`UsageError` unless ``runtime`` is one of :data:`RUNTIMES`, runs ``precision`` (bf16 and fp16:
    OpenVINO, on hardware that has them) and each of ``providers`` is an execution provider of this
    onnxruntime (providers go with onnxruntime only).

    :func:`zoo.get` checks before anything is fetched or exported; sessions check as they open.
    """
    if runtime not in (*RUNTIMES, AUTO):
        raise UsageError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)} or {AUTO}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if runtime == AUTO:  # the tuning tries each runtime, with the providers where they apply
        _check_providers(providers)
        return
    if precision in ("bf16", "fp16") and runtime != "openvino":
        raise UsageError(f"precision {precision!r} runs on OpenVINO (runtime='openvino', --runtime openvino): "
                         f"{'onnxruntime' if runtime == 'onnxruntime' else 'OpenCV DNN'} runs a float32 model in "
                         f"float32")
    if runtime == "openvino":
        from zoo.runtime_openvino import check_precision

        check_precision(precision)
    if not providers:
        return
    if runtime != "onnxruntime":
        raise UsageError(f"providers= selects onnxruntime execution providers; "
                         f"{'OpenCV DNN' if runtime == 'opencv' else 'OpenVINO'} has none")
    _check_providers(providers)


def _check_providers(providers: Sequence[str] | None) -> None:
    if not providers:
        return
    import onnxruntime

    available = onnxruntime.get_available_providers()
    unknown = [p for p in providers if p not in available]
    if unknown:
        raise UsageError(f"execution provider {', '.join(unknown)} is not available in this onnxruntime; "
                         f"choose among {', '.join(available)}")
