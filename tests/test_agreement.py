"""Issue 33: each built-in task's agreement of a reduced precision's results with float32's, for the gate.

Pure numpy on constructed results: identical results agree fully; each kind of change shows in
the figure meant to catch it, and changes the gate must tolerate (a detection near the score
threshold coming and going) do not.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from conftest import make_spec

from zoo.registry import default_registry
from zoo.tasks import Task, classification, detection, embedding, segmentation
from zoo.tasks.detection import Detections
from zoo.tasks.embedding import Embedding
from zoo.tasks.segmentation import Segmentation

LABELS = ("person", "dog", "cat")


def detections(*items: tuple[list[float], float, int], size: tuple[int, int] = (100, 100)) -> Detections:
    """Detections from ``(box xyxy, score, class id)`` items."""
    return Detections(boxes=np.array([box for box, _, _ in items], np.float32).reshape(-1, 4),
                      scores=np.array([score for _, score, _ in items], np.float32),
                      class_ids=np.array([c for _, _, c in items], np.int64),
                      labels=tuple(LABELS[c] for _, _, c in items), image_size=size)


WANT = [detections(([10, 10, 50, 50], 0.9, 0), ([60, 60, 90, 95], 0.7, 1)),
        detections(([0, 0, 40, 30], 0.8, 2))]


# -- the Task's fields and the built-in tasks --------------------------------------------------


def test_33_gate_builtin_tasks_register_their_agreement_and_limits():
    registry = default_registry()
    expected = {"image-classification": (classification.agreement, 0.98, 0.25),
                "object-detection": (detection.agreement, 0.95, 0.1),
                "instance-segmentation": (detection.agreement, 0.95, 0.1),
                "keypoint-detection": (detection.agreement, 0.95, 0.1),
                "semantic-segmentation": (segmentation.agreement, 0.98, 0.1),
                "image-embedding": (embedding.agreement, 0.98, 0.05)}
    for name, (function, min_agreement, max_difference) in expected.items():
        task = registry.task(name)
        assert task.agreement is function, name
        assert dict(task.limits) == {"min_agreement": min_agreement, "max_difference": max_difference}, name
    regression = registry.task("regression")
    assert regression.agreement is None and dict(regression.limits) == {}


def test_33_gate_task_limits_are_frozen_and_the_fields_optional():
    task = Task("made-up", dict, lambda outputs, geometries: [], limits={"min_agreement": 0.5})
    with pytest.raises(TypeError):
        task.limits["min_agreement"] = 0.1  # type: ignore[index]
    plain = Task("made-up", dict, lambda outputs, geometries: [])
    assert plain.agreement is None and dict(plain.limits) == {}


def test_33_gate_agreement_functions_take_only_the_names_the_gate_passes():
    passed = {"want", "got", "want_outputs", "got_outputs", "spec"}
    for function in (classification.agreement, detection.agreement, segmentation.agreement, embedding.agreement):
        parameters = inspect.signature(function).parameters
        for name, parameter in parameters.items():
            assert name in passed or (parameter.kind is parameter.KEYWORD_ONLY
                                      and parameter.default is not parameter.empty), (function, name)
    options = default_registry().task("object-detection").options
    assert inspect.signature(detection.agreement).parameters["score_threshold"].default == options["score_threshold"]


# -- detection ---------------------------------------------------------------------------------


def test_33_gate_detection_identical_results_agree_fully():
    figures = detection.agreement(WANT, WANT)
    assert figures == {"agreement": 1.0, "max_difference": 0.0, "min_iou": 1.0, "compared": 3, "misses": 0,
                       "extras": 0}


def test_33_gate_detection_a_score_change_shows_in_max_difference_not_in_agreement():
    got = [detections(([10, 10, 50, 50], 0.83, 0), ([60, 60, 90, 95], 0.72, 1)), WANT[1]]
    figures = detection.agreement(WANT, got)
    assert figures["agreement"] == 1.0 and figures["misses"] == figures["extras"] == 0
    assert figures["max_difference"] == pytest.approx(0.07, abs=1e-6)


def test_33_gate_detection_a_box_moved_below_the_iou_is_a_miss_and_an_extra():
    moved = [detections(([10, 10, 50, 50], 0.9, 0), ([63, 60, 93, 95], 0.7, 1)), WANT[1]]  # IoU 27/33 = 0.82
    figures = detection.agreement(WANT, moved)
    assert figures["misses"] == 1 and figures["extras"] == 1
    assert figures["agreement"] == pytest.approx(1 - 2 / 4)  # 3 required in want, 1 required unmatched in got
    slightly = [detections(([10, 10, 50, 50], 0.9, 0), ([60.5, 60, 90.5, 95], 0.7, 1)), WANT[1]]  # IoU 0.967
    figures = detection.agreement(WANT, slightly)
    assert figures["agreement"] == 1.0 and 0.95 <= figures["min_iou"] < 1.0
    assert detection.agreement(WANT, slightly, iou=0.99)["misses"] == 1


def test_33_gate_detection_a_class_change_is_a_miss_and_an_extra():
    changed = [WANT[0], detections(([0, 0, 40, 30], 0.8, 1))]
    figures = detection.agreement(WANT, changed)
    assert figures["misses"] == 1 and figures["extras"] == 1 and figures["agreement"] == pytest.approx(0.5)


def test_33_gate_detection_near_the_threshold_a_detection_may_come_and_go():
    near = detections(([10, 10, 50, 50], 0.9, 0), ([70, 5, 95, 30], 0.27, 2))  # under 0.25 + 0.05
    alone = detections(([10, 10, 50, 50], 0.9, 0))
    assert detection.agreement([near], [alone])["agreement"] == 1.0  # vanished
    assert detection.agreement([alone], [near])["agreement"] == 1.0  # appeared
    assert detection.agreement([near], [alone], score_threshold=0.2)["misses"] == 1  # 0.27 >= 0.2 + 0.05
    assert detection.agreement([near], [alone], score_margin=0.0)["misses"] == 1
    assert detection.agreement([near], [alone])["compared"] == 2


def test_33_gate_detection_a_required_detection_matched_by_one_under_the_margin_counts_as_matched():
    want = [detections(([10, 10, 50, 50], 0.31, 0))]
    got = [detections(([10, 10, 50, 50], 0.29, 0))]
    figures = detection.agreement(want, got)
    assert figures["agreement"] == 1.0 and figures["max_difference"] == pytest.approx(0.02, abs=1e-6)


def test_33_gate_detection_greedy_matching_takes_the_best_iou_of_the_same_class_once():
    want = [detections(([10, 10, 50, 50], 0.9, 0), ([10, 10, 50, 51], 0.8, 0))]
    got = [detections(([10, 10, 50, 50], 0.6, 0), ([10, 10, 50, 51], 0.85, 0))]
    figures = detection.agreement(want, got)
    # the first want box takes the identical box (score 0.6), the second the other one (0.85)
    assert figures["agreement"] == 1.0 and figures["max_difference"] == pytest.approx(0.3, abs=1e-6)
    one = [detections(([10, 10, 50, 50], 0.9, 0))]
    figures = detection.agreement(want, one)
    assert figures["misses"] == 1 and figures["extras"] == 0 and figures["agreement"] == pytest.approx(0.5)


def test_33_gate_detection_empty_images_and_flat_boxes():
    empty = [detections(), detections()]
    assert detection.agreement(empty, empty) == {"agreement": 1.0, "max_difference": 0.0, "min_iou": 1.0,
                                                 "compared": 0, "misses": 0, "extras": 0}
    flat = [detections(([10, 10, 10, 50], 0.9, 0))]  # no area: IoU NaN, taken as 0
    assert detection.agreement(flat, flat)["misses"] == 1


def test_33_gate_detection_lists_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="1 results to compare with 2"):
        detection.agreement(WANT, WANT[:1])


# -- segmentation ------------------------------------------------------------------------------


def test_33_gate_segmentation_identical_and_a_fraction_changed():
    rng = np.random.default_rng(0)
    masks = [Segmentation(rng.integers(0, 3, (10, 20)), LABELS), Segmentation(rng.integers(0, 3, (5, 8)), LABELS)]
    assert segmentation.agreement(masks, masks) == {"agreement": 1.0, "max_difference": 0.0, "compared": 240}
    changed = masks[1].mask.copy()
    changed[:2] = (changed[:2] + 1) % 3  # 16 of 40 pixels
    figures = segmentation.agreement(masks, [masks[0], Segmentation(changed, LABELS)])
    assert figures["agreement"] == pytest.approx(1 - 16 / 240)
    assert figures["max_difference"] == pytest.approx(16 / 40)
    assert figures["compared"] == 240


def test_33_gate_segmentation_masks_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="image 0"):
        segmentation.agreement([Segmentation(np.zeros((4, 4)), LABELS)], [Segmentation(np.zeros((4, 5)), LABELS)])
    with pytest.raises(ValueError):
        segmentation.agreement([Segmentation(np.zeros((4, 4)), LABELS)], [])


# -- embedding ---------------------------------------------------------------------------------


def test_33_gate_embedding_identical_near_and_swapped():
    rng = np.random.default_rng(1)
    vectors = (rng.normal(size=(5, 16)) + 1).astype(np.float32)  # alike: a swapped pair still has cosine > 0
    want = [Embedding(v) for v in vectors]
    figures = embedding.agreement(want, want)
    assert figures["agreement"] == 1.0 and figures["max_difference"] == pytest.approx(0.0, abs=1e-12)
    assert figures["compared"] == 5
    nudged = [Embedding(v + 0.01 * rng.normal(size=16)) for v in vectors]
    figures = embedding.agreement(want, nudged)
    assert figures["agreement"] == 1.0 and 0 < figures["max_difference"] < 0.01
    swapped = [want[1], want[0], *want[2:]]
    figures = embedding.agreement(want, swapped)
    assert figures["agreement"] == pytest.approx(3 / 5) and figures["max_difference"] > 0.1


def test_33_gate_embedding_zero_vectors_are_guarded():
    want = [Embedding(np.zeros(4)), Embedding(np.array([1.0, 0, 0, 0]))]
    figures = embedding.agreement(want, want)
    assert figures["agreement"] == 1.0 and figures["max_difference"] == 0.0
    figures = embedding.agreement(want, [Embedding(np.zeros(4)), Embedding(np.zeros(4))])
    assert figures["agreement"] == 0.5 and figures["max_difference"] == 1.0
    assert np.isfinite(list(figures.values())).all()
    with pytest.raises(ValueError, match="dimensions"):
        embedding.agreement(want, [Embedding(np.zeros(4)), Embedding(np.zeros(3))])


# -- classification ----------------------------------------------------------------------------


def test_33_gate_classification_score_agreement_with_a_flipped_top_class():
    want = np.array([[5.0, 1.0, 0.0], [0.0, 2.0, 1.8], [1.0, 0.0, 3.0], [4.0, 0.5, 0.2]], np.float32)
    assert classification.score_agreement(want, want) == {"agreement": 1.0, "max_difference": 0.0,
                                                          "flipped_margin": 0.0, "compared": 4}
    got = want.copy()
    got[1] = [0.0, 1.85, 1.9]  # the top class flips: float32's margin was 0.2, of a range of 5
    figures = classification.score_agreement(want, got)
    assert figures["agreement"] == 0.75
    assert figures["max_difference"] == pytest.approx(0.15 / 5, abs=1e-4)
    assert figures["flipped_margin"] == pytest.approx(0.2 / 5, abs=1e-4)
    assert figures["compared"] == 4
    with pytest.raises(ValueError):
        classification.score_agreement(want, got[:3])


def test_33_gate_classification_agreement_reads_the_class_scores_of_each_images_outputs():
    spec = make_spec(labels=("a", "b", "c"))
    want = [{"scores": np.array([[5.0, 1.0, 0.0]])}, {"scores": np.array([[0.0, 2.0, 1.8]])}]
    got = [want[0], {"scores": np.array([[0.0, 1.85, 1.9]])}]
    figures = classification.agreement(want, got, spec)
    assert figures["agreement"] == 0.5 and figures["compared"] == 2
    assert classification.agreement(want, want, spec)["agreement"] == 1.0
    with pytest.raises(Exception, match="labels"):
        classification.agreement(want, want, dataclasses.replace(spec, labels=("a", "b")))


def test_33_gate_quantize_uses_the_classification_figures():
    quantize = pytest.importorskip("zoo.quantize")
    assert quantize.score_agreement is classification.score_agreement
    assert not hasattr(quantize, "agreement")
