"""Which weights a model is built with, and loading them without running pickled code.

``zoo.get(name, weights=...)`` accepts, besides a weights variant (resolved by the registry):

* ``None``: the spec's published weights;
* a local file (``str`` or :class:`os.PathLike`): a PyTorch checkpoint or ``.safetensors``;
* an ``https://``, ``http://`` or ``file://`` URL, with its ``sha256`` (a download without
  a hash could be anything);
* an :class:`~zoo.spec.Artifact`.

:func:`load_state_dict` is what a plugin's ``build`` calls on the file it is given:
``torch.load(weights_only=True)``, with no fallback to full unpickling (a checkpoint that
holds other Python objects is refused, since unpickling it could run any code), or
safetensors for ``*.safetensors`` files.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zoo.errors import SpecError, WeightsError
from zoo.spec import URL_SCHEMES, Artifact

#: What ``weights=`` resolves to: a file to fetch, a local file, or nothing.
WeightsSource = Artifact | Path | None


def resolve(weights: str | os.PathLike[str] | Artifact | None, sha256: str | None = None,
            default: Artifact | None = None) -> WeightsSource:
    """Turn the ``weights=`` argument of :func:`zoo.get` into an artifact or a local path."""
    if weights is None:
        if sha256 is not None:
            raise WeightsError("sha256= checks weights given with weights=; it means nothing on its own")
        return default
    if isinstance(weights, Artifact):
        return weights
    if isinstance(weights, str) and urlsplit(weights).scheme in URL_SCHEMES:
        if not sha256:
            raise WeightsError(f"weights URL {weights!r} needs its sha256: pass sha256='<hex digest>' so that "
                               f"what arrives can be verified")
        return _artifact(weights, sha256)
    path = Path(os.fspath(weights)).expanduser()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise WeightsError(f"weights file {str(path)!r} {what}; pass a checkpoint file, a URL with its sha256, "
                           f"or the tag of a weights variant ('zoo info NAME' lists them)")
    if sha256:
        from zoo.download import verify

        verify(path, _artifact(path.resolve().as_uri(), sha256))
    return path.resolve()


def _artifact(url: str, sha256: str) -> Artifact:
    try:
        return Artifact(url=url, sha256=sha256)
    except SpecError as error:
        raise WeightsError(f"weights {url!r}: {error}") from None


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a state dict from a PyTorch checkpoint or a ``.safetensors`` file, safely.

    Raises :class:`~zoo.errors.WeightsError` for a checkpoint that holds anything but
    tensors and plain containers, for a file that is not a checkpoint, and for one that
    holds no mapping. A top-level ``{"state_dict": {...}}`` wrapper is unwrapped.
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as error:  # safetensors raises its own SafetensorError and OSError
            raise WeightsError(f"{path} is not a valid safetensors file: {error}") from error
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(str(error))
        if "global" not in reason.lower():
            raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({reason}); is it truncated, an HTML "
                               f"page, or another format?") from None
        raise WeightsError(
            f"refusing to load {path}: it holds Python objects other than tensors ({reason}), and unpickling it "
            f"could run arbitrary code. If you trust its origin, re-save its state_dict with torch.save or as "
            f".safetensors and pass that file"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}); "
                           f"is it truncated, or another format?") from error
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping):
        raise WeightsError(f"{path} holds a {type(data).__name__}, not a state dict (a mapping of tensors)")
    return dict(data)


def _unpickler_reason(message: str) -> str:
    """The line of torch's weights-only error that says what it met, e.g. ``Unsupported global: ...``."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error:"):
            rest = line.removeprefix("WeightsUnpickler error:").strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else "unknown")
    return lines[0] if lines else "unknown"
