"""What a server serves: each model under the name its URLs use, opened from a model's name, a cache entry or an ONNX
file, with :func:`zoo.get`'s arguments (your checkpoint, its labels, a precision).

On the command line (``zoo serve``), a model is written::

    resnet50                    the registered model, with its published weights
    resnet50=ft.pth             resnet50 with your checkpoint (a file, a URL with --sha256 for one model, or a tag)
    resnet18/97fcef0812ab34cd   one cache entry (``zoo cache list``), served as resnet18
    exported.onnx               an ONNX file, served under the name it describes itself with
    detector=exported.onnx      an ONNX file, served as detector

and a TOML file (``zoo serve --models FILE``) lists them with every argument, paths relative to it::

    [models.resnet50]
    weights = "runs/ft.pth"
    labels = "runs/labels.txt"     # class names, one a line (or a list)
    precision = "int8"

    [models.detector]
    model = "exported.onnx"        # what to open: a name, NAME/KEY or an ONNX file (default: the table's name)
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo._fields import MODEL_NAME_PATTERN
from zoo.errors import UsageError
from zoo.onnxfile import is_file

#: The arguments of :func:`zoo.get` a served model may set (those that choose what it is, not how it runs).
GET_ARGUMENTS = ("weights", "sha256", "labels", "precision", "opset", "exporter", "task", "preprocess")


@dataclass(frozen=True)
class Served:
    """One served model: ``name`` in its URLs, ``model`` what :func:`zoo.get` opens (a name, ``NAME/KEY`` or an ONNX
    file; default ``name``) and ``get`` the other arguments it is opened with."""

    name: str
    model: str = ""
    get: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model:
            object.__setattr__(self, "model", self.name)
        unknown = sorted(set(self.get) - set(GET_ARGUMENTS))
        if unknown:
            raise UsageError(f"served model {self.name!r}: {', '.join(unknown)} is not an argument it can be given; "
                             f"it takes {', '.join(GET_ARGUMENTS)}")


def from_text(text: str, *, sha256: str | None = None) -> Served:
    """A model as ``zoo serve`` takes it (see the module's docstring); ``sha256`` checks its ``=WEIGHTS``."""
    name, equals, value = text.strip().partition("=")
    name, value = name.strip(), value.strip()
    if is_file(text) and (not equals or "/" in name or os.sep in name):  # a file, whose path may hold a '='
        return Served(name="", model=text.strip())
    if equals and not (name and value):
        raise UsageError(f"{text!r}: write NAME=WEIGHTS (a checkpoint for the model NAME) or ALIAS=FILE.onnx")
    if not equals:
        return Served(name=name)
    if is_file(value):
        _check_alias(name, text)
        return Served(name=name, model=value)
    return Served(name=name, get={"weights": value, **({"sha256": sha256} if sha256 else {})})


def from_toml(path: str | os.PathLike[str]) -> list[Served]:
    """The models a TOML file lists (see the module's docstring), paths resolved against its folder."""
    path = Path(path)
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8")).get("models")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--models {os.fspath(path)!r} cannot be read ({getattr(error, 'strerror', None) or error})"
                         ) from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"--models {os.fspath(path)!r} is not valid TOML: {error}") from None
    if not isinstance(tables, dict) or not tables or not all(isinstance(t, dict) for t in tables.values()):
        raise UsageError(f"--models {os.fspath(path)!r} has no [models.NAME] table (one per served model)")
    found = []
    for name, table in tables.items():
        values = {key: _relative(key, value, path.parent) for key, value in table.items()}
        if isinstance(values.get("labels"), str):
            from zoo.model import read_labels

            values["labels"] = read_labels(values["labels"])
        model = values.pop("model", name)
        if model != name:
            _check_alias(name, f"[models.{name}] in {path}")
        try:
            found.append(Served(name=name, model=model, get=values))
        except UsageError as error:
            raise UsageError(f"{error} (in {path})") from None
    return found


def _check_alias(name: str, where: str) -> None:
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise UsageError(f"{where}: {name!r} cannot name a served model (lowercase letters, digits and . _ - between "
                         f"them, and one / after an owner's name)")


def _relative(key: str, value: Any, base: Path) -> Any:
    """A table's ``value`` for ``key``, a path resolved against ``base``: ``labels``, an ONNX file as ``model``, and
    ``weights`` that name a file there or a path (a tag, a variant's name or a URL stays as it is)."""
    if not isinstance(value, str) or "://" in value:
        return value
    path = Path(value).expanduser()
    if key == "labels" or key == "model" and is_file(value) or key == "weights" and (
            "/" in value or os.sep in value or (base / path).exists()):
        return str(base / path)
    return value
