"""Checking that a plugin's models export: one row of results a model, for a plugin's ``check_exports.py``.

:func:`check` exports a spec (its build already giving perturbed random weights: :func:`zoo.testing.randomize`)
as ``zoo.get`` does (exporter, opset, onnxsim, PyTorch-vs-onnxruntime parity on random inputs and a photo),
times onnxruntime at batch 1, and runs the file in OpenVINO (float32) and OpenCV DNN against onnxruntime. :func:`check_in_child` runs
a script's ``--one NAME`` in a fresh interpreter, so that a native crash is one row, not the end of the run;
:func:`load` and :func:`append` keep the rows in a JSON-lines file, so an interrupted run resumes where it
stopped; :func:`unsupported` writes what a runtime cannot run (a plugin's ``runtimes.toml``).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo import export
from zoo.convert import sample_photo
from zoo.errors import ExportError
from zoo.registry import default_registry
from zoo.runtime import OnnxRuntimeSession, OpenCvSession
from zoo.spec import ModelSpec


def median_ms(run: Callable[[Any], Any], batch: Any, budget_s: float = 5.0, repeats: int = 5) -> float:
    """The median time of ``run(batch)`` in milliseconds, after a warm-up: ``repeats`` runs, fewer past ``budget_s``."""
    run(batch)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def check(spec: ModelSpec, workdir: Path, *, samples: int = 2, opencv: bool = True, openvino: bool | None = None,
          row: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Export ``spec`` into ``workdir`` and return its row (``row``: fields to start it with).

    ``exported`` says whether it exported with parity; ``error`` why not. The stage reached is printed
    (``stage: ...``), and the row so far before OpenCV runs (``partial: {...}``), for :func:`check_in_child`.
    """
    task = default_registry().task(spec.task)
    photo = sample_photo()
    tensor, geometry = spec.preprocess.transform(photo)
    found: dict[str, Any] = {"model": spec.name, "task": spec.task, "input": [int(d) for d in tensor.shape],
                             **(row or {})}
    path = workdir / "model.onnx"
    batch = {"input": tensor[None]}
    start = time.perf_counter()
    print("stage: export", flush=True)
    try:
        report = export.export(spec, None, path, samples=samples, photo=photo, random_weights=True, task=task)
    except Exception as error:  # noqa: BLE001 - the row records why
        found.update(exported=False, error=f"{type(error).__name__}: {error}"[:500])
        return found
    parity = report.parity[spec.outputs[0]]
    found.update(exported=True, export_s=round(time.perf_counter() - start, 1), simplified=report.simplified,
                 simplify_note=report.simplify_note, max_abs=parity.max_abs, max_rel=parity.max_rel,
                 top1=parity.top1_agreement, parity_note=parity.note,
                 size_mb=round(sum(f.stat().st_size for f in workdir.iterdir()) / 1e6, 1))
    print("stage: onnxruntime", flush=True)
    ort = OnnxRuntimeSession(path, providers=["CPUExecutionProvider"])
    reference = ort.run(batch)
    found["ort_ms"] = round(median_ms(ort.run, batch), 1)
    if openvino is None:  # where it is installed: a missing OpenVINO is no refusal of the model
        import importlib.util

        openvino = importlib.util.find_spec("openvino") is not None
    runtimes = {"openvino": openvino, "opencv": opencv}
    for runtime in (r for r, wanted in runtimes.items() if wanted):
        print(f"stage: {runtime}", flush=True)
        print("partial: " + json.dumps(found), flush=True)  # what a crash in the runtime must not lose
        found.update(_compare(runtime, spec, task, path, batch, reference, geometry))
    return found


def _open(runtime: str, spec: ModelSpec, path: Path) -> Any:
    if runtime == "opencv":
        return OpenCvSession(path, spec.outputs)
    from zoo.runtime_openvino import OpenVinoSession

    return OpenVinoSession(path)


def _compare(runtime: str, spec: ModelSpec, task: Any, path: Path, batch: dict[str, Any],
             reference: dict[str, Any], geometry: Any) -> dict[str, Any]:
    """``runtime``'s fields of a row: ``agrees``, ``differs`` or ``fails`` against onnxruntime's ``reference``
    outputs, with the largest difference, or the error."""
    try:
        got = _open(runtime, spec, path).run(batch)
        missing = [n for n in spec.outputs if n not in got]
        if missing:
            raise RuntimeError(f"no output {missing}")
    except Exception as error:  # noqa: BLE001 - the row records why
        lines = [line.strip(" >") for line in str(error).strip().splitlines() if line.strip(" >")]
        return {runtime: "fails", f"{runtime}_error": f"{type(error).__name__}: {' '.join(lines[-3:])}"[:300]}
    if spec.task == "image-classification" or len(spec.outputs) == 1:  # one tensor: compared as numbers
        name = spec.outputs[0]
        diff, scale = export.differences(got[name], reference[name])
        return {runtime: "agrees" if export.within_tolerance(got[name], reference[name], spec) else "differs",
                f"{runtime}_max_rel": float((diff / scale).max()),
                f"{runtime}_top1": bool((np.argmax(got[name], -1) == np.argmax(reference[name], -1)).all())}
    try:
        export.results_agree(spec, task, [reference[n] for n in spec.outputs], [got[n] for n in spec.outputs],
                             [geometry])
    except ExportError as error:
        return {runtime: "differs", f"{runtime}_error": str(error.__cause__)[:300]}  # the comparison's own words
    return {runtime: "agrees"}


