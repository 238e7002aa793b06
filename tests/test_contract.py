"""The contract beyond classifiers, without torch: geometry, tasks, decoding, NMS, RLE, drawing, options."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_spec, registry_with

import zoo
from zoo.errors import DuplicateModelError, SpecError, UsageError
from zoo.geometry import Geometry
from zoo.preprocess import Preprocess
from zoo.tasks import _rle, accepted_options, detection, option_from_text, resolve_options
from zoo.tasks import postprocess as run_postprocess
from zoo.tasks.detection import Decode, Detections, batched_nms, nms
from zoo.tasks.segmentation import Segmentation


def scene(height: int, width: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A dark RGB image with a white rectangle at each ``(x1, y1, x2, y2)`` (pixels x1..x2-1, y1..y2-1)."""
    image = np.full((height, width, 3), 20, np.uint8)
    for x1, y1, x2, y2 in boxes:
        image[y1:y2, x1:x2] = 235
    return image


def bright_box(plane: np.ndarray) -> list[float]:
    """The ``xyxy`` box (pixel edges) of the pixels above half brightness in a 2-D plane."""
    ys, xs = np.nonzero(plane > 0.5)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


# -- geometry: every resize maps model coordinates back to the original pixels ------------------


@pytest.mark.parametrize("position", ["center", "top-left"])
@pytest.mark.parametrize("size", [(300, 500), (500, 300), (640, 640), (90, 120)])
def test_letterbox_boxes_come_back_in_original_pixels(size, position):
    truth = [size[1] // 5, size[0] // 4, size[1] // 2, size[0] * 3 // 4]
    image = scene(*size, [truth])
    pre = Preprocess(resize="letterbox", size=(320, 320), pad_value=114, pad_position=position, antialias=False,
                     interpolation="nearest")
    tensor, geometry = pre.transform(image)
    assert tensor.shape == (3, 320, 320) and geometry.original == size
    inside = bright_box(tensor[0])
    back = geometry.to_original_boxes([inside])[0]
    assert np.abs(back - truth).max() <= 1 / min(geometry.scale) + 1e-3
    # the padding is pad_value normalised, on the side(s) the position says
    pad_rows = 320 - round(size[0] * geometry.scale[0])
    if pad_rows:
        top = 0 if position == "top-left" else pad_rows // 2
        assert geometry.offset[0] == top
        assert np.allclose(tensor[:, -1, :], 114 / 255)


@pytest.mark.parametrize(("mode", "size", "image", "expected", "multiple"), [
    ("longer", 960, (1200, 700), (960, 576), 32),  # shrunk: longer side 960, each side a multiple of 32
    ("longer", 960, (300, 500), (288, 512), 32),   # never enlarged, only rounded
    ("shorter", 736, (300, 500), (736, 1216), 32),  # enlarged to at least 736
    ("shorter", 736, (1000, 900), (992, 896), 32),  # never shrunk
    ("shorter", 736, (130, 263), (736, 1472), 32),  # 263 * 736 / 130 = 1489.0: truncated, then rounded, as PaddleOCR
    ("shorter", 320, (77, 100), (320, 415), 1),  # 77 * (320 / 77) is 319.99999999999994: still 320
    ("longer", 320, (100, 581), (55, 320), 1),
])
def test_limit_side_rounds_each_side_to_the_multiple(mode, size, image, expected, multiple):
    pre = Preprocess(resize=mode, size=size, multiple=multiple, antialias=False)
    tensor, geometry = pre.transform(scene(*image, []))
    assert tensor.shape[1:] == expected and geometry.input == expected
    assert geometry.scale == pytest.approx((expected[0] / image[0], expected[1] / image[1]))
    assert pre.dynamic and pre.input_shape == (3, None, None)


def test_no_resize_pads_to_the_multiple_and_batches_of_different_sizes_are_padded():
    pre = Preprocess(multiple=8, scale=1.0, pad_value=7, batching="pad")
    small, large = scene(30, 45, [(5, 5, 20, 20)]), scene(50, 33, [(0, 0, 10, 40)])
    batch, geometries = pre.batch([small, large])
    assert batch.shape == (2, 3, 56, 48)  # 50 -> 56 rows, 45 -> 48 columns
    assert [g.original for g in geometries] == [(30, 45), (50, 33)]
    assert all(g.input == (56, 48) and g.scale == (1.0, 1.0) and g.offset == (0.0, 0.0) for g in geometries)
    assert (batch[0, :, :30, :45] == small.transpose(2, 0, 1)).all() and (batch[0, :, 30:, :] == 7).all()
    assert (batch[1, :, :, 33:] == 7).all()


def test_pad_after_normalisation_fills_the_tensor_value():
    pre = Preprocess(resize="letterbox", size=(64, 64), mean=(0.5,), std=(0.25,), pad_value=-9, pad_normalized=True)
    tensor, geometry = pre.transform(scene(32, 64, []))
    assert geometry.offset == (16.0, 0.0)
    assert (tensor[:, :16] == -9).all() and (tensor[:, 48:] == -9).all()
    assert np.allclose(tensor[:, 16:48], (20 / 255 - 0.5) / 0.25, atol=1e-5)


def test_crop_and_cover_record_their_offsets():
    image = scene(200, 300, [(140, 90, 160, 110)])  # a square at the centre
    for pre in (Preprocess(resize=100, crop=80, interpolation="nearest", antialias=False),
                Preprocess(resize="cover", crop=(80, 80), interpolation="nearest")):
        tensor, geometry = pre.transform(image)
        back = geometry.to_original_boxes([bright_box(tensor[0])])[0]
        assert np.abs(back - [140, 90, 160, 110]).max() <= 2, pre.resize


def test_masks_map_back_at_the_image_size_nearest_and_bilinear():
    geometry = Geometry(original=(100, 200), input=(64, 64), scale=(0.32, 0.32), offset=(16.0, 0.0))
    mask = np.zeros((64, 64), np.int32)
    mask[16:32, 0:32] = 3  # the top-left quarter of the image's area in the tensor
    back = geometry.to_original_mask(mask)
    assert back.shape == (100, 200) and back.dtype == np.int32
    assert (back[:50, :100] == 3).all() and (back[50:, :] == 0).all() and (back[:, 100:] == 0).all()
    quarter = geometry.to_original_mask(mask[::4, ::4] == 3)  # a stride-4 output covers the same tensor
    assert quarter.shape == (100, 200) and quarter[:50, :100].mean() > 0.95 and not quarter[60:].any()
    soft = geometry.to_original_mask((mask == 3).astype(np.float32)[None], interpolation="bilinear")
    assert soft.shape == (1, 100, 200) and soft[0, 10, 10] == 1.0 and soft[0, 90, 150] == 0.0


# -- NMS and decoding ----------------------------------------------------------------------------


def random_boxes(rng: np.random.Generator, n: int, extent: float = 640) -> np.ndarray:
    corners = rng.uniform(0, extent, (n, 2))
    return np.concatenate([corners, corners + rng.uniform(8, 160, (n, 2))], axis=1).astype(np.float32)


def reference_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS written out box by box, as the textbook states it."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(detection.box_iou(boxes[k], boxes[i:i + 1])[0] <= threshold for k in keep):
            keep.append(i)
    return keep


def test_nms_keeps_what_the_textbook_algorithm_keeps():
    rng = np.random.default_rng(3)
    for threshold in (0.3, 0.5, 0.7):
        boxes, scores = random_boxes(rng, 300), rng.random(300).astype(np.float32)
        assert nms(boxes, scores, threshold).tolist() == reference_nms(boxes, scores, threshold)
    boxes, scores, classes = random_boxes(rng, 200), rng.random(200), rng.integers(0, 3, 200)
    kept = batched_nms(boxes, scores, classes, 0.5)
    for c in range(3):
        members = np.flatnonzero(classes == c)
        assert sorted(kept[classes[kept] == c].tolist()) == sorted(
            members[reference_nms(boxes[members], scores[members], 0.5)].tolist())


def yolo_reference(predictions: np.ndarray, score_threshold: float, iou_threshold: float,
                   max_detections: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YOLOv8's raw output (4 + classes, candidates) decoded directly: best class, threshold, per-class NMS."""
    rows = predictions.T
    xyxy = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], axis=1)
    classes, scores = rows[:, 4:].argmax(1), rows[:, 4:].max(1)
    keep = np.flatnonzero(scores >= score_threshold)
    chosen = []
    for c in np.unique(classes[keep]):
        members = keep[classes[keep] == c]
        chosen += members[reference_nms(xyxy[members], scores[members], iou_threshold)].tolist()
    chosen = sorted(chosen, key=lambda i: -scores[i])[:max_detections]
    return xyxy[chosen], scores[chosen], classes[chosen]


