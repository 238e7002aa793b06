"""zoo-ocr: PP-OCRv4 text detection and recognition (RapidOCR's ONNX files), and the ``ocr`` task.

Registers the task ``ocr``, whose result is :class:`~zoo_ocr.result.TextLines`, and four models (``models.toml``):
``ppocr-det`` (DB text detector), ``ppocr-cls`` (0 or 180 degrees), ``ppocr-rec`` (CTC recogniser, its characters
read from its ONNX file) and ``ppocr``, the pipeline of the three, which reproduces RapidOCR's. Their ONNX files are
members of the ``rapidocr-onnxruntime`` 1.4.4 wheel on PyPI, fetched once and verified by sha256.

Registration imports neither numpy nor OpenCV: the functions the specs name import them when they run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from zoo.plugin import ModelSpec, Task, hookimpl, load_specs
from zoo_ocr import det, result

__version__ = "0.1.0"

TASK = "ocr"


@hookimpl
def zoo_register_tasks(register: Callable[[Task], None]) -> None:
    """Register ``ocr``: text lines (polygon, text, score); its default postprocessing is the DB detector's."""
    options = {name: p.default for name, p in inspect.signature(det.postprocess).parameters.items()
               if p.default is not inspect.Parameter.empty}
    register(Task(TASK, result.TextLines, det.postprocess, options=options, compare=result.compare,
                  summary="lines of text: a four-point polygon each, with its text and a score"))


@hookimpl
def zoo_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register ``ppocr-det``, ``ppocr-cls``, ``ppocr-rec`` and ``ppocr``."""
    for spec in load_specs(Path(__file__).with_name("models.toml")):
        register(spec)
