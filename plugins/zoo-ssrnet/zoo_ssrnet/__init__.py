"""zoo-ssrnet: SSR-Net age estimation (Yang et al., IJCAI 2018) as an onnx-zoo model.

Registers one model, ``ssrnet``: a 64x64 face crop in, an age in years with the interval
``[age - 2, age + 3]`` out (:class:`zoo.Regression`). The network (:mod:`zoo_ssrnet.net`)
loads the checkpoint of the PyTorch reimplementation https://github.com/oukohou/SSR_Net_Pytorch,
and the preprocessing is the OpenCV pipeline of the write-up that converted it to ONNX: the
image kept in BGR order, ``cv2.resize`` to 64x64 (bilinear, no antialiasing), scaled to
``[0, 1]`` and normalised with the ImageNet mean and std, applied to the B, G, R channels in
that order.

No download URL for those weights can be verified here, so the spec ships none. Give them
per call (``zoo.get("ssrnet", weights=FILE)``, ``zoo predict ssrnet IMAGE --weights FILE``;
a URL needs its sha256) or once in the environment:

* ``ZOO_SSRNET_WEIGHTS``: a checkpoint file, or an ``https://``/``http://``/``file://`` URL;
* ``ZOO_SSRNET_SHA256``: its sha256, required for a URL; a local file without it is hashed
  when the model is built (:class:`LocalWeights`), not when the plugin registers, which every
  ``zoo`` command does.

Registration imports neither torch nor numpy; :func:`build` and :func:`postprocess` do.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zoo

__version__ = "0.1.0"

NAME = "ssrnet"
TASK = "age-estimation"
#: Environment variables that configure the weights.
WEIGHTS_ENV = "ZOO_SSRNET_WEIGHTS"
SHA256_ENV = "ZOO_SSRNET_SHA256"
#: Where the weights come from: the reference implementation and its checkpoint.
REFERENCE = "https://github.com/oukohou/SSR_Net_Pytorch"
CHECKPOINT = "pretrained_model/model_Adam_MSELoss_LRDecay_weightDecay0.0001_batch50_lr0.0005_epoch90_64x64.pth"
PAPER = "https://www.ijcai.org/proceedings/2018/0150.pdf"
#: The interval around an estimate, in years, and the ages it is clipped to (seed: SSRNet with onnxruntime).
INTERVAL = (-2.0, 3.0)
AGE_LIMITS = (0.0, 100.0)

PREPROCESS = zoo.Preprocess(resize=(64, 64), interpolation="bilinear", antialias=False, scale=1 / 255,
                            mean=zoo.IMAGENET_MEAN, std=zoo.IMAGENET_STD, channels="BGR")

_URL_SCHEMES = ("https", "http", "file")


def how_to_give_weights(name: str = NAME) -> str:
    """Where to get the weights and the two ways to give them, for error messages."""
    return (f"get the checkpoint {CHECKPOINT} from {REFERENCE}, then pass it with each call (zoo predict {name} "
            f"IMAGE --weights FILE, or zoo.get({name!r}, weights='FILE'); a URL needs --sha256 / sha256=) or "
            f"configure it once with {WEIGHTS_ENV}=FILE (or a URL, with {SHA256_ENV}=<its sha256>)")


def missing_weights_message(name: str = NAME, problem: str | None = None) -> str:
    """The error for a build without weights: what went wrong and what to do next."""
    if problem:
        return f"model {name!r} cannot use the configured weights: {problem}. To give weights: {how_to_give_weights(name)}"
    return (f"model {name!r} has no default weights (no download URL for them can be verified): "
            f"{how_to_give_weights(name)}")


class LocalWeights(zoo.Artifact):
    """A checkpoint on this machine as a ``file://`` artifact whose sha256 is read from the file the first
    time it is asked for: when the model is built (the cache key holds it) or shown (``zoo info``).

    Registration only checks that the file exists. It equals a :class:`zoo.Artifact` of the same URL,
    sha256 and size; :class:`zoo.WeightsError` names the setting if the file cannot be read by then.
    """

    def __init__(self, path: Path) -> None:  # the dataclass's __init__ would need the sha256
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "url", path.as_uri())
        object.__setattr__(self, "size", None)

    @functools.cached_property
    def sha256(self) -> str:  # type: ignore[override]
        """The file's sha256, read once."""
        try:
            with open(self.path, "rb") as file:
                return hashlib.file_digest(file, "sha256").hexdigest()
        except OSError as error:
            raise zoo.WeightsError(missing_weights_message(problem=(
                f"{WEIGHTS_ENV} names {str(self.path)!r}, which cannot be read ({error.strerror or error})"))) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, zoo.Artifact):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.url, self.sha256, self.size))  # as an equal zoo.Artifact's


