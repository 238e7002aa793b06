"""PyTorch -> ONNX -> simplify -> check -> parity report. torch is imported inside, never at module level.

:func:`export` writes one ONNX file and returns an :class:`ExportReport`:

1. ``spec.build(spec, weights)`` gives the eval-mode module;
2. ``torch.onnx.export`` with the exporter and opset chosen explicitly (TorchScript,
   opset 17 by default: it accepts every model tried so far and takes under a second for
   small ones; ``dynamo`` is the alternative), input ``input``, the spec's output names,
   and a dynamic batch axis;
3. onnxsim, best effort: its result must pass ``onnx.checker``'s full check and the
   parity check; if it does not, the exported file is kept (and must pass both itself)
   and the report says why; models over 2 GB are not simplified;
4. parity: PyTorch against onnxruntime on random inputs and the given ``images`` (already
   preprocessed, e.g. a photo: random inputs alone can hide a divergence); the report
   holds the largest absolute and relative difference per output and, for outputs with a
   class axis, top-1 agreement. Beyond ``|onnx - torch| <= atol + rtol * scale``, where
   ``scale`` is the largest magnitude in that sample's output (a logit near zero next to
   logits of 10 need not match to 0.1% of itself): :class:`~zoo.errors.ExportError`
   naming the output and the numbers.

Models over 2 GB are saved with external data beside the file.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ExportError, ZooError
from zoo.spec import ModelSpec

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_EXPORTER = "torchscript"
DEFAULT_OPSET = 17
#: Protobuf's limit: larger models keep their weights in external data.
PROTOBUF_LIMIT = 2 * 1024**3


@dataclass
class OutputParity:
    """How far one ONNX output is from PyTorch's."""

    max_abs: float
    max_rel: float
    top1_agreement: float | None  # fraction of samples whose argmax agrees; None without a class axis


@dataclass
class ExportReport:
    exporter: str
    opset: int
    simplified: bool
    simplify_note: str
    samples: int
    parity: dict[str, OutputParity] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def versions() -> dict[str, str]:
    """The library versions an export depends on (part of the cache key)."""
    import onnx
    import onnxruntime
    import onnxsim
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxsim": onnxsim.__version__,
            "onnxruntime": onnxruntime.__version__}


def export(spec: ModelSpec, weights: Path | None, path: Path, *, exporter: str = DEFAULT_EXPORTER,
           opset: int | None = None, simplify: bool = True, samples: int = 2, seed: int = 0,
           images: np.ndarray | None = None) -> ExportReport:
    """Export ``spec`` (with ``weights``) to ``path`` and return the parity report.

    ``samples`` random inputs, and the batch ``images`` if given, are compared.
    """
    import onnx
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
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn((samples, *spec.preprocess.input_shape), generator=generator)
    if images is not None:
        inputs = torch.cat([inputs, torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))])
    with torch.inference_mode():
        expected = _as_outputs(module(inputs), spec)
    dummy = inputs[:1]
    tensors = [*module.parameters(), *module.buffers()]
    large = sum(t.numel() * t.element_size() for t in tensors) >= PROTOBUF_LIMIT
    try:
        if exporter == "dynamo":
            with contextlib.redirect_stdout(sys.stderr):  # its progress lines must not mix with --json output
                torch.onnx.export(module, (dummy,), str(path), dynamo=True, opset_version=opset,
                                  input_names=["input"], output_names=list(spec.outputs),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=large)
        else:
            with warnings.catch_warnings():
                # The deprecation notice is for torch users, not ours; tracer warnings (a Python
                # branch on a tensor) are what the parity check below exists to catch.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.onnx.export(module, (dummy,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                                  output_names=list(spec.outputs),
                                  dynamic_axes={name: {0: "batch"} for name in ("input", *spec.outputs)})
    except Exception as error:
        raise ExportError(f"exporting {spec.name!r} with the {exporter} exporter (opset {opset}) failed: "
                          f"{type(error).__name__}: {error}") from error
    batch = inputs.numpy()
    if not simplify:
        parity, note = None, "not requested"
    elif large:  # onnxsim works on one protobuf message, which cannot exceed 2 GB
        parity, note = None, "skipped: the model is over 2 GB"
    else:
        parity, note = _simplify(spec, path, batch, expected)
    simplified = parity is not None
    if parity is None:  # the exported file is kept: it must pass the checks itself
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as error:
            raise ExportError(f"the {exporter} exporter (opset {opset}) made an invalid ONNX file for {spec.name!r}: "
                              f"{type(error).__name__}: {error}") from error
        parity = _compare(spec, path, batch, expected)  # raises beyond tolerance
    return ExportReport(exporter=exporter, opset=opset, simplified=simplified, simplify_note=note,
                        samples=len(inputs), parity=parity, versions=versions())


