"""zoo-timm end to end: a timm model exported to ONNX from a local weights file predicts what timm predicts.

The weights are a random initialisation made informative by ``zoo.testing.randomize`` and saved with safetensors,
as the Hub's timm repositories hold them; the ONNX model's input is the zoo's preprocessing, timm's is its own
transform, so the comparison covers the preprocessing, the build and the export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.testing import check_model, randomize

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")
zoo_timm = pytest.importorskip("zoo_timm", reason="zoo-timm is not installed: pip install -e plugins/zoo-timm")

from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config

CLASSIFIER = "mobilenetv3_small_050.lamb_in1k"  # 1.6M parameters, timm's smallest MobileNet-V3
EMBEDDER = "test_vit.r160_in1k"  # timm's test ViT: tokens with a class token
PHOTOS = {name: getattr(skimage_data, name)() for name in ("chelsea", "coffee", "astronaut", "rocket")}


def timm_model(tag: str, weights: Path | None = None, **kwargs):
    model = timm.create_model(tag, pretrained=False, **kwargs)
    if weights is not None:
        zoo.load_weights(model, weights)
    return model.eval()


def timm_batch(tag: str) -> torch.Tensor:
    """The photos as timm's eval transform makes them."""
    transform = create_transform(**resolve_data_config({}, model=timm_model(tag)))
    return torch.stack([transform(Image.fromarray(pixels)) for pixels in PHOTOS.values()])


def saved(model, spec: zoo.ModelSpec, path: Path) -> Path:
    torch.manual_seed(0)
    randomize(model, spec)  # random, yet with outputs that differ from image to image
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def classifier_weights(tmp_path_factory) -> Path:
    spec = zoo.get_spec(f"timm/{CLASSIFIER}")
    return saved(timm_model(CLASSIFIER), spec, tmp_path_factory.mktemp("weights") / "model.safetensors")


def relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def test_32_1_export_predicts_as_timm(zoo_cache_dir, classifier_weights):
    model = zoo.get(f"timm/{CLASSIFIER}", weights=classifier_weights)
    with torch.no_grad():
        theirs = timm_model(CLASSIFIER, classifier_weights)(timm_batch(CLASSIFIER)).numpy()
    (ours,) = model.run(model.preprocess(list(PHOTOS.values()))).values()
    assert relative(ours, theirs) <= 1e-4, relative(ours, theirs)
    results = model.predict(list(PHOTOS.values()))
    assert [r.class_id for r in results] == theirs.argmax(1).tolist()
    assert len(set(theirs.argmax(1).tolist())) > 1  # the weights tell the photos apart
    assert results[0].label == model.spec.labels[results[0].class_id] and len(model.spec.labels) == 1000


def test_32_1_published_weights_come_from_the_hub(zoo_cache_dir, local_hub, classifier_weights):
    """Without weights=, the tag's weights: model.safetensors of its Hub repository (here a local stand-in)."""
    local_hub.add(f"timm/{CLASSIFIER}", "model.safetensors", classifier_weights.read_bytes())
    model = zoo.get(f"timm/{CLASSIFIER.partition('.')[0]}")  # timm's default tag of the architecture
    assert model.spec.name == f"timm/{CLASSIFIER}"
    with torch.no_grad():
        theirs = timm_model(CLASSIFIER, classifier_weights)(timm_batch(CLASSIFIER)).numpy()
    (ours,) = model.run(model.preprocess(list(PHOTOS.values()))).values()
    assert relative(ours, theirs) <= 1e-4


def test_32_1_your_checkpoint_with_other_classes(zoo_cache_dir, tmp_path):
    labels = ["cat", "coffee", "person"]
    spec = zoo.get_spec(f"timm/{CLASSIFIER}")
    weights = saved(timm_model(CLASSIFIER, num_classes=3), spec, tmp_path / "ft.safetensors")
    model = zoo.get(f"timm/{CLASSIFIER}", weights=weights, labels=labels)
    with torch.no_grad():
        theirs = timm_model(CLASSIFIER, weights, num_classes=3)(timm_batch(CLASSIFIER)).numpy()
    results = model.predict(list(PHOTOS.values()))
    assert [r.label for r in results] == [labels[i] for i in theirs.argmax(1)]
    with pytest.raises(zoo.WeightsError, match="labels"):  # 3 classes where the spec has 1000: say to pass labels
        zoo.get(f"timm/{CLASSIFIER}", weights=weights)


