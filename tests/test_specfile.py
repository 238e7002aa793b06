"""Model specs read from TOML (zoo.plugin.load_specs): a data-only plugin needs no code."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import ROOT

import zoo
from zoo.plugin import load_specs

DIGITS = ROOT / "plugins" / "zoo-digits" / "zoo_digits" / "digits.onnx"
SAMPLES = sorted((ROOT / "plugins" / "zoo-digits" / "samples").glob("*.png"))

TOML = """
[models.my-digits]
task = "image-classification"
summary = "the digits network, described by data alone"
labels = "labels.txt"
outputs = ["logits"]
metrics = {"acc@1" = 98.61}

[models.my-digits.preprocess]
channels = "GRAY"
resize = [8, 8]
interpolation = "area"
scale = 0.00392156862745098
mean = [0.0]
std = [1.0]

[models.my-digits.onnx]
file = "net/digits.onnx"
sha256 = "{sha256}"
"""


def write_plugin(folder: Path, text: str = TOML) -> Path:
    (folder / "net").mkdir(parents=True)
    shutil.copyfile(DIGITS, folder / "net" / "digits.onnx")
    (folder / "labels.txt").write_text("\n".join(str(d) for d in range(10)) + "\n")
    path = folder / "models.toml"
    path.write_text(text.replace("{sha256}", hashlib.sha256(DIGITS.read_bytes()).hexdigest()))
    return path


@pytest.mark.skipif("digits" not in zoo.list_models(), reason="the zoo-digits plugin is not installed")
def test_29_a_data_only_spec_predicts_as_the_plugin_written_in_python(tmp_path, zoo_cache_dir):
    (spec,) = load_specs(write_plugin(tmp_path))
    assert spec.labels == tuple(str(d) for d in range(10)) and spec.preprocess.resize == (8, 8)
    assert spec.onnx.url == (tmp_path / "net" / "digits.onnx").as_uri() and spec.metrics == {"acc@1": 98.61}
    mine, theirs = zoo.get(spec), zoo.get("digits")
    for sample in SAMPLES:
        assert mine.predict(sample).to_dict() == theirs.predict(sample).to_dict()


@pytest.mark.parametrize(("change", "says"), [
    (lambda t: t.replace('task = "image-classification"', 'task = "image-classification"\ncolour = "red"'),
     "field 'colour' is not a field of a model spec"),
    (lambda t: t.replace("resize = [8, 8]", 'resize = "big"'), "field 'preprocess.resize'"),
    (lambda t: t.replace('labels = "labels.txt"', 'labels = "missing.txt"'), "missing.txt, which cannot be read"),
    (lambda t: t.replace("[models.my-digits.onnx]", "[models.my-digits.onnx"), "is not valid TOML"),
    (lambda t: t.replace('file = "net/digits.onnx"', 'file = "x.onnx"\nurl = "https://example.org/x.onnx"'),
     "url both name the file"),
    (lambda t: t.replace('summary =', 'build = "no_such_module:build"\nsummary ='), "cannot be imported"),
])
def test_29_errors_name_the_file_the_model_and_the_field(tmp_path, change, says):
    path = write_plugin(tmp_path, change(TOML))
    with pytest.raises(zoo.SpecError, match=says) as raised:
        load_specs(path)
    if "TOML" not in says:
        assert "[models.my-digits]" in str(raised.value) and str(path) in str(raised.value)


def test_31_03_labels_from_a_file_are_read_when_the_spec_is_looked_up_not_when_it_is_registered(tmp_path):
    from conftest import registry_with

    from zoo.specfile import labels_file

    (tmp_path / "classes.txt").write_text("cat\ndog\n\nbird\n")
    (tmp_path / "specs.toml").write_text('[models.lazy]\ntask = "image-classification"\nlabels_from = "file:classes.txt"'
                                         '\npreprocess = { resize = [8, 8] }\nonnx = { file = "m.onnx", sha256 = "'
                                         + "ab" * 32 + '" }\n')
    (spec,) = load_specs(tmp_path / "specs.toml")
    assert spec.labels == () and spec.labels_from == f"file:{tmp_path / 'classes.txt'}"

    class Plugin:
        @zoo.hookimpl
        def zoo_register_models(self, register):
            register(spec)

    (tmp_path / "classes.txt").rename(tmp_path / "moved.txt")  # registering reads nothing
    labels_file.cache_clear()
    registry = registry_with(lazy=Plugin())
    with pytest.raises(zoo.SpecError, match="classes.txt, which cannot be read"):
        registry.get("lazy")
    (tmp_path / "moved.txt").rename(tmp_path / "classes.txt")
    labels_file.cache_clear()
    assert registry.get("lazy").labels == ("cat", "dog", "bird") and registry.get("lazy").labels_from is None
