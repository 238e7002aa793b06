"""Issue 30, item 1: an ONNX file is a model (zoo.get("model.onnx"), zoo predict FILE, zoo info FILE).

A file is run where it is (hashed, never copied into the cache; its optimised graph kept under
``<cache>/files/<sha256[:16]>/``) and described by its own ``metadata_props`` (a file the zoo
exported), by a plugin's published file's sha256, by ``model.toml`` beside it, or by arguments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
onnx = pytest.importorskip("onnx")
skimage_data = pytest.importorskip("skimage.data")

import cv2
import zoo_torchvision
from conftest import ROOT, run_zoo

import zoo
from zoo import cache, onnxmeta
from zoo.results import softmax
from zoo.testing import randomize

sys.path.insert(0, str(ROOT / "plugins" / "zoo-torchvision"))
import check_exports

SPECS = {spec.name: spec for spec in zoo_torchvision.load_specs()}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
CLASSES = ("ant", "bee", "cat", "dog", "eel", "fox", "gnu")


def photos() -> list[np.ndarray]:
    return [getattr(skimage_data, name)() for name in PHOTOS]


def randomized(name: str) -> zoo.ModelSpec:
    """``name``'s spec with perturbed random weights (detectors made decisive), as in test_torchvision_tasks."""
    return dataclasses.replace(check_exports.randomized(SPECS[name]), weights=None)


def named_model(name: str) -> zoo.Model:
    """The named model with perturbed random weights (detectors made decisive), exported into the cache."""
    return zoo.get(randomized(name), weights="random")


def tree(folder: Path) -> list[str]:
    """Every path under ``folder``, relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dumped(results: list[object]) -> list[str]:
    return [json.dumps(r.to_dict()) for r in results]  # type: ignore[attr-defined]


def check_file_folder(cache_dir: Path, path: Path) -> Path:
    """The file's folder under ``<cache>/files/``: named by its sha256, its metadata naming the file."""
    digest = sha256(path)
    folder = cache_dir / "files" / digest[:16]
    assert folder.is_dir(), tree(cache_dir / "files")
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["file"] == str(path.resolve()) and metadata["record"]["sha256"] == digest
    return folder


# -- a cache entry's file, copied out, predicts as the named model -------------------------------


@pytest.mark.parametrize("name", [
    "resnet18", "ssdlite320_mobilenet_v3_large", "lraspp_mobilenet_v3_large",
    pytest.param("maskrcnn_resnet50_fpn", marks=pytest.mark.slow),
])
def test_30_01_a_copied_cache_entry_predicts_as_the_named_model(zoo_cache_dir, tmp_path, name):
    named = named_model(name)
    copy = tmp_path / "elsewhere" / "copied.onnx"
    copy.parent.mkdir()
    shutil.copyfile(named.path, copy)
    models_before = tree(zoo_cache_dir / "models")
    model = zoo.get(copy)
    assert model.path == copy.resolve() and model.spec.name == name
    assert tree(zoo_cache_dir / "models") == models_before  # not copied into the cache, no entry
    folder = check_file_folder(zoo_cache_dir, copy)
    want, got = named.predict(photos()), model.predict(photos())
    assert dumped(got) == dumped(want)
    if SPECS[name].task in ("object-detection", "instance-segmentation"):
        assert all(len(result) > 0 for result in got), [len(r) for r in got]
        if name.startswith("mask"):
            assert all(result.masks is not None and result.masks.any() for result in got)
    elif SPECS[name].task == "semantic-segmentation":
        assert all(len(np.unique(result.mask)) > 1 for result in got)
    else:
        assert len({result.class_id for result in got}) > 1, dumped(got)  # the photos are told apart
    assert list(folder.glob(f"{cache.OPTIMIZED_PREFIX}*")), tree(folder)  # onnxruntime's graph kept there
    assert tree(zoo_cache_dir / "models") == models_before


# -- the command line --------------------------------------------------------------------------


