"""PyTorch -> ONNX -> simplify -> check -> parity report. torch is imported inside, never at module level.

:func:`export` writes one ONNX file and returns an :class:`ExportReport`:

1. ``spec.build(spec, weights)`` gives the eval-mode module;
2. ``torch.onnx.export`` with the exporter and opset chosen explicitly (TorchScript,
   opset 17 by default: it accepts every model tried so far and takes under a second for
   small ones; ``dynamo`` is the alternative), the spec's input names (``input`` by
   default; the module's ``forward`` takes them in the spec's order) and output names, a
   dynamic batch axis where the outputs have one, and dynamic height and width where the
   preprocessing gives images their own size;
3. onnxsim, best effort: its result must pass ``onnx.checker``'s full check and the
   parity check; if it does not, the exported file is kept (and must pass both itself)
   and the report says why; models over 2 GB are not simplified;
4. parity: PyTorch against onnxruntime on random inputs and a photo (random inputs alone
   can hide a divergence), the photo at three sizes when the size is dynamic
   (:func:`parity_runs`); the report holds the largest absolute and relative difference
   per output and, for outputs with a class axis, top-1 agreement. Beyond
   ``|onnx - torch| <= atol + rtol * scale``, where ``scale`` is the largest magnitude in
   that sample's output (a logit near zero next to logits of 10 need not match to 0.1% of
   itself), or where the shapes differ (detections after NMS), the task compares the two
   as results (boxes matched by IoU, masks by agreement); if it finds a difference too:
   :class:`~zoo.errors.ExportError` naming the output and the numbers.

Models over 2 GB are saved with external data beside the file.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo._log import notice
from zoo._version import installed_versions
from zoo.errors import ExportError, UsageError, WeightsError, ZooError
from zoo.geometry import Geometry
from zoo.runtime import input_feeds
from zoo.spec import ModelSpec

if TYPE_CHECKING:
    from zoo.tasks import Task

log = logging.getLogger(__name__)

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_EXPORTER = "torchscript"
DEFAULT_OPSET = 17
#: Protobuf's limit: larger models keep their weights in external data.
PROTOBUF_LIMIT = 2 * 1024**3


@dataclass
class OutputParity:
    """How far one ONNX output is from PyTorch's."""

    max_abs: float | None  # None: compared as results (see note)
    max_rel: float | None
    top1_agreement: float | None  # fraction of samples whose argmax agrees; None without a class axis
    note: str = ""

    def worst(self, other: OutputParity) -> OutputParity:
        """The worse figures of two runs."""

        def worse(a: float | None, b: float | None, pick: Any = max) -> float | None:
            known = [v for v in (a, b) if v is not None]
            return pick(known) if known else None

        return OutputParity(max_abs=worse(self.max_abs, other.max_abs), max_rel=worse(self.max_rel, other.max_rel),
                            top1_agreement=worse(self.top1_agreement, other.top1_agreement, min),
                            note=self.note or other.note)


class OutputMismatch(ExportError):
    """An output's values (or shape) differ from PyTorch's beyond the spec's tolerance."""


@dataclass
class ExportReport:
    exporter: str
    opset: int
    simplified: bool
    simplify_note: str
    samples: int
    parity: dict[str, OutputParity] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    #: What each input's results held to compare (:func:`contents`: detections, masks, keypoints), in PyTorch.
    compared: list[dict[str, int]] = field(default_factory=list)

    @property
    def compared_nothing(self) -> bool:
        """Whether every input gave results with nothing in them (no detection anywhere): parity proved nothing."""
        return compared_nothing(self.compared)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "not_compared": self.compared_nothing}


def compared_nothing(compared: list[dict[str, int]]) -> bool:
    """Whether the counts of an export's parity inputs (``ExportReport.compared``) are all zero."""
    return any(compared) and not any(n for counts in compared for n in counts.values())


def contents(result: Any) -> dict[str, int]:
    """What one result holds that parity can compare: the detections, and those with masks and keypoints. Empty for
    results that always hold values (a class's scores, a class per pixel)."""
    if not hasattr(result, "boxes") or not hasattr(result, "__len__"):
        return {}
    counts = {"detections": len(result)}
    for part in ("masks", "keypoints"):
        if getattr(result, part, None) is not None:
            counts[part] = len(result)
    return counts


