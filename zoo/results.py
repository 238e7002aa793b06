"""The typed results of ``Model.predict``, each with ``to_dict()`` (strict JSON) and ``draw(image)``.

Each lives with its task in :mod:`zoo.tasks`; this module gathers them.
"""

from zoo.tasks.classification import Classification, Prediction, classify, softmax
from zoo.tasks.detection import Detection, Detections
from zoo.tasks.regression import Regression
from zoo.tasks.segmentation import Segmentation

__all__ = ["Classification", "Detection", "Detections", "Prediction", "Regression", "Segmentation", "classify",
           "softmax"]
