"""The typed results of ``Model.predict``, each with ``to_dict()`` (strict JSON) and ``draw(image)``.

Each lives with its task in :mod:`zoo.tasks`; this module gathers them.
"""

from typing import Any

from zoo.tasks.classification import Classification, Prediction, classify, softmax
from zoo.tasks.detection import Detection, Detections
from zoo.tasks.embedding import Embedding
from zoo.tasks.regression import Regression
from zoo.tasks.segmentation import Segmentation

__all__ = ["Classification", "Detection", "Detections", "Embedding", "Prediction", "Regression", "Segmentation", "classify",
           "jsonable", "softmax"]


def jsonable(result: Any) -> Any:
    """A result as JSON data: its ``to_dict()``, or (raw outputs of a model without a task) arrays as lists."""
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, dict):
        return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in result.items()}
    return result
