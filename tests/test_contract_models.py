"""The contract beyond classifiers, end to end: small networks built here, exported, cached and predicted.

A fully convolutional segmenter on images of three sizes; a letterboxed detector whose
boxes come back on rectangles drawn at known places; a raw-head detector decoded by the
declarative postprocessing, with NMS in the zoo and in the graph; a two-model pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import registry_with
from test_contract import scene, yolo_reference

import zoo
import zoo.registry
from zoo import builtin_tasks
from zoo.tasks import detection
from zoo.testing import check_model, randomize

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


class Bright(torch.nn.Module):
    """Semantic segmentation of bright pixels: class 1 where the mean of RGB in [0, 1] is over 0.5, at stride 2."""

    def forward(self, x):
        brightness = torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True), 2)
        return torch.cat([torch.zeros_like(brightness), 40 * (brightness - 0.5)], dim=1)


class BrightBox(torch.nn.Module):
    """A detector of the bright rectangle: one box per image, ``[x1, y1, x2, y2, score, class]``."""

    def forward(self, x):
        on = x.mean(1) > 0.5
        rows, cols = on.any(2), on.any(1)
        ys = torch.arange(rows.shape[1], dtype=x.dtype).expand_as(rows)
        xs = torch.arange(cols.shape[1], dtype=x.dtype).expand_as(cols)
        big = torch.full_like(ys, 1e6)
        y1 = torch.where(rows, ys, big).amin(1)
        y2 = torch.where(rows, ys + 1, torch.zeros_like(ys)).amax(1)
        x1 = torch.where(cols, xs, torch.full_like(xs, 1e6)).amin(1)
        x2 = torch.where(cols, xs + 1, torch.zeros_like(xs)).amax(1)
        score, label = torch.ones_like(x1), torch.zeros_like(x1)
        return torch.stack([x1, y1, x2, y2, score, label], dim=1)[:, None, :]


class Head(torch.nn.Module):
    """A YOLO-style raw head on a 64x64 input: 8x8 cells, each a box (cx, cy, w, h) in pixels and 3 class scores."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 7, 8, stride=8)

    def forward(self, x):
        out = self.conv(x).flatten(2)  # (N, 7, 64)
        cells = torch.arange(64, dtype=x.dtype)
        cx, cy = (cells % 8) * 8 + 4 + 4 * torch.tanh(out[:, 0]), (cells // 8) * 8 + 4 + 4 * torch.tanh(out[:, 1])
        w, h = 40 * torch.sigmoid(out[:, 2]) + 8, 40 * torch.sigmoid(out[:, 3]) + 8
        return torch.cat([torch.stack([cx, cy, w, h], 1), torch.sigmoid(out[:, 4:])], 1)  # (N, 4 + 3, 64)


class HeadWithNms(torch.nn.Module):
    """The same head with thresholding and per-class NMS in the graph: one image's boxes, scores and classes."""

    def __init__(self, head, score_threshold=0.3, iou_threshold=0.5):
        super().__init__()
        self.head, self.score_threshold, self.iou_threshold = head, score_threshold, iou_threshold

    def forward(self, x):
        rows = self.head(x)[0].T  # one image: (64, 7)
        boxes = torchvision.ops.box_convert(rows[:, :4], "cxcywh", "xyxy")
        scores, classes = rows[:, 4:].max(1)
        keep = scores >= self.score_threshold
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        kept = torchvision.ops.batched_nms(boxes, scores, classes, self.iou_threshold)
        return boxes[kept], scores[kept], classes[kept]


def head() -> Head:
    torch.manual_seed(7)
    return randomize(Head(), (3, 64, 64))


def test_a_fully_convolutional_segmenter_predicts_images_of_three_sizes(zoo_cache_dir):
    spec = zoo.ModelSpec(name="bright", task="semantic-segmentation", labels=("dark", "bright"),
                         preprocess=zoo.Preprocess(multiple=8, batching="pad"), build=lambda s, w: Bright().eval(),
                         outputs=("logits",))
    model = zoo.get(spec)
    assert model.session.inputs["input"][2:] == ["height", "width"]  # exported with a dynamic size
    truths = [(37, 50, (4, 6, 30, 20)), (64, 64, (0, 0, 64, 10)), (121, 90, (20, 50, 89, 120))]
    photos = [scene(h, w, [box]) for h, w, box in truths]
    for results in (model.predict(photos), [model.predict(p) for p in photos]):  # padded together, and alone
        for (h, w, (x1, y1, x2, y2)), result in zip(truths, results):
            expected = np.zeros((h, w), np.int32)
            expected[y1:y2, x1:x2] = 1
            assert result.mask.shape == (h, w) and (result.mask == expected).mean() >= 0.97
    report = check_model(spec, opencv=False)
    assert report.input_shape == (3, None, None) and report.results[0]["classes"]


@pytest.mark.parametrize("position", ["center", "top-left"])
def test_a_letterboxed_detector_gives_boxes_in_original_pixels(zoo_cache_dir, position):
    spec = zoo.ModelSpec(name=f"brightbox-{position}", task="object-detection", labels=("rectangle",),
                         preprocess=zoo.Preprocess(resize="letterbox", size=(96, 96), pad_value=114,
                                                   pad_position=position, interpolation="nearest", antialias=False),
                         build=lambda s, w: BrightBox().eval(), decode={"nms": "graph"}, outputs=("detections",))
    model = zoo.get(spec)
    cases = [((240, 400), (30, 100, 210, 180)), ((500, 150), (10, 300, 140, 480)), ((96, 96), (20, 20, 40, 90))]
    results = model.predict([scene(*size, [box]) for size, box in cases])
    for (size, box), result in zip(cases, results):
        assert len(result) == 1 and result.labels == ("rectangle",)
        pixel = max(size) / 96  # one input pixel, in original pixels
        assert np.abs(result.boxes[0] - box).max() <= pixel + 1e-3, (size, result.boxes[0], box)
    check_model(spec, opencv=False)


def test_a_raw_head_is_decoded_with_nms_in_the_zoo_and_in_the_graph(zoo_cache_dir, tmp_path):
    pre = zoo.Preprocess(resize=(64, 64))
    common = {"task": "object-detection", "labels": ("a", "b", "c"), "preprocess": pre, "options": {"score_threshold": 0.3}}
    raw_spec = zoo.ModelSpec(name="raw", build=lambda s, w: head(), outputs=("output0",),
                             rename_outputs={"output0": "predictions"},
                             decode={"boxes": "cxcywh", "transpose": True}, **common)
    nms_spec = zoo.ModelSpec(name="nms", build=lambda s, w: HeadWithNms(head()).eval(), batch_axis=False,
                             outputs=("boxes", "scores", "class_ids"), decode={"nms": "graph"}, **common)
    raw, in_graph = zoo.get(raw_spec, weights="random"), zoo.get(nms_spec, weights="random")
    photos = [scene(64, 64, [(10, 10, 40, 30)]), scene(128, 96, [(50, 20, 90, 120)]), scene(64, 64, [])]
    for photo in photos:
        batch, _ = raw.transform(photo)
        outputs = raw.run(batch)["output0"][0]
        boxes, scores, classes = yolo_reference(outputs, 0.3, 0.5, 100)
        got = raw.predict(photo)
        assert 3 <= len(got) < 64  # random weights that detect, and NMS that removes
        scale = np.array([photo.shape[1] / 64, photo.shape[0] / 64] * 2)
        assert np.allclose(got.boxes, np.clip(boxes * scale, 0, [photo.shape[1], photo.shape[0]] * 2), atol=1e-3)
        assert np.array_equal(got.class_ids, classes) and np.allclose(got.scores, scores, atol=1e-6)
        figures = detection.compare(got, in_graph.predict(photo), iou=0.999, score_tolerance=1e-5)
        assert figures["detections"] == len(got)
    with pytest.raises(zoo.UsageError, match=r"does not take the option topk; it takes iou_threshold=0.5"):
        raw.predict(photos[0], topk=3)
    fewer = raw.predict(photos[0], score_threshold=0.6, max_detections=2)
    assert len(fewer) <= 2 and (fewer.scores >= 0.6).all()
    report = check_model(nms_spec, weights="random", opencv=False)
    assert report.results[0]["detections"], "random weights must detect something, or the check proves nothing"


def test_torchvision_batched_nms_and_the_zoos_agree_on_random_boxes():
    rng = np.random.default_rng(11)
    for n, threshold in ((50, 0.3), (500, 0.5), (2000, 0.7)):
        corners = rng.uniform(0, 600, (n, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(5, 150, (n, 2))], 1).astype(np.float32)
        scores, classes = rng.random(n).astype(np.float32), rng.integers(0, 5, n)
        theirs = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                             torch.from_numpy(classes), threshold).numpy()
        assert detection.batched_nms(boxes, scores, classes, threshold).tolist() == theirs.tolist()
        theirs = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).numpy()
        assert detection.nms(boxes, scores, threshold).tolist() == theirs.tolist()


