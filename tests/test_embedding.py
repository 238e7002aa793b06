"""Issue 32, item 4: the built-in task ``image-embedding``, and every zoo-torchvision classifier as an embedding model.

The task reads a graph's ``embedding`` output (``pool="head"``) or pools its ``features``
(``avg``, ``max``, ``token``), optionally to unit length; zoo-torchvision registers each
classifier again as ``ARCH-embedding[.TAG]`` (also found as ``NAME-embedding``): the same
weights, its last layer removed, so that the graph returns what that layer takes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_spec, registry_with, run_zoo

import zoo
from zoo.registry import default_registry
from zoo.tasks import embedding, options_from_text, resolve_options


def task() -> zoo.Task:
    return default_registry().task("image-embedding")


def spec(name: str = "vectors", **fields) -> zoo.ModelSpec:
    return make_spec(name, task="image-embedding", labels=(), **fields)


def run(outputs: dict[str, np.ndarray], model: zoo.ModelSpec | None = None, **options) -> list[zoo.Embedding]:
    """The task's postprocessing of one run's ``outputs``, with ``options`` over the defaults, as ``predict`` does."""
    from zoo.tasks import postprocess

    model = model or spec()
    batch = len(next(iter(outputs.values())))
    return postprocess(model, task(), outputs, [None] * batch, resolve_options(model, task(), options))


# -- the task ------------------------------------------------------------------------------------------------------


def test_32_4_the_task_is_built_in_with_its_options_and_result():
    import zoo.plugin

    found = task()
    assert found.result is zoo.Embedding is zoo.plugin.Embedding is embedding.Embedding
    assert dict(found.options) == {"pool": "head", "normalize": False} and found.compare is embedding.compare
    assert resolve_options(spec(), found, {}) == {"pool": "head", "normalize": False}
    read = options_from_text(spec(), dict(found.options), {"pool": "avg", "normalize": "true"})
    assert read == {"pool": "avg", "normalize": True}
    with pytest.raises(zoo.UsageError, match="does not take the option topk; it takes normalize=False, pool='head'"):
        resolve_options(spec(), found, {"topk": 3})

    class Plugin:  # a model of the task needs no labels
        @zoo.hookimpl
        def zoo_register_models(self, register):
            register(spec())

    assert registry_with(mine=Plugin()).get("vectors").labels == ()


def test_32_4_head_reads_the_embedding_output_one_result_per_image():
    values = np.arange(10, dtype=np.float32).reshape(2, 5) - 4
    first, second = run({"embedding": values})
    assert isinstance(first, zoo.Embedding) and first.vector.dtype == np.float32 and first.vector.shape == (5,)
    assert np.array_equal(first.vector, values[0]) and np.array_equal(second.vector, values[1])
    assert first.dim == 5 and first.norm == pytest.approx(np.linalg.norm(values[0]))
    (only,) = run({"logits": np.ones((1, 2, 1, 1), np.float32)})  # no such name: the only output, flattened
    assert only.vector.tolist() == [1.0, 1.0]


def test_32_4_normalize_gives_unit_norm_so_that_a_dot_product_is_the_cosine():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 64)).astype(np.float32) * 20
    values[2] = 0
    faithful = run({"embedding": values})
    unit = run({"embedding": values}, normalize=True)
    assert faithful[0].norm == pytest.approx(float(np.linalg.norm(values[0])), rel=1e-6) and faithful[0].norm > 50
    assert [round(e.norm, 5) for e in unit] == [1.0, 1.0, 0.0]  # a zero vector stays zero
    assert float(unit[0].vector @ unit[1].vector) == pytest.approx(faithful[0].cosine(faithful[1]), abs=1e-6)
    assert faithful[0].normalized().norm == pytest.approx(1.0) and faithful[0].cosine(faithful[0]) == pytest.approx(1)
    with pytest.raises(zoo.UsageError, match="'normalize' is true or false"):
        run({"embedding": values}, normalize="yes")


def test_32_4_pools_a_feature_map_and_a_token_sequence():
    rng = np.random.default_rng(1)
    feature_map = rng.normal(size=(2, 8, 3, 5)).astype(np.float32)
    outputs = {"embedding": np.zeros((2, 4), np.float32), "features": feature_map}
    assert run(outputs)[0].dim == 4  # head: the network's own embedding
    for pool, want in (("avg", feature_map.mean(axis=(2, 3))), ("max", feature_map.max(axis=(2, 3)))):
        found = run(outputs, pool=pool)
        assert np.allclose([e.vector for e in found], want, atol=1e-6), pool
    tokens = rng.normal(size=(2, 7, 6)).astype(np.float32)
    sequence = {"features": tokens}
    assert np.allclose([e.vector for e in run(sequence, pool="avg")], tokens.mean(axis=1), atol=1e-6)
    assert np.allclose([e.vector for e in run(sequence, pool="max")], tokens.max(axis=1))
    with pytest.raises(zoo.UsageError, match="no class token"):  # prefix_tokens 0: the first token is a patch's
        run(sequence, pool="token")
    vit = spec("vit-like", decode={"prefix_tokens": 2})  # a class and a register token before the patches
    assert np.allclose([e.vector for e in run(sequence, vit, pool="avg")], tokens[:, 2:].mean(axis=1), atol=1e-6)
    assert np.array_equal([e.vector for e in run(sequence, vit, pool="token")], tokens[:, 0])
    unit = run(outputs, pool="max", normalize=True)
    assert [round(e.norm, 5) for e in unit] == [1.0, 1.0]


def test_32_4_a_pool_the_graph_cannot_give_is_an_option_error_naming_the_model_and_the_choices():
    head_only = {"embedding": np.ones((1, 4), np.float32)}
    with pytest.raises(zoo.UsageError, match=r"model 'vectors' has no 'features' output to pool, so it takes only "
                                             r"pool 'head'; got pool 'avg'"):
        run(head_only, pool="avg")
    with pytest.raises(zoo.UsageError, match=r"model 'vectors': option 'pool' must be one of 'head', 'avg', 'max', "
                                             r"'token'; got 'mean'"):
        run(head_only, pool="mean")
    with pytest.raises(zoo.UsageError, match=r"model 'vectors': its features are a map .* not tokens: choose pool "
                                             r"'head', 'avg', 'max'"):
        run({"embedding": np.ones((1, 4), np.float32), "features": np.ones((1, 4, 2, 2), np.float32)}, pool="token")
    with pytest.raises(zoo.UsageError, match=r"model 'vectors' has no pooled 'embedding' output, only the unpooled "
                                             r"'features': choose pool 'avg', 'max', 'token'"):
        run({"features": np.ones((1, 3, 4), np.float32)})
    with pytest.raises(zoo.SpecError, match="'features' is .* got shape"):
        run({"features": np.ones((1, 3), np.float32)}, pool="avg")
    with pytest.raises(zoo.SpecError, match="leaves no token"):
        run({"features": np.ones((1, 2, 4), np.float32)}, spec(decode={"prefix_tokens": 2}), pool="avg")


@pytest.mark.parametrize(("decode", "problem"), [({"prefix_tokens": -1}, "decode.prefix_tokens"),
                                                 ({"prefix_tokens": True}, "decode.prefix_tokens"),
                                                 ({"pool": "avg"}, "decode.pool")])
def test_32_4_the_decode_table_is_checked_when_a_model_registers(decode, problem):
    class Plugin:
        @zoo.hookimpl
        def zoo_register_models(self, register):
            register(spec(decode=decode))

    registry = registry_with(bad=Plugin())
    assert problem in str(registry.plugin_manager.infos["bad"].error) and "vectors" not in registry


def test_32_4_to_dict_is_compact_strict_json():
    vector = np.array([0.1, -2.5, 1e-8, 3.4028235e38, 0.0], np.float32)
    data = zoo.Embedding(vector).to_dict()
    assert list(data) == ["embedding", "dim", "norm"] and data["dim"] == 5
    assert data["embedding"][:3] == [0.1, -2.5, 1e-8]  # the fewest digits that read back as the same float32
    assert np.array_equal(np.asarray(data["embedding"], np.float32), vector)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    text = json.dumps(zoo.Embedding(np.random.default_rng(2).normal(size=512)).to_dict())
    assert len(text) < 0.65 * len(json.dumps(np.random.default_rng(2).normal(size=512).astype(np.float32).tolist()))
    with pytest.raises(ValueError, match="NaN or infinite"):
        zoo.Embedding(np.array([np.nan, 1.0])).to_dict()
    with pytest.raises(ValueError, match="a vector"):
        zoo.Embedding(np.ones((2, 2)))


def test_32_4_summary_and_draw():
    found = zoo.Embedding(np.array([3.0, -4.0, 0.0, 0.5, 0.25, 7.0], np.float32))
    assert found.summary() == "6-d, norm 8.62: [3, -4, 0, 0.5, ...]"
    assert zoo.Embedding(np.array([1.0, 2.0], np.float32)).summary() == "2-d, norm 2.236: [1, 2]"
    strip = found.strip()
    assert strip.shape == (16, 6, 3) and strip.dtype == np.uint8
    assert tuple(strip[0, 5]) == (178, 24, 43) and tuple(strip[0, 2]) == (255, 255, 255)  # the largest: full red
    assert strip[0, 1, 2] > strip[0, 1, 0]  # negative: blue
    wide, narrow = found.strip(12, 2), found.strip(3, 1)
    assert np.array_equal(wide[0, ::2], strip[0]) and np.array_equal(wide[0, 1::2], strip[0])
    assert narrow.shape == (1, 3, 3)  # each column the mean of two values: (3 - 4) / 2 is a pale blue
    assert narrow[0, 0, 2] > narrow[0, 0, 0] > 200
    image = np.full((120, 200, 3), 90, np.uint8)
    drawn = found.draw(image)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8 and (image == 90).all()  # a copy
    assert tuple(drawn[-1, -1]) == (178, 24, 43) and (drawn[:60] == 90).all()  # the strip along the bottom
    assert isinstance(found, zoo.Result)


def test_32_4_compare_reports_relative_difference_and_cosine():
    rng = np.random.default_rng(3)
    want = zoo.Embedding(rng.normal(size=256))
    near = zoo.Embedding(want.vector * (1 + 1e-5))
    figures = embedding.compare(want, near, make_spec())
    assert figures["cosine"] == pytest.approx(1.0) and figures["relative_difference"] < 2e-5
    with pytest.raises(AssertionError, match="differ by .* of the vector's length"):
        embedding.compare(want, zoo.Embedding(want.vector * 1.1), make_spec())
    with pytest.raises(AssertionError, match="cosine similarity"):
        embedding.compare(want, zoo.Embedding(want.vector * 1.01), make_spec(), tolerance=0.1, min_cosine=1.5)
    with pytest.raises(AssertionError, match="an embedding of 3 values instead of 256"):
        embedding.compare(want, zoo.Embedding(np.ones(3)), make_spec())


# -- a model of the task, exported -----------------------------------------------------------------------------------


def layout_spec(outputs: tuple[str, ...] = ("embedding", "features")) -> zoo.ModelSpec:
    """A hand-made embedding network: each 4x4 cell's mean colour less grey (48 values), and the cells themselves."""
    torch = pytest.importorskip("torch")

    class Layout(torch.nn.Module):
        def forward(self, x):
            cells = torch.nn.functional.avg_pool2d(x, 8) - 0.5
            return (cells.flatten(1), cells) if len(outputs) == 2 else cells.flatten(1)

    return spec("layout", preprocess=zoo.Preprocess(resize=(32, 32), interpolation="area"),
                build=lambda s, w: Layout().eval(), outputs=outputs)


