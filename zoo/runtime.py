"""Running an ONNX file: onnxruntime behind a small interface that the model uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: Execution providers used when present, in order of preference.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeSession:
    """An onnxruntime ``InferenceSession`` on one model file.

    ``providers`` defaults to CUDA when onnxruntime has it, else CPU; ``threads`` sets the
    intra-op thread count (default: onnxruntime's, one per physical core).
    """

    def __init__(self, path: Path, *, providers: list[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        available = onnxruntime.get_available_providers()
        chosen = providers or [p for p in PREFERRED_PROVIDERS if p in available]
        self.session = onnxruntime.InferenceSession(os.fspath(path), sess_options=options, providers=chosen)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses."""
        return list(self.session.get_providers())

    def run(self, batch: np.ndarray) -> dict[str, Any]:
        """Raw outputs for an input batch, by output name."""
        outputs = self.session.run(None, {self.input_name: batch})
        return dict(zip(self.output_names, outputs))