class Colour(torch.nn.Module):
    """A classifier of a crop's dominant channel: red, green or blue."""

    def forward(self, x):
        return 10 * x.mean((2, 3))


def colour_boxes(models, image, min_score=0.5):
    """The pipeline: find the bright rectangle, then name its colour."""
    found = models["finder"].predict(image)
    labels, ids = [], []
    for box in found.boxes:
        x1, y1, x2, y2 = (int(v) for v in box)
        colour = models["colour"].predict(image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)])
        labels.append(colour.label)
        ids.append(colour.class_id)
    return zoo.Detections(boxes=found.boxes, scores=found.scores, class_ids=ids, labels=tuple(labels),
                          image_size=image.shape[:2])


class PipelinePlugin:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        register(zoo.ModelSpec(name="finder", task="object-detection", labels=("thing",), outputs=("detections",),
                               preprocess=zoo.Preprocess(resize="letterbox", size=(64, 64), interpolation="nearest"),
                               build=lambda s, w: BrightBox().eval(), decode={"nms": "graph"}))
        register(zoo.ModelSpec(name="colour", task="image-classification", labels=("red", "green", "blue"),
                               preprocess=zoo.Preprocess(resize=(16, 16)), build=lambda s, w: Colour().eval()))
        register(zoo.ModelSpec(name="colour-finder", task="object-detection", requires=("finder", "colour"),
                               run=colour_boxes, summary="finds the bright rectangle and names its colour"))


