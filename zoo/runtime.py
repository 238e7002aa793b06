"""Running an ONNX file: onnxruntime or OpenCV DNN behind one small interface.

A session takes a preprocessed input batch and returns the raw outputs by name.
onnxruntime is the default (CUDA used when onnxruntime has it, thread count configurable);
OpenCV's DNN module is the alternative that OpenCV-only deployments use.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from zoo.errors import ZooError

RUNTIMES = ("onnxruntime", "opencv")
#: Execution providers used when present, in order of preference.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


class Session(Protocol):
    """What a runtime provides to :class:`zoo.Model`."""

    name: str

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs, by name, for an input batch."""
        ...


class OnnxRuntimeSession:
    """An onnxruntime ``InferenceSession``; safe to call from several threads.

    ``providers`` defaults to CUDA when onnxruntime has it, else CPU; ``threads`` sets the
    intra-op thread count (default: onnxruntime's, one per physical core).
    """

    name = "onnxruntime"

    def __init__(self, path: Path, *, providers: list[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Worker threads spin inside a run (onnxruntime's default; turning it off cost resnet50
        # 2 ms of 42 here) but stop when the run ends: two sessions that kept spinning after
        # their runs, called in turn, slowed each other from 41 to 81 ms (bench/bench_predict.py).
        options.add_session_config_entry("session.force_spinning_stop", "1")
        available = onnxruntime.get_available_providers()
        chosen = providers or [p for p in PREFERRED_PROVIDERS if p in available]
        self.session = onnxruntime.InferenceSession(os.fspath(path), sess_options=options, providers=chosen)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses."""
        return list(self.session.get_providers())

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: batch})))


class OpenCvSession:
    """An OpenCV DNN network; calls are serialised, since a ``cv2.dnn.Net`` is not thread-safe."""

    name = "opencv"

    def __init__(self, path: Path, output_names: tuple[str, ...], *, threads: int | None = None) -> None:
        import cv2

        if threads:
            cv2.setNumThreads(threads)
        try:
            self.net = cv2.dnn.readNetFromONNX(os.fspath(path))
        except cv2.error as error:
            raise ZooError(f"OpenCV DNN cannot load {path}: {str(error).strip().splitlines()[-1]}; "
                           f"use runtime='onnxruntime'") from None
        self.output_names = list(output_names)
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            self.net.setInput(batch)
            outputs = self.net.forward(self.output_names)
        return dict(zip(self.output_names, outputs))


def open_session(path: Path, runtime: str, output_names: tuple[str, ...], *, providers: list[str] | None = None,
                 threads: int | None = None) -> Session:
    """A session of ``runtime`` (one of :data:`RUNTIMES`) on the model at ``path``."""
    if runtime == "onnxruntime":
        return OnnxRuntimeSession(path, providers=providers, threads=threads)
    if runtime == "opencv":
        if providers:
            raise ZooError("providers= selects onnxruntime execution providers; OpenCV DNN has none")
        return OpenCvSession(path, output_names, threads=threads)
    raise ZooError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
