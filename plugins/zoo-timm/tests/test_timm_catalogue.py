"""zoo-timm's catalogue against timm's own registry: every pretrained tag with a Hub repository is a model (or is
skipped, with the reason), named, labelled and described as timm describes it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib

import pytest

import zoo
from zoo.testing import registered_specs

timm = pytest.importorskip("timm")
zoo_timm = pytest.importorskip("zoo_timm", reason="zoo-timm is not installed: pip install -e plugins/zoo-timm")

from timm.data import ImageNetInfo, infer_imagenet_subset
from timm.models import get_pretrained_cfg

DATA = tomllib.loads((zoo_timm.HERE / "models.toml").read_text(encoding="utf-8"))
SKIPPED = dict(line.split(": ", 1) for line in DATA["skipped"])
TAGS = timm.list_pretrained()


@pytest.fixture(scope="module")
def specs() -> dict[str, zoo.ModelSpec]:
    """What the plugin registers in this zoo, by name."""
    return {spec.name: spec for spec in registered_specs(zoo_timm, "timm")}


def test_32_1_every_tag_with_a_hub_repository_is_registered_or_skipped_with_its_reason(specs):
    assert DATA["timm"] == timm.__version__, "models.toml is from another timm: run generate_models.py"
    names = {spec.name for spec in specs.values()}
    for tag in TAGS:
        cfg = get_pretrained_cfg(tag).to_dict()
        if tag in SKIPPED:
            assert SKIPPED[tag].strip(), tag
            if not cfg.get("hf_hub_id"):
                assert SKIPPED[tag].startswith("no Hugging Face Hub repository"), tag
            continue
        assert cfg.get("hf_hub_id"), f"{tag} has no Hub repository and is not skipped"
        kind = DATA["models"][tag][0]
        if kind == "classifier":
            assert f"timm/{tag}" in names, tag
            arch, _, name = tag.partition(".")
            assert f"timm/{arch}-embedding.{name}" in names, tag
        else:  # no classifier: an embedding model under its own name
            assert f"timm/{tag}" in names, tag
    assert set(DATA["models"]) | set(SKIPPED) == set(TAGS)
    assert not set(DATA["models"]) & set(SKIPPED)
    # The counts this file was generated with (timm 1.0.31): update them with the catalogue.
    kinds = [row[0] for row in DATA["models"].values()]
    assert (kinds.count("classifier"), kinds.count("embedding"), kinds.count("projection"), len(SKIPPED)) == (
        1425, 269, 113, 19)


def test_32_1_each_classifier_is_described_as_timm_describes_it(specs):
    for tag, row in DATA["models"].items():
        if row[0] != "classifier":
            continue
        cfg = get_pretrained_cfg(tag).to_dict()
        arch = tag.partition(".")[0]
        spec = specs[f"timm/{tag}"]
        assert (spec.task, spec.outputs, spec.extra["timm"]["model"]) == ("image-classification", ("logits",), tag)
        subset = infer_imagenet_subset(cfg)
        assert spec.labels_from == f"file:{zoo_timm.HERE / 'labels' / f'{subset}.txt'}"
        assert cfg["num_classes"] == ImageNetInfo(subset).num_classes()
        default = get_pretrained_cfg(arch).tag == cfg["tag"]  # what timm.create_model(arch, pretrained=True) loads
        assert spec.aliases == ((f"timm/{arch}",) if default else ()), tag
        assert spec.homepage == f"https://huggingface.co/{cfg['hf_hub_id']}"
        assert spec.preprocess.input_size == tuple(cfg["input_size"][1:])


def test_32_1_timm_default_tag_is_not_the_first_listed_and_the_bare_architecture_names_it(specs):
    # list_pretrained sorts by name; timm's default is the tag its model file declares first (or marks)
    assert timm.list_pretrained("beit_base_patch16_224.*")[0] == "beit_base_patch16_224.in22k_ft_in22k"
    assert get_pretrained_cfg("beit_base_patch16_224").tag == "in22k_ft_in22k_in1k"
    assert zoo.get_spec("timm/beit_base_patch16_224").name == "timm/beit_base_patch16_224.in22k_ft_in22k_in1k"
    assert zoo.get_spec("timm/resnet50").name == "timm/resnet50.a1_in1k"


def test_32_1_labels_are_short_names_one_file_per_label_set():
    files = sorted(p.name for p in (zoo_timm.HERE / "labels").iterdir())
    assert files == ["imagenet-12k.txt", "imagenet-1k.txt", "imagenet-21k-goog.txt", "imagenet-21k-miil.txt",
                     "imagenet-22k-ms.txt", "imagenet-22k.txt"]
    for name in files:
        subset = name.removesuffix(".txt")
        lines = (zoo_timm.HERE / "labels" / name).read_text(encoding="utf-8").splitlines()
        assert len(lines) == ImageNetInfo(subset).num_classes() == len(set(lines)), subset
        assert all(line and line == line.strip() for line in lines), subset
    spec = zoo.get_spec("timm/resnet50.a1_in1k")  # looked up: its labels are read
    assert spec.labels[:3] == ("tench", "goldfish", "great white shark") and len(spec.labels) == 1000
    assert spec.labels[134] == "crane (n02012849)" and spec.labels[517] == "crane (n03126707)"
    assert zoo.get_spec("timm/vit_base_patch16_224.augreg_in21k").labels[:2] == ("organism", "benthos (n00005787)")


def test_32_1_names_do_not_clash_with_zoo_torchvision():
    assert zoo.get_spec("timm/resnet50").plugin == "timm"
    if "torchvision" in {info.name for info in zoo.list_plugins()}:
        assert zoo.get_spec("resnet50").plugin == "torchvision"
    for info in zoo.list_plugins():
        if info.name == "timm":
            assert info.error is None and info.conflicts == []


def test_32_1_registration_stays_cheap_and_imports_no_torch(specs):
    assert len(DATA["preprocess"]) == len({spec.preprocess for spec in specs.values()})
    assert len({id(spec.preprocess) for spec in specs.values()}) == len(DATA["preprocess"])  # one object each
    assert all(not spec.labels for spec in specs.values())  # read when looked up, not at registration
    code = ("import sys, time; t = time.perf_counter(); import zoo_timm; specs = zoo_timm.load_specs(); "
            "print(len(specs), time.perf_counter() - t, 'torch' in sys.modules, 'timm' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert found[2:] == ["False", "False"], found
    assert float(found[1]) < 1.0, found  # about 0.2 s on one core: the file parsed, one spec a tag and variant


def test_32_1_zoo_list_and_zoo_info(tmp_path, local_hub):
    local_hub.add("timm/resnet50.a1_in1k", "model.safetensors", b"for a zoo info that asks the Hub: not read")
    env = {**os.environ, "ZOO_CACHE_DIR": str(tmp_path)}
    started = time.perf_counter()
    listed = subprocess.run([sys.executable, "-m", "zoo.cli", "list", "timm/*vit*"], capture_output=True, text=True,
                            env=env, timeout=120, check=True)
    assert time.perf_counter() - started < 10
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert "timm/vit_base_patch16_224.augreg_in21k_ft_in1k" in names and "resnet50" not in names
    assert all("vit" in name for name in names) and len(names) > 300
    info = subprocess.run([sys.executable, "-m", "zoo.cli", "info", "timm/resnet50.a1_in1k"], capture_output=True,
                          text=True, env=env, timeout=120, check=True).stdout
    assert "timm/resnet50.a1_in1k" in info and "Apache-2.0" in info and "aliases    timm/resnet50\n" in info
    assert "shorter side to 235, bicubic with antialias" in info and "centre 224x224" in info, info
    assert "hf://timm/resnet50.a1_in1k@main/model.safetensors" in info, info
    spec = zoo.get_spec("timm/resnet50.a1_in1k")
    assert (spec.preprocess.resize, spec.preprocess.crop, spec.preprocess.interpolation) == (235, (224, 224),
                                                                                             "bicubic")


def test_32_1_embedding_variants_and_models(specs):
    variant = specs["timm/resnet50-embedding.a1_in1k"]
    assert variant.task == "image-embedding" and variant.outputs == ("embedding", "features")
    assert set(variant.aliases) == {"timm/resnet50.a1_in1k-embedding", "timm/resnet50-embedding"}
    assert zoo.get_spec("timm/resnet50.a1_in1k-embedding").name == "timm/resnet50-embedding.a1_in1k"
    assert variant.extra["timm"] == {"model": "resnet50.a1_in1k", "head": "pre_logits", "classes": 1000,
                                     "layout": "NCHW", "dim": 2048}
    assert "2048 features" in variant.summary
    vit = specs["timm/vit_base_patch16_224-embedding.augreg2_in21k_ft_in1k"]
    assert vit.decode == {"prefix_tokens": 1} and vit.extra["timm"]["layout"] == "NLC"
    swin = specs["timm/swin_tiny_patch4_window7_224-embedding.ms_in1k"]
    assert swin.extra["timm"]["layout"] == "NHWC"  # transposed to (N, C, H, W) by the graph
    clip = specs["timm/vit_base_patch16_clip_224.openai"]  # an image tower: its projection is the embedding
    assert clip.extra["timm"]["head"] == "projection" and "512-value" in clip.summary
    backbone = specs["timm/vit_small_patch14_dinov2.lvd142m"]  # no classifier
    assert backbone.extra["timm"]["head"] == "pre_logits" and backbone.extra["timm"]["classes"] == 0
    assert backbone.decode == {"prefix_tokens": 1}
    assert set(backbone.aliases) == {"timm/vit_small_patch14_dinov2", "timm/vit_small_patch14_dinov2-embedding",
                                     "timm/vit_small_patch14_dinov2-embedding.lvd142m"}
    assert zoo.get_spec("timm/resnet50-embedding.bamboo").name == "timm/resnet50.bamboo"  # every embedding so
    unnamed = specs["timm/vit_base_patch16_224.bamboo"]  # 115217 classes that timm does not name
    assert unnamed.task == "image-embedding" and unnamed.extra["timm"]["classes"] == 115217
    encoder = specs["timm/qwen3_vit_88m_enc.qwen3_5_0_8b"]  # tokens for a language model: forward_head refuses
    assert encoder.outputs == ("features",) and encoder.options == {"pool": "avg"}
    multiscale = specs["timm/crossvit_tiny_240-embedding.in1k"]  # forward_features returns a list: no features output
    assert multiscale.outputs == ("embedding",)
