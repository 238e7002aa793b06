"""int8 models: static quantization with onnxruntime, calibrated on photos and checked against float32.

A cached float32 file becomes an int8 one in QDQ form (QuantizeLinear/DequantizeLinear
pairs that onnxruntime fuses into integer kernels): weights int8 per output channel,
activations uint8 with ranges calibrated on views of photos. A classifier's int8 file is then
run beside the float32 one on held photos (never calibrated on); unless the top classes agree
on at least the spec's ``min_agreement`` of them and no output moves by more than
``max_difference`` of their range, :class:`QuantizationError` refuses it with the figures. Any
other task's int8 file is compared by its task's own agreement (boxes, pixels, vectors), which
needs the task's postprocessing, by the agreement gate (:mod:`zoo.gate`) once it is built.
The figures are stored with the entry, with the speed-up measured on this machine as it was
built: float32 and int8 run in alternating blocks (:func:`interleaved_ms`), and the median,
lowest and highest ratio over the pairs of blocks are kept, an indication rather than a benchmark
(``bench/bench_int8.py`` times them at length).

The settings (:data:`SETTINGS`) were chosen by ``bench/bench_int8.py``: see its results.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import platform
import re
import shutil
import statistics
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from zoo._version import installed_version
from zoo.errors import QuantizationError, UsageError
from zoo.spec import ModelSpec, Photos, callable_name
from zoo.tasks.classification import score_agreement

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
#: Tasks whose int8 file is checked here, on its first output (a score per class); the others' by the
#: agreement gate (:mod:`zoo.gate`), with their task's results.
CHECKED_AS_BUILT = ("image-classification",)
#: How the zoo quantizes: onnxruntime's QDQ format, uint8 activations and int8 weights (u8s8,
#: the combination its x86 kernels run fastest), per-channel weights, MinMax calibration, after
#: onnxruntime's pre-processing, every operator onnxruntime can quantize (``ops`` None). The
#: weights use 7 bits (``reduce_range``) on x86 CPUs without VNNI (:func:`reduced_range`).
SETTINGS: dict[str, Any] = {"format": "QDQ", "activations": "uint8", "weights": "int8", "per_channel": True,
                            "method": "MinMax", "ops": None, "prepare": True}
#: What to do about an int8 file that disagrees with float32.
REFUSED_ADVICE = ("precision 'fp32', or keep the layers that lose accuracy in float with the spec's int8.exclude "
                  "(node name patterns)")
#: A spec's ``int8`` table fills in what it leaves out from these.
DEFAULTS: dict[str, Any] = {"min_agreement": 0.98, "max_difference": 0.25, "exclude": ()}
#: Views of each photo: (left, top, width, height) as fractions of the photo, and a mirror flag.
#: A calibration photo gives 4, a held one 16 (all different: the whole, crops of 80% at the
#: corners and centre, of 60% at two corners, each also mirrored).
CALIBRATION_VIEWS = ((0, 0, 1, 1, False), (0.1, 0.1, 0.8, 0.8, True), (0, 0, 0.7, 0.7, False),
                     (0.3, 0.3, 0.7, 0.7, True))
HELD_VIEWS = tuple((left, top, size, size, flip) for size, corners in (
    (1.0, ((0, 0),)), (0.8, ((0, 0), (0.2, 0), (0, 0.2), (0.2, 0.2), (0.1, 0.1))), (0.6, ((0, 0), (0.4, 0.4))))
                   for left, top in corners for flip in (False, True))
#: The speed-up measured during a build (:func:`interleaved_ms`): blocks per model, timed calls per block
#: (after one untimed call). That is 20 runs of each model at batch 1, beside the 64 of the agreement check.
BLOCKS = 5
CALLS = 3


def check_precision(precision: str) -> str:
    """``precision``, or :class:`UsageError` naming the choices."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def _view(photo: np.ndarray, left: float, top: float, width: float, height: float, flip: bool) -> np.ndarray:
    rows, columns = photo.shape[:2]
    x, y = round(left * columns), round(top * rows)
    view = photo[y:y + max(1, round(height * rows)), x:x + max(1, round(width * columns))]
    return np.ascontiguousarray(view[:, ::-1] if flip else view)


