"""Running an ONNX file on OpenVINO Runtime (the ``openvino`` extra), which reads the zoo's ONNX files directly.

OpenVINO runs a float32 model in the precision its *inference precision hint* says: on CPUs
with AMX or AVX-512 BF16 its default is bfloat16, a silent change of precision. The zoo sets
the hint from the precision asked for (``fp32`` runs in float32 everywhere); bf16 and fp16 are
checked choices (:mod:`zoo.gate`), refused on a device that lacks them rather than
emulated.

The compiled model is saved beside the model in the cache (OpenVINO's ``export_model``) under a
name that depends on the model, OpenVINO's version, the device, the precision and the CPU, and
is recorded in the entry as onnxruntime's optimised graph is: opening it again skips reading
and compiling the ONNX file.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from zoo import cache
from zoo._cpu import cpu_signature
from zoo._files import temporary_name
from zoo.errors import UsageError, ZooError, last_line

log = logging.getLogger(__name__)

#: The zoo's precision -> OpenVINO's inference precision hint. An int8 file holds its own
#: quantized layers; the rest of it runs in float32, as onnxruntime runs it.
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
#: The device capability (``OPTIMIZATION_CAPABILITIES``) each reduced float precision needs.
CAPABILITIES = {"bf16": "BF16", "fp16": "FP16"}
#: What a CPU needs for each, said in the error when it lacks it.
NEEDS = {"bf16": "AMX or AVX-512 BF16 instructions (Intel Xeon since Cooper Lake, AMD since Zen 4)",
         "fp16": "fp16 units (AMX-FP16 on Intel Xeon since Granite Rapids; the zoo runs OpenVINO on the CPU only)"}
SUFFIX = ".ovblob"


def core() -> Any:
    """OpenVINO's ``Core``, or :class:`UsageError` saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise UsageError("runtime 'openvino' needs OpenVINO Runtime: pip install 'onnx-zoo[openvino]' "
                         "(or pip install openvino)") from None
    return _core(openvino)


@functools.cache
def _core(openvino: Any) -> Any:
    return openvino.Core()


def version() -> str:
    """OpenVINO's full version (with its build), or :class:`UsageError` saying how to install it."""
    core()
    import openvino

    return str(openvino.__version__)


def check_precision(precision: str, device: str = "CPU") -> None:
    """:class:`UsageError` unless OpenVINO's ``device`` runs ``precision`` natively (bf16 and fp16 need the
    instructions; OpenVINO would otherwise run float32, or emulate them slowly)."""
    if precision not in HINTS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(HINTS)}")
    found = core()  # installed, or the error says how to install it
    needed = CAPABILITIES.get(precision)
    if needed is None:
        return
    capabilities = found.get_property(device, "OPTIMIZATION_CAPABILITIES")
    if needed not in capabilities:
        raise UsageError(f"precision {precision!r} needs {NEEDS[precision]}; OpenVINO's {device} device here offers "
                         f"{', '.join(capabilities)}: use precision 'fp32' or 'int8'")


def compiled_name(model: str, device: str, precision: str, threads: int | None) -> str:
    """The file name of a model's saved compiled model: it depends on the model (``model``: its sha256), OpenVINO's
    version, the device, the precision, the thread count and the CPU (the kernels are this CPU's)."""
    what = {"model": model, "openvino": version(), "device": device, "precision": precision, "threads": threads,
            "cpu": cpu_signature(), "cores": os.cpu_count()}
    return cache.derived_name(what, SUFFIX)


