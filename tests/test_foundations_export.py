"""Issue 13, "sound foundations": the items whose checks need an export (torch).

The torch-free items are in ``test_foundations.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import run_zoo
from fileserver import FileServer
from tinymodels import make_net, save_weights, tiny_spec

import zoo
from zoo import cache
from zoo.errors import WeightsError
from zoo.testing import sample_images

TESTS = str(Path(__file__).parent)


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]), **extra}


# -- 10. weights being exported from are not pruned -----------------------------------------------


def test_10_prune_downloads_does_not_delete_weights_an_export_is_reading(tmp_path):
    data = save_weights(tmp_path / "served.pth", scale=1.2).read_bytes()
    with FileServer() as server:
        artifact = zoo.Artifact(url=server.add("served.pth", data), sha256=hashlib.sha256(data).hexdigest())
        marker = tmp_path / "exporting"
        code = (f"import zoo, tinymodels; m = zoo.get(tinymodels.tiny_spec(weights=zoo.Artifact(url={artifact.url!r}, "
                f"sha256={artifact.sha256!r}))); print(m.path)")
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=child_env(ZOO_TEST_BUILD_SLEEP="3", ZOO_TEST_BUILD_MARKER=str(marker)))
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert time.monotonic() < deadline and child.poll() is None, child.communicate()
            time.sleep(0.05)
        pruned = run_zoo("cache", "prune", "--downloads")
        assert pruned.returncode == 0 and "served.pth" not in pruned.stdout
        _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert cache.download_path("served.pth", artifact.sha256).exists()


# -- 14. what an exported entry was built from ---------------------------------------------------


def test_14_exported_entries_show_their_weights_exporter_opset_and_simplification(tmp_path):
    first = zoo.get(tiny_spec(), weights=save_weights(tmp_path / "mine.pth", scale=0.8))
    second = zoo.get(tiny_spec(), weights=save_weights(tmp_path / "other.pth", scale=0.7), simplify=False)
    listing = {m["key"]: m for m in json.loads(run_zoo("cache", "list", "--json").stdout)["models"]}
    mine = listing[first.path.parent.name]
    assert mine["weights"]["file"] == "mine.pth" and mine["weights"]["location"] == str(tmp_path / "mine.pth")
    assert mine["weights"]["sha256"] == hashlib.sha256((tmp_path / "mine.pth").read_bytes()).hexdigest()
    assert (mine["exporter"], mine["opset"], mine["simplified"]) == ("torchscript", 17, True)
    assert listing[second.path.parent.name]["simplified"] is False
    table = run_zoo("cache", "list").stdout
    sha = mine["weights"]["sha256"][:8]
    assert f"your weights mine.pth ({sha}; no published metrics), torchscript opset 17, simplified" in table
    removed = run_zoo("cache", "rm", f"tiny/{second.path.parent.name}")
    assert removed.returncode == 0 and [e.key for e in cache.entries("tiny")] == [first.path.parent.name]


# -- 18. the user's own checkpoints ----------------------------------------------------------------


def test_18_wrapped_dataparallel_checkpoints_load(tmp_path):
    state = make_net().state_dict()
    wrapped = {"epoch": 12, "model": {f"module.{k}": v for k, v in state.items()}, "optimizer": {"lr": 0.1}}
    torch.save(wrapped, tmp_path / "checkpoint.pth")
    torch.save({"state_dict": state}, tmp_path / "lightning.ckpt")
    plain = zoo.get(tiny_spec(), weights=save_weights(tmp_path / "plain.pth"))
    batch = plain.preprocess(next(iter(sample_images().values())))
    for name in ("checkpoint.pth", "lightning.ckpt"):
        model = zoo.get(tiny_spec(), weights=tmp_path / name)
        assert model.path != plain.path and model.metadata["weights"]["file"] == name
        assert (model.run(batch)["logits"] == plain.run(batch)["logits"]).all()  # the same tensors


def test_18_a_fine_tuned_head_with_labels_is_built_with_that_many_classes(tmp_path):
    ft = save_weights(tmp_path / "ft.pth", scale=1.1, classes=2)
    with pytest.raises(WeightsError) as caught:
        zoo.get(tiny_spec(), weights=ft)
    message = str(caught.value)
    assert "5.weight is [2, 8] instead of [5, 8]" in message and "fine-tuned for 2 classes" in message
    model = zoo.get(tiny_spec(), weights=ft, labels=["cat", "dog"])
    photo = next(iter(sample_images().values()))
    result = model.predict(photo)
    assert {p.label for p in result.topk} == {"cat", "dog"}
    renamed = zoo.get(tiny_spec(), weights=ft, labels=["yes", "no"])
    assert renamed.path != model.path  # the labels are in the key
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    image = tmp_path / "photo.png"
    import cv2

    cv2.imwrite(str(image), photo[:, :, ::-1])
    shown = run_zoo("predict", "tiny", str(image), "--weights", str(ft), "--labels", str(labels), "--json",
                    code="import sys, zoo.cli, zoo.registry, tinymodels, zoo\n"
                         "reg = zoo.registry.Registry.from_plugins(zoo.registry.PluginManager())\n"
                         "reg.register(tinymodels.tiny_spec(), 'tests')\n"
                         "zoo.registry._default = reg\n"
                         "sys.exit(zoo.cli.main(sys.argv[1:]))", env=child_env())
    assert shown.returncode == 0, shown.stderr
    assert {p["label"] for p in json.loads(shown.stdout)[0]["result"]["topk"]} == {"cat", "dog"}


def test_18_mismatch_errors_are_short_and_other_files_say_what_they_are(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(WeightsError) as caught:
        zoo.get(tiny_spec(), weights=tmp_path / "resnet18.pth")
    message = str(caught.value)
    assert len(message) < 1500 and "(and " in message and " more)" in message
    assert "8 of the model's 9 tensors are missing" in message

    (tmp_path / "notes.pth").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(WeightsError, match="notes.pth is not a PyTorch checkpoint"):
        zoo.load_state_dict(tmp_path / "notes.pth")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    with open(tmp_path / "evil.pth", "wb") as file:
        pickle.dump({"weight": Evil()}, file)
    with pytest.raises(WeightsError) as refused:
        zoo.load_state_dict(tmp_path / "evil.pth")
    assert "weights_only" not in str(refused.value) and "allowlist" not in str(refused.value)
    assert not (tmp_path / "pwned").exists()


# -- 20. a Python user learns that an export is under way -------------------------------------------


def test_20_zoo_get_without_logging_configured_says_it_exports_and_how_long_it_took():
    result = subprocess.run([sys.executable, "-c", "import zoo, tinymodels; zoo.get(tinymodels.tiny_spec(), weights='random')"],
                            capture_output=True, text=True, timeout=300, env=child_env(), check=False)
    assert result.returncode == 0, result.stderr
    assert "zoo: exporting tiny to ONNX (torchscript exporter, opset 17)" in result.stderr
    assert "zoo: exported tiny in " in result.stderr and " s, cached in " in result.stderr