def test_yolo_raw_output_decodes_as_a_direct_implementation_does():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 640, (8400, 2))
    sizes = rng.uniform(10, 200, (8400, 2))
    scores = rng.random((8400, 80)) ** 8  # mostly low, a few hundred above 0.25
    predictions = np.concatenate([centres, sizes, scores], axis=1).T.astype(np.float32)[None]  # (1, 84, 8400)
    spec = make_spec(task="object-detection", labels=tuple(f"c{i}" for i in range(80)),
                     preprocess=Preprocess(resize="letterbox", size=(640, 640)),
                     decode={"boxes": "cxcywh", "transpose": True})
    geometry = Geometry(original=(480, 640), input=(640, 640), scale=(1.0, 1.0), offset=(80.0, 0.0))
    task = registry_with().task("object-detection")
    (result,) = run_postprocess(spec, task, {"output": predictions}, [geometry],
                                accepted_options(spec, task) | {"max_detections": 300})
    boxes, best, classes = yolo_reference(predictions[0], 0.25, 0.5, 300)
    assert 50 < len(result) <= 300
    assert np.array_equal(result.class_ids, classes) and np.allclose(result.scores, best)
    expected = np.clip(boxes - [0, 80, 0, 80], 0, [640, 480, 640, 480])
    assert np.allclose(result.boxes, expected, atol=1e-3)
    assert result.labels == tuple(f"c{c}" for c in classes)


