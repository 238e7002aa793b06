"""Model.predict and `zoo predict`: runtimes that agree with PyTorch, batches, threads, results, the CLI."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
skimage_data = pytest.importorskip("skimage.data")

import cv2
from conftest import ROOT, registry_with, run_zoo
from onnx import TensorProto, helper
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

    model = zoo.get(tiny_spec(name="tiny-probs", build=build, outputs=("probabilities",), scores="probabilities"), weights="random")
    result = model.predict(PHOTOS[1], topk=5)
    raw = model.run(model.preprocess(PHOTOS[1]))["probabilities"][0]
    assert [p.score for p in result.topk] == pytest.approx(sorted(raw, reverse=True), abs=1e-6)


def two_outputs_onnx(path: Path) -> zoo.Artifact:
    """A prebuilt graph for ``(N, 1, 2, 2)`` inputs with two outputs: ``extra``, the 4 pixels flattened, then
    ``probs``, the last 2 of them."""
    starts, ends, axes = (helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in
                          (("starts", 2), ("ends", 4), ("axes", 1)))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["extra"], axis=1),
         helper.make_node("Slice", ["extra", "starts", "ends", "axes"], ["probs"])], "two",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 2, 2])],
        [helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2])], [starts, ends, axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return zoo.Artifact(url=path.as_uri(), sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def test_27_19_classification_reads_the_declared_output_and_checks_its_width(tmp_path, monkeypatch, capsys):
    """The output renamed ``scores`` is read, not the first; a first output of 4 values for 2 labels is refused
    (``SpecError`` naming the model, the output, both counts and the fix), on the command line in one line."""
    import zoo.registry
    from zoo import cli

    fields = dict(task="image-classification", onnx=two_outputs_onnx(tmp_path / "two.onnx"), plugin="mine",
                  outputs=("extra", "probs"), labels=("a", "b"), scores="probabilities",
                  preprocess=zoo.Preprocess(channels="GRAY", resize=(2, 2), interpolation="nearest"))
    image = np.array([[255, 0], [0, 255]], np.uint8)  # extra [1, 0, 0, 1]: its best is 'a'; probs [0, 1]: 'b'
    declared = zoo.get(zoo.ModelSpec(name="declared", rename_outputs={"probs": "scores"}, **fields))
    result = declared.predict(image)
    assert (result.label, result.score) == ("b", 1.0)
    assert [(p.label, p.score) for p in result.topk] == [("b", 1.0), ("a", 0.0)]
    undeclared = zoo.ModelSpec(name="undeclared", **fields)
    with pytest.raises(zoo.SpecError) as caught:
        zoo.get(undeclared).predict(image)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and "\n" not in message
    for part in ("model 'undeclared'", "'extra'", "4 values per image", "2 labels", "rename_outputs", "'scores'"):
        assert part in message, message

    class Mine:
        @zoo.hookimpl
        def zoo_register_models(self, register):
            register(undeclared)

    monkeypatch.setattr(zoo.registry, "_default", registry_with(mine=Mine()))
    cv2.imwrite(str(tmp_path / "x.png"), image)
    assert cli.main(["predict", "undeclared", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and "'extra'" in err and "Traceback" not in err


def test_bad_runtime_and_batch_size():
    with pytest.raises(zoo.ZooError, match="unknown runtime 'tensorrt'"):
        zoo.get(tiny_spec(), runtime="tensorrt", weights="random")
    with pytest.raises(zoo.ZooError, match="batch_size"):
        zoo.get(tiny_spec(), batch_size=0, weights="random")
    with pytest.raises(zoo.ZooInputError, match="does not exist"):
        zoo.get(tiny_spec(), weights="random").predict("no-such-photo.jpg")


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


DIGIT_SAMPLES = ROOT / "plugins" / "zoo-digits" / "samples"


def digits_in(folder: Path, *names: str) -> Path:
    """``folder`` holding zoo-digits' samples under ``names`` (``3.png``; the format follows the suffix)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.open(DIGIT_SAMPLES / f"{i % 10}.png").save(folder / name)
    return folder


