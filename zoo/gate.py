"""The agreement gate: a runtime or precision is used only where its results agree with onnxruntime float32's.

Every other runtime (OpenVINO and OpenCV DNN, in float32 too: another engine's kernels), bf16 and
fp16 (OpenVINO running the float32 file in that precision) and int8 (but a classifier's on
onnxruntime, checked as it was built by :mod:`zoo.quantize`) are run beside onnxruntime float32,
the precision and runtime the export was checked in, on the spec's held images (the zoo's photos,
64 views, or the plugin's own) and compared as the model's task says (its ``agreement``: top-1
and the largest change for a classifier, matched boxes and score change for a detector, pixel
agreement for a segmenter, the nearest vector and cosine for an embedding); a task without one is
compared on its raw outputs, in float32 only (:func:`outputs_agreement`). Unless the figures are
within the limits (the task's; a spec's ``int8`` table may tighten or loosen them),
:class:`PrecisionError` refuses it with the figures. The figures are recorded in the entry, by
runtime, precision and machine, so the check is made once a machine; ``zoo info`` shows them.
A plugin's ``runtimes.toml`` refuses a runtime for a model before any of this (its export check
found it crashing or disagreeing).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from zoo import cache, quantize
from zoo._log import notice
from zoo.declared import call_declared
from zoo.errors import PrecisionError, UsageError
from zoo.geometry import Geometry
from zoo.spec import ModelSpec

log = logging.getLogger(__name__)

#: Limits of a task that gives none.
DEFAULT_LIMITS = {"min_agreement": 0.98, "max_difference": 0.25}
#: Limits of the raw outputs' comparison (:func:`outputs_agreement`): float32 on another engine, every image within
#: a thousandth of each output's scale.
RAW_LIMITS = {"min_agreement": 1.0, "max_difference": 1e-3}


class Runnable(Protocol):
    """What the gate runs: a :class:`zoo.Model`."""

    def transform(self, x: Any) -> tuple[np.ndarray, list[Geometry]]: ...

    def run(self, batch: np.ndarray, geometries: list[Geometry] | None = None) -> dict[str, np.ndarray]: ...

    def postprocess(self, outputs: dict[str, np.ndarray], geometries: list[Geometry] | None = None,
                    **options: Any) -> list[Any]: ...


def needs_check(runtime: str, precision: str, *, checked_as_built: bool = False) -> bool:
    """Whether ``precision`` on ``runtime`` must pass the gate as a model opens: all but onnxruntime in float32 (the
    export's own check) and an int8 file on onnxruntime that was ``checked_as_built`` (a classifier's)."""
    return runtime != "onnxruntime" or precision in ("bf16", "fp16") or (precision == "int8" and not checked_as_built)


def machine() -> dict[str, Any]:
    """What a measurement on this machine depends on: the CPU (model and flags), the GPUs OpenVINO sees,
    onnxruntime's execution providers (CUDA, TensorRT where a GPU build is installed), the zoo's version (its
    comparisons) and the runtimes'."""
    import onnxruntime

    from zoo._cpu import cpu_signature
    from zoo._version import __version__, installed_version

    return {"cpu": cpu_signature(), "gpus": gpu_names(), "zoo": __version__,
            "onnxruntime": quantize.onnxruntime_version(), "providers": onnxruntime.get_available_providers(),
            "openvino": installed_version("openvino"),
            "opencv": installed_version("opencv-python-headless", "opencv-python")}


@functools.cache
def machine_key() -> str:
    """:func:`machine` as 16 hex digits (once a process)."""
    return cache.key_of(machine())


def check_key(runtime: str, precision: str) -> str:
    """Where a check is recorded in the entry's ``checks`` table: the runtime, the precision and the machine."""
    return f"{runtime}/{precision}/{machine_key()}"


