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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zoo.errors import SpecError, WeightsError
from zoo.spec import URL_SCHEMES, Artifact

#: What ``weights=`` resolves to: a file to fetch, a local file, or nothing.
WeightsSource = Artifact | Path | None


def resolve(weights: str | os.PathLike[str] | Artifact | None, sha256: str | None = None,
            default: Artifact | None = None, variants: Sequence[str] = ()) -> WeightsSource:
    """Turn the ``weights=`` argument of :func:`zoo.get` into an artifact or a local path.

    ``variants`` (the model's weights variants) are named when ``weights`` is neither one
    of them nor an existing file.
    """
    if weights is None:
        if sha256 is not None:
            raise WeightsError("sha256= checks weights given with weights=; it means nothing on its own")
        return default
    if isinstance(weights, Artifact):
        return weights
    if isinstance(weights, str) and urlsplit(weights).scheme in URL_SCHEMES:
        if not sha256:
            raise WeightsError(f"weights URL {weights!r} needs its sha256, so that what arrives can be verified: "
                               f"pass --sha256 HEX on the command line, sha256='HEX' in Python")
        return _artifact(weights, sha256)
    path = Path(os.fspath(weights)).expanduser()
    if not path.is_file():
        if isinstance(weights, str) and not path.exists() and not path.suffix and os.sep not in weights \
                and "/" not in weights and variants:
            raise WeightsError(f"{weights!r} is neither a weights variant of this model nor a file; its variants: "
                               f"{', '.join(variants)} (a tag such as {variants[-1].partition('.')[2] or 'default'!r} "
                               f"also works)")
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

    Training scripts wrap it in many ways; this unwraps ``{"state_dict": ...}`` and
    ``{"model": ...}`` (also nested) and the ``module.`` prefix that ``DataParallel`` and
    ``DistributedDataParallel`` add. Raises :class:`~zoo.errors.WeightsError` for a
    checkpoint that holds anything but tensors and plain containers (unpickling it could
    run any code), for a file that is not a checkpoint, and for one that holds no tensors.
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
            raise WeightsError(f"{path} is not a PyTorch checkpoint ({reason}); is it truncated, an HTML page, or "
                               f"another format?") from None
        raise WeightsError(
            f"refusing to load {path}: it holds Python objects other than tensors ({reason}), and unpickling it "
            f"could run arbitrary code. Re-save its state_dict with torch.save, or as .safetensors, where you "
            f"trust it, and pass that file"
        ) from None
    except Exception as error:  # noqa: BLE001 - torch's legacy loader fails on other files with any error
        raise WeightsError(f"{path} is not a PyTorch checkpoint ({type(error).__name__}: {error}); is it truncated, "
                           f"or another format?") from None
    return _unwrap(data, path)


def _unwrap(data: Any, path: Path) -> dict[str, Any]:
    import torch

    for _ in range(3):
        if not isinstance(data, Mapping) or _is_state_dict(data):
            break
        inner = next((data[k] for k in ("state_dict", "model", "model_state_dict", "module")
                      if isinstance(data.get(k), Mapping)), None)
        if inner is None:
            break
        data = inner
    if not isinstance(data, Mapping) or not any(isinstance(v, torch.Tensor) for v in data.values()):
        found = type(data).__name__ if not isinstance(data, Mapping) else f"a mapping with keys {_some(list(data))}"
        raise WeightsError(f"{path} holds {found}, not a state dict (a mapping of parameter names to tensors)")
    keys = list(data)
    if all(isinstance(k, str) and k.startswith("module.") for k in keys):
        return {k.removeprefix("module."): v for k, v in data.items()}
    return dict(data)


def _is_state_dict(data: Mapping[Any, Any]) -> bool:
    import torch

    return bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def _some(keys: Sequence[Any], limit: int = 10) -> str:
    """At most ``limit`` keys, and how many more there are."""
    shown = ", ".join(map(str, keys[:limit]))
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(module: Any, path: str | os.PathLike[str], what: str | None = None) -> Any:
    """Load the checkpoint at ``path`` into ``module`` (a ``torch.nn.Module``) and return the module.

    What a plugin's ``build`` calls: :func:`load_state_dict`, then a strict load whose
    errors are short. Missing and unexpected keys are counted and at most 10 of each named;
    a tensor of another shape is named with both shapes, and a head of another size (a
    model fine-tuned for other classes) says to pass the labels. ``what`` names the model
    in messages (default: the module's class).
    """
    state = load_state_dict(path)
    expected = module.state_dict()
    # BatchNorm's num_batches_tracked counters are absent from checkpoints of old PyTorch versions.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    resized = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} of the model's {len(expected)} tensors are missing: {_some(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} are not the model's: {_some(unexpected)}")
    if resized:
        shapes = "; ".join(f"{k} is {list(state[k].shape)} instead of {list(expected[k].shape)}" for k in resized[:10])
        problems.append(f"{len(resized)} have another shape: {shapes}")
    if problems:
        hint = ""
        last = resized[-1] if resized else None
        if last is not None and state[last].ndim >= 1 and state[last].shape[0] != expected[last].shape[0] \
                and state[last].shape[1:] == expected[last].shape[1:]:
            hint = (f". If it was fine-tuned for {state[last].shape[0]} classes, pass their names: "
                    f"labels=[...] in Python, --labels FILE on the command line")
        raise WeightsError(f"{path} does not fit the model {what or type(module).__name__}: "
                           + "; ".join(problems) + hint)
    module.load_state_dict(state, strict=False)  # strict in all but the counters, checked above
    return module


def _unpickler_reason(message: str) -> str:
    """What torch's weights-only unpickler met, e.g. ``Unsupported global: GLOBAL posix.system``.

    Only that: torch's advice that follows (to allow the global, or to turn ``weights_only``
    off) is how a malicious file gets run, and is not repeated.
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error:"):
            rest = line.removeprefix("WeightsUnpickler error:").strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            return rest.split(" was not an allowed global")[0].split(". ")[0].strip() or "unknown"
    return lines[0].split(". ")[0] if lines else "unknown"
