"""Weights given to zoo.get: resolution of the argument, and loading that never runs pickled code."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tinymodels import make_net, save_weights, tiny_spec

import zoo
from zoo import cache, weights


class WritesAFile:
    """Unpickling this calls Path.touch on the marker: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("fmt", ["torch.save", "pickle"])
def test_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, fmt):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pth"
    payload = {"weight": torch.zeros(2), "trap": WritesAFile(marker)}
    if fmt == "torch.save":
        torch.save(payload, checkpoint)
    else:
        checkpoint.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    with pytest.raises(zoo.WeightsError, match="refusing to load .*arbitrary code"):
        zoo.get(tiny_spec(), weights=checkpoint)
    assert not marker.exists()
    assert not (cache.cache_root() / "models").exists() or not any((cache.cache_root() / "models").iterdir())


def test_safetensors_weights_export_with_parity(tmp_path):
    from safetensors.torch import save_file

    state = {k: v * 1.2 for k, v in make_net().state_dict().items() if v.is_floating_point()}
    state.update({k: v for k, v in make_net().state_dict().items() if not v.is_floating_point()})
    path = tmp_path / "tiny.safetensors"
    save_file(state, str(path))
    loaded = weights.load_state_dict(path)
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    model = zoo.get(tiny_spec(), weights=path)
    assert model.metadata["parity"]["logits"]["top1_agreement"] == 1.0
    assert model.metadata["key_inputs"]["source"]["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_state_dict_wrapper_is_unwrapped(tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": make_net().state_dict(), "epoch": 3}, path)
    assert set(weights.load_state_dict(path)) == set(make_net().state_dict())


@pytest.mark.parametrize("content, message", [
    (b"", "is not a PyTorch checkpoint"),
    (b"<html>login</html>", "is not a PyTorch checkpoint"),
    ("truncated", "is not a PyTorch checkpoint"),
    ("list", "not a state dict"),
])
def test_files_that_are_not_state_dicts(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    if content == "truncated":
        good = save_weights(tmp_path / "good.pth").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif content == "list":
        torch.save([torch.zeros(1)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(zoo.WeightsError, match=message):
        weights.load_state_dict(path)


def test_broken_safetensors_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(zoo.WeightsError, match="not a valid safetensors file"):
        weights.load_state_dict(path)


def test_weights_for_another_architecture_name_the_model(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 3).state_dict(), path)
    with pytest.raises(zoo.WeightsError, match="other.pth does not fit the model tiny: 8 of the model's 9 tensors "
                                               "are missing: 0.weight.*; 2 are not the model's: weight, bias"):
        zoo.get(tiny_spec(), weights=path)


def test_weights_argument_errors(tmp_path):
    with pytest.raises(zoo.WeightsError, match="needs its sha256"):
        weights.resolve("https://example.org/w.pth")
    with pytest.raises(zoo.WeightsError, match="does not exist"):
        weights.resolve(str(tmp_path / "missing.pth"))
    with pytest.raises(zoo.WeightsError, match="is a directory"):
        weights.resolve(tmp_path)
    with pytest.raises(zoo.WeightsError, match="means nothing on its own"):
        weights.resolve(None, sha256="ab" * 32)
    path = save_weights(tmp_path / "w.pth")
    with pytest.raises(zoo.ChecksumError, match="w.pth"):
        weights.resolve(path, sha256="00" * 32)
    assert weights.resolve(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest()) == path.resolve()
    artifact = weights.resolve("https://example.org/w.pth", sha256="sha256:" + "AB" * 32)
    assert isinstance(artifact, zoo.Artifact) and artifact.sha256 == "ab" * 32
