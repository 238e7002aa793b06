"""Which weights a model is built with, and loading them without running pickled code.

``zoo.get(name, weights=...)`` accepts, besides a weights variant (resolved by the registry):

* ``None``: the spec's published weights;
* a local file (``str`` or :class:`os.PathLike`): a PyTorch checkpoint or ``.safetensors``;
* an ``https://``, ``http://`` or ``file://`` URL, with its ``sha256`` (a download without
  a hash could be anything);
* an :class:`~zoo.spec.Artifact`, or a file on the Hugging Face Hub: a :class:`~zoo.spec.HubFile`, or its
  ``hf://OWNER/NAME[@REVISION]/FILE``.

:func:`load_state_dict` is what a plugin's ``build`` calls on the file it is given:
``torch.load(weights_only=True)``, with no fallback to full unpickling (a checkpoint that
holds other Python objects is refused, since unpickling it could run any code), or
safetensors for ``*.safetensors`` files. It reads what training tools save: PyTorch
Lightning's ``.ckpt`` files and the checkpoints of torchvision's reference scripts (whose
``argparse.Namespace`` of arguments is the one class allowed besides torch's own).
:func:`load_weights` then finds the model's tensors under a prefix such as Lightning's
``model.``, and loads them as ``load_state_dict(strict=True)`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zoo.errors import SpecError, WeightsError
from zoo.spec import URL_SCHEMES, Artifact, HubFile

#: ``weights="random"``: the model's random initialisation, asked for explicitly (never a default).
RANDOM = "random"
#: What ``weights=`` resolves to: a file to fetch, a local file, random initialisation, or nothing.
WeightsSource = Artifact | HubFile | Path | str | None
#: Plain data classes that training scripts save beside the weights, allowed besides torch's own: torch's
#: weights-only unpickler makes one with ``cls.__new__`` and fills its ``__dict__``, calling none of its code.
#: torchvision's reference scripts save their arguments (``"args"``) as an ``argparse.Namespace``.
PLAIN_CLASSES: tuple[type, ...] = (argparse.Namespace,)
#: torch allows classes process-wide, and its context manager's exit disallows them: one load at a time.
_ALLOWING = threading.Lock()


def resolve(weights: str | os.PathLike[str] | Artifact | HubFile | None, sha256: str | None = None,
            default: Artifact | HubFile | None = None, variants: Sequence[str] = ()) -> WeightsSource:
    """Turn the ``weights=`` argument of :func:`zoo.get` into an artifact, a local path or :data:`RANDOM`.

    ``variants`` (the model's weights variants) are named when ``weights`` is neither one
    of them nor an existing file.
    """
    if weights is None or weights == RANDOM:
        if sha256 is not None:
            raise WeightsError("sha256= checks weights given with weights=; it means nothing on its own")
        return default if weights is None else RANDOM
    if isinstance(weights, Artifact | HubFile):
        return weights
    if isinstance(weights, str) and weights.startswith("hf://"):  # a file on the Hugging Face Hub
        if sha256:
            raise WeightsError("sha256= goes with a URL; a file on the Hub is verified by the Hub's own sha256")
        return HubFile.from_url(weights)
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

    Training scripts wrap it in many ways; this unwraps ``{"state_dict": ...}`` (PyTorch
    Lightning) and ``{"model": ...}`` (torchvision's reference scripts), also nested, and the
    ``module.`` prefix that ``DataParallel`` and ``DistributedDataParallel`` add. Raises
    :class:`~zoo.errors.WeightsError` for a checkpoint that holds anything but tensors,
    plain containers and :data:`PLAIN_CLASSES` (unpickling it could run any code), for a
    file that is not a checkpoint, and for one that holds no tensors.
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
        with _allowing(PLAIN_CLASSES):
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


@contextlib.contextmanager
def _allowing(classes: Iterable[type]) -> Iterator[None]:
    """torch's weights-only unpickler, also making ``classes`` (those that are not allowed already) meanwhile."""
    import torch

    with _ALLOWING:
        allowed = torch.serialization.get_safe_globals()
        with torch.serialization.safe_globals([cls for cls in classes if cls not in allowed]):
            yield


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

    What a plugin's ``build`` calls: :func:`load_state_dict`, then
    ``module.load_state_dict(strict=True)``, so that every checkpoint the module itself takes
    loads (BatchNorm's counters, absent from old checkpoints, are filled in by BatchNorm;
    frozen BatchNorm drops them). Where the checkpoint's keys are the model's behind a
    prefix (PyTorch Lightning's ``model.``, or any other), the prefix is removed and the keys
    that lack it (a LightningModule's other modules) are left out. A checkpoint that does not
    fit raises :class:`~zoo.errors.WeightsError` with a short message, ``module`` then partly
    loaded: missing and unexpected keys are counted and at most 10 of each named; a tensor of
    another shape is named with both shapes, and a head of another size (a model fine-tuned
    for other classes) says to pass the labels. ``what`` names the model in messages
    (default: the module's class).
    """
    state = load_state_dict(path)
    expected = module.state_dict()
    failure = f"{path} does not fit the model {what or type(module).__name__}"
    prefix = _prefix(state, expected, failure)
    if prefix:
        state = {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        removed = f"with {prefix!r} removed from its keys, " if prefix else ""
        raise WeightsError(f"{failure}: {removed}{_misfit(module, state, expected, error)}") from None
    return module


def _prefixes(key: str) -> Iterator[tuple[str, str]]:
    """Each way to split ``key`` into a leading part and the rest: ``("model.", "0.weight")``, ..."""
    parts = key.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i]) + ".", ".".join(parts[i:])


def _prefix(state: Mapping[str, Any], expected: Mapping[str, Any], failure: str) -> str:
    """The leading part of the checkpoint's keys behind which are all the model's keys; ``""`` for none.

    Every leading part of every key is tried; ``""`` where the keys as they are hold all the
    model's, or no leading part does. BatchNorm's counters do not count (BatchNorm fills in
    one that is missing). Two prefixes that both do (a teacher and a student of one
    architecture) raise :class:`~zoo.errors.WeightsError`, its message beginning with ``failure``.
    """
    needed = {key for key in expected if not key.endswith("num_batches_tracked")}
    if needed <= state.keys():
        return ""
    matches = Counter(prefix for key in state for prefix, rest in _prefixes(key) if rest in needed)
    complete = sorted(prefix for prefix, count in matches.items() if count == len(needed))
    if len(complete) > 1:
        raise WeightsError(f"{failure}: its keys are the model's under each of {', '.join(map(repr, complete))}; "
                           f"re-save the state_dict of the one you mean and pass that file")
    return complete[0] if complete else ""


def _misfit(module: Any, state: Mapping[str, Any], expected: Mapping[str, Any], error: RuntimeError) -> str:
    """Why ``module`` refused ``state`` with ``error``: its missing, unexpected and resized tensors, and what to do."""
    resized = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    try:
        loaded = module.load_state_dict({k: v for k, v in state.items() if k not in resized}, strict=False)
    except RuntimeError as refused:  # a module's own loading hook refused it: torch's words, on one line
        return " ".join(str(refused).split())
    missing = [k for k in loaded.missing_keys if k not in resized]
    problems = []
    if missing:
        problems.append(f"{len(missing)} of the model's {len(expected)} tensors are missing: {_some(missing)}")
    if loaded.unexpected_keys:
        problems.append(f"{len(loaded.unexpected_keys)} are not the model's: {_some(loaded.unexpected_keys)}")
    if resized:
        shapes = "; ".join(f"{k} is {list(state[k].shape)} instead of {list(expected[k].shape)}" for k in resized[:10])
        problems.append(f"{len(resized)} have another shape: {shapes}")
    leading = sorted(dict.fromkeys(prefix for key in state for prefix, _ in _prefixes(key)), key=lambda p: p.count("."))
    if leading and not any(key in expected for key in state):
        problems.append(f"removing a leading part from its keys does not make them the model's either (tried "
                        f"{_some([repr(prefix) for prefix in leading])}): is it a checkpoint of another model?")
    return "; ".join(problems or [" ".join(str(error).split())]) + _labels_hint(state, expected, resized)


def _labels_hint(state: Mapping[str, Any], expected: Mapping[str, Any], resized: Sequence[str]) -> str:
    """Where the last resized tensor is a head with another number of classes: to pass their names."""
    last = resized[-1] if resized else None
    if last is not None and state[last].ndim >= 1 and state[last].shape[0] != expected[last].shape[0] \
            and state[last].shape[1:] == expected[last].shape[1:]:
        return (f". If it was fine-tuned for {state[last].shape[0]} classes, pass their names: "
                f"labels=[...] in Python, --labels FILE on the command line")
    return ""


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
