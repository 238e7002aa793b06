"""``image-embedding``: a vector per image (its features), to compare images by similarity.

The result is :class:`Embedding`, a float32 vector. The default postprocessing reads it from
the graph's outputs, by name (``rename_outputs`` maps a graph's names to these):

* ``embedding``, ``(batch, D)``: the network's own pooled embedding, such as a classifier's
  pre-logits features (the input of its last layer); a graph with neither ``embedding`` nor
  ``features`` has its first output read as the embedding;
* ``features``, optional: the unpooled features, a feature map ``(batch, C, H, W)`` or a
  sequence of tokens ``(batch, N, C)``, which the ``pool`` option pools.

Options: ``pool`` (:data:`POOLS`): ``head`` (default) takes ``embedding`` as the network made
it; ``avg`` and ``max`` pool ``features`` over its positions (a token sequence's first
``prefix_tokens`` left out, as the spec's ``decode`` table says: class, register and
distillation tokens); ``token`` takes the first token of a sequence (the class token, where
``prefix_tokens`` says there is one). A
model without ``features`` takes only ``head``. ``normalize`` (default False, the vector as
the network computes it) scales each vector to unit L2 norm, so that a dot product is the
cosine similarity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo._fields import set_field
from zoo.errors import SpecError, UsageError
from zoo.tasks import _draw, require

if TYPE_CHECKING:
    import numpy as np

    from zoo.geometry import Geometry
    from zoo.spec import ModelSpec

#: The options ``predict`` takes for embedding models, with their defaults.
OPTIONS = {"pool": "head", "normalize": False}
#: What ``pool`` takes: the network's own embedding, or ``features`` averaged, maxed, or its first token.
POOLS = ("head", "avg", "max", "token")
#: The ends of the strip's colour scale (RGB): negative values blue, positive red, zero white.
_NEGATIVE, _POSITIVE = (33, 102, 172), (178, 24, 43)


@dataclass(frozen=True)
class Embedding:
    """One image's embedding: ``vector``, a 1-D float32 array of ``dim`` values."""

    vector: np.ndarray

    def __post_init__(self) -> None:
        import numpy as np

        vector = np.asarray(self.vector, np.float32)
        if vector.ndim != 1:
            raise ValueError(f"an embedding is a vector (one axis), got shape {vector.shape}")
        set_field(self, "vector", vector)

    @property
    def dim(self) -> int:
        """The number of values."""
        return int(self.vector.shape[0])

    @property
    def norm(self) -> float:
        """The vector's L2 norm (1.0 for an embedding predicted with ``normalize=True``)."""
        import numpy as np

        return float(np.linalg.norm(self.vector.astype(np.float64)))

    def normalized(self) -> Embedding:
        """This embedding scaled to unit L2 norm (a zero vector stays zero)."""
        return Embedding(_unit(self.vector[None])[0])

    def cosine(self, other: Embedding | np.ndarray) -> float:
        """The cosine similarity with ``other`` (an embedding or a vector of as many values), in [-1, 1]."""
        import numpy as np

        theirs = other.vector if isinstance(other, Embedding) else np.asarray(other, np.float32).reshape(-1)
        if theirs.shape != self.vector.shape:
            raise ValueError(f"cannot compare an embedding of {self.dim} values with one of {theirs.shape[0]}")
        return _cosine(self.vector, theirs)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: ``{"embedding": [...], "dim": D, "norm": ...}``, each value written with the fewest digits
        that read back as the same float32."""
        return {"embedding": _shortest(self.vector), "dim": self.dim, "norm": _shortest([self.norm])[0]}

    def summary(self) -> str:
        """One line: the dimension, the norm and the first values, ``512-d, norm 23.41: [0.0123, -0.456, ...]``."""
        first = ", ".join(f"{v:.4g}" for v in self.vector[:4].tolist())
        more = ", ..." if self.dim > 4 else ""
        return f"{self.dim}-d, norm {self.norm:.4g}: [{first}{more}]"

    def strip(self, width: int | None = None, height: int = 16) -> np.ndarray:
        """The vector as a colour strip, an RGB uint8 array ``(height, width)``: a column per value (``width``
        None: ``dim``), or, narrower, the mean of the values each column covers; blue below zero, white at zero,
        red above, the value of the largest magnitude at full colour."""
        import numpy as np

        width = self.dim if width is None else int(width)
        if width < 1 or height < 1:
            raise ValueError(f"a strip is at least 1x1 pixels, got {width}x{height}")
        values = self.vector.astype(np.float64)
        if not len(values):
            return np.full((height, width, 3), 255, np.uint8)
        starts = (np.arange(width) * len(values)) // width
        counts = np.diff(np.append(starts, len(values)))
        columns = np.add.reduceat(values, starts) / np.maximum(counts, 1)  # a repeated start gives that value alone
        peak = float(np.abs(values).max())
        t = np.clip(columns / peak, -1.0, 1.0) if peak > 0 else np.zeros(width)
        ends = np.where((t < 0)[:, None], np.asarray(_NEGATIVE, np.float64), np.asarray(_POSITIVE, np.float64))
        row = 255.0 * (1 - np.abs(t))[:, None] + ends * np.abs(t)[:, None]
        return np.repeat(row.round().astype(np.uint8)[None], height, axis=0)

    def draw(self, image: Any) -> np.ndarray:
        """An RGB uint8 copy of ``image`` with :meth:`strip` across its bottom and the dimension and norm above it."""
        canvas = _draw.canvas(image)
        height, width = canvas.shape[:2]
        strip_height = min(height, max(6, round(height * 0.08)))
        canvas[height - strip_height:] = self.strip(width, strip_height)
        _draw.label(canvas, f"{self.dim}-d, norm {self.norm:.3g}", 4, height - strip_height - 2, (40, 40, 40))
        return canvas


def postprocess(spec: ModelSpec, outputs: Mapping[str, np.ndarray], geometries: list[Geometry],
                pool: str = "head", normalize: bool = False) -> list[Embedding]:
    """The task's default: each image's vector (:func:`vectors`), scaled to unit length with ``normalize``."""
    import numpy as np

    if not isinstance(normalize, (bool, np.bool_)):
        raise UsageError(f"model {spec.name!r}: option 'normalize' is true or false, got {normalize!r}")
    found = vectors(spec, outputs, pool)
    if normalize:
        found = _unit(found)
    return [Embedding(row) for row in found]


def vectors(spec: ModelSpec, outputs: Mapping[str, np.ndarray], pool: str = "head") -> np.ndarray:
    """The ``(batch, D)`` float32 embeddings that ``pool`` reads from the outputs (see the module's docstring).

    An unknown ``pool``, or one that needs ``features`` where the graph has none, is a
    :class:`~zoo.errors.UsageError` naming the model and the choices it has.
    """
    import numpy as np

    if pool not in POOLS:
        raise UsageError(f"model {spec.name!r}: option 'pool' must be one of {_choices(POOLS)}; got {pool!r}")
    has_features = "features" in outputs
    if pool == "head":
        if "embedding" in outputs or not has_features:
            values = np.asarray(outputs["embedding"] if "embedding" in outputs else next(iter(outputs.values())))
            return values.reshape(len(values), -1).astype(np.float32, copy=False)
        raise UsageError(f"model {spec.name!r} has no pooled 'embedding' output, only the unpooled 'features': "
                         f"choose pool {_choices(POOLS[1:])}")
    if not has_features:
        raise UsageError(f"model {spec.name!r} has no 'features' output to pool, so it takes only pool 'head'; "
                         f"got pool {pool!r}")
    features = np.asarray(outputs["features"], np.float32)
    if features.ndim == 4:  # (batch, C, H, W)
        if pool == "token":
            raise UsageError(f"model {spec.name!r}: its features are a map of shape {features.shape[1:]} "
                             f"(channels, height, width), not tokens: choose pool {_choices(POOLS[:3])}")
        return features.mean(axis=(2, 3)) if pool == "avg" else features.max(axis=(2, 3))
    if features.ndim == 3:  # (batch, N, C)
        if pool == "token":
            if not prefix_tokens(spec):  # the first token is a patch's, not a summary of the image
                raise UsageError(f"model {spec.name!r} has no class token (its decode table's prefix_tokens is 0): "
                                 f"choose pool {_choices(POOLS[:3])}")
            return features[:, 0]
        tokens = features[:, prefix_tokens(spec):]
        if tokens.shape[1] == 0:
            raise SpecError("decode.prefix_tokens", f"leaves no token of the {features.shape[1]} of 'features' to "
                                                    f"pool", model=spec.name, plugin=spec.plugin)
        return tokens.mean(axis=1) if pool == "avg" else tokens.max(axis=1)
    raise SpecError("outputs", f"'features' is (batch, channels, height, width) or (batch, tokens, channels), got "
                               f"shape {features.shape}", model=spec.name, plugin=spec.plugin)


def prefix_tokens(spec: ModelSpec) -> int:
    """How many leading tokens of a token sequence ``avg`` and ``max`` leave out: the ``decode`` table's
    ``prefix_tokens`` (class, register and distillation tokens), 0 when it has none."""
    return int(check_decode(spec.decode).get("prefix_tokens", 0))


def check_decode(decode: Mapping[str, Any]) -> Mapping[str, Any]:
    """Validate an embedding model's ``decode`` table: only ``prefix_tokens``, a whole number of at least 0."""
    unknown = sorted(set(decode) - {"prefix_tokens"})
    if unknown:
        raise SpecError(unknown[0], "is not a key of an embedding model's decode table; it takes prefix_tokens "
                                    "(the leading tokens of 'features' that avg and max pooling leave out)")
    value = decode.get("prefix_tokens", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError("prefix_tokens", f"is a whole number of at least 0 (the class, register and distillation "
                                         f"tokens before the patches), got {value!r}")
    return dict(decode)


def compare(want: Embedding, got: Embedding, spec: ModelSpec | None = None, *, tolerance: float | None = None,
            min_cosine: float = 0.9999) -> dict[str, float]:
    """As many values, differing by at most ``tolerance`` of ``want``'s length (default: the spec's ``atol + rtol``),
    and a cosine similarity of at least ``min_cosine``."""
    import numpy as np

    require(want.dim == got.dim, f"an embedding of {got.dim} values instead of {want.dim}")
    difference = got.vector.astype(np.float64) - want.vector
    relative = float(np.linalg.norm(difference) / max(want.norm, np.finfo(np.float32).tiny))
    cosine = _cosine(want.vector, got.vector)
    limit = tolerance if tolerance is not None else (spec.atol + spec.rtol if spec is not None else 1.1e-3)
    require(relative <= limit, f"the embeddings differ by {relative:.3g} of the vector's length (at most {limit:g})")
    require(cosine >= min_cosine, f"cosine similarity {cosine:.6f} (at least {min_cosine:g})")
    return {"relative_difference": relative, "cosine": cosine, "max_abs": float(np.abs(difference).max(initial=0.0))}


def _unit(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm, in float32; a zero row stays zero."""
    import numpy as np

    rows = np.asarray(rows, np.float32)
    norms = np.linalg.norm(rows.astype(np.float64), axis=1, keepdims=True)
    return (rows / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The cosine similarity of two vectors; 1.0 for two zero vectors, 0.0 for one."""
    import numpy as np

    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    if norms == 0:
        return 1.0 if not a64.any() and not b64.any() else 0.0
    return float(np.clip(a64 @ b64 / norms, -1.0, 1.0))


def _shortest(values: Any) -> list[float]:
    """Floats as JSON numbers: each float32 value with the fewest digits that read back as it (``0.1``, not
    ``0.10000000149011612``); non-finite values are refused."""
    import numpy as np

    array = np.asarray(values, np.float32)
    if not np.isfinite(array).all():
        raise ValueError("an embedding holds NaN or infinite values, which JSON cannot carry")
    return [float(str(v)) for v in array]


def _choices(pools: tuple[str, ...]) -> str:
    return ", ".join(repr(p) for p in pools)


def agreement(want: Sequence[Embedding], got: Sequence[Embedding]) -> dict[str, float]:
    """How far a reduced precision's embeddings (``got``) are from float32's (``want``), one pair per held image.

    Figures: ``agreement``, the fraction of images whose ``got`` vector is nearest, by cosine
    similarity among all the ``want`` vectors, to its own (a tie counts as its own);
    ``max_difference``, 1 - the lowest cosine similarity of an image's two vectors (0 for no
    images); ``compared``, the images. A zero vector has similarity 0 with any other vector, 1
    with another zero vector. ``ValueError`` unless the lists are of the same length and the
    vectors of the same dimension.
    """
    import numpy as np

    if len(want) != len(got):
        raise ValueError(f"{len(got)} results to compare with {len(want)}: give one of each per image")
    if not want:
        return {"agreement": 1.0, "max_difference": 0.0, "compared": 0}
    dims = {e.dim for e in (*want, *got)}
    if len(dims) != 1:
        raise ValueError(f"embeddings of different dimensions to compare: {sorted(dims)}")
    a = np.stack([e.vector for e in want]).astype(np.float64)
    b = np.stack([e.vector for e in got]).astype(np.float64)
    a_norms, b_norms = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    a, b = a / np.where(a_norms == 0, 1, a_norms)[:, None], b / np.where(b_norms == 0, 1, b_norms)[:, None]
    similarity = np.clip(b @ a.T, -1.0, 1.0)  # a row per got vector, a column per want vector; zero vectors: 0
    similarity[np.ix_(b_norms == 0, a_norms == 0)] = 1.0  # two zero vectors are alike
    own = np.diagonal(similarity)
    return {"agreement": float(np.mean(own >= similarity.max(axis=1))), "max_difference": float(1 - own.min()),
            "compared": len(want)}