def print_row(check: Callable[[str, Path], dict[str, Any]], name: str) -> None:
    """What ``SCRIPT --one NAME`` does for :func:`check_in_child`: ``check(name, folder)`` in a temporary folder, its
    row printed as the last line of output."""
    with tempfile.TemporaryDirectory(prefix="zoo-check-") as folder:
        print(json.dumps(check(name, Path(folder))), flush=True)


def check_in_child(script: str | Path, name: str, timeout: float | None = None) -> dict[str, Any]:
    """``python SCRIPT --one NAME`` in a fresh interpreter: its last line of output, the row. A process that dies
    (or runs past ``timeout`` seconds) is a row that says where: after the export, which runtime crashed."""
    command = [sys.executable, "-W", "ignore", str(script), "--one", name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
        stdout, stderr, code = done.stdout, done.stderr, str(done.returncode)
    except subprocess.TimeoutExpired as expired:
        stdout, stderr = (_text(expired.stdout), _text(expired.stderr))
        code = f"timed out after {timeout:g} s"
    lines = stdout.strip().splitlines()
    if code == "0" and lines:
        return json.loads(lines[-1])
    tail = " ".join(stderr.strip().splitlines()[-2:])[-300:]
    partial = [line for line in lines if line.startswith("partial: ")]
    if partial:  # exported and timed; a runtime took the process down
        row = json.loads(partial[-1].removeprefix("partial: "))
        runtime = next(line for line in reversed(lines) if line.startswith("stage:")).removeprefix("stage: ")
        row.update({runtime: "crashes", f"{runtime}_error": f"process died ({code}): {tail}"})
        return row
    stage = next((line for line in reversed(lines) if line.startswith("stage:")), "stage: start")
    return {"model": name, "exported": False, "input": [], "error": f"process died ({code}) in "
            f"{stage.removeprefix('stage: ')}: {tail}"}


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def load(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (none where it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def append(path: Path, row: Mapping[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(row) + "\n")


#: The runtimes' names in refusals.
SHOWN = {"opencv": "OpenCV DNN", "openvino": "OpenVINO"}


def refusal(runtime: str, row: Mapping[str, Any]) -> str | None:
    """Why ``runtime`` is refused for the model of ``row`` (None: it agrees with onnxruntime, or was not run)."""
    state, error, shown = row.get(runtime), row.get(f"{runtime}_error", ""), SHOWN[runtime]
    if state == "crashes":
        return f"{shown} crashes the process on this graph ({error.split(':')[0]})"
    if state == "fails":
        return f"{shown} cannot run this graph ({error})"
    if state == "differs":  # wrong answers are worse than none
        detail = error or f"largest difference {row.get(f'{runtime}_max_rel', 0):.1e} of the scale"
        return f"{shown} runs this graph but its results differ from onnxruntime's ({detail})"
    return None


def opencv_refusal(row: Mapping[str, Any]) -> str | None:
    """Why OpenCV DNN is refused for the model of ``row`` (:func:`refusal`)."""
    return refusal("opencv", row)


def openvino_refusal(row: Mapping[str, Any]) -> str | None:
    """Why OpenVINO is refused for the model of ``row`` (:func:`refusal`)."""
    return refusal("openvino", row)


def unsupported(rows: Sequence[Mapping[str, Any]], variants: Mapping[str, Sequence[str]], made_by: str,
                refusals: Mapping[str, Callable[[Mapping[str, Any]], str | None]] | None = None) -> str:
    """A ``runtimes.toml``: for each runtime of ``refusals`` (default: OpenCV and OpenVINO), the models it is refused for, and
    why, every variant of their graph (``variants``: a row's model -> the names it stands for); ``made_by`` names
    the command."""
    lines = [f"# Written by {made_by}; do not edit by hand.",
             "# Runtimes known not to run a model, and what happens: zoo.get refuses them before building."]
    latest = {row["model"]: row for row in rows}  # a model checked again: its last row
    for runtime, why in (refusals or {"opencv": opencv_refusal, "openvino": openvino_refusal}).items():
        lines.append(f"[{runtime}]")
        for row in sorted(latest.values(), key=lambda r: r["model"]):
            reason = why(row)
            if reason is not None:
                lines += [f"{json.dumps(name)} = {json.dumps(reason)}" for name in variants.get(row["model"],
                                                                                              [row["model"]])]
    return "\n".join(lines) + "\n"