@cache
def photo_views() -> dict[str, tuple[str, list[np.ndarray]]]:
    """The photos shipped in ``zoo/data/photos`` (``photos.toml`` gives their sources and licences), by file:
    their role (``calibration`` or ``held``) and their views (4 of a calibration photo, 16 of a held one)."""
    from zoo import images

    folder = files("zoo") / "data" / "photos"
    listed = tomllib.loads((folder / "photos.toml").read_text(encoding="utf-8"))["photo"]
    found = {}
    for entry in listed:
        photo = images.decode((folder / entry["file"]).read_bytes(), entry["file"])
        views = CALIBRATION_VIEWS if entry["role"] == "calibration" else HELD_VIEWS
        found[entry["file"]] = (entry["role"], [_view(photo, *view) for view in views])
    return found


def zoo_photos() -> Photos:
    """The views of the zoo's photos (:func:`photo_views`) as calibration and held images."""
    views = photo_views().values()
    return Photos(calibration=[v for role, group in views if role == "calibration" for v in group],
                  held=[v for role, group in views if role == "held" for v in group])


def photos(spec: ModelSpec) -> Photos:
    """The spec's own calibration images (its ``calibration`` function) or the zoo's photos."""
    if spec.calibration is None:
        return zoo_photos()
    try:
        made = spec.calibration()
    except Exception as error:  # the plugin's code
        raise QuantizationError(f"model {spec.name!r}: its calibration function {callable_name(spec.calibration)} "
                                f"failed ({type(error).__name__}: {error}); use precision 'fp32'") from error
    if not isinstance(made, Photos) or not made.calibration or not made.held:
        raise QuantizationError(f"model {spec.name!r}: its calibration function {callable_name(spec.calibration)} "
                                f"must return zoo.plugin.Photos with calibration and held images, got {made!r}")
    return made


@cache
def _zoo_photos_fingerprint() -> str:
    """The zoo's photos' fingerprint from their files and the views taken of them, without decoding them."""
    folder = files("zoo") / "data" / "photos"
    digest = hashlib.sha256(repr((CALIBRATION_VIEWS, HELD_VIEWS)).encode())
    listing = (folder / "photos.toml").read_bytes()
    digest.update(listing)
    for entry in tomllib.loads(listing.decode("utf-8"))["photo"]:
        digest.update((folder / entry["file"]).read_bytes())
    return digest.hexdigest()[:16]


def calibration_key(spec: ModelSpec, plugin_version: str | None) -> dict[str, Any]:
    """What the int8 key records of the calibration and held images, without making them: the zoo's photos'
    fingerprint, or the spec's calibration function by its qualified name with its plugin's name and version
    (a function that makes other images needs another name or a new release). The images' own fingerprint
    is stored with the entry when it is built (:func:`measure`)."""
    if spec.calibration is None:
        return {"photos": _zoo_photos_fingerprint()}
    return {"function": callable_name(spec.calibration), "plugin": {"name": spec.plugin, "version": plugin_version}}


def limits(spec: ModelSpec) -> dict[str, Any]:
    """The spec's ``int8`` table over :data:`DEFAULTS`."""
    merged = {**DEFAULTS, **spec.int8}
    return {**merged, "exclude": list(merged["exclude"])}


def reduced_range(flags: str | None = None) -> bool:
    """Whether int8 weights should use 7 bits here: on an x86 CPU without VNNI, the u8s8 instructions
    onnxruntime falls back to add pairs of products in 16 bits, which saturate at full range.

    ``flags`` is the CPU's feature flags (from :func:`zoo._cpu.cpu_signature` when None); an
    x86 CPU whose flags cannot be read is taken to lack VNNI.
    """
    if flags is None:
        from zoo._cpu import cpu_signature

        if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
            return False
        flags = cpu_signature()
    return re.search(r"\b(avx512_vnni|avx_vnni|avx_vnni_int8)\b", flags) is None