class OpenVinoSession:
    """An OpenVINO compiled model; safe to call from several threads (each has its own infer request).

    ``precision`` is the zoo's (see :data:`HINTS`); ``threads`` OpenVINO's inference threads
    (default: its own, one per physical core); ``device`` ``CPU`` (default) or ``GPU``.
    ``keep_compiled`` (the model's sha256) saves the compiled model in ``compiled_in`` (default:
    the model's folder, an entry's) and opens that next time.
    """

    name = "openvino"

    def __init__(self, path: Path, *, precision: str = "fp32",
                 threads: int | None = None, device: str = "CPU", keep_compiled: str | None = None,
                 compiled_in: Path | None = None) -> None:
        check_precision(precision, device)
        self.precision = precision
        self.device = device
        self.config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        #: The saved compiled model (``keep_compiled``), opened instead of the ONNX file.
        self.optimized: Path | None = None
        #: The file the model was compiled or imported from.
        self.opened = Path(path)
        self.compiled = None
        if keep_compiled:
            folder = compiled_in or Path(path).parent
            self.optimized = folder / compiled_name(keep_compiled, device, precision, threads)
            self.compiled = self._import()
        if self.compiled is None:
            try:
                self.compiled = core().compile_model(os.fspath(path), device, self.config)
            except Exception as error:  # noqa: BLE001 - OpenVINO raises RuntimeError with its C++ message
                raise ZooError(f"OpenVINO {version()} cannot compile {path} for {device}: {last_line(error)}; "
                               f"use runtime='onnxruntime'") from None
            self._export()
        #: The graph's inputs and outputs, as the ONNX file names them (OpenVINO keeps the names and their order).
        self.inputs = {port.get_any_name(): [d.get_length() if d.is_static else None
                                             for d in port.get_partial_shape()] for port in self.compiled.inputs}
        self.input_types = {port.get_any_name(): np.dtype(port.get_element_type().to_dtype())
                            for port in self.compiled.inputs}
        self._ports = {port.get_any_name(): port for port in self.compiled.outputs}
        self.outputs = list(self._ports)
        self._local = threading.local()

    def _import(self) -> Any:
        """The saved compiled model, or None (none yet, damaged, or written by another OpenVINO)."""
        assert self.optimized is not None
        if not cache.optimized_usable(self.optimized.parent, self.optimized.name):
            return None
        try:
            with self.optimized.open("rb") as blob:
                compiled = core().import_model(blob.read(), self.device, self.config)
            self.opened = self.optimized
            return compiled
        except Exception as error:  # noqa: BLE001 - any failure: compile the model, and save it again
            log.warning("%s cannot be opened (%s); compiling the model again", self.optimized, last_line(error))
            with contextlib.suppress(OSError):
                self.optimized.unlink()
            return None

    def _export(self) -> None:
        """Save the compiled model (under a temporary name, then renamed and recorded); nothing in a read-only cache."""
        if self.optimized is None or not os.access(self.optimized.parent, os.W_OK):
            return
        temp = temporary_name(self.optimized)
        try:
            temp.write_bytes(self.compiled.export_model().getvalue())  # type: ignore[union-attr]
            cache.record_optimized(self.optimized, saved=temp)
        except (OSError, ValueError, RuntimeError) as error:  # not saved: compiled again next time
            log.info("the compiled model was not saved in %s (%s)", self.optimized.parent, error)
        finally:
            temp.unlink(missing_ok=True)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()  # type: ignore[union-attr]
        result = request.infer(feeds)  # copies the outputs (share_outputs=False)
        return {name: result[port] for name, port in self._ports.items()}

    def placement(self, feeds: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Where the compiled model runs: its devices, its operations, and how many run in each precision
        (``runtimePrecision``: a bf16 model keeps some layers in float32). ``feeds`` is not needed."""
        model = self.compiled.get_runtime_model()  # type: ignore[union-attr]
        info = [op.get_rt_info() for op in model.get_ops()]
        precisions = collections.Counter(str(i["runtimePrecision"].astype(str)) for i in info if "runtimePrecision" in i)
        return {"devices": [str(d) for d in self.compiled.get_property("EXECUTION_DEVICES")],  # type: ignore[union-attr]
                "nodes": len(info), "precisions": dict(precisions.most_common())}