def test_objectness_softmax_background_normalised_boxes_and_label_offset():
    # 2 candidates, boxes xywh normalised, objectness then 3 class logits with background at 0
    raw = np.array([[[0.1, 0.1, 0.2, 0.2, 0.9, -5, 5, 0], [0.5, 0.5, 0.25, 0.5, 0.1, 9, 0, 0]]], np.float32)
    decode = Decode(boxes="xywh", normalized=True, activation="softmax", objectness=True, background=True,
                    label_offset=-1, nms="none")
    boxes, scores, classes = detection.decode_raw({"predictions": raw}, 0, decode, score_threshold=0.01,
                                                  iou_threshold=0.5, max_detections=10, input_size=(100, 200))
    assert classes.tolist() == [1]  # the second is background (class 0, never reported), its best class under 0.01
    assert np.allclose(boxes[0], [20, 10, 60, 30])
    softmax = np.exp([-5, 5, 0]) / np.exp([-5, 5, 0]).sum()
    assert scores[0] == pytest.approx(softmax[1] / (1 + np.exp(-0.9)), rel=1e-5)  # objectness through a sigmoid


@pytest.mark.parametrize("transpose", [False, True])
def test_27_13_raw_head_with_no_candidates_gives_no_detections(transpose):
    """A raw head of zero candidates, as ``boxes`` + ``scores`` (3 classes, or one class as a 1-D score) or as
    ``predictions``, decodes to an empty :class:`Detections` with every NMS placement, not a plugin's error."""
    task = registry_with().task("object-detection")
    heads = [{"boxes": np.zeros((1, 0, 4)), "scores": np.zeros((1, 0, 3))},
             {"boxes": np.zeros((1, 0, 4)), "scores": np.zeros((1, 0))},
             {"predictions": np.zeros((1, 0, 7))}]
    for outputs in heads:
        if transpose:
            outputs = {name: np.swapaxes(value, 1, -1) for name, value in outputs.items()}
        for decode in ({"nms": "zoo"}, {"nms": "zoo", "class_agnostic": True}, {"nms": "none", "background": True}):
            spec = make_spec(task="object-detection", labels=("a", "b", "c"), outputs=tuple(outputs),
                             decode={**decode, "transpose": transpose})
            (result,) = run_postprocess(spec, task, outputs, [Geometry.identity(8, 8)], accepted_options(spec, task))
            assert isinstance(result, Detections) and len(result) == 0, (outputs, decode)
            assert result.boxes.shape == (0, 4) and result.to_dict() == {"image_size": [8, 8], "detections": []}


def test_decode_tables_are_checked_when_the_model_is_registered():
    spec = make_spec(task="object-detection", decode={"boxes": "ltrb"})
    with pytest.raises(SpecError, match=r"decode.boxes.*'xyxy', 'xywh', 'cxcywh'"):
        registry_with().register(spec, "mine")
    with pytest.raises(SpecError, match=r"decode.nms.*must be 'graph' for masks or keypoints"):
        registry_with().register(make_spec(task="instance-segmentation"), "mine")


