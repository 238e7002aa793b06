"""zoo-faces: MTCNN face detection (Zhang et al., 2016) with five landmarks, as onnx-zoo models.

Registers four models from ``models.toml``:

* ``mtcnn-pnet``, ``mtcnn-rnet``, ``mtcnn-onet``: MTCNN's three networks (:mod:`zoo_faces.net`),
  exported to ONNX from the weights in facenet-pytorch 2.6.0's wheel, which the zoo downloads once
  and takes the three files out of, each checked by its sha256;
* ``mtcnn``: the cascade of the three (:func:`run`, :mod:`zoo_faces.mtcnn`), a :class:`zoo.Detections`
  of faces with the keypoints ``left_eye``, ``right_eye``, ``nose``, ``mouth_left``, ``mouth_right``,
  the boxes and landmarks of ``facenet_pytorch.MTCNN(keep_all=True).detect(image, landmarks=True)``.

Registration imports neither torch nor numpy: :func:`build` imports torch, the other functions numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import zoo
from zoo.plugin import Detections, Geometry, ModelSpec, hookimpl, load_specs

__version__ = "0.1.0"

#: MTCNN's landmarks, in the order its output network gives them.
KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
LABEL = "face"


def build(spec: ModelSpec, weights: Path | None) -> Any:
    """The network ``spec.extra["network"]`` names (``pnet``, ``rnet`` or ``onet``), eval mode, ``weights`` loaded."""
    from zoo_faces.net import NETWORKS

    net = NETWORKS[spec.extra["network"]]()
    if weights is not None:
        zoo.load_weights(net, weights, what=f"MTCNN {spec.extra['network'].upper()} of facenet-pytorch")
    return net.eval()


def propose(outputs: Mapping[str, Any], geometries: list[Geometry], threshold: float = 0.6) -> list[Detections]:
    """``mtcnn-pnet`` on its own: per image, the candidates of MTCNN's first stage at the image's own scale (faces
    of about 12 pixels) whose probability is at least ``threshold``, suppressed, moved by their offsets and squared."""
    from zoo_faces import mtcnn

    _check_fraction("threshold", threshold)
    results = []
    for i, geometry in enumerate(geometries):
        found = mtcnn.one_scale(outputs["probabilities"][i, 1], outputs["offsets"][i], 1.0, threshold)
        boxes = mtcnn.merged([found])
        results.append(_detections(geometry.to_original_boxes(boxes[:, :4], clip=False), boxes[:, 4], None,
                                   geometry.original))
    return results


def run(models: Mapping[str, Any], image: Any, min_face_size: float = 20.0,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709) -> Detections:
    """``mtcnn``: the faces in ``image`` and their landmarks, as ``facenet_pytorch.MTCNN`` finds them.

    ``min_face_size``: the smallest face searched for, in pixels; ``thresholds``: the face probability
    each of PNet, RNet and ONet needs; ``factor``: the image pyramid's step (facenet-pytorch's defaults).
    Boxes are clipped to the image; landmarks are as ONet places them.
    """
    from zoo_faces import mtcnn

    _check_options(min_face_size, thresholds, factor)
    nets = [lambda batch, name=name: models[name].run(batch) for name in (mtcnn.PNET, mtcnn.RNET, mtcnn.ONET)]
    faces = mtcnn.detect(*nets, image, min_face_size=min_face_size, thresholds=tuple(thresholds), factor=factor)
    return _detections(faces.boxes, faces.scores, faces.landmarks, image.shape[:2])


def _detections(boxes: Any, scores: Any, landmarks: Any, size: tuple[int, int]) -> Detections:
    """Faces as :class:`zoo.Detections`, boxes clipped to the image, landmarks ``(x, y, 1)``."""
    import numpy as np

    height, width = size
    keypoints = None
    if landmarks is not None:
        keypoints = np.concatenate([landmarks, np.ones((*landmarks.shape[:2], 1), np.float32)], axis=2)
    return Detections(boxes=np.clip(boxes, 0, [width, height, width, height]), scores=scores,
                      class_ids=np.zeros(len(scores), np.int64), labels=(LABEL,) * len(scores), image_size=size,
                      keypoints=keypoints, keypoint_names=KEYPOINT_NAMES if landmarks is not None else ())


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise zoo.UsageError(f"{name} must be a number from 0 to 1, got {value!r}")


def _check_options(min_face_size: Any, thresholds: Any, factor: Any) -> None:
    """:class:`zoo.UsageError` for an option MTCNN cannot run with."""
    if isinstance(min_face_size, bool) or not isinstance(min_face_size, (int, float)) or not min_face_size > 0:
        raise zoo.UsageError(f"min_face_size must be a number of pixels above 0, got {min_face_size!r}")
    if isinstance(thresholds, str) or not isinstance(thresholds, Sequence) or len(thresholds) != 3:
        raise zoo.UsageError(f"thresholds must be three numbers from 0 to 1 (PNet's, RNet's, ONet's), got "
                             f"{thresholds!r}")
    for which, value in zip(("PNet", "RNet", "ONet"), thresholds):
        _check_fraction(f"thresholds ({which}'s)", value)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
        raise zoo.UsageError(f"factor must be a number between 0 and 1 (the pyramid's step), got {factor!r}")


@hookimpl
def zoo_register_models(register):  # type: ignore[no-untyped-def]
    """Register the models of ``models.toml``."""
    for spec in load_specs(Path(__file__).with_name("models.toml")):
        register(spec)