def test_30_01_zoo_predict_and_info_take_an_exported_file(zoo_cache_dir, tmp_path):
    exported = tmp_path / "out" / "resnet18-random.onnx"
    done = run_zoo("export", "resnet18", "--weights", "random", "-o", str(exported))
    assert done.returncode == 0, done.stderr
    assert exported.is_file()
    image = tmp_path / "coffee.png"
    cv2.imwrite(str(image), cv2.cvtColor(skimage_data.coffee(), cv2.COLOR_RGB2BGR))
    from_file = run_zoo("predict", str(exported), str(image), "--json")
    from_name = run_zoo("predict", "resnet18", "--weights", "random", str(image), "--json")
    assert from_file.returncode == 0 and from_name.returncode == 0, from_file.stderr + from_name.stderr
    results = [[row["result"] for row in json.loads(ran.stdout)] for ran in (from_file, from_name)]
    assert results[0] == results[1] and results[0][0]["topk"], results
    info = run_zoo("info", str(exported), "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    built = data["built"]
    assert built["path"] == str(exported.resolve()) and built["id"] is None
    assert built["files"][exported.name]["sha256"] == sha256(exported)
    assert data["cache"]["entries"] == [] and data["name"] == "resnet18"
    text = run_zoo("info", str(exported))
    assert text.returncode == 0, text.stderr
    assert str(exported.resolve()) in text.stdout and sha256(exported) in text.stdout, text.stdout
    entry = run_zoo("info", "resnet18", "--weights", "random", "--json")  # the model as built from those weights
    assert entry.returncode == 0, entry.stderr
    data = json.loads(entry.stdout)
    assert data["metrics"] == {} and data["built"]["id"].startswith("resnet18/"), data["built"]
    assert data["built"]["files"]["model.onnx"]["sha256"] == sha256(exported)  # -o copied that entry's file


# -- a plain torch.onnx.export, described by model.toml or by arguments --------------------------


def small_net(seed: int, classes: int = len(CLASSES)) -> torch.nn.Module:
    """A small convolutional classifier with perturbed random weights (``seed`` makes another)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, classes))
    return randomize(net, (3, 32, 32), seed=seed)


def export_plain(net: torch.nn.Module, path: Path) -> Path:
    """``net`` exported by torch alone (no zoo metadata), input 1x3x32x32 with a dynamic batch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(path), input_names=["pixels"], output_names=["scores"],
                      dynamic_axes={"pixels": {0: "batch"}, "scores": {0: "batch"}}, opset_version=17, dynamo=False)
    assert onnxmeta.read(path) == {}
    return path


MODEL_TOML = """\
[models.mynet]
task = "image-classification"
labels = "labels.txt"

[models.mynet.preprocess]
resize = [32, 32]
scale = 0.00392156862745098
"""