def test_a_pipeline_of_two_registered_models(zoo_cache_dir, monkeypatch):
    monkeypatch.setattr(zoo.registry, "_default", registry_with(pipes=PipelinePlugin()))
    pipeline = zoo.get("colour-finder", threads=1)
    assert isinstance(pipeline, zoo.Pipeline) and sorted(pipeline.models) == ["colour", "finder"]
    assert all(m.session.session.get_session_options().intra_op_num_threads == 1 for m in pipeline.models.values())
    image = scene(120, 160, [])
    image[30:90, 40:100] = (250, 240, 10)  # a yellow rectangle: bright, and red wins by a little
    image[30:90, 40:70, 0] = 200
    result = pipeline.predict(image)
    assert result.labels == ("green",) and np.abs(result.boxes[0] - [40, 30, 100, 90]).max() <= 120 / 64 + 1e-3
    assert json.loads(json.dumps(result.to_dict()))["detections"][0]["label"] == "green"
    with pytest.raises(zoo.UsageError, match=r"does not take the option topk; it takes min_score=0.5"):
        pipeline.predict(image, topk=1)
    with pytest.raises(zoo.UsageError, match=r"is a pipeline of finder, colour; opset cannot apply"):
        zoo.get("colour-finder", opset=18)
    report = check_model("colour-finder", opencv=False)
    assert report.source == "pipeline" and sorted(report.parts) == ["colour", "finder"]