def test_27_04_save_never_overwrites_an_input_or_an_existing_file(tmp_path):
    same = digits_in(tmp_path / "same", "3.png", "7.png")
    inputs = {p.name: p.read_bytes() for p in same.iterdir()}
    result = run_zoo("predict", "digits", str(same), "--save", str(same), "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert {name: (same / name).read_bytes() for name in inputs} == inputs  # the inputs are untouched
    rows = json.loads(result.stdout)
    assert {Path(r["image"]).name: Path(r["saved"]).name for r in rows} == {"3.png": "3-2.png", "7.png": "7-2.png"}
    assert sorted(p.name for p in same.iterdir()) == ["3-2.png", "3.png", "7-2.png", "7.png"]

    out = tmp_path / "out"
    out.mkdir()
    (out / "3.png").write_bytes(b"mine")  # a file that is not an input: refused, before any model or file
    fresh = {"ZOO_CACHE_DIR": str(tmp_path / "fresh-cache")}
    args = ("predict", "digits", str(same / "3.png"), str(same / "7.png"), "--save", str(out))
    refused = run_zoo(*args, env=fresh)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("zoo: error: ") and str(out / "3.png") in line and "--overwrite" in line, line
    assert [p.name for p in out.iterdir()] == ["3.png"] and (out / "3.png").read_bytes() == b"mine"
    assert not list((tmp_path / "fresh-cache").rglob("*.onnx"))  # no model was built

    overwritten = run_zoo(*args, "--overwrite", env=fresh)
    assert overwritten.returncode == 0, overwritten.stderr
    assert cv2.imread(str(out / "3.png")) is not None and (out / "7.png").is_file()
    assert {name: (same / name).read_bytes() for name in inputs} == inputs
    again = run_zoo("predict", "digits", str(same / "3.png"), "--save", str(same), "--overwrite")
    assert again.returncode == 0 and (same / "3.png").read_bytes() == inputs["3.png"]  # never over an input


def test_27_04_save_lists_which_input_went_where(tmp_path):
    photos = digits_in(tmp_path / "in", "x.bmp", "x.gif", "x.tiff")  # (not .webp: Pillow fails one from a mmap)
    out = tmp_path / "out"
    text = run_zoo("predict", "digits", str(photos), "--save", str(out))
    assert text.returncode == 0 and "Traceback" not in text.stderr, text.stderr
    where = {"x.bmp": "x.png", "x.gif": "x-2.png", "x.tiff": "x-3.png"}  # in the order of the (sorted) inputs
    for image, saved in where.items():
        assert f"saved {photos / image} as {out / saved}" in text.stderr
    for flag in ("--json", "--jsonl"):
        result = run_zoo("predict", "digits", str(photos), "--save", str(out), "--overwrite", flag)
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout) if flag == "--json" else [json.loads(x) for x in result.stdout.splitlines()]
        assert {Path(r["image"]).name: r["saved"] for r in rows} == {i: str(out / s) for i, s in where.items()}


def test_27_09_an_unknown_runtime_or_provider_fails_before_any_export():
    from zoo import cache

    built: list[str] = []

    def build(spec, weights):
        built.append(spec.name)
        return make_net(len(spec.labels))

    spec = tiny_spec(name="tiny-recorded", build=build)
    for arguments, message in (({"runtime": "tensorrt"}, "unknown runtime 'tensorrt'; choose one of onnxruntime"),
                               ({"providers": ["NoSuchExecutionProvider"]},
                                "execution provider NoSuchExecutionProvider is not available"),
                               ({"runtime": "opencv", "providers": ["CPUExecutionProvider"]}, "OpenCV DNN has none")):
        with pytest.raises(zoo.UsageError, match=message):
            zoo.get(spec, **arguments)
    assert built == [] and not cache.entries()
    cli = run_zoo("predict", "digits", "--providers", "NoSuchExecutionProvider", str(DIGIT_SAMPLES / "3.png"))
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert cli.stderr.startswith("zoo: error: execution provider NoSuchExecutionProvider is not available"), cli.stderr
    exported = run_zoo("export", "digits", "--providers", "NoSuchExecutionProvider")
    assert exported.returncode == 2 and "NoSuchExecutionProvider" in exported.stderr, exported.stderr
    assert not cache.entries("digits")