def weights_from_env(environ: Mapping[str, str] | None = None) -> tuple[zoo.Artifact | None, str | None]:
    """The weights that ``ZOO_SSRNET_WEIGHTS`` and ``ZOO_SSRNET_SHA256`` configure, and the problem with them.

    Returns ``(artifact, None)`` for a usable setting, ``(None, None)`` when nothing is set,
    and ``(None, problem)`` when the setting cannot be used (the problem is reported when
    the model is built, so that a bad setting never hides the model). A local file becomes
    a ``file://`` artifact: with the hash ``ZOO_SSRNET_SHA256`` gives, else a :class:`LocalWeights`
    (hashed when the model is built: nothing is read here).
    """
    env = os.environ if environ is None else environ
    value = env.get(WEIGHTS_ENV, "").strip()
    sha256 = env.get(SHA256_ENV, "").strip()
    if not value:
        if sha256:
            return None, f"{SHA256_ENV} is set but {WEIGHTS_ENV} is not: set {WEIGHTS_ENV} to the checkpoint's path or URL"
        return None, None
    if urlsplit(value).scheme in _URL_SCHEMES:
        if not sha256:
            return None, (f"{WEIGHTS_ENV} is the URL {value!r} but {SHA256_ENV} is not set: set it to the file's "
                          f"sha256 so that what is downloaded can be verified")
        url = value
    else:
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            what = "a directory, not a file" if path.is_dir() else "a file that does not exist"
            return None, f"{WEIGHTS_ENV} names {what}: {str(path)!r}; set it to the checkpoint file or a URL"
        if not sha256:
            return LocalWeights(path), None
        url = path.as_uri()
    try:
        return zoo.Artifact(url=url, sha256=sha256), None
    except zoo.SpecError as error:
        return None, f"{WEIGHTS_ENV}/{SHA256_ENV} do not make a valid weights file: {error.problem}"


def make_spec(environ: Mapping[str, str] | None = None) -> zoo.ModelSpec:
    """The ``ssrnet`` spec, with the weights the environment configures (if any)."""
    weights, problem = weights_from_env(environ)
    extra: dict[str, Any] = {"paper": PAPER, "reference": REFERENCE, "checkpoint": CHECKPOINT}
    if problem:
        extra["weights_problem"] = problem
    return zoo.ModelSpec(
        name=NAME,
        task=TASK,
        summary="SSR-Net age estimation on 64x64 BGR face crops (weights: SSR_Net_Pytorch, supplied by you)",
        license="unspecified",  # the reference repository states no licence for its code or weights
        homepage=REFERENCE,
        preprocess=PREPROCESS,
        weights=weights,
        build=build,
        postprocess=postprocess,
        outputs=("age",),
        # MegaAge-Asian test set, cumulative accuracy within 3 and 5 years, as the reference's README
        # reports for its first model (trained with MSE loss, the checkpoint's name says).
        metrics={"ca3": 0.4935, "ca5": 0.6902, "params": 44871},
        extra=extra,
    )


def build(spec: zoo.ModelSpec, weights: Path | None) -> Any:
    """The SSR-Net module for ``spec`` in eval mode with ``weights`` (a checkpoint file) loaded.

    Raises :class:`zoo.WeightsError` when there are no weights (saying where to get them),
    when the environment's setting is unusable, and when the file is not an SSR-Net checkpoint.
    """
    if weights is None:
        raise zoo.WeightsError(missing_weights_message(spec.name, spec.extra.get("weights_problem")))
    from zoo_ssrnet.net import SSRNet

    net = SSRNet()
    load_checkpoint(net, weights)
    return net.eval()


def load_checkpoint(net: Any, path: str | os.PathLike[str]) -> None:
    """Load an SSR-Net checkpoint into ``net``: a state dict, or ``{"state_dict": ...}`` as the reference saves it.

    :func:`zoo.load_weights` unwraps it, removes a ``module.`` prefix (``nn.DataParallel``),
    accepts absent BatchNorm ``num_batches_tracked`` counters (old PyTorch), and raises
    :class:`zoo.WeightsError` for any other difference in names or shapes.
    """
    zoo.load_weights(net, path, what=f"SSR-Net of {REFERENCE}")


def postprocess(spec: zoo.ModelSpec, outputs: Mapping[str, Any]) -> list[Any]:
    """A :class:`zoo.Regression` per image: the age, and ``[age - 2, age + 3]`` clipped to ``[0, 100]``, in years.

    The seed's C++ version stores the interval's bounds as integers (truncated); they are kept
    exact here.
    """
    import numpy as np

    ages = np.asarray(outputs[spec.outputs[0]], dtype=np.float64).reshape(-1)
    low, high = AGE_LIMITS
    return [zoo.Regression(value=float(age), low=float(np.clip(age + INTERVAL[0], low, high)),
                           high=float(np.clip(age + INTERVAL[1], low, high)), unit="years") for age in ages]


@zoo.hookimpl
def zoo_register_models(register):  # type: ignore[no-untyped-def]
    """Register ``ssrnet``, with the weights ``ZOO_SSRNET_WEIGHTS`` configures."""
    register(make_spec())