def versions() -> dict[str, str | None]:
    """The versions of the libraries that made an export, recorded in its report (the cache key has its own)."""
    return installed_versions(("torch", "onnx", "onnxsim", "onnxruntime"))


def export(spec: ModelSpec, weights: Path | None, path: Path, *, exporter: str = DEFAULT_EXPORTER,
           opset: int | None = None, simplify: bool = True, samples: int = 2, seed: int = 0,
           photo: np.ndarray | None = None, random_weights: bool = False, task: Task | None = None) -> ExportReport:
    """Export ``spec`` (with ``weights``) to ``path`` and return the parity report.

    ``samples`` random inputs, and ``photo`` (an RGB uint8 image) preprocessed by the spec,
    are compared; a model with a dynamic input size is compared on the photo at three sizes.
    Without ``weights``, a module that has parameters is refused (:class:`WeightsError`: it
    would predict from its random initialisation) unless ``random_weights`` asks for that.
    ``task`` (the spec's, from the registry) compares outputs of variable size as results and
    counts what each input's results hold; without it, outputs are compared value by value.
    """
    import torch

    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    if spec.build is None:
        raise ExportError(f"model {spec.name!r} has no build function to export from; it ships a prebuilt ONNX file")
    opset = opset or spec.opset or DEFAULT_OPSET
    try:
        module = spec.build(spec, weights)
    except ZooError:
        raise
    except Exception as error:
        raise ExportError(f"building the PyTorch model {spec.name!r} (plugin {spec.plugin or '-'}) with weights "
                          f"{weights} failed: {type(error).__name__}: {error}") from error
    if not isinstance(module, torch.nn.Module):
        raise ExportError(f"the build function of model {spec.name!r} (plugin {spec.plugin or '-'}) returned "
                          f"{type(module).__name__}, not a torch.nn.Module: it must return the eval-mode module")
    if weights is None and not random_weights and any(p.numel() for p in module.parameters()):
        raise WeightsError(f"model {spec.name!r} has no weights to export with (its spec names none), so it would "
                           f"predict from random initialisation: give a checkpoint with --weights FILE (weights=FILE "
                           f"in Python), or ask for random weights explicitly with --weights random")
    # Said once the weights are here and the model is built: a failed download or a refusal exports nothing.
    notice(log, "exporting %s to ONNX (%s exporter, opset %d); this is done once, then cached", spec.name, exporter,
           opset)
    runs = parity_runs(spec, samples, seed, photo)
    with torch.no_grad():  # not inference_mode: a module that caches a tensor on its first call (timm's ConViT)
        expected = [_as_outputs(module(*_tensors(feeds)), spec) for feeds, _ in runs]  # would keep one tracing refuses
    tensors = [*module.parameters(), *module.buffers()]
    large = sum(t.numel() * t.element_size() for t in tensors) >= PROTOBUF_LIMIT
    dummy = tuple(t[:1] for t in _tensors(runs[0][0]))
    try:
        _torch_export(module, dummy, spec, path, exporter, opset, large)
    except Exception as error:
        raise ExportError(f"exporting {spec.name!r} with the {exporter} exporter (opset {opset}) failed: "
                          f"{type(error).__name__}: {error}") from error
    if not simplify:
        parity, note = None, "not requested"
    elif large:  # onnxsim works on one protobuf message, which cannot exceed 2 GB
        parity, note = None, "skipped: the model is over 2 GB"
    else:
        parity, note = _simplify(spec, path, runs, expected, task)
    simplified = parity is not None
    if parity is None:  # the exported file is kept: it must pass the checks itself
        _check(spec, path, exporter, opset)
        parity = _compare(spec, path, runs, expected, task)  # raises beyond tolerance
    compared = [counts for (_, geometries), want in zip(runs, expected)
                for counts in _contents_of(spec, task, want, geometries)]
    return ExportReport(exporter=exporter, opset=opset, simplified=simplified, simplify_note=note,
                        samples=sum(len(g) for _, g in runs), parity=parity, versions=versions(), compared=compared)