# -- options and postprocessing signatures --------------------------------------------------------


def test_options_are_checked_against_what_the_postprocessing_takes():
    detector = make_spec(task="object-detection", options={"score_threshold": 0.1})
    task = registry_with().task("object-detection")
    assert resolve_options(detector, task, {})["score_threshold"] == 0.1
    with pytest.raises(UsageError, match=r"does not take the option topk; it takes iou_threshold=0.5, "
                                         r"mask_threshold=0.5, max_detections=100, score_threshold=0.1"):
        resolve_options(detector, task, {"topk": 3})

    def mine(outputs, geometries, threshold=0.5):
        return [threshold] * len(geometries)

    custom = make_spec(task="image-classification", postprocess=mine)
    classifier = registry_with().task("image-classification")
    assert accepted_options(custom, classifier) == {"threshold": 0.5}
    results = run_postprocess(custom, classifier, {"output": np.zeros((2, 3))}, [Geometry.identity(8, 8)] * 2,
                              {"threshold": 0.7})
    assert results == [0.7, 0.7]
    with pytest.raises(SpecError, match=r"takes 'image', which is not one of spec, outputs, geometries, options"):
        make_spec(postprocess=lambda outputs, image: None)
    with pytest.raises(SpecError, match=r"options.*sets colour"):
        registry_with().register(make_spec(postprocess=mine, options={"colour": 1}), "mine")


def test_27_19_option_text_is_parsed_by_the_type_of_its_default():
    """Option text (``-o KEY=VALUE``, a query parameter) is read by the type of the option's default: a tuple of
    numbers from three spellings, whole numbers, numbers, booleans and text as written. Another type, a number
    too long, brackets inside brackets or deep ones are a one-line ``UsageError`` naming the option and the type."""
    for text in ("(0.6,0.7,0.99)", "[0.6, 0.7, 0.99]", "0.6,0.7,0.99", " ( 0.6 , 0.7, 0.99, ) "):
        assert option_from_text(text, (0.5, 0.9), "thresholds") == (0.6, 0.7, 0.99)
    assert option_from_text("[1, 2.5]", [0.5], "sizes") == [1.0, 2.5]
    assert [type(v) for v in option_from_text("(1, 2)", (3, 4), "ids")] == [int, int]
    assert option_from_text("()", (3, 4), "ids") == () and option_from_text("7", (3, 4), "ids") == (7,)
    assert option_from_text("3", 5, "topk") == 3 and isinstance(option_from_text("1", 0.25, "t"), float)
    assert option_from_text("false", True, "flag") is False and option_from_text("Yes", False, "flag") is True
    assert option_from_text("007", "x", "name") == "007" and option_from_text("[1]", "x", "name") == "[1]"
    assert option_from_text("[1, 2]", None, "free") == [1, 2] and option_from_text("abc", None, "free") == "abc"
    assert option_from_text("[" * 100_000, None, "free") == "[" * 100_000  # no default's type: kept as text
    for text, default, expected in (("3.5", 5, "a whole number"), ("x", 0.25, "a number"),
                                    ("maybe", True, "true or false"), ("nan", 0.25, "a number"),
                                    ("9" * 5000, 5, "a whole number"), ("1" + "0" * 400, 0.25, "a number"),
                                    ("(0.6,x)", (0.5,), "a list of numbers"), ("[[0.6]]", (0.5,), "a list of numbers"),
                                    ("[" * 100_000, (0.5,), "a list of numbers"), ("(1.5)", (3, 4), "whole numbers")):
        with pytest.raises(UsageError) as caught:
            option_from_text(text, default, "opt")
        message = str(caught.value)
        assert isinstance(caught.value, ValueError) and "option 'opt'" in message and expected in message, message
        assert len(message) < 200 and "\n" not in message


