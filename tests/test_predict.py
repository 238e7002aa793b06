"""Model.predict and `zoo predict`: runtimes that agree with PyTorch, batches, threads, results, the CLI."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
skimage_data = pytest.importorskip("skimage.data")

import cv2
from conftest import run_zoo
from tinymodels import make_net, tiny_spec

import zoo
from zoo.results import Classification, classify, softmax

PHOTOS = [skimage_data.chelsea(), skimage_data.coffee(), skimage_data.astronaut(), skimage_data.rocket(),
          np.ascontiguousarray(skimage_data.chelsea()[::-1])]


@pytest.fixture(scope="module")
def squeezenet_weights(tmp_path_factory):
    """squeezenet1_1 with perturbed random weights (so that its outputs differ between images)."""
    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_1()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        head = net.classifier[1].weight  # initialised tiny: one class would win for every image
        head.copy_(torch.randn_like(head) * 0.05)
    path = tmp_path_factory.mktemp("weights") / "squeezenet.pth"
    torch.save(net.state_dict(), path)
    return path


def test_onnxruntime_opencv_and_pytorch_agree(squeezenet_weights):
    ort = zoo.get("squeezenet1_1", weights=squeezenet_weights)
    ocv = zoo.get("squeezenet1_1", weights=squeezenet_weights, runtime="opencv")
    assert ort.path == ocv.path and ort.runtime == "onnxruntime" and ocv.runtime == "opencv"
    batch = ort.preprocess(PHOTOS)
    net = torchvision.models.squeezenet1_1()
    net.load_state_dict(torch.load(squeezenet_weights, weights_only=True))
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(batch)).numpy()
    from_ort, from_ocv = ort.run(batch)["logits"], ocv.run(batch)["logits"]
    scale = np.abs(expected).max()
    assert np.abs(from_ort - expected).max() <= 1e-4 * scale
    assert np.abs(from_ocv - expected).max() <= 1e-4 * scale
    assert (from_ort.argmax(1) == expected.argmax(1)).all() and (from_ocv.argmax(1) == expected.argmax(1)).all()
    assert len(set(expected.argmax(1))) > 1  # the check is not vacuous


def test_predict_one_and_many_in_batches(squeezenet_weights):
    model = zoo.get("squeezenet1_1", weights=squeezenet_weights, batch_size=2)
    one = model.predict(PHOTOS[0], topk=3)
    assert isinstance(one, Classification) and len(one.topk) == 3
    assert one.label == one.topk[0].label and one.class_id == one.topk[0].class_id
    assert one.topk[0].score >= one.topk[1].score >= one.topk[2].score
    assert one.label == model.spec.labels[one.class_id]
    many = model.predict(PHOTOS)  # three batches of 2, 2, 1
    assert [r.class_id for r in many] == [model.predict(p).class_id for p in PHOTOS]
    assert many[0] == model.predict([PHOTOS[0]], batch_size=1)[0]
    json.dumps([r.to_dict() for r in many])  # JSON-ready
    logits = model.run(model.preprocess(PHOTOS[0]))["logits"][0]
    assert np.allclose([p.score for p in one.topk], np.sort(softmax(logits[None])[0])[::-1][:3])


@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv"])
def test_predict_from_many_threads(squeezenet_weights, runtime):
    model = zoo.get("squeezenet1_1", weights=squeezenet_weights, runtime=runtime)
    expected = [model.predict(p) for p in PHOTOS]
    results: dict[int, list] = {}

    def worker(i: int) -> None:
        results[i] = [model.predict(p) for p in PHOTOS * 2]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] == expected * 2 for i in range(8))


def test_softmax_only_where_the_spec_declares_logits():
    logits = np.array([[2.0, 1.0, 0.0]])
    assert np.allclose([p.score for p in classify(logits, ("a", "b", "c"), 3)[0].topk], softmax(logits)[0])
    probabilities = np.array([[0.7, 0.2, 0.1]])
    kept = classify(probabilities, ("a", "b", "c"), 3, logits=False)[0]
    assert [p.score for p in kept.topk] == pytest.approx([0.7, 0.2, 0.1])

    def build(spec, weights):
        return torch.nn.Sequential(make_net(), torch.nn.Softmax(dim=1))

    model = zoo.get(tiny_spec(name="tiny-probs", build=build, outputs=("probabilities",), scores="probabilities"))
    result = model.predict(PHOTOS[1], topk=5)
    raw = model.run(model.preprocess(PHOTOS[1]))["probabilities"][0]
    assert [p.score for p in result.topk] == pytest.approx(sorted(raw, reverse=True), abs=1e-6)


def test_bad_runtime_and_batch_size():
    with pytest.raises(zoo.ZooError, match="unknown runtime 'tensorrt'"):
        zoo.get(tiny_spec(), runtime="tensorrt")
    with pytest.raises(zoo.ZooError, match="batch_size"):
        zoo.get(tiny_spec(), batch_size=0)
    with pytest.raises(zoo.ZooInputError, match="does not exist"):
        zoo.get(tiny_spec()).predict("no-such-photo.jpg")


def test_zoo_predict_command(squeezenet_weights, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, photo in enumerate(PHOTOS[:3]):
        cv2.imwrite(str(folder / f"photo {i}.jpg"), photo[:, :, ::-1])
    (folder / "broken.jpg").write_text("not a photo")
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    args = ["predict", "squeezenet1_1", "--weights", str(squeezenet_weights)]
    missing = run_zoo(*args, str(folder), str(tmp_path / "missing.jpg"), "-k", "2", "--json")
    assert missing.returncode == 1 and "missing.jpg' does not exist" in missing.stderr and not missing.stdout
    result = run_zoo(*args, str(folder), "-k", "2", "--json")
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert [r["image"].rsplit("/", 1)[-1] for r in rows] == ["broken.jpg", "photo 0.jpg", "photo 1.jpg",
                                                               "photo 2.jpg"]
    assert "not an image" in rows[0]["error"]
    assert all(len(r["result"]["topk"]) == 2 for r in rows[1:4])
    assert "1 of 4 image(s) failed" in result.stderr and "broken.jpg" in result.stderr

    code = ("import sys, zoo.cli; zoo.cli.main(sys.argv[1:]); "
            "print('torch imported' if 'torch' in sys.modules else 'no torch')")
    warm = run_zoo(*args, str(folder / "photo 0.jpg"), code=code)
    assert warm.returncode == 0 and warm.stdout.strip().endswith("no torch"), warm.stderr  # cache warm: no torch

    text = run_zoo(*args, str(folder / "photo*.jpg"), "--runtime", "opencv", "-k", "1")
    assert text.returncode == 0, text.stderr
    assert text.stdout.count("photo ") == 3 and "%" in text.stdout


def test_regression_result_is_json_ready():
    from zoo.results import Regression

    age = Regression(value=31.5, low=29.5, high=34.5, unit=" years")
    assert json.loads(json.dumps(age.to_dict())) == {"value": 31.5, "low": 29.5, "high": 34.5, "unit": " years"}