def gpu_names() -> list[str]:
    """The GPUs that OpenVINO (where installed) sees; empty on a machine without one."""
    try:
        from zoo.runtime_openvino import core

        found = core()
        return [str(found.get_property(device, "FULL_DEVICE_NAME")) for device in found.available_devices
                if device.startswith("GPU")]
    except Exception:  # noqa: BLE001 - no OpenVINO, or a driver that fails: no GPU to use through it
        return []


def limits(spec: ModelSpec, task_limits: Mapping[str, float] | None) -> dict[str, float]:
    """The task's limits (or :data:`DEFAULT_LIMITS`), with the spec's ``int8`` table's ``min_agreement`` and
    ``max_difference`` over them."""
    merged = {**DEFAULT_LIMITS, **(task_limits or {})}
    return {key: float(spec.int8.get(key, value)) for key, value in merged.items()}


def measure(spec: ModelSpec, agreement: Callable[..., dict[str, float]], want: Runnable, got: Runnable,
            images: Sequence[np.ndarray], options: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``want`` (float32) and ``got`` on each of ``images`` and compare them with the task's ``agreement``
    (called with the parameters it declares among ``want``/``got`` (results), ``want_outputs``/``got_outputs``
    (each image's raw outputs), ``spec`` and the model's ``options``)."""
    started = time.perf_counter()
    runs: dict[str, tuple[list[Any], list[dict[str, np.ndarray]]]] = {"want": ([], []), "got": ([], [])}
    for image in images:
        batch, geometries = want.transform(image)  # one spec, one preprocessing: the same batch for both
        for name, model in (("want", want), ("got", got)):
            outputs = model.run(batch, geometries)
            runs[name][0].extend(model.postprocess(outputs, geometries, **options))
            runs[name][1].append({spec.rename_outputs.get(key, key): value for key, value in outputs.items()})
    available = {"want": runs["want"][0], "got": runs["got"][0], "want_outputs": runs["want"][1],
                 "got_outputs": runs["got"][1], "spec": spec, "options": dict(options), **options}
    figures = call_declared(agreement, available, spec, "compare a reduced precision's results")
    return {**{k: round(float(v), 6) for k, v in figures.items()}, "images": len(images),
            "seconds": round(time.perf_counter() - started, 3)}


def problems(figures: Mapping[str, Any], limit: Mapping[str, float]) -> list[str]:
    """What in ``figures`` breaks ``limit`` (nothing: it passes)."""
    found = []
    if not figures.get("compared"):
        found.append("float32 gave nothing to compare on the held images (no detections, or no images)")
    if figures["agreement"] < limit["min_agreement"]:
        found.append(f"its results agree with onnxruntime float32's on {figures['agreement']:.1%} (at least "
                     f"{limit['min_agreement']:.1%} wanted)")
    if figures["max_difference"] > limit["max_difference"]:
        found.append(f"a result moves by {figures['max_difference']:.3g} (at most {limit['max_difference']:.3g} "
                     f"allowed)")
    return found


def verdict(spec: ModelSpec, runtime: str, precision: str, figures: Mapping[str, Any],
            limit: Mapping[str, float], machine: str | None = None) -> dict[str, Any]:
    """The record kept in the entry: the figures, the limits, and ``refused`` (the problems, or None), for the
    ``machine`` that measured them (default: this one)."""
    found = problems(figures, limit)
    return {"runtime": runtime, "precision": precision, "machine": machine or machine_key(), **figures,
            "limits": dict(limit), "refused": "; and ".join(found) or None}


def rejudge(spec: ModelSpec, task: Any, record: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded check judged again by today's limits (the spec's or the task's may have changed since)."""
    figures = {k: v for k, v in record.items() if k not in ("runtime", "precision", "machine", "limits", "refused")}
    raw = record.get("compared_as") == "raw outputs"
    limit = dict(RAW_LIMITS) if raw else comparison(spec, task, record["precision"])[1]
    return verdict(spec, record["runtime"], record["precision"], figures, limit, record.get("machine"))


def refuse(spec: ModelSpec, record: Mapping[str, Any]) -> None:
    """:class:`PrecisionError` with the figures where ``record`` (:func:`verdict`) refused the precision."""
    if record.get("refused"):
        instead = ("runtime 'onnxruntime'" if record["precision"] == "fp32" else
                   quantize.REFUSED_ADVICE if record["runtime"] == "onnxruntime" else
                   "precision 'fp32', or another runtime")
        error = PrecisionError(f"model {spec.name!r} in {record['precision']} on {record['runtime']} is refused: "
                               f"{record['refused']} ({record['images']} held images). Use {instead}; 'zoo info' "
                               f"shows the figures")
        error.report = dict(record)
        raise error


def outputs_agreement(want_outputs: Sequence[Mapping[str, np.ndarray]],
                      got_outputs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """The raw outputs compared, for a task without an ``agreement``: ``agreement`` is the fraction of images whose
    every output is within :data:`RAW_LIMITS`' ``max_difference`` of its scale (the largest ``|value|`` of float32's
    on all the images: a map near zero on one image, where nothing was found, is not a scale; another shape is a
    disagreement), ``max_difference`` the largest difference relative to that scale."""
    scales: dict[str, float] = {}
    for want in want_outputs:
        for name, value in want.items():
            scales[name] = max(scales.get(name, 0.0), float(np.abs(value).max(initial=0.0)))
    worst: list[float] = []
    for want, got in zip(want_outputs, got_outputs, strict=True):
        differences = [float("inf") if got.get(name) is None or got[name].shape != value.shape else
                       float(np.abs(got[name].astype(np.float64) - value).max(initial=0.0)) /
                       max(scales[name], float(np.finfo(np.float32).tiny))
                       for name, value in want.items()]
        worst.append(max(differences, default=0.0))
    return {"agreement": float(np.mean([w <= RAW_LIMITS["max_difference"] for w in worst])) if worst else 1.0,
            "max_difference": min(max(worst, default=0.0), 1e9), "compared": len(worst)}


def comparison(spec: ModelSpec, task: Any, precision: str) -> tuple[Callable[..., dict[str, float]], dict[str, float]]:
    """How ``precision`` is compared with float32 for ``spec``: the task's agreement function and limits; the raw
    outputs (:func:`outputs_agreement`) for a task without one, in float32 only; :class:`UsageError` otherwise
    (a reduced precision changes raw outputs: only the task can say whether its results still hold)."""
    agreement = getattr(task, "agreement", None)
    if agreement is not None:
        return agreement, limits(spec, getattr(task, "limits", None))
    if precision == "fp32":
        return outputs_agreement, dict(RAW_LIMITS)
    raise UsageError(f"model {spec.name!r} is a {spec.task} model, whose results the zoo cannot compare with "
                     f"float32's; precision {precision!r} is not available for it: use precision 'fp32'")


def check(spec: ModelSpec, task: Any, model: Runnable, reference: Runnable, *, runtime: str, precision: str,
          images: Sequence[np.ndarray], options: Mapping[str, Any]) -> dict[str, Any]:
    """Measure ``model`` (``runtime``, ``precision``) against ``reference`` (onnxruntime float32) and return the
    record (:func:`verdict`), refusing nothing."""
    agreement, limit = comparison(spec, task, precision)
    notice(log, "checking %s in %s on %s against onnxruntime float32 on %d held images; this is done once on this "
           "machine", spec.name, precision, runtime, len(images))
    figures = measure(spec, agreement, reference, model, images, options)
    if not figures.get("compared") and precision == "fp32" and agreement is not outputs_agreement:
        # float32's results held nothing to compare (no detections): another engine is judged on its raw outputs
        figures = {**measure(spec, outputs_agreement, reference, model, images, options), "compared_as": "raw outputs"}
        limit = dict(RAW_LIMITS)
    return verdict(spec, runtime, precision, figures, limit)