def _torch_export(module: Any, dummy: tuple[Any, ...], spec: ModelSpec, path: Path, exporter: str, opset: int,
                  large: bool) -> None:
    """``torch.onnx.export`` with the spec's input and output names and its dynamic axes."""
    import torch

    names = list(spec.graph_inputs())
    axes = dynamic_axes(spec)
    if exporter == "dynamo":
        dims = {axis: torch.export.Dim(label, min=2 if label != "batch" else 1) for axis, label in axes.items()}
        shapes = tuple(dims if source == "image" else ({0: dims[0]} if 0 in dims else None)
                       for source in spec.graph_inputs().values())
        with contextlib.redirect_stdout(sys.stderr):  # its progress lines must not mix with --json output
            torch.onnx.export(module, dummy, str(path), dynamo=True, opset_version=opset, input_names=names,
                              output_names=list(spec.outputs), dynamic_shapes=shapes, external_data=large)
        return
    with warnings.catch_warnings():
        # The deprecation notice is for torch users, not ours; tracer warnings (a Python
        # branch on a tensor) are what the parity check below exists to catch.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        batch = {0: "batch"} if spec.batch_axis else {}
        named = {name: (axes if source == "image" else batch) for name, source in spec.graph_inputs().items()}
        named.update({name: batch for name in spec.outputs})
        torch.onnx.export(module, dummy, str(path), dynamo=False, opset_version=opset, input_names=names,
                          output_names=list(spec.outputs), dynamic_axes={k: v for k, v in named.items() if v})


def dynamic_axes(spec: ModelSpec) -> dict[int, str]:
    """The image input's dynamic axes: the batch (where outputs have one) and, for a dynamic size, height and width."""
    pre = spec.preprocess
    axes = {0: "batch"} if spec.batch_axis else {}
    if pre.dynamic:
        axes.update({2: "height", 3: "width"} if pre.layout == "NCHW" else {1: "height", 2: "width"})
    return axes