def test_32_1_embedding_export_is_timm_pre_logits_and_features(zoo_cache_dir, tmp_path):
    spec = zoo.get_spec(f"timm/test_vit-embedding.{EMBEDDER.partition('.')[2]}")
    assert spec.decode == {"prefix_tokens": 1}
    weights = saved(timm_model(EMBEDDER), zoo.get_spec(f"timm/{EMBEDDER}"), tmp_path / "model.safetensors")
    model = zoo.get(spec.name, weights=weights)
    net = timm_model(EMBEDDER, weights)
    with torch.no_grad():
        features = net.forward_features(timm_batch(EMBEDDER))
        embedding = net.forward_head(features, pre_logits=True).numpy()
    outputs = model.run(model.preprocess(list(PHOTOS.values())))
    assert relative(outputs["embedding"], embedding) <= 1e-4
    assert relative(outputs["features"], features.numpy()) <= 1e-4
    found = model.predict(list(PHOTOS.values()))
    assert np.allclose(found[0].vector, embedding[0], rtol=1e-4, atol=1e-4 * np.abs(embedding).max())
    pooled = model.predict(list(PHOTOS.values()), pool="avg")  # the patches' mean, the class token left out
    assert np.allclose(pooled[1].vector, features[1, 1:].mean(0).numpy(), atol=1e-4 * float(features.abs().max()))


def test_32_1_conforms(zoo_cache_dir, classifier_weights, tmp_path):
    """zoo.testing's conformance check: photos and odd shapes, parity, batches, JSON results, OpenCV DNN."""
    report = check_model(f"timm/{CLASSIFIER}", weights=classifier_weights)
    assert report.parity["logits"]["top1_agreement"] == 1.0 and report.opencv == "agrees"
    weights = saved(timm_model(EMBEDDER), zoo.get_spec(f"timm/{EMBEDDER}"), tmp_path / "vit.safetensors")
    report = check_model(f"timm/test_vit-embedding.{EMBEDDER.partition('.')[2]}", weights=weights)
    assert set(report.parity) == {"embedding", "features"} and report.opencv == "agrees"


def test_32_1_weights_that_do_not_fit_are_refused_with_the_zoo_error(zoo_cache_dir, tmp_path):
    spec = zoo.get_spec(f"timm/{CLASSIFIER}")
    wrong = saved(timm_model("test_resnet.r160_in1k"), spec, tmp_path / "resnet.safetensors")
    with pytest.raises(zoo.WeightsError, match="does not fit"):
        zoo_timm.build(spec, wrong)


def test_32_1_a_checkpoint_that_timm_converts_loads_as_timm_loads_it(tmp_path):
    """A checkpoint that does not fit as it is goes through timm's own loader for the architecture (its checkpoint
    filter): here a ViT trained at 224 pixels, whose position embeddings timm resamples to 160's."""
    trained = timm.create_model(EMBEDDER, pretrained=False, img_size=224)
    weights = tmp_path / "224.safetensors"
    save_file({key: value.contiguous() for key, value in trained.state_dict().items()}, str(weights))
    model = zoo_timm.build(zoo.get_spec(f"timm/{EMBEDDER}"), weights)
    assert tuple(model.pos_embed.shape) == (1, 101, 64) != tuple(trained.pos_embed.shape)
    assert torch.equal(model.blocks[0].attn.qkv.weight, trained.blocks[0].attn.qkv.weight)
    expected = timm.create_model(EMBEDDER, pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
    assert torch.equal(model.pos_embed, expected.pos_embed)  # as timm.create_model(pretrained=True) loads it
