"""Model specs from a TOML file: a data-only plugin, or the description of an ONNX file beside it.

One table per model, holding the :class:`~zoo.spec.ModelSpec` fields::

    [models.digits]
    task = "image-classification"
    summary = "handwritten digits"
    labels = "labels.txt"            # a list of names, or a text file of them, one a line
    outputs = ["logits"]

    [models.digits.preprocess]        # the Preprocess fields
    channels = "GRAY"
    resize = [8, 8]
    scale = 0.00392156862745098

    [models.digits.onnx]              # an Artifact: ``file`` (beside the TOML file) or ``url``, and sha256
    file = "digits.onnx"
    sha256 = "317735083b488cfc107653aa769fe43c24abe82752ad86d142b35db68bd23530"

``weights`` is an artifact table too. Functions (``build``, ``postprocess``, ``run``,
``calibration``) are named as ``"package.module:function"`` and imported when the file is
read. Relative files are resolved against the TOML file; lists become tuples. Every error
is a :class:`~zoo.errors.SpecError` naming the file, the model and the field.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from zoo.errors import SpecError
from zoo.preprocess import Preprocess
from zoo.spec import Artifact, ModelSpec

#: The fields that name a function, ``"package.module:function"``.
FUNCTIONS = ("build", "postprocess", "run", "calibration")
ARTIFACTS = ("weights", "onnx")


def load_specs(path: str | os.PathLike[str]) -> list[ModelSpec]:
    """The model specs of the TOML file at ``path``, in the file's order (see the module's docstring)."""
    path = Path(path)
    specs = []
    for name, table in read_tables(path).items():
        try:
            specs.append(spec_from_table(name, table, path.parent))
        except SpecError as error:
            raise SpecError(error.field, f"{error.problem} (in {path}, [models.{name}])", model=name) from None
    return specs


def read_tables(path: Path) -> dict[str, dict[str, Any]]:
    """The ``[models.NAME]`` tables of the TOML file at ``path``, by name, as TOML gives them."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError("file", f"{path} cannot be read ({getattr(error, 'strerror', None) or error})") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError("file", f"{path} is not valid TOML: {error}") from None
    models = data.get("models")
    if not isinstance(models, dict) or not models or not all(isinstance(t, dict) for t in models.values()):
        raise SpecError("models", f"{path} has no [models.NAME] table (one per model, holding its spec's fields)")
    return models


def spec_from_table(name: str, table: Mapping[str, Any], base: Path) -> ModelSpec:
    """One :class:`ModelSpec` from its TOML table; relative files are resolved against ``base``."""
    known = {f.name for f in fields(ModelSpec)} - {"name", "plugin"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise SpecError(unknown[0], f"is not a field of a model spec; the fields are {', '.join(sorted(known))}")
    values: dict[str, Any] = {key: _tuples(value) for key, value in table.items()}
    if isinstance(values.get("preprocess"), Mapping):
        values["preprocess"] = Preprocess.from_dict(values["preprocess"])
    if isinstance(values.get("labels"), str):
        values["labels"] = labels_file(base / values["labels"])
    if isinstance(values.get("labels_from"), str) and values["labels_from"].startswith("file:"):
        values["labels_from"] = f"file:{(base / values['labels_from'][5:]).resolve()}"  # read when looked up
    for key in ARTIFACTS:
        if isinstance(values.get(key), Mapping):
            values[key] = _artifact(values[key], base, key)
    for key in FUNCTIONS:
        if isinstance(values.get(key), str):
            values[key] = _function(values[key], key)
    return ModelSpec(name=name, **values)


def _tuples(value: Any) -> Any:
    """TOML's lists as tuples, inside tables too."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    return value


def labels_loaded(spec: ModelSpec) -> ModelSpec:
    """``spec`` with the labels of its ``labels_from = "file:PATH"`` read (each file once), as it is looked up."""
    if spec.labels_from is None or not spec.labels_from.startswith("file:"):
        return spec
    try:
        labels = labels_file(spec.labels_from[5:])
    except SpecError as error:
        raise SpecError("labels_from", error.problem, model=spec.name, plugin=spec.plugin) from None
    return dataclasses.replace(spec, labels=labels, labels_from=None)


@functools.lru_cache(maxsize=64)
def labels_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The labels in a text file, one a line (blank lines and surrounding spaces ignored); each file read once."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError("labels", f"names the file {os.fspath(path)}, which cannot be read "
                                  f"({getattr(error, 'strerror', None) or error})") from None
    return tuple(line.strip() for line in lines if line.strip())


def _artifact(table: Mapping[str, Any], base: Path, key: str) -> Artifact:
    """An artifact table: ``file`` (relative to ``base``) or ``url``, with ``sha256`` and optionally ``size``."""
    values = dict(table)
    if "file" in values:
        if "url" in values:
            raise SpecError(f"{key}.file", "and url both name the file; give one of them")
        values["url"] = (base / str(values.pop("file"))).resolve().as_uri()
    return Artifact.from_dict(values, key)


def _function(reference: str, key: str) -> Any:
    """The function ``"package.module:function"`` names."""
    module, _, attribute = reference.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise SpecError(key, f"names {reference!r}, which cannot be imported ({error}); write "
                             f"'package.module:function'") from None
