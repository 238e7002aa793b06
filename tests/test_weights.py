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


DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"


def as_if_trained(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with the BatchNorm statistics that training leaves: moved running statistics, counted batches."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, value in net.state_dict().items():
            if key.endswith("running_mean"):
                value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
            elif key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif key.endswith("num_batches_tracked"):
                value.fill_(1200)
    return net


@pytest.mark.parametrize("built_with", ["weights=None", "published weights"])
def test_27_07_a_detector_state_dict_with_batchnorm_counters_loads(tmp_path, built_with):
    # Trained from scratch, torchvision's detector has BatchNorm, with num_batches_tracked counters; built for its
    # published weights (what the zoo exports), FrozenBatchNorm2d, which has none and drops them when loading.
    torchvision = pytest.importorskip("torchvision")
    zoo_torchvision = pytest.importorskip("zoo_torchvision")
    from zoo_torchvision import graphs

    spec = next(spec for spec in zoo_torchvision.load_specs() if spec.name == DETECTOR)
    variant = spec.extra["torchvision"]["weights"]
    torch.manual_seed(0)
    if built_with == "weights=None":
        net = torchvision.models.get_model(DETECTOR, weights=None, weights_backbone=None)
    else:
        net = graphs.trained_architecture(DETECTOR, variant, len(spec.labels))
    state = as_if_trained(net).eval().state_dict()
    counters = {key for key in state if key.endswith("num_batches_tracked")}
    assert bool(counters) is (built_with == "weights=None")
    path = tmp_path / "detector.pth"
    torch.save(state, path)
    theirs = graphs.trained_architecture(DETECTOR, variant, len(spec.labels))
    theirs.load_state_dict(torch.load(path, weights_only=True), strict=True)  # torchvision's architecture takes it

    built = zoo_torchvision.build(spec, path).model
    loaded = built.state_dict()
    assert set(loaded) == set(state) - counters
    assert all(torch.equal(loaded[key], state[key]) for key in loaded)
    image = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = net.backbone(image), built.backbone(image)
    for level in want:  # BatchNorm in eval mode and FrozenBatchNorm2d compute the same features
        torch.testing.assert_close(got[level], want[level], rtol=1e-4, atol=1e-4 * float(want[level].abs().max()))


class LitClassifier(torch.nn.Module):
    """What a LightningModule's state_dict holds: its network as ``self.model``, and the loss's class weights."""

    def __init__(self) -> None:
        super().__init__()
        self.model = make_net()
        self.loss = torch.nn.CrossEntropyLoss(weight=torch.linspace(0.5, 1.5, 5))


def trained_a_step(net: torch.nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """An SGD optimiser with momentum and a MultiStepLR schedule, as training scripts make them, after one step."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[16, 22], gamma=0.1)
    net.train()
    net(torch.rand(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    scheduler.step()
    return optimizer, scheduler


def lightning_checkpoint(path: Path, trap: object = None) -> dict[str, torch.Tensor]:
    """A checkpoint as PyTorch Lightning 2.x writes it (``trap`` among its hyperparameters); returns the network's."""
    module = LitClassifier()
    optimizer, scheduler = trained_a_step(module.model)
    score = torch.tensor(0.3125)
    callback = "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1}"
    progress = {"ready": 5, "started": 5, "processed": 5, "completed": 4}
    hyper_parameters = {"lr": 0.02, "classes": 5, "backbone": "tiny"} | ({"loss": trap} if trap else {})
    torch.save({
        "epoch": 4, "global_step": 500, "pytorch-lightning_version": "2.4.0",
        "state_dict": module.state_dict(),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_loop.state_dict": {"_batches_that_stepped": 500},
                               "epoch_progress": {"total": progress, "current": progress}}},
        "callbacks": {callback: {"monitor": "val_loss", "best_model_score": score, "current_score": score,
                                 "best_model_path": "/runs/epoch=4.ckpt", "dirpath": "/runs",
                                 "best_k_models": {"/runs/epoch=4.ckpt": score}, "last_model_path": ""}},
        "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [scheduler.state_dict()],
        "hparams_name": "kwargs", "hyper_parameters": hyper_parameters,
    }, path)
    return module.model.state_dict()


def reference_script_checkpoint(path: Path, trap: object = None) -> dict[str, torch.Tensor]:
    """A checkpoint as torchvision's reference training scripts write it (``trap`` among the script's arguments)."""
    import argparse

    net = make_net()
    optimizer, scheduler = trained_a_step(net)
    args = argparse.Namespace(data_path="/datasets/coco", dataset="coco", model="tiny", device="cuda", batch_size=2,
                              epochs=26, workers=4, opt="sgd", lr=0.02, momentum=0.9, weight_decay=1e-4,
                              lr_scheduler="multisteplr", lr_steps=[16, 22], lr_gamma=0.1, output_dir="/runs",
                              resume="", start_epoch=0, weights=None, weights_backbone=None, amp=False,
                              distributed=False, world_size=1, dist_url="env://")
    if trap:
        args.trap = trap
    torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "epoch": 4, "args": args}, path)
    return net.state_dict()


@pytest.mark.parametrize("write", [lightning_checkpoint, reference_script_checkpoint])
def test_27_08_lightning_and_reference_script_checkpoints_load(tmp_path, write):
    path = tmp_path / "checkpoint.ckpt"
    state = write(path)
    loaded = weights.load_weights(make_net(), path).state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[key], state[key]) for key in state)

    model = zoo.get(tiny_spec(), weights=path)
    net = weights.load_weights(make_net(), path).eval()
    batch = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = net(batch).numpy()
    assert abs(model.run(batch.numpy())["logits"] - want).max() < 1e-4

    marker = tmp_path / "pwned"  # the same checkpoint with code to run beside the weights: refused, and not run
    write(path, trap=WritesAFile(marker))
    with pytest.raises(zoo.WeightsError, match="refusing to load .*arbitrary code"):
        weights.load_weights(make_net(), path)
    assert not marker.exists()


def test_27_08_a_prefix_that_does_not_match_names_the_prefixes_tried(tmp_path):
    path = tmp_path / "other.ckpt"
    other = torch.nn.ModuleDict({"fc1": torch.nn.Linear(4, 4), "fc2": torch.nn.Linear(4, 2)})
    torch.save({"state_dict": {f"net.{key}": value for key, value in other.state_dict().items()},
                "epoch": 1, "pytorch-lightning_version": "2.4.0"}, path)
    with pytest.raises(zoo.WeightsError) as raised:
        weights.load_weights(make_net(), path, what="tiny")
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path} does not fit the model tiny: ")
    assert "'net.', 'net.fc1.', 'net.fc2.'" in message  # the prefixes tried
    assert "net.fc1.weight" in message and "0.weight" in message and "1.running_mean" in message  # keys of each side