def parity_runs(spec: ModelSpec, samples: int = 2, seed: int = 0, photo: np.ndarray | None = None
                ) -> list[tuple[dict[str, np.ndarray], list[Geometry]]]:
    """The inputs an export is compared on, as runs of the graph: feeds by input name, and their geometries.

    A fixed-size model: one run of ``samples`` random inputs and the photo. A dynamic
    size: the photo at three sizes (and the random inputs at the first), each run alone,
    and, where the spec batches by padding, the three padded into one batch. A graph without
    a batch axis (such as a detector with its own NMS) gets no random inputs when there is a
    photo: on noise a detector's scores saturate into ties that NMS breaks by rounding.
    """
    pre = spec.preprocess
    samples = samples if spec.batch_axis or photo is None else 0
    generator = np.random.default_rng(seed)
    photos = [photo] if photo is not None else []
    if pre.dynamic and photo is not None:
        import cv2

        height, width = photo.shape[:2]
        photos += [cv2.resize(photo, (max(8, width // 2), max(8, height // 2)), interpolation=cv2.INTER_AREA),
                   cv2.resize(photo, (max(8, width * 3 // 4), max(8, height // 3)), interpolation=cv2.INTER_AREA)]
    prepared = [pre.transform(p) for p in photos]
    shape = tuple(d or 64 for d in pre.input_shape) if not prepared else prepared[0][0].shape
    for _ in range(samples):
        noise = generator.standard_normal(shape, dtype=np.float32)
        size = (shape[1], shape[2]) if pre.layout == "NCHW" else (shape[0], shape[1])
        prepared.insert(0, (noise, prepared[0][1] if prepared else Geometry.identity(*size)))
    one_at_a_time = not spec.batch_axis or pre.dynamic
    groups = [[item] for item in prepared] if one_at_a_time else [prepared]
    runs = [(input_feeds(spec.graph_inputs(), np.stack([t for t, _ in group]), [g for _, g in group]), [g for _, g in group])
            for group in groups]
    if pre.dynamic and pre.batching == "pad" and spec.batch_axis and len(photos) > 1:  # as predict batches them
        batch, geometries = pre.batch(photos)
        runs.append((input_feeds(spec.graph_inputs(), batch, geometries), geometries))
    return runs


def _tensors(fed: dict[str, np.ndarray]) -> list[Any]:
    import torch

    return [torch.from_numpy(value) for value in fed.values()]


def _check(spec: ModelSpec, path: Path, exporter: str, opset: int) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as error:
        raise ExportError(f"the {exporter} exporter (opset {opset}) made an invalid ONNX file for {spec.name!r}: "
                          f"{type(error).__name__}: {error}") from error


def _as_outputs(result: Any, spec: ModelSpec) -> list[np.ndarray]:
    tensors = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(tensors) != len(spec.outputs):
        raise ExportError(f"model {spec.name!r} returns {len(tensors)} outputs but its spec names "
                          f"{len(spec.outputs)}: {list(spec.outputs)}")
    return [t.detach().numpy() if not t.is_floating_point() else t.detach().float().numpy() for t in tensors]


def _run_onnx(path: Path, fed: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only, as the zoo's sessions
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, fed)


def _compare(spec: ModelSpec, path: Path, runs: list[tuple[dict[str, np.ndarray], list[Geometry]]],
             expected: list[list[np.ndarray]], task: Task | None) -> dict[str, OutputParity]:
    """Per-output differences over every run; raises :class:`ExportError` naming the first output beyond tolerance.

    Outputs are compared value by value; variable-length outputs (detections after NMS:
    shapes that differ, or a graph without a batch axis) that differ are compared as
    results by the task (boxes matched by IoU, masks by agreement).
    """
    parity: dict[str, OutputParity] = {}
    for (fed, geometries), want in zip(runs, expected):
        try:
            got = _run_onnx(path, fed)
        except Exception as error:
            raise ExportError(f"{spec.name!r}: onnxruntime cannot run the exported model on inputs of shapes "
                              f"{[v.shape for v in fed.values()]}: {type(error).__name__}: {error}") from error
        try:
            run_parity = {name: _compare_output(spec, name, w, g) for name, w, g in zip(spec.outputs, want, got)}
        except OutputMismatch as error:
            variable = not spec.batch_axis or any(w.shape != g.shape for w, g in zip(want, got))
            if not variable or not results_agree(spec, task, want, got, geometries):
                raise
            run_parity = {name: OutputParity(max_abs=None, max_rel=None, top1_agreement=None,
                                              note=f"compared as results: {error}")
                          for name in spec.outputs}
        for name, figures in run_parity.items():
            parity[name] = figures if name not in parity else parity[name].worst(figures)
    return parity


def _compare_output(spec: ModelSpec, name: str, want: np.ndarray, got: np.ndarray) -> OutputParity:
    if want.shape != got.shape:
        raise OutputMismatch(f"{spec.name!r}: output {name!r} has shape {got.shape} in ONNX but {want.shape} "
                             f"in PyTorch")
    diff, scale = differences(got, want)
    max_abs = float(diff.max(initial=0.0))
    max_rel = float((diff / np.maximum(scale, np.finfo(np.float32).tiny)).max(initial=0.0))
    top1 = None
    if (spec.batch_axis and want.ndim == 2 and want.shape[1] > 1 and len(want)  # rows of scores, not boxes
            and spec.task != "image-embedding"):  # nor vectors, whose largest value means nothing
        top1 = float(np.mean(want.argmax(axis=1) == got.argmax(axis=1)))
    excess = diff - (spec.atol + spec.rtol * scale)
    if (excess > 0).any():
        worst = np.unravel_index(int(excess.argmax()), excess.shape)
        raise OutputMismatch(
            f"{spec.name!r}: ONNX output {name!r} differs from PyTorch beyond tolerance "
            f"(atol {spec.atol:g}, rtol {spec.rtol:g}): max abs diff {max_abs:.3g}, max rel diff {max_rel:.3g}, "
            f"worst at index {tuple(int(i) for i in worst)} ({got[worst]:.6g} vs {want[worst]:.6g})"
            + (f", top-1 agreement {top1:.0%}" if top1 is not None else "")
        )
    return OutputParity(max_abs=max_abs, max_rel=max_rel, top1_agreement=top1)


def results_agree(spec: ModelSpec, task: Task | None, want: list[np.ndarray], got: list[np.ndarray],
                   geometries: list[Geometry], **tolerances: float) -> bool:
    """Whether the task, comparing the two sets of outputs postprocessed, finds them equal.

    ``tolerances`` go to the task's ``compare`` (such as a detector's ``score_tolerance``).

    Raises :class:`ExportError` naming the difference when they are not (the task's
    ``AssertionError`` as its cause); ``False`` means the
    task has no comparison. Detections are compared down to score 0, not only confident ones.
    """
    if task is None or task.compare is None:
        return False
    takes = [name for name, p in inspect.signature(task.compare).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(tolerances) - set(takes))
    if unknown:
        raise UsageError(f"the {task.name} comparison takes no tolerance {', '.join(map(repr, unknown))}; it takes "
                         f"{', '.join(takes) or 'none'}")
    results = [_results(spec, task, outputs, geometries) for outputs in (want, got)]
    try:
        for a, b in zip(*results):
            task.compare(a, b, spec, **tolerances)
    except AssertionError as error:
        raise ExportError(f"{spec.name!r}: ONNX results differ from PyTorch's ({task.name} comparison): {error}") from error
    return True


def _results(spec: ModelSpec, task: Any, outputs: list[np.ndarray], geometries: list[Geometry]) -> list[Any]:
    """One run's outputs postprocessed by the task, down to score 0 (every detection the graph returned)."""
    from zoo.tasks import accepted_options, postprocess

    options = accepted_options(spec, task)
    if "score_threshold" in options:
        options["score_threshold"] = 0.0
    wrap = (lambda v: v) if spec.batch_axis else (lambda v: v[None])
    return postprocess(spec, task, {n: wrap(v) for n, v in zip(spec.outputs, outputs)}, geometries, options)


def _contents_of(spec: ModelSpec, task: Task | None, outputs: list[np.ndarray],
                 geometries: list[Geometry]) -> list[dict[str, int]]:
    """What each input's results held (:func:`contents`); empty dicts where the task's results have no length."""
    if task is None or not hasattr(task.result, "__len__"):
        return [{} for _ in geometries]
    return [contents(result) for result in _results(spec, task, outputs, geometries)]


def differences(got: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``|got - want|`` and, broadcast to it, each sample's scale: the largest ``|want|`` in that sample."""
    diff = np.abs(got.astype(np.float64) - want)
    magnitude = np.abs(want.astype(np.float64))
    if want.ndim < 2:
        return diff, np.broadcast_to(magnitude.max(initial=0.0), diff.shape)
    per_sample = magnitude.reshape(len(want), math.prod(want.shape[1:])).max(axis=1, initial=0.0)  # may be empty
    return diff, np.broadcast_to(per_sample.reshape((-1,) + (1,) * (want.ndim - 1)), diff.shape)


def within_tolerance(got: np.ndarray, want: np.ndarray, spec: ModelSpec) -> bool:
    """Whether ``got`` matches ``want`` within ``spec``'s parity tolerance."""
    diff, scale = differences(got, want)
    return bool((diff <= spec.atol + spec.rtol * scale).all())


def _simplify(spec: ModelSpec, path: Path, runs: list[tuple[dict[str, np.ndarray], list[Geometry]]],
              expected: list[list[np.ndarray]], task: Task | None) -> tuple[dict[str, OutputParity] | None, str]:
    """Replace ``path`` by its onnxsim simplification if that checks and keeps parity.

    Returns the simplified model's parity (None if ``path`` was kept) and a note saying why.
    """
    import onnx
    import onnxsim

    candidate = path.with_name(path.name + ".sim")
    try:
        simplified, ok = onnxsim.simplify(onnx.load(str(path)))
        if not ok:
            return None, "onnxsim could not validate its result; kept the unsimplified model"
        onnx.save(simplified, str(candidate))
        onnx.checker.check_model(str(candidate), full_check=True)
        parity = _compare(spec, candidate, runs, expected, task)
    except Exception as error:  # noqa: BLE001 - onnxsim is best effort by design
        candidate.unlink(missing_ok=True)
        return None, f"onnxsim failed ({type(error).__name__}: {error}); kept the unsimplified model"
    os.replace(candidate, path)
    return parity, "simplified with onnxsim"