def onnxruntime_version() -> str | None:
    """The installed onnxruntime's version, read without importing it (any of its distributions)."""
    return installed_version("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")


def key_inputs(spec: ModelSpec, precision: str, plugin_version: str | None = None) -> dict[str, Any] | None:
    """What an int8 file depends on beyond its float32 source (None for ``fp32``): the settings, the
    spec's limits and exclusions, its preprocessing (the calibration ranges are those of the
    preprocessed images), the calibration images (:func:`calibration_key`: no plugin code runs) and
    onnxruntime's version.
    """
    if check_precision(precision) == "fp32":
        return None
    return {"precision": precision, **SETTINGS, "reduce_range": reduced_range(), **limits(spec),
            "preprocess": spec.preprocess.to_dict() if spec.preprocess else None,
            "calibration": calibration_key(spec, plugin_version),
            "onnxruntime": onnxruntime_version()}


class _Reader:
    """onnxruntime's calibration data reader: one preprocessed image at a time."""

    def __init__(self, name: str, batches: Sequence[np.ndarray]) -> None:
        self.feeds = iter([{name: batch} for batch in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def quantize(spec: ModelSpec, source: Path, target: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Write the int8 version of the float32 file ``source`` to ``target``, a classifier's checked on the held images.

    ``settings`` are :func:`key_inputs`' for ``spec``. Returns the report stored with the
    entry (:func:`measure`'s). Raises :class:`QuantizationError` with the figures when a
    classifier's int8 model disagrees beyond the limits (another task's is compared by the
    agreement gate, :mod:`zoo.gate`).
    """
    report = measure(spec, source, target, settings)
    if "agreement" not in report:  # compared by its task at first open (the agreement gate)
        log.info("quantized %s to int8 in %.1f s, %.2fx float32's speed; its task compares its results with "
                 "float32's next", spec.name, report["seconds"], report["speedup"])
        return report
    problems = []
    if report["agreement"] < settings["min_agreement"]:
        problems.append(f"the top class agrees with float32 on {report['agreement']:.1%} of {report['held_images']} "
                        f"held images (at least {settings['min_agreement']:.1%} wanted; where they disagree, "
                        f"float32's top two classes were at most {report['flipped_margin']:.1%} of the outputs' range "
                        f"apart)")
    if report["max_difference"] > settings["max_difference"]:
        problems.append(f"an output moves by {report['max_difference']:.1%} of the outputs' range (at most "
                        f"{settings['max_difference']:.1%} allowed)")
    if problems:
        error = QuantizationError(
            f"model {spec.name!r}: the int8 model is refused: {'; and '.join(problems)}. Use {REFUSED_ADVICE}")
        error.report = report
        raise error
    log.info("quantized %s to int8 in %.1f s: top class agrees on %.1f%% of %d held images, %.2fx float32's speed "
             "(%.2fx to %.2fx over %d interleaved blocks)", spec.name, report["seconds"], 100 * report["agreement"],
             report["held_images"], report["speedup"], *report["speedup_range"], report["timing"]["blocks"])
    return report


def measure(spec: ModelSpec, source: Path, target: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Quantize ``source`` into ``target`` with ``settings`` and measure the result, refusing nothing.

    The report: the nodes kept in float, how many images calibrated and checked it and their
    fingerprint (:meth:`Photos.fingerprint`), the seconds it took, :func:`score_agreement`'s figures on
    the held images (a classifier's: :data:`CHECKED_AS_BUILT`), and :func:`speed`'s figures for one image
    on this machine.
    """
    from zoo.errors import last_line
    from zoo.runtime import OnnxRuntimeSession

    made = photos(spec)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix=".int8-", dir=target.parent) as work:
            input_name, excluded = _quantize(spec, made, source, Path(work) / "prepared.onnx", target, settings)
        seconds = time.perf_counter() - started
        checked = spec.task in CHECKED_AS_BUILT
        held = [spec.preprocess.apply([image]) for image in (made.held if checked else made.held[:1])]
        sessions = {"fp32": OnnxRuntimeSession(source), "int8": OnnxRuntimeSession(target)}
        outputs = {name: np.concatenate([session.run({input_name: batch})[spec.outputs[0]] for batch in held])
                   for name, session in sessions.items()} if checked else {}
        timed = speed(interleaved_ms({name: partial(session.run, {input_name: held[0]})
                                      for name, session in sessions.items()}))
    except QuantizationError:
        raise
    except Exception as error:  # onnx and onnxruntime raise many kinds
        raise QuantizationError(f"model {spec.name!r}: onnxruntime {onnxruntime_version()} could not quantize it "
                                f"({last_line(error)}); use precision 'fp32'") from error
    compared = {"held_images": len(held), **score_agreement(outputs["fp32"], outputs["int8"])} if checked else {}
    return {"excluded": excluded, "calibration_images": len(made.calibration),
            "calibration_fingerprint": made.fingerprint(), "seconds": round(seconds, 3), **compared, **timed}


def _quantize(spec: ModelSpec, made: Photos, source: Path, prepared: Path, target: Path,
              settings: dict[str, Any]) -> tuple[str, list[str]]:
    """Pre-process ``source`` into ``prepared`` (or copy it) and quantize that into ``target``: the graph's
    input name and the nodes kept in float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if settings["prepare"]:  # onnxruntime's advice: shape inference and graph optimisation first
        # ONNX's shape inference, not onnxruntime's symbolic one (for dynamic transformer shapes; it needs sympy)
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
    else:
        shutil.copyfile(source, prepared)
    graph = onnx.load(str(prepared), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise QuantizationError(f"model {spec.name!r}: int8 calibration feeds the image alone, but the graph "
                                f"takes {inputs}; use precision 'fp32'")
    excluded = sorted({node.name for node in graph.node
                       if any(fnmatch.fnmatchcase(node.name, pattern) for pattern in settings["exclude"])})
    kinds = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    reader = _Reader(inputs[0], [spec.preprocess.apply([image]) for image in made.calibration])
    quantize_static(
        prepared, target, reader, quant_format=getattr(QuantFormat, settings["format"]),
        per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
        activation_type=kinds[settings["activations"]], weight_type=kinds[settings["weights"]],
        nodes_to_exclude=excluded, op_types_to_quantize=settings["ops"] or None,
        calibrate_method=getattr(CalibrationMethod, settings["method"]))
    return inputs[0], excluded


def interleaved_ms(runs: Mapping[str, Callable[[], object]], blocks: int = BLOCKS,
                   calls: int = CALLS) -> dict[str, list[float]]:
    """Milliseconds per call of each of ``runs``, one figure per block: the median of ``calls`` timed calls in
    a row, after one untimed call (the other run's worker threads may still be spinning; it warms up too).

    The runs take turns block by block, for ``blocks`` rounds, the first of each round alternating, as
    ``bench/`` measures: both see the same load when another job or the clock speed changes meanwhile,
    so block ``i`` of one and block ``i`` of another can be compared.
    """
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(blocks):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            runs[name]()
            block = []
            for _ in range(calls):
                start = time.perf_counter()
                runs[name]()
                block.append(1000 * (time.perf_counter() - start))
            times[name].append(statistics.median(block))
    return times


def speed(blocks: Mapping[str, Sequence[float]], calls: int = CALLS) -> dict[str, Any]:
    """The speed figures stored with an int8 entry, from :func:`interleaved_ms`' ``fp32`` and ``int8`` blocks
    (of ``calls`` timed calls each): each model's median milliseconds over its blocks, float32's time over
    int8's in each round (the speed-up: its median, and its lowest and highest as ``speedup_range``), and
    how they were timed."""
    ratios = [fp32 / int8 for fp32, int8 in zip(blocks["fp32"], blocks["int8"], strict=True)]
    return {"fp32_ms": round(statistics.median(blocks["fp32"]), 3),
            "int8_ms": round(statistics.median(blocks["int8"]), 3),
            "speedup": round(statistics.median(ratios), 3),
            "speedup_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "timing": {"blocks": len(ratios), "calls": calls}}