def test_27_19_option_text_on_the_command_line_is_parsed_by_the_type_of_its_default(monkeypatch, capsys):
    """``zoo predict --option thresholds=(0.6,0.7,0.99)`` gives the postprocessing the tuple its default is; text of
    another type is one line and exit status 2, also in a fresh process for a number too long for Python."""
    import dataclasses
    from pathlib import Path

    from conftest import run_zoo

    import zoo.registry
    from zoo import cli

    zoo_digits = pytest.importorskip("zoo_digits", reason="zoo-digits is not installed: pip install "
                                                          "./plugins/zoo-digits")
    sample = str(Path(zoo_digits.__file__).parent.parent / "samples" / "3.png")

    def thresholded(geometries, thresholds=(0.5, 0.9)):
        return [{"thresholds": thresholds, "type": type(thresholds).__name__}] * len(geometries)

    class Mine:
        @zoo.hookimpl
        def zoo_register_models(self, register):
            register(dataclasses.replace(zoo_digits.load_spec(), name="thresholded", aliases=(),
                                         postprocess=thresholded))

    monkeypatch.setattr(zoo.registry, "_default", registry_with(mine=Mine()))
    assert cli.main(["predict", "thresholded", sample, "--option", "thresholds=(0.6,0.7,0.99)", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["result"] == {"thresholds": [0.6, 0.7, 0.99], "type": "tuple"}
    assert cli.main(["predict", "thresholded", sample, "--option", "thresholds=" + "[" * 100_000]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: option 'thresholds' must be a list of numbers") and err.count("\n") == 1
    huge = run_zoo("predict", "digits", sample, "--option", "topk=" + "9" * 5000)
    assert huge.returncode == 2 and "Traceback" not in huge.stderr, huge.stderr
    assert huge.stderr.startswith("zoo: error: option 'topk' must be a whole number"), huge.stderr


def test_old_style_postprocess_spec_outputs_still_works():
    def old(spec, outputs):
        return [spec.labels[int(i)] for i in outputs["output"].argmax(1)]

    spec = make_spec(postprocess=old)
    task = registry_with().task("image-classification")
    outputs = {"output": np.array([[0.0, 1.0], [2.0, 1.0]])}
    assert run_postprocess(spec, task, outputs, [Geometry.identity(8, 8)] * 2, {}) == ["dog", "cat"]


def test_a_plugin_registers_a_task_and_models_of_it():
    class Depth:
        def __init__(self, value):
            self.value = value

        def to_dict(self):
            return {"value": self.value}

    def depth(outputs, geometries, scale=1.0):
        return [Depth(float(v) * scale) for v in outputs["output"].reshape(len(geometries), -1).mean(1)]

    class Plugin:
        @zoo.hookimpl
        def zoo_register_tasks(self, register):
            register(zoo.Task("depth-estimation", Depth, depth, options={"scale": 1.0}))

        @zoo.hookimpl
        def zoo_register_models(self, register):
            register(make_spec("depthy", task="depth-estimation"))

    registry = registry_with(plugin=Plugin())
    task = registry.task("depth-estimation")
    assert task is not None and task.result is Depth
    (result,) = run_postprocess(registry.get("depthy"), task, {"output": np.ones((1, 4))},
                                [Geometry.identity(8, 8)], {"scale": 2.0})
    assert result.value == 2.0

    class Again:
        @zoo.hookimpl
        def zoo_register_tasks(self, register):
            register(zoo.Task("object-detection", Depth, depth))

    registry = registry_with(again=Again())
    info = registry.plugin_manager.infos["again"]
    assert isinstance(info.error.cause, DuplicateModelError)
    assert "task 'object-detection' is registered by both plugin 'zoo.builtin_tasks' and plugin 'again'" in str(
        info.error)
    assert registry.task("object-detection").result is Detections  # the built-in one stays


# -- results: JSON and drawing ---------------------------------------------------------------------


def test_detections_are_sorted_iterable_and_strict_json_with_coco_rle_masks():
    pycocotools = pytest.importorskip("pycocotools.mask")
    masks = np.zeros((2, 40, 60), bool)
    masks[0, 5:20, 10:30] = True
    masks[1, 25:, :7] = True
    result = Detections(boxes=[[10, 5, 30, 20], [0, 25, 7, 40]], scores=[0.3, 0.9], class_ids=[2, 1],
                        labels=("bird", "dog"), image_size=(40, 60), masks=masks,
                        keypoints=np.ones((2, 2, 3)), keypoint_names=("a", "b"), skeleton=((0, 1),))
    assert len(result) == 2 and [d.label for d in result] == ["dog", "bird"]  # best first
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["detections"][0]["box"] == [0, 25, 7, 40] and data["skeleton"] == [[0, 1]]
    for item, mask in zip(data["detections"], masks[::-1]):
        rle = {"size": item["mask"]["size"], "counts": item["mask"]["counts"].encode()}
        assert (pycocotools.decode(rle).astype(bool) == mask).all()
        assert (_rle.decode(item["mask"]) == mask).all()
    rng = np.random.default_rng(1)
    for _ in range(50):
        mask = rng.random((rng.integers(1, 50), rng.integers(1, 50))) < rng.random()
        theirs = pycocotools.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert _rle.encode(mask)["counts"] == theirs["counts"].decode()


def test_draw_outlines_each_box_where_it_is_and_tints_masks():
    image = np.full((120, 160, 3), 128, np.uint8)
    mask = np.zeros((1, 120, 160), bool)
    mask[0, 80:110, 100:150] = True
    result = Detections(boxes=[[20, 30, 70, 90]], scores=[0.8], class_ids=[0], labels=("cat",), image_size=(120, 160),
                        masks=mask)
    drawn = result.draw(image)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8 and (image == 128).all()  # a copy
    changed = (drawn != 128).any(axis=2)
    assert changed[60, 20] and changed[60, 69] and changed[89, 45]  # the left, right and bottom edges
    assert not changed[60, 45] and not changed[100, 10]  # inside the box (no mask) and outside everything
    assert changed[95, 125] and not changed[70, 125]  # the mask is tinted, not what is next to it
    seg = Segmentation(mask=np.where(np.arange(160)[None, :] < 80, 0, 5).repeat(120, 0), labels=("bg",) + ("x",) * 5)
    painted = seg.draw(image)
    assert (painted[110, 150] != 128).any() and (painted[110, 10] == 128).all()
    assert seg.fractions == {"bg": 0.5, "x": 0.5}
    classified = zoo.Classification(label="cat", class_id=0, score=0.9).draw(image)
    assert (classified[:40, :80] != 128).any() and (classified[80:] == 128).all()


def test_masks_and_keypoints_from_the_graph_come_back_at_the_image_size():
    # an instance-segmentation / keypoint graph that did its own NMS, run on a letterboxed 100x200 image
    geometry = Geometry(original=(100, 200), input=(64, 64), scale=(0.32, 0.32), offset=(16.0, 0.0))
    masks = np.zeros((1, 2, 1, 64, 64), np.float32)
    masks[0, 0, 0, 16:32, 0:32] = 0.9  # the top-left quarter of the image, in the tensor
    masks[0, 1, 0, 40:48, 40:64] = 0.4  # under the 0.5 mask threshold
    outputs = {"boxes": np.array([[[0, 16, 32, 32], [40, 40, 64, 48]]], np.float32),
               "scores": np.array([[0.9, 0.6]], np.float32), "class_ids": np.array([[1, 2]]),
               "masks": masks, "keypoints": np.array([[[[16, 24, 0.8]], [[48, 44, 0.1]]]], np.float32)}
    spec = make_spec(task="instance-segmentation", labels=("bg", "cat", "dog"), decode={"nms": "graph"},
                     preprocess=Preprocess(resize="letterbox", size=(64, 64)))
    task = registry_with().task("instance-segmentation")
    (result,) = run_postprocess(spec, task, outputs, [geometry], accepted_options(spec, task))
    assert result.labels == ("cat", "dog") and result.masks.shape == (2, 100, 200)
    assert np.allclose(result.boxes[0], [0, 0, 100, 50]) and np.allclose(result.boxes[1], [125, 75, 200, 100])
    inside = result.masks[0, :50, :100]  # bilinear: the corner pixels, a third inside each way, fall under 0.5
    assert inside[1:-1, 1:-1].all() and inside.mean() > 0.99 and not result.masks[0, 50:].any()
    assert not result.masks[0, :, 100:].any()
    assert not result.masks[1].any()
    assert np.allclose(result.keypoints[0], [[50, 25, 0.8]]) and np.allclose(result.keypoints[1], [[150, 87.5, 0.1]])
    (fewer,) = run_postprocess(spec, task, outputs, [geometry], accepted_options(spec, task) | {"score_threshold": 0.7})
    assert len(fewer) == 1 and fewer.masks.shape == (1, 100, 200)
    (none,) = run_postprocess(spec, task, outputs, [geometry], accepted_options(spec, task) | {"score_threshold": 0.95})
    assert len(none) == 0 and none.masks.shape == (0, 100, 200) and none.to_dict()["detections"] == []
    assert (none.draw(np.zeros((100, 200, 3), np.uint8)) == 0).all()
    # a graph that found nothing: zero rows of every output (Keypoint R-CNN on an empty picture)
    empty = {"boxes": np.zeros((1, 0, 4), np.float32), "scores": np.zeros((1, 0), np.float32),
             "class_ids": np.zeros((1, 0), np.int64), "masks": np.zeros((1, 0, 64, 64), np.float32),
             "keypoints": np.zeros((1, 0, 17, 3), np.float32)}
    (nothing,) = run_postprocess(spec, task, empty, [geometry], accepted_options(spec, task))
    assert len(nothing) == 0 and nothing.keypoints.shape == (0, 17, 3) and nothing.masks.shape == (0, 100, 200)


def test_detections_compare_allows_rounding_ties_and_one_pixel_mask_shifts_only():
    mask = np.zeros((60, 80), bool)
    mask[10:50, 10:70] = True
    boxes = np.array([[10, 10, 70, 50], [12, 12, 68, 48], [20, 20, 60, 40]], np.float32)

    def found(boxes, scores, masks):
        return Detections(boxes=boxes, scores=np.array(scores, np.float32), class_ids=[0] * len(boxes),
                          labels=("a",) * len(boxes), masks=np.stack(masks), image_size=(60, 80))

    want = found(boxes, [0.9, 0.5, 0.30000], [mask, mask, mask])
    # NMS kept the other of two overlapping boxes whose scores tie: one tie, counted
    tie = found(boxes[[0, 1, 2]] + [[0, 0, 0, 0], [3, 3, 3, 3], [0, 0, 0, 0]], [0.9, 0.5002, 0.3], [mask] * 3)
    assert detection.compare(want, tie, max_ties=0.5)["ties"] == 1
    with pytest.raises(AssertionError, match=r"detection 1 .* is not one of at most 5% ties"):  # 5% of 3: none
        detection.compare(want, tie, max_ties=0.05)
    # at the lowest score of both lists (the max_detections cut) another box may have been kept
    cut = found(np.concatenate([boxes[:2], [[40, 0, 50, 5]]]), [0.9, 0.5, 0.3002], [mask] * 3)
    assert detection.compare(want, cut, max_ties=0.5)["ties"] == 1
    # but not a box elsewhere whose score differs by more than the tolerance
    elsewhere = found(np.concatenate([boxes[:2], [[40, 0, 50, 5]]]), [0.9, 0.5, 0.31], [mask] * 3)
    with pytest.raises(AssertionError, match=r"detection 2 .* no match of the same class at IoU >= 0.99 \(best 0"):
        detection.compare(want, elsewhere, max_ties=0.5)
    one = found(boxes, [0.9, 0.5, 0.3], [np.roll(mask, 1, axis=1)] * 3)
    assert detection.compare(want, one)["min_mask_agreement"] == 1.0  # one pixel off: agrees once shifted back
    with pytest.raises(AssertionError, match=r"masks agree on 9\d\.\d\d% of the pixels"):
        detection.compare(want, found(boxes, [0.9, 0.5, 0.3], [np.roll(mask, 3, axis=1)] * 3))


def test_detections_compare_matches_tiny_boxes_and_boxes_of_no_area_by_their_corners():
    # the first clipped flat at the border (IoU NaN), the second a fifth of a pixel wide: 0.005 px moves its IoU 3%
    boxes = np.array([[0, 384, 15.9, 384], [10, 10, 10.2, 13], [100, 100, 200, 200]], np.float32)

    def found(boxes):
        return Detections(boxes=boxes, scores=[0.9, 0.8, 0.7], class_ids=[1, 1, 1], labels=("a",) * 3,
                          image_size=(384, 384))

    assert detection.compare(found(boxes), found(boxes))["detections"] == 3
    assert detection.compare(found(boxes), found(boxes + [[0.005, 0, 0, 0], [0, 0, 0.005, 0], [0, 0, 0, 0]]))
    flat = boxes.copy()
    flat[0] = [600, 365.1, 640, 365.1]  # flat and 40 px long: 0.1 px is what IoU 0.99 allows a 40 px square
    assert detection.compare(found(flat), found(flat + [[0.09, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(AssertionError, match=r"detection 0 .* no match"):
        detection.compare(found(flat), found(flat + [[0.2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    for k, moved in enumerate(([[0, 0, 2, 0], [0, 0, 0, 0], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0.02, 0], [0, 0, 0, 0]])):
        with pytest.raises(AssertionError, match=rf"detection {k} .* no match"):
            detection.compare(found(boxes), found(boxes + moved))


def test_detections_compare_counts_keypoints_at_another_maximum_of_the_same_score_as_ties():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(0, 60, (40, 17, 2)), rng.uniform(0, 5, (40, 17, 1))], 2).astype(np.float32)
    boxes = np.tile(np.array([[0, 0, 60, 60]], np.float32), (40, 1))

    def found(keypoints):
        return Detections(boxes=boxes, scores=np.linspace(0.9, 0.1, 40, dtype=np.float32), class_ids=[1] * 40,
                          labels=("person",) * 40, keypoints=keypoints, keypoint_names=tuple("abcdefghijklmnopq"),
                          image_size=(60, 60))

    moved = points.copy()
    moved[3, 5, :2] += 12  # another maximum of the same score: a tie
    figures = detection.compare(found(points), found(moved))
    assert (figures["keypoint_ties"], figures["keypoints"], figures["max_keypoint_distance"]) == (1, 680, 0)
    moved[3, 5, 2] += 0.01  # not the same score: a keypoint that moved
    with pytest.raises(AssertionError, match=r"detection 3: keypoint f 12.00 pixels apart"):
        detection.compare(found(points), found(moved))
    many = points.copy()
    many[:, :2, :2] += 3  # 80 of 680 keypoints: more than 5% cannot be ties
    with pytest.raises(AssertionError, match=r"80 of 680 keypoints moved to another maximum of the same score"):
        detection.compare(found(points), found(many))


def test_29_results_render_themselves_and_detections_filter_like_supervisions():
    from zoo.tasks.classification import Classification, Prediction
    from zoo.tasks.regression import Regression

    found = Detections(boxes=[[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]], scores=[0.3, 0.9, 0.6],
                       class_ids=[1, 0, 1], labels=("b", "a", "b"), image_size=(30, 30),
                       masks=np.zeros((3, 30, 30), bool))
    assert found.summary() == "3 detections: a 0.90, b 0.60, b 0.30"
    confident = found[found.scores > 0.5]
    assert confident.labels == ("a", "b") and confident.masks.shape == (2, 30, 30) and len(found[[2]]) == 1
    assert found[found.class_ids == 1].scores.tolist() == pytest.approx([0.6, 0.3])
    assert found[0].labels == ("a",) and found[:0].summary() == "0 detections"
    top = Classification("cat", 1, 0.75, (Prediction("cat", 1, 0.75), Prediction("dog", 0, 0.25)))
    assert top.summary() == "cat 75.00%, dog 25.00%"
    assert Segmentation(np.array([[0, 1], [1, 1]]), ("sky", "sea")).summary() == "sea 75.0%, sky 25.0%"
    assert Regression(34.25, 32.0, 37.5, "years").summary() == "34.2 years [32.0, 37.5]"
    for result in (found, top, Regression(1, 0, 2)):
        assert isinstance(result, zoo.Result)


@pytest.mark.parametrize("position", ["top-left", "center"])
def test_31_03_a_raw_head_decodes_exactly_after_a_pad_resize_letterbox(position):
    """NudeNet's letterbox (pad a 481x641 image to a 641 square, resize to 320): the decoded boxes are the reference
    decoding's, unpadded and unscaled with the square's own factor (not the side's rounded one)."""
    rng = np.random.default_rng(1)
    predictions = np.concatenate([rng.uniform(0, 320, (2100, 2)), rng.uniform(5, 100, (2100, 2)),
                                  rng.random((2100, 4)) ** 6], axis=1).T.astype(np.float32)[None]
    pre = Preprocess(resize="pad-resize", size=(320, 320), pad_position=position)
    _, geometry = pre.transform(np.zeros((481, 641, 3), np.uint8))
    spec = make_spec(task="object-detection", labels=("a", "b", "c", "d"), preprocess=pre,
                     decode={"boxes": "cxcywh", "transpose": True})
    task = registry_with().task("object-detection")
    (result,) = run_postprocess(spec, task, {"output": predictions}, [geometry],
                                accepted_options(spec, task) | {"max_detections": 300})
    boxes, best, classes = yolo_reference(predictions[0], 0.25, 0.5, 300)
    factor, top = 320 / 641, (80 if position == "center" else 0)
    expected = np.clip((boxes / factor) - [0, top, 0, top], 0, [641, 481, 641, 481])
    assert len(result) > 10 and np.array_equal(result.class_ids, classes)
    np.testing.assert_allclose(result.boxes, expected, atol=2e-3)