def write_description(folder: Path, extra: str = "") -> None:
    (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    (folder / "model.toml").write_text(MODEL_TOML + extra)


def torch_topk(net: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = net(torch.from_numpy(batch)).numpy()
    return softmax(logits)


def check_against_torch(model: zoo.Model, net: torch.nn.Module) -> list[int]:
    """Each photo's top classes and scores are those of ``net`` on the model's own preprocessing; the top-1s."""
    tops = []
    for photo in photos():
        batch = model.preprocess(photo)
        assert batch.shape == (1, 3, 32, 32) and batch.dtype == np.float32
        assert 0 <= batch.min() and batch.max() <= 1 and batch.max() > 0.2  # scale 1/255, no mean or std
        probabilities = torch_topk(net, batch)[0]
        result = model.predict(photo)
        order = np.argsort(-probabilities)
        assert result.class_id == int(order[0]) and result.label == CLASSES[order[0]]
        assert [p.class_id for p in result.topk] == [int(i) for i in order[:len(result.topk)]]
        np.testing.assert_allclose([p.score for p in result.topk], probabilities[order[:len(result.topk)]],
                                   atol=1e-5)
        tops.append(result.class_id)
    return tops


def test_30_01_a_plain_export_with_model_toml_beside_it(zoo_cache_dir, tmp_path):
    net = small_net(seed=3)
    path = export_plain(net, tmp_path / "mine" / "net.onnx")
    write_description(path.parent)
    model = zoo.get(path)
    assert model.spec.name == "mynet" and model.spec.labels == CLASSES and model.spec.outputs == ("scores",)
    assert model.spec.preprocess.resize == (32, 32)
    tops = check_against_torch(model, net)
    assert len(set(tops)) > 1, tops  # the photos are told apart: the comparison is not vacuous
    check_file_folder(zoo_cache_dir, path)
    assert tree(zoo_cache_dir / "models") == []


def test_30_01_a_plain_export_without_a_description_says_what_to_write(zoo_cache_dir, tmp_path):
    path = export_plain(small_net(seed=3), tmp_path / "bare" / "My Net.onnx")
    with pytest.raises(zoo.SpecError) as raised:
        zoo.get(path)
    message = str(raised.value)
    assert "model.toml" in message and "[models." in message and "[32, 32]" in message, message
    assert "'scores'" in message and str(path.parent / "model.toml") in message, message
    with pytest.raises(zoo.SpecError, match="model.toml"):
        zoo.get(path, task="image-classification")  # the preprocessing is still missing
    assert tree(zoo_cache_dir / "models") == []


def test_30_01_a_plain_export_described_by_arguments(zoo_cache_dir, tmp_path):
    net = small_net(seed=3)
    path = export_plain(net, tmp_path / "bare" / "net.onnx")
    model = zoo.get(path, task="image-classification", preprocess={"resize": [32, 32], "scale": 1 / 255},
                    labels=list(CLASSES))
    assert model.spec.labels == CLASSES and model.spec.outputs == ("scores",)
    check_against_torch(model, net)
    same = zoo.get(path, task="image-classification", preprocess=zoo.Preprocess(resize=(32, 32)),
                   labels=list(CLASSES))
    assert dumped(same.predict(photos())) == dumped(model.predict(photos()))


def test_30_01_zoo_predict_a_plain_export_with_task_preprocess_and_labels(zoo_cache_dir, tmp_path):
    net = small_net(seed=3)
    path = export_plain(net, tmp_path / "bare" / "net.onnx")
    labels = tmp_path / "classes.txt"
    labels.write_text("\n".join(CLASSES) + "\n")
    image = tmp_path / "chelsea.png"
    cv2.imwrite(str(image), cv2.cvtColor(skimage_data.chelsea(), cv2.COLOR_RGB2BGR))
    refused = run_zoo("predict", str(path), str(image))
    assert refused.returncode != 0 and "model.toml" in refused.stderr and "[32, 32]" in refused.stderr, refused.stderr
    done = run_zoo("predict", str(path), str(image), "--task", "image-classification", "--preprocess",
                   '{"resize": [32, 32], "scale": 0.00392156862745098}', "--labels", str(labels), "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    model = zoo.get(path, task="image-classification", preprocess={"resize": [32, 32]}, labels=list(CLASSES))
    assert row["result"] == json.loads(json.dumps(model.predict(str(image)).to_dict()))
    probabilities = torch_topk(net, model.preprocess(str(image)))[0]
    assert row["result"]["label"] == CLASSES[int(probabilities.argmax())]


def test_30_01_model_toml_and_arguments_do_not_mix_and_a_wrong_sha256_is_refused(zoo_cache_dir, tmp_path):
    path = export_plain(small_net(seed=3), tmp_path / "mine" / "net.onnx")
    write_description(path.parent)
    with pytest.raises(zoo.UsageError, match="model.toml"):
        zoo.get(path, task="image-classification")
    with pytest.raises(zoo.UsageError):
        zoo.get(path, preprocess={"resize": [32, 32]})
    wrong = "0" * 64
    write_description(path.parent, f'\n[models.mynet.onnx]\nfile = "net.onnx"\nsha256 = "{wrong}"\n')
    with pytest.raises(zoo.SpecError) as raised:
        zoo.get(path)
    assert wrong in str(raised.value) and sha256(path) in str(raised.value), str(raised.value)
    write_description(path.parent, f'\n[models.mynet.onnx]\nfile = "net.onnx"\nsha256 = "{sha256(path)}"\n')
    assert zoo.get(path).spec.name == "mynet"  # the right sha256 is accepted


# -- a file that changes -----------------------------------------------------------------------


def test_30_01_a_file_that_changes_is_noticed_and_prune_removes_the_old_folder(zoo_cache_dir, tmp_path):
    path = tmp_path / "mine" / "net.onnx"
    first, second = small_net(seed=3), small_net(seed=4)
    export_plain(first, path)
    write_description(path.parent)
    old = zoo.get(path)
    old_folder = check_file_folder(zoo_cache_dir, path)
    batch = old.preprocess(photos())
    np.testing.assert_allclose(old.run(batch)["scores"], first(torch.from_numpy(batch)).detach().numpy(), atol=1e-5)
    export_plain(second, path)  # overwritten in place: same size, other weights
    new = zoo.get(path)
    new_folder = check_file_folder(zoo_cache_dir, path)
    assert new_folder != old_folder
    want = second(torch.from_numpy(batch)).detach().numpy()
    assert not np.allclose(want, first(torch.from_numpy(batch)).detach().numpy(), atol=1e-3)  # not vacuous
    np.testing.assert_allclose(new.run(batch)["scores"], want, atol=1e-5)  # not the first's optimised graph
    assert sorted(p.name for p in (zoo_cache_dir / "files").iterdir()) == sorted([old_folder.name, new_folder.name])
    assert cache.stale_file_folders() == [old_folder]
    removed = cache.prune(lambda entry: True)
    assert old_folder in [p for p, _ in removed] and not old_folder.exists()
    assert new_folder.is_dir() and [p.name for p in (zoo_cache_dir / "files").iterdir()] == [new_folder.name]
    again = zoo.get(path)  # the current file's folder and its optimised graph are still used
    np.testing.assert_allclose(again.run(batch)["scores"], want, atol=1e-5)


# -- a plugin's published file -----------------------------------------------------------------


def digits_samples() -> list[Path]:
    folder = Path(zoo.get_spec("digits").onnx.url.removeprefix("file://")).parent.parent / "samples"
    found = sorted(folder.glob("*.png"))
    if not found:
        pytest.skip("zoo-digits' samples are not beside its package (an editable install has them)")
    return found


def test_30_01_a_published_file_is_recognised_by_its_sha256(zoo_cache_dir, tmp_path):
    if "digits" not in zoo.list_models():
        pytest.skip("the zoo-digits plugin is not installed")
    published = zoo.get("digits")
    assert onnxmeta.read(published.path) == {}  # it carries no description of its own
    copy = tmp_path / "whatever.onnx"
    shutil.copyfile(published.path, copy)
    model = zoo.get(copy)
    assert model.spec.name == "digits" and model.path == copy.resolve()
    assert model.spec.labels == published.spec.labels and model.spec.preprocess == published.spec.preprocess
    samples = digits_samples()
    got, want = model.predict(samples), published.predict(samples)
    assert dumped(got) == dumped(want)
    assert [r.label for r in got] == [p.stem for p in samples]
    check_file_folder(zoo_cache_dir, copy)


# -- refusals ----------------------------------------------------------------------------------


def test_30_01_build_options_and_missing_files_are_refused(zoo_cache_dir, tmp_path):
    path = export_plain(small_net(seed=3), tmp_path / "mine" / "net.onnx")
    write_description(path.parent)
    for options in ({"weights": "random"}, {"precision": "int8"}, {"opset": 13}, {"exporter": "dynamo"}):
        with pytest.raises(zoo.UsageError) as raised:
            zoo.get(path, **options)
        assert str(path) in str(raised.value), (options, str(raised.value))
    missing = tmp_path / "nowhere" / "gone.onnx"
    for name in (missing, str(missing)):
        with pytest.raises(zoo.UsageError) as raised:
            zoo.get(name)
        assert str(missing) in str(raised.value)
    assert not (zoo_cache_dir / "files").exists() or not any((zoo_cache_dir / "files").iterdir())


def test_30_01_a_file_naming_an_uninstalled_postprocess_is_refused_without_importing_it(zoo_cache_dir, tmp_path):
    named = zoo.get("resnet18", weights="random")
    props = {p.key: p.value for p in onnx.load(str(named.path), load_external_data=False).metadata_props}
    assert props["zoo.name"] == "resnet18" and "zoo.postprocess" not in props
    for changed in ({"zoo.postprocess": "evil.module.fn"},
                    {"zoo.postprocess": "evil.module.fn", "zoo.plugin": "evilplugin", "zoo.name": "evilnet"}):
        copy = tmp_path / "evil.onnx"
        shutil.copyfile(named.path, copy)
        onnxmeta.write(copy, {**props, **changed})
        assert onnxmeta.read(copy)["postprocess"] == "evil.module.fn"
        with pytest.raises(zoo.SpecError) as raised:
            zoo.get(copy)
        message = str(raised.value)
        assert "evil.module.fn" in message and "install" in message, message
        assert not any(module == "evil" or module.startswith("evil.") for module in sys.modules)


LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 46827520\n")


def test_30_01_a_file_that_is_not_onnx_is_refused_naming_it(zoo_cache_dir, tmp_path):
    path = tmp_path / "pointer.onnx"
    path.write_text(LFS_POINTER)
    with pytest.raises(zoo.ZooError) as raised:
        zoo.get(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("changed", [{"zoo.preprocess": "{not json"}, {"zoo.outputs": "[1, 2]"}],
                         ids=["not-json", "outputs-a-list"])
def test_30_01_a_file_with_damaged_metadata_is_refused_naming_it(zoo_cache_dir, tmp_path, changed):
    net = small_net(seed=3)
    path = export_plain(net, tmp_path / "net.onnx")
    props = onnxmeta.properties(zoo.ModelSpec(name="mynet", task="image-classification",
                                              preprocess=zoo.Preprocess(resize=(32, 32)), labels=CLASSES,
                                              outputs=("scores",), inputs={"pixels": "image"},
                                              onnx=zoo.Artifact(path.as_uri(), sha256(path))),
                                {"onnx": {"file": "net.onnx", "sha256": sha256(path)}})
    onnxmeta.write(path, props)
    assert zoo.get(path).spec.name == "mynet"  # described by these properties, the file runs
    onnxmeta.write(path, {**props, **changed})
    with pytest.raises(zoo.SpecError) as raised:
        zoo.get(path)
    assert str(path) in str(raised.value) or path.name in str(raised.value)


def test_30_01_info_on_a_file_writes_nothing_and_an_empty_file_is_refused(zoo_cache_dir, tmp_path):
    path = export_plain(small_net(seed=5), tmp_path / "net.onnx")
    write_description(tmp_path)
    shown = run_zoo("info", str(path))
    assert shown.returncode == 0 and "mynet" in shown.stdout, shown.stderr
    assert not (zoo_cache_dir / "files").exists()  # info describes; only opening the file makes its folder
    zoo.get(path)
    assert (zoo_cache_dir / "files").is_dir()
    empty = tmp_path / "empty.onnx"
    empty.touch()
    with pytest.raises(zoo.UsageError, match=r"empty\.onnx.*it is empty"):
        zoo.get(empty)


def test_30_01_a_model_toml_beside_a_file_is_data_only(zoo_cache_dir, tmp_path):
    path = export_plain(small_net(seed=6), tmp_path / "net.onnx")
    write_description(tmp_path)
    (tmp_path / "model.toml").write_text(MODEL_TOML.replace('labels = "labels.txt"\n',
                                                            'labels = "labels.txt"\npostprocess = "evil.module:run"\n'))
    with pytest.raises(zoo.SpecError, match="names code; a model.toml beside an ONNX file is data only"):
        zoo.info(path)
    assert not any(module == "evil" or module.startswith("evil.") for module in sys.modules)


def test_30_01_a_file_with_external_data_runs_and_keeps_no_optimised_graph(zoo_cache_dir, tmp_path):
    net = small_net(seed=7)
    path = export_plain(net, tmp_path / "net.onnx")
    proto = onnx.load(str(path))
    onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="net.onnx.data",
              size_threshold=0)
    write_description(tmp_path)
    model = zoo.get(path)
    assert sorted(model.metadata["files"]) == ["net.onnx", "net.onnx.data"]  # both hashed: a change to either is seen
    assert model.session.optimized is None and not (zoo_cache_dir / "files").exists()
    check_against_torch(model, net)


def test_31_03_run_checks_a_batch_against_the_graphs_own_sizes_where_the_spec_allows_any(zoo_cache_dir, tmp_path):
    net = small_net(seed=8)
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(path), input_names=["pixels"], output_names=["scores"],
                      dynamic_axes={"pixels": {0: "batch"}}, opset_version=17, dynamo=False)  # 32x32 fixed
    model = zoo.get(path, task="image-classification", preprocess={"scale": 1 / 255}, labels=CLASSES)  # any size
    assert model.spec.preprocess.input_size == (None, None)
    with pytest.raises(zoo.ZooInputError, match=r"shape \(N, 3, 32, 32\).*got \(2, 3, 40, 32\)"):
        model.run(np.zeros((2, 3, 40, 32), np.float32))
    assert model.run(np.zeros((2, 3, 32, 32), np.float32))["scores"].shape == (2, len(CLASSES))


def test_31_03_labels_from_the_files_metadata_are_read_when_the_model_is_opened(zoo_cache_dir, tmp_path):
    path = export_plain(small_net(seed=9), tmp_path / "net.onnx")
    proto = onnx.load(str(path))
    proto.metadata_props.add(key="classes", value="\n".join(CLASSES))
    onnx.save(proto, str(path))
    spec = zoo.ModelSpec(name="listed", task="image-classification", preprocess=zoo.Preprocess(resize=(32, 32)),
                         onnx=zoo.Artifact(path.as_uri(), sha256(path)), outputs=("scores",),
                         labels_from="metadata:classes")
    assert spec.labels == () and spec.to_dict()["labels_from"] == "metadata:classes"  # nothing read yet
    model = zoo.get(spec)
    assert model.spec.labels == CLASSES and model.predict(photos()[0]).label in CLASSES
    mine = tuple(name.upper() for name in CLASSES)  # your labels replace those the file carries
    assert zoo.get(spec, labels=mine).spec.labels == mine
    with pytest.raises(zoo.SpecError, match="does not have"):
        zoo.get(zoo.ModelSpec(name="unlisted", task="image-classification", preprocess=zoo.Preprocess(resize=(32, 32)),
                              onnx=zoo.Artifact(path.as_uri(), sha256(path)), outputs=("scores",),
                              labels_from="metadata:nothing"))
    with pytest.raises(zoo.SpecError, match="metadata:KEY"):
        dataclasses.replace(spec, labels_from="labels.txt")
