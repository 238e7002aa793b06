"""Typed results of ``Model.predict``, each with ``to_dict()`` for JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


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
        return asdict(self)


@dataclass(frozen=True)
class Regression:
    """A value with an interval, such as an age estimate (SSRNet: ``[age - 2, age + 3]``)."""

    value: float
    low: float
    high: float
    unit: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def classify(outputs: np.ndarray, labels: tuple[str, ...], k: int = 5, *, logits: bool = True) -> list[Classification]:
    """Classifications for a batch of scores of shape ``(batch, classes)``, each row on its own.

    ``logits`` says what the rows hold (the spec's ``scores`` field): logits get a softmax,
    probabilities are used as they are.
    """
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