def test_zoo_predict_saves_pictures_prints_detections_and_treats_a_pipeline_as_one(zoo_cache_dir, monkeypatch,
                                                                                  tmp_path, capsys):
    import cv2

    from zoo import cache, cli

    monkeypatch.setattr(zoo.registry, "_default", registry_with(pipes=PipelinePlugin()))
    photo = scene(90, 120, [(30, 20, 80, 70)])
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    cv2.imwrite(str(tmp_path / "b.jpg"), scene(50, 50, [(5, 5, 20, 40)]))
    out = tmp_path / "drawn"
    assert cli.main(["predict", "finder", str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "--save", str(out),
                     "--score-threshold", "0.5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [Path(r["saved"]).name for r in rows] == ["a.png", "b.jpg"]
    first = rows[0]["result"]["detections"][0]
    assert first["label"] == "thing" and np.abs(np.subtract(first["box"], [30, 20, 80, 70])).max() <= 2
    drawn = cv2.imread(rows[0]["saved"])
    assert drawn.shape == photo.shape and (drawn[45, 30] != photo[45, 30]).any()  # the box's left edge is drawn
    assert cli.main(["predict", "finder", str(tmp_path / "a.png"), "--topk", "3"]) == 2
    assert "does not take the option topk" in capsys.readouterr().err
    assert cli.main(["predict", "colour-finder", str(tmp_path / "a.png"), "-o", "min_score=0.2"]) == 0
    assert ".png: 1 detection: red 1.00" in capsys.readouterr().out
    assert cli.main(["info", "colour-finder"]) == 0
    assert "pipeline of  finder, colour" in capsys.readouterr().out
    assert cli.main(["cache", "rm", "colour-finder"]) == 0
    removed = capsys.readouterr().out
    assert "removed finder/" in removed and "removed colour/" in removed
    assert not [e.name for e in cache.entries()]


def test_the_readme_pictures_script_finds_each_shape_and_writes_one_picture_per_task(zoo_cache_dir, monkeypatch,
                                                                                      tmp_path):
    import importlib.util

    import cv2

    spec = importlib.util.spec_from_file_location("pictures", Path(__file__).parents[1] / "docs" / "pictures.py")
    pictures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pictures)
    specs, image = pictures.specs(), pictures.scene()
    found = zoo.get(specs["keypoint-detection"]).predict(image)
    assert found.labels == ("rectangle", "disc", "triangle")  # by score: the share of the box each fills
    rectangle, disc = found.boxes[0], found.boxes[1]
    assert np.allclose(rectangle, [250, 140, 346, 226]) and np.allclose(disc, [25, 55, 136, 166])
    assert np.allclose(found.keypoints[1, :, :2], [[80, 55], [135, 110], [80, 165], [25, 110], [80, 110]], atol=0.5)
    masks = zoo.get(specs["instance-segmentation"]).predict(image).masks
    assert masks.shape == (3, 240, 360) and abs(masks[1].sum() - np.pi * 55**2) / (np.pi * 55**2) < 0.03
    classes = zoo.get(specs["semantic-segmentation"]).predict(image)
    assert classes.mask[110, 80] == 1 and classes.mask[180, 300] == 3 and classes.mask[5, 5] == 0
    monkeypatch.setenv("ZOO_CACHE_DIR", str(zoo_cache_dir))  # main() points it at a folder of its own
    assert pictures.main(["--out", str(tmp_path)]) == 0
    written = sorted(p.stem for p in tmp_path.glob("*.png"))
    built_in: list[str] = []
    builtin_tasks.zoo_register_tasks(lambda task: built_in.append(task.name))
    assert written == sorted(built_in)  # every built-in task (a plugin's own tasks draw their own pictures)
    drawn = cv2.imread(str(tmp_path / "object-detection.png"))
    assert (drawn[180, 250] != cv2.cvtColor(image, cv2.COLOR_RGB2BGR)[180, 250]).any()  # the rectangle's left edge


class AliasPipelinePlugin:
    """The pipeline above, requiring its classifier by an alias."""

    @zoo.hookimpl
    def zoo_register_models(self, register):
        register(zoo.ModelSpec(name="finder", task="object-detection", labels=("thing",), outputs=("detections",),
                               preprocess=zoo.Preprocess(resize="letterbox", size=(64, 64), interpolation="nearest"),
                               build=lambda s, w: BrightBox().eval(), decode={"nms": "graph"}))
        register(zoo.ModelSpec(name="colour", aliases=("hue",), task="image-classification",
                               labels=("red", "green", "blue"), preprocess=zoo.Preprocess(resize=(16, 16)),
                               build=lambda s, w: Colour().eval()))
        register(zoo.ModelSpec(name="hue-finder", task="object-detection", requires=("finder", "hue"),
                               run=colour_boxes))


def test_27_14_a_pipeline_requiring_an_alias_keeps_its_parts_in_info_and_bundles(zoo_cache_dir, monkeypatch,
                                                                                 tmp_path, capsys):
    from zoo import bundle, cli

    monkeypatch.setattr(zoo.registry, "_default", registry_with(pipes=AliasPipelinePlugin()))
    assert sorted(zoo.get("hue-finder").models) == ["finder", "hue"]
    assert sorted(e["name"] for e in zoo.info("hue-finder")["cache"]["entries"]) == ["colour", "finder"]
    assert cli.main(["bundle", "export", "hue-finder", "-o", str(tmp_path / "parts.zoo")]) == 0
    capsys.readouterr()
    assert sorted(e["name"] for e in bundle.read_manifest(tmp_path / "parts.zoo")["entries"]) == ["colour", "finder"]
    assert cli.main(["pull", "hue-finder"]) == 0
    assert "hue-finder: colour at" in capsys.readouterr().out


class Blind(BrightBox):
    """BrightBox whose score threshold is never met: no detection on any input, as unlucky random weights give."""

    def forward(self, x):
        found = super().forward(x)
        return found[:, found[0, :, 4] > 2]


class BlindPlugin:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        for name, net in (("blind", Blind), ("finder", BrightBox)):
            register(zoo.ModelSpec(name=name, task="object-detection", labels=("thing",), outputs=("detections",),
                                   preprocess=zoo.Preprocess(resize="letterbox", size=(64, 64)),
                                   build=lambda s, w, net=net: net().eval(), decode={"nms": "graph"}))


def test_27_02_an_export_whose_parity_compared_nothing_says_so_everywhere(zoo_cache_dir, monkeypatch, capsys):
    from zoo import cli

    monkeypatch.setattr(zoo.registry, "_default", registry_with(pipes=BlindPlugin()))
    assert cli.main(["export", "blind"]) == 0
    shown = capsys.readouterr().out
    assert "NOT COMPARED" in shown and "detections per input 0, 0, 0" in shown and "max abs diff" not in shown
    assert cli.main(["export", "blind", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["not_compared"] is True and data["compared"] == [{"detections": 0}] * 3
    assert cli.main(["info", "blind"]) == 0
    assert "parity NOT COMPARED" in capsys.readouterr().out
    assert cli.main(["cache", "list", "--json"]) == 0
    assert [m["parity"] for m in json.loads(capsys.readouterr().out)["models"]] == ["not compared"]
    with pytest.raises(AssertionError, match="parity compared nothing"):
        check_model("blind", opencv=False)

    assert cli.main(["export", "finder"]) == 0  # a detector that finds something: compared, and the counts shown
    shown = capsys.readouterr().out
    assert "NOT COMPARED" not in shown and "detections per input 1, 1, 1" in shown
    assert check_model("finder", opencv=False).parity


def test_27_02_export_prints_outputs_compared_as_results():
    from zoo.cli.render import parity_lines as _parity_lines

    meta = {"exporter": "torchscript", "opset": 17, "simplify_note": "simplified with onnxsim", "samples": 3,
            "compared": [{"detections": 4}, {"detections": 2}, {"detections": 0}],
            "parity": {"boxes": {"max_abs": None, "max_rel": None, "top1_agreement": None,
                                 "note": "compared as results: 'x': output 'boxes' has shape (5, 4) in ONNX"}}}
    lines = dict(_parity_lines(meta))
    assert lines["parity"].startswith("boxes: compared as results") and lines["compared"] == (
        "detections per input 4, 2, 0")
