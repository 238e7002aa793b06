"""``image-classification``: a probability per class; the result is the top ``k``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.errors import SpecError
from zoo.tasks import _draw, require

if TYPE_CHECKING:
    import numpy as np

    from zoo.geometry import Geometry
    from zoo.spec import ModelSpec


@dataclass(frozen=True)
class Prediction:
    """One class and its probability."""

    label: str
    class_id: int
    score: float


@dataclass(frozen=True)
class Classification:
    """The top class of one image and the ``k`` most probable ones, best first."""

    label: str
    class_id: int
    score: float
    topk: tuple[Prediction, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: the top class, and the top ``k`` as a list."""
        return {**asdict(self), "topk": [asdict(p) for p in self.topk]}

    def summary(self) -> str:
        """One line: the top classes and their probabilities, ``tabby 62.01%, tiger cat 20.35%, ...``."""
        return ", ".join(f"{p.label} {p.score:.2%}" for p in self.topk or (Prediction(self.label, self.class_id,
                                                                                       self.score),))

    def draw(self, image: Any) -> np.ndarray:
        """An RGB uint8 copy of ``image`` with the top classes and their probabilities written at the top left."""
        canvas = _draw.canvas(image)
        font_scale, _ = _draw.scale_for(canvas)
        line = int(32 * font_scale) + 8
        for row, prediction in enumerate(self.topk or (Prediction(self.label, self.class_id, self.score),)):
            _draw.label(canvas, f"{prediction.label} {prediction.score:.0%}", 4, 4 + line * (row + 1),
                        _draw.color(prediction.class_id + 1))
        return canvas


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    import numpy as np

    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def classify(outputs: np.ndarray, labels: tuple[str, ...], k: int = 5, *, logits: bool = True) -> list[Classification]:
    """Classifications for a batch of scores of shape ``(batch, classes)``, each row on its own.

    ``logits`` says what the rows hold (the spec's ``scores`` field): logits get a softmax,
    probabilities are used as they are.
    """
    import numpy as np

    scores = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    if logits:
        scores = softmax(scores)
    k = max(1, min(k, scores.shape[1]))
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    results = []
    for row, indices in zip(scores, best):
        top = tuple(Prediction(label=labels[i] if i < len(labels) else str(i), class_id=int(i), score=float(row[i]))
                    for i in indices)
        results.append(Classification(label=top[0].label, class_id=top[0].class_id, score=top[0].score, topk=top))
    return results


def postprocess(spec: ModelSpec, outputs: Mapping[str, np.ndarray], geometries: list[Geometry],
                topk: int = 5) -> list[Classification]:
    """The task's default: the rows of the class scores (:func:`class_scores`), as logits or probabilities (the
    spec's ``scores``)."""
    from zoo._fields import check_count

    check_count("topk", topk)
    return classify(class_scores(spec, outputs), spec.labels, topk, logits=spec.scores == "logits")


def class_scores(spec: ModelSpec, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The output that holds the class scores: the one called ``scores`` (a graph's name mapped to it by
    ``rename_outputs``), else the only or first output.

    Its values per image are checked against the spec's labels, where it has some:
    :class:`~zoo.errors.SpecError` naming the output, its width and the number of labels otherwise.
    """
    import numpy as np

    name = "scores" if "scores" in outputs else next(iter(outputs))
    values = np.asarray(outputs[name])
    width = int(np.prod(values.shape[1:]))
    if spec.labels and width != len(spec.labels):
        raise SpecError("outputs", _width_problem(spec, name, width), model=spec.name, plugin=spec.plugin)
    return values


def _width_problem(spec: ModelSpec, name: str, width: int) -> str:
    """Why the output ``name`` of ``width`` values per image is not the class scores, and what to do."""
    graph_name = next((graph for graph, renamed in spec.rename_outputs.items() if renamed == name), name)
    shown = repr(name) if graph_name == name else f"{graph_name!r} (as {name!r})"
    if name == "scores":
        which, fix = f"the class scores output {shown}", "give one label per class"
    else:
        which = f"the first output {shown}, read as the class scores since no output is called 'scores',"
        fix = "map the graph's class scores output to 'scores' with rename_outputs, or give one label per class"
    return f"does not match the labels: {which} has {width} values per image for {len(spec.labels)} labels; {fix}"


def compare(want: Classification, got: Classification, spec: ModelSpec, *,
            score_tolerance: float | None = None) -> dict[str, float]:
    """The same top class, and probabilities within ``score_tolerance`` (default: the spec's ``atol + rtol``)."""
    require(want.class_id == got.class_id, f"top class {got.label!r} instead of {want.label!r}")
    difference = abs(want.score - got.score)
    tolerance = spec.atol + spec.rtol if score_tolerance is None else score_tolerance
    require(difference <= tolerance, f"top probability {got.score:.6g} instead of {want.score:.6g}")
    return {"top1_agreement": 1.0, "max_abs": difference}


# -- agreement of a reduced precision ----------------------------------------------------------


def score_agreement(want: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """How far a reduced precision's class scores ``got`` ``(N, classes)`` are from float32's ``want``, relative
    to the range of ``want``'s scores (all rows: a row of compressed scores would make a small change look
    large): ``agreement``, the fraction of rows with the same top class; ``max_difference``, the largest
    absolute difference; ``flipped_margin``, the largest float32 margin between the top two classes among
    the rows whose top class changed (0 if none: how near a tie the disagreements were); ``compared``, the
    rows. ``ValueError`` unless the arrays hold as many scores in as many rows."""
    import numpy as np

    want, got = np.asarray(want), np.asarray(got)
    want, got = want.reshape(len(want), -1), got.reshape(len(got), -1)
    if want.shape != got.shape:
        raise ValueError(f"class scores of shape {got.shape} to compare with {want.shape}")
    if not len(want):
        return {"agreement": 1.0, "max_difference": 0.0, "flipped_margin": 0.0, "compared": 0}
    spread = max(float(want.max() - want.min()), float(np.finfo(np.float32).tiny))
    changed = want.argmax(axis=1) != got.argmax(axis=1)
    top_two = np.sort(want[changed], axis=1)[:, -2:] if want.shape[1] > 1 else np.zeros((0, 2))
    return {"agreement": round(1 - float(np.mean(changed)), 4),
            "max_difference": round(float(np.abs(want - got).max()) / spread, 4),
            "flipped_margin": round(float(np.max(top_two[:, 1] - top_two[:, 0], initial=0.0)) / spread, 4),
            "compared": len(want)}


def agreement(want_outputs: Sequence[Mapping[str, np.ndarray]], got_outputs: Sequence[Mapping[str, np.ndarray]],
              spec: ModelSpec) -> dict[str, float]:
    """:func:`score_agreement` of the class scores (:func:`class_scores`) of float32's raw outputs
    (``want_outputs``) and a reduced precision's (``got_outputs``), one mapping of outputs by name per held
    image, each with a batch axis of 1. ``ValueError`` unless the lists are of the same length."""
    import numpy as np

    if len(want_outputs) != len(got_outputs):
        raise ValueError(f"{len(got_outputs)} outputs to compare with {len(want_outputs)}: give one of each per image")
    if not want_outputs:
        return score_agreement(np.zeros((0, 1)), np.zeros((0, 1)))
    return score_agreement(*(np.concatenate([class_scores(spec, outputs) for outputs in listed])
                             for listed in (want_outputs, got_outputs)))