def test_27_09_providers_does_not_swallow_the_images():
    from zoo.cli import build_parser

    image = str(DIGIT_SAMPLES / "3.png")
    result = run_zoo("predict", "digits", "--providers", "CPUExecutionProvider", image, "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    [row] = json.loads(result.stdout)
    assert row["image"] == image and row["result"]["label"] == "3"
    exported = run_zoo("export", "digits", "--providers", "CPUExecutionProvider", "--json")
    assert exported.returncode == 0 and json.loads(exported.stdout)["providers"] == ["CPUExecutionProvider"]
    args = build_parser().parse_args(["predict", "digits", "--providers", "A,B", image, "--providers", "C"])
    assert args.providers == ["A", "B", "C"] and args.images == [image]


def test_27_10_predict_takes_option_and_o_still_works_with_a_warning():
    image = str(DIGIT_SAMPLES / "3.png")
    new = run_zoo("predict", "digits", image, "--option", "topk=2", "--json")
    old = run_zoo("predict", "digits", image, "-o", "topk=2", "--json")
    assert new.returncode == 0 and old.returncode == 0, new.stderr + old.stderr
    assert len(json.loads(new.stdout)[0]["result"]["topk"]) == 2 and new.stdout == old.stdout
    assert "deprecated" not in new.stderr
    assert "zoo: warning: -o KEY=VALUE is deprecated; use --option KEY=VALUE" in old.stderr
    bad = run_zoo("predict", "digits", image, "--option", "topk")
    assert bad.returncode == 2 and "--option takes KEY=VALUE" in bad.stderr and "Traceback" not in bad.stderr
    shown = run_zoo("predict", "--help").stdout
    assert "--option KEY=VALUE" in shown and "-o KEY=VALUE" not in shown and "-o," not in shown


def test_29_one_rule_for_a_failing_image_in_a_batch():
    """zoo.model.predict_each: a batch that raises an input error is run image by image, and only the images
    that fail alone get an error; an error of the model itself is raised."""
    from zoo.model import predict_each

    class Picky:
        def predict(self, x, **options):
            items = x if isinstance(x, list) else [x]
            if any(item == "bad" for item in items):
                raise zoo.ZooInputError("'bad' is not an image")
            if any(item == "boom" for item in items):
                raise RuntimeError("the model broke")
            answers = [f"{item}!" for item in items]
            return answers if isinstance(x, list) else answers[0]

    answers = predict_each(Picky(), ["a", "bad", "b"])
    assert answers[0] == "a!" and answers[2] == "b!" and isinstance(answers[1], zoo.ZooInputError)
    assert predict_each(Picky(), ["a", "b"]) == ["a!", "b!"] and predict_each(Picky(), []) == []
    with pytest.raises(RuntimeError, match="the model broke"):
        predict_each(Picky(), ["a", "boom"])


def test_30_04_recursive_folders_skip_hidden_files_and_count_what_is_not_an_image(tmp_path):
    import shutil

    from conftest import run_zoo

    sample = sorted((Path(__file__).parents[1] / "plugins" / "zoo-digits" / "samples").glob("*.png"))[0]
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for place in ("top.png", "a/one.png", "a/b/two.png", ".hidden/no.png", "a/.also-hidden.png"):
        shutil.copyfile(sample, tmp_path / place)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    flat = run_zoo("predict", "digits", str(tmp_path), "--json")
    assert flat.returncode == 0 and [Path(r["image"]).name for r in json.loads(flat.stdout)] == ["top.png"]
    deep = run_zoo("predict", "digits", str(tmp_path), "--recursive", "--json", "-v")
    names = sorted(str(Path(r["image"]).relative_to(tmp_path)) for r in json.loads(deep.stdout))
    assert deep.returncode == 0 and names == ["a/b/two.png", "a/one.png", "top.png"]
    assert "1 file(s) skipped, not images" in deep.stderr
    empty = tmp_path / "empty" / "inner"
    empty.mkdir(parents=True)
    shutil.copyfile(sample, empty / "x.png")
    shallow = run_zoo("predict", "digits", str(tmp_path / "empty"))
    assert shallow.returncode != 0 and "--recursive also looks in its subfolders" in shallow.stderr


def test_30_04_a_file_given_twice_is_predicted_once_and_reported_under_each_name(tmp_path):
    import shutil

    from conftest import run_zoo

    sample = sorted((Path(__file__).parents[1] / "plugins" / "zoo-digits" / "samples").glob("*.png"))[3]
    shutil.copyfile(sample, tmp_path / "d.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "d.png")
    done = run_zoo("predict", "digits", str(tmp_path / "d.png"), str(tmp_path / "link.png"),
                   str(tmp_path / "d.png"), "--jsonl", "--save", str(tmp_path / "out"))
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and [Path(r["image"]).name for r in rows] == ["d.png", "link.png", "d.png"]
    assert rows[0]["result"] == rows[1]["result"] == rows[2]["result"]
    assert len({r["saved"] for r in rows}) == 2  # each name its own picture (the one name given twice, one)


@pytest.mark.skipif("digits" not in zoo.list_models(), reason="the zoo-digits plugin is not installed")
def test_30_03_an_entry_by_its_key_predicts_as_built_offline_and_from_the_command_line(zoo_cache_dir):
    from conftest import run_zoo

    sample = sorted((Path(__file__).parents[1] / "plugins" / "zoo-digits" / "samples").glob("*.png"))[7]
    model = zoo.get("digits")
    reference = f"digits/{model.path.parent.name}"
    by_key = zoo.get(reference)
    assert by_key.path == model.path and by_key.predict(sample).to_dict() == model.predict(sample).to_dict()
    done = run_zoo("predict", reference, str(sample), "--json", env={"ZOO_OFFLINE": "1"})
    assert done.returncode == 0 and json.loads(done.stdout)[0]["result"] == model.predict(sample).to_dict()
    missing = run_zoo("predict", "digits/0123456789abcdef", str(sample))
    assert missing.returncode != 0 and "is not in the cache" in missing.stderr and "Traceback" not in missing.stderr
    with pytest.raises(zoo.UsageError, match="one cache entry, built already: weights"):
        zoo.get(reference, weights="random")


def test_30_03_an_entry_of_a_fine_tuned_checkpoint_keeps_its_classes(zoo_cache_dir, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    from conftest import registry_with
    from tinymodels import save_weights, tiny_spec

    class Plugin:
        @zoo.hookimpl
        def zoo_register_models(self, register):
            register(tiny_spec())

    monkeypatch.setattr(zoo.registry, "_default", registry_with(tiny=Plugin()))
    tuned = zoo.get("tiny", weights=save_weights(tmp_path / "tuned.pth", classes=2), labels=["left", "right"])
    again = zoo.get(f"tiny/{tuned.path.parent.name}")
    image = np.full((40, 40, 3), 90, np.uint8)
    assert again.spec.labels == ("left", "right") and again.spec.metrics == {}
    assert again.predict(image).to_dict() == tuned.predict(image).to_dict()