def _as_outputs(result: Any, spec: ModelSpec) -> list[np.ndarray]:
    tensors = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(tensors) != len(spec.outputs):
        raise ExportError(f"model {spec.name!r} returns {len(tensors)} outputs but its spec names "
                          f"{len(spec.outputs)}: {list(spec.outputs)}")
    return [t.detach().float().numpy() for t in tensors]


def _run_onnx(path: Path, inputs: np.ndarray) -> list[np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": inputs})


def _compare(spec: ModelSpec, path: Path, inputs: np.ndarray, expected: list[np.ndarray]) -> dict[str, OutputParity]:
    """Per-output differences; raises :class:`ExportError` naming the first output beyond tolerance."""
    try:
        actual = _run_onnx(path, inputs)
    except Exception as error:
        raise ExportError(f"{spec.name!r}: onnxruntime cannot run the exported model on a batch of {len(inputs)}: "
                          f"{type(error).__name__}: {error}") from error
    parity = {}
    for name, want, got in zip(spec.outputs, expected, actual):
        if want.shape != got.shape:
            raise ExportError(f"{spec.name!r}: output {name!r} has shape {got.shape} in ONNX but {want.shape} "
                              f"in PyTorch")
        diff, scale = differences(got, want)
        max_abs = float(diff.max(initial=0.0))
        max_rel = float((diff / np.maximum(scale, np.finfo(np.float32).tiny)).max(initial=0.0))
        top1 = None
        if want.ndim == 2 and want.shape[1] > 1:
            top1 = float(np.mean(want.argmax(axis=1) == got.argmax(axis=1)))
        parity[name] = OutputParity(max_abs=max_abs, max_rel=max_rel, top1_agreement=top1)
        excess = diff - (spec.atol + spec.rtol * scale)
        if (excess > 0).any():
            worst = np.unravel_index(int(excess.argmax()), excess.shape)
            raise ExportError(
                f"{spec.name!r}: ONNX output {name!r} differs from PyTorch beyond tolerance "
                f"(atol {spec.atol:g}, rtol {spec.rtol:g}): max abs diff {max_abs:.3g}, max rel diff {max_rel:.3g}, "
                f"worst at index {tuple(int(i) for i in worst)} ({got[worst]:.6g} vs {want[worst]:.6g})"
                + (f", top-1 agreement {top1:.0%}" if top1 is not None else "")
            )
    return parity


def differences(got: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``|got - want|`` and, broadcast to it, each sample's scale: the largest ``|want|`` in that sample."""
    diff = np.abs(got.astype(np.float64) - want)
    magnitude = np.abs(want.astype(np.float64))
    if want.ndim < 2:
        return diff, np.broadcast_to(magnitude.max(initial=0.0), diff.shape)
    per_sample = magnitude.reshape(len(want), -1).max(axis=1, initial=0.0)
    return diff, np.broadcast_to(per_sample.reshape((-1,) + (1,) * (want.ndim - 1)), diff.shape)


def within_tolerance(got: np.ndarray, want: np.ndarray, spec: ModelSpec) -> bool:
    """Whether ``got`` matches ``want`` within ``spec``'s parity tolerance."""
    diff, scale = differences(got, want)
    return bool((diff <= spec.atol + spec.rtol * scale).all())


def _simplify(spec: ModelSpec, path: Path, inputs: np.ndarray,
              expected: list[np.ndarray]) -> tuple[dict[str, OutputParity] | None, str]:
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
        parity = _compare(spec, candidate, inputs, expected)
    except Exception as error:  # noqa: BLE001 - onnxsim is best effort by design
        candidate.unlink(missing_ok=True)
        return None, f"onnxsim failed ({type(error).__name__}: {error}); kept the unsimplified model"
    os.replace(candidate, path)
    return parity, "simplified with onnxsim"
