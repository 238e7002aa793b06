"""The built-in tasks, registered through the same hook as a plugin's tasks."""

from __future__ import annotations

from collections.abc import Callable

from zoo.hookspecs import hookimpl
from zoo.tasks import Task, classification, detection, embedding, regression, segmentation


@hookimpl
def zoo_register_tasks(register: Callable[[Task], None]) -> None:
    register(Task("image-classification", classification.Classification, classification.postprocess,
                  options={"topk": 5}, summary="a class per image, with probabilities",
                  compare=classification.compare, agreement=classification.agreement,
                  limits={"min_agreement": 0.98, "max_difference": 0.25}))
    for name, summary, check in (
            ("object-detection", "boxes with classes and scores", detection.check_decode),
            ("instance-segmentation", "boxes with classes, scores and a mask each", detection.check_decode_with_extras),
            ("keypoint-detection", "boxes with classes, scores and keypoints", detection.check_decode_with_extras)):
        register(Task(name, detection.Detections, detection.postprocess, options=detection.OPTIONS, summary=summary,
                      compare=detection.compare, check_decode=check, agreement=detection.agreement,
                      limits={"min_agreement": 0.95, "max_difference": 0.1}))
    register(Task("semantic-segmentation", segmentation.Segmentation, segmentation.postprocess,
                  summary="a class per pixel", compare=segmentation.compare, agreement=segmentation.agreement,
                  limits={"min_agreement": 0.98, "max_difference": 0.1}))
    register(Task("regression", regression.Regression, regression.postprocess,
                  summary="a value per image, with an interval where the plugin computes one"))
    register(Task("image-embedding", embedding.Embedding, embedding.postprocess, options=embedding.OPTIONS,
                  summary="a vector per image, to compare images by similarity", compare=embedding.compare,
                  check_decode=embedding.check_decode, agreement=embedding.agreement,
                  limits={"min_agreement": 0.98, "max_difference": 0.05}))