def test_32_4_an_exported_embedding_model_predicts_batches_pools_and_conforms(zoo_cache_dir):
    from zoo.testing import check_model

    red, blue = np.zeros((40, 60, 3), np.uint8), np.zeros((50, 30, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    model = zoo.get(layout_spec())
    first, second = model.predict([red, blue])
    assert first.dim == 48 and np.allclose(first.vector.reshape(3, 4, 4)[0], 0.5, atol=1e-6)
    assert np.allclose(model.predict(blue).vector, second.vector)
    assert np.allclose(model.predict(red, pool="avg").vector, [0.5, -0.5, -0.5], atol=1e-6)  # the mean colour
    assert np.allclose(model.predict(red, pool="max", normalize=True).vector, np.array([1, -1, -1]) / np.sqrt(3))
    with pytest.raises(zoo.UsageError, match="'layout': its features are a map"):
        model.predict(red, pool="token")
    report = check_model(layout_spec(), opencv=False)
    assert report.results[0]["dim"] == 48
    head_only = zoo.get(layout_spec(("embedding",)))
    with pytest.raises(zoo.UsageError, match="model 'layout' has no 'features' output to pool"):
        head_only.predict(red, pool="max")


# -- zoo-torchvision's embedding models --------------------------------------------------------------------------------

FAMILIES = ["alexnet", "vgg11_bn", "resnet18", "convnext_tiny", "vit_b_32", "swin_t", "maxvit_t", "efficientnet_b0",
            "mobilenet_v3_small", "mobilenet_v2", "regnet_x_400mf", "densenet121", "squeezenet1_1", "googlenet",
            "inception_v3", "shufflenet_v2_x0_5", "mnasnet0_5"]


def torchvision_plugin():
    pytest.importorskip("torchvision")
    return pytest.importorskip("zoo_torchvision")


def test_32_4_every_torchvision_classifier_is_an_embedding_model_too():
    plugin = torchvision_plugin()
    classifiers = [s for s in plugin.load_specs() if s.task == "image-classification"]
    names = zoo.list_models(task="image-embedding", plugin="torchvision")
    assert len(names) == len(classifiers) == 114
    for classifier in classifiers:
        found = zoo.get_spec(classifier.name + "-embedding")  # resnet50.imagenet1k_v1-embedding, an alias
        assert found.name == plugin.embedding_name(classifier.name) in names
        assert (found.task, found.labels, found.outputs) == ("image-embedding", (), ("embedding",))
        assert found.preprocess == classifier.preprocess and found.weights == classifier.weights
        assert found.unsupported == classifier.unsupported and not found.metrics
        for alias in classifier.aliases:  # resnet50.imagenet1k_v2 -> resnet50-embedding.imagenet1k_v2
            assert zoo.get_spec(plugin.embedding_name(alias)) == zoo.get_spec(alias + "-embedding") == found
    resnet50 = zoo.get_spec("resnet50-embedding")
    assert resnet50.aliases == ("resnet50-embedding.imagenet1k_v2", "resnet50.imagenet1k_v2-embedding")
    assert resnet50.summary.startswith("resnet50's 2048 features before its classifier, with torchvision's "
                                       "IMAGENET1K_V2 weights (ImageNet-1K top-1 80.9% as a classifier)")
    registry = default_registry()  # a classifier's weights variants are classifiers; an embedding's, embeddings
    assert registry.variants("resnet50") == ["resnet50", "resnet50.imagenet1k_v1"]
    assert registry.variants("resnet50.imagenet1k_v1-embedding") == ["resnet50-embedding",
                                                                     "resnet50-embedding.imagenet1k_v1"]


def test_32_4_zoo_list_task_image_embedding_lists_them():
    torchvision_plugin()
    listed = run_zoo("list", "--task", "image-embedding", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert {"resnet18-embedding", "resnet50-embedding.imagenet1k_v1", "vit_b_16-embedding"} <= set(rows)
    assert {row["task"] for row in rows.values()} == {"image-embedding"} and len(rows) >= 114


@pytest.mark.parametrize("arch", FAMILIES)
def test_32_4_the_removed_layer_is_the_one_that_outputs_the_classes(arch):
    """Built on the meta device (no memory, no computation): the last Linear the classifier runs, or SqueezeNet's
    1x1 convolution to the classes, is the layer that goes, and the headless model returns the features it took."""
    plugin = torchvision_plugin()
    import torch
    import zoo_torchvision.graphs  # noqa: F401 - imported before the meta device is on, as build imports it

    found = zoo.get_spec(f"{arch}-embedding")
    info = found.extra["torchvision"]
    with torch.device("cpu" if arch.startswith("regnet") else "meta"):
        classifier = plugin.build(zoo.get_spec(arch), None)
        headless = plugin.build(found, None)
    ran = []
    kinds = (torch.nn.Linear, torch.nn.Conv2d)
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: ran.append(n)) for n, m in classifier.named_modules()
             if isinstance(m, kinds)]
    x = torch.zeros(1, 3, *found.preprocess.input_shape[1:], device="meta")
    with torch.no_grad():
        assert tuple(classifier.to("meta")(x).shape) == (1, 1000)
        kept = {n for n, m in headless.named_modules() if isinstance(m, kinds)}
        assert [n for n, m in classifier.named_modules() if isinstance(m, kinds) and n not in kept] == [ran[-1]]
        assert tuple(headless.to("meta")(x).shape) == (1, info["embedding_dim"])
    for hook in hooks:
        hook.remove()
    assert not headless.training


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_32_4_a_torchvision_embedding_equals_pytorchs_penultimate_features(zoo_cache_dir, tmp_path, arch):
    plugin = torchvision_plugin()
    import torch

    from zoo.testing import randomize, sample_images

    classifier_spec, found = zoo.get_spec(arch), zoo.get_spec(f"{arch}-embedding")
    torch.manual_seed(0)
    net = randomize(plugin.build(classifier_spec, None), classifier_spec)
    torch.save(net.state_dict(), tmp_path / "random.pth")  # a classifier's checkpoint, its head included
    last = net.fc if arch == "resnet18" else net.classifier[-1]
    photo = sample_images()["photo"]
    seen = []
    hook = last.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    with torch.no_grad():
        logits = net(torch.from_numpy(found.preprocess.apply([photo, photo[::-1]])))
    hook.remove()
    want = seen[0].numpy()
    assert np.allclose(last(seen[0]).detach().numpy(), logits.numpy())  # the features the classes are made of

    model = zoo.get(f"{arch}-embedding", weights=tmp_path / "random.pth")
    got = model.predict(photo)
    assert got.dim == found.extra["torchvision"]["embedding_dim"] == want.shape[1]
    assert np.linalg.norm(got.vector - want[0]) <= 1e-4 * np.linalg.norm(want[0])
    assert np.abs(got.vector - want[0]).max() <= 1e-4 * np.abs(want[0]).max()
    batch = model.predict([photo, photo[::-1]], normalize=True)
    assert [round(e.norm, 5) for e in batch] == [1.0, 1.0]
    assert batch[1].cosine(want[1]) == pytest.approx(1.0, abs=1e-6)
    if arch == "resnet18":  # the command line, from the cache: a vector in JSON
        import cv2

        path = tmp_path / "photo.png"
        cv2.imwrite(str(path), photo[:, :, ::-1])
        done = run_zoo("predict", "resnet18-embedding", str(path), "--weights", str(tmp_path / "random.pth"),
                       "--option", "normalize=true", "--json")
        assert done.returncode == 0, done.stderr
        (row,) = json.loads(done.stdout)
        assert row["result"]["dim"] == 512 and row["result"]["norm"] == pytest.approx(1.0, abs=1e-6)
        assert np.allclose(row["result"]["embedding"], got.normalized().vector, atol=1e-6)


@pytest.fixture(scope="module")
def photos_folder(tmp_path_factory) -> tuple:
    """resnet18's random weights (a classifier's checkpoint), and a folder of scikit-image photos as JPEG files."""
    import cv2
    import torch
    from skimage import data

    from zoo.testing import randomize

    folder = tmp_path_factory.mktemp("similar")
    plugin = torchvision_plugin()
    spec = zoo.get_spec("resnet18")
    torch.manual_seed(0)
    torch.save(randomize(plugin.build(spec, None), spec).state_dict(), folder / "random.pth")
    (folder / "photos").mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"):
        cv2.imwrite(str(folder / "photos" / f"{name}.jpg"), getattr(data, name)()[:, :, ::-1])
    cv2.imwrite(str(folder / "query.jpg"), cv2.flip(data.chelsea()[:, :, ::-1], 1))  # the cat, mirrored
    return folder, folder / "random.pth"


def test_32_4_the_readmes_nearest_photos_example_runs(photos_folder, zoo_cache_dir):
    """The README's dozen lines, run as they are but for the model: resnet18-embedding with random weights (the
    published DINOv2 weights need the network). A mirrored photo's nearest photo is the photo itself."""
    import re
    import subprocess
    import sys

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("The photos of a folder nearest to a query photo:"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    line = re.search(r'zoo\.get\("[^"]+"\)', code).group(0)
    code = code.replace(line, f'zoo.get("resnet18-embedding", weights={str(photos_folder[1])!r})')
    folder = photos_folder[0]
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5 and lines[0].endswith("photos/chelsea.jpg"), lines
    scores = [float(line.split()[0]) for line in lines]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.9


def test_32_4_vectors_of_a_folder_to_parquet_through_ray(photos_folder, zoo_cache_dir, tmp_path):
    """zoo predict --ray on a real local Ray writes one vector a row, each equal to zoo.get's."""
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("ray")
    folder, weights = photos_folder
    output = tmp_path / "vectors.parquet"
    done = run_zoo("predict", "resnet18-embedding", str(folder / "photos"), "--weights", str(weights),
                   "--option", "normalize=true", "--ray", "--workers", "1", "--output", str(output))
    assert done.returncode == 0, done.stderr
    table = pyarrow_parquet.read_table(output).to_pylist()
    model = zoo.get("resnet18-embedding", weights=weights)
    assert len(table) == 6 and all(row["error"] is None and row["dim"] == 512 for row in table)
    for row in table:
        want = model.predict(row["path"], normalize=True).vector
        assert np.allclose(row["embedding"], want, atol=1e-5), row["path"]
