"""Train the digits classifier and write what zoo-digits ships.

    python plugins/zoo-digits/train.py

Needs torch, onnx, onnxsim, onnxruntime, opencv and scikit-learn (``pip install -e '.[export]'
scikit-learn``); the plugin itself needs none of the training stack. It trains a small CNN on
scikit-learn's bundled digits (1797 images, 8x8, values 0..16) with a fixed stratified split,
exports it to ONNX, simplifies it, checks onnxruntime against PyTorch, and writes:

* ``zoo_digits/digits.onnx``: the model (input ``input``: ``(batch, 1, 8, 8)`` float32, dark ink
  0 on white paper 1; output ``logits``: ``(batch, 10)``);
* ``zoo_digits/model.toml``: its sha256 and size, held-out accuracy, split and training
  settings, library versions (what registration reads);
* ``samples/<digit>.png``: the first held-out image of each digit, dark on white, 64x64;
* ``zoo_digits/calibration.png`` and ``zoo_digits/held.png``: 64 training images each, tiled 8 by 8
  (8x8 pixels each), which int8 quantization calibrates on and checks agreement on; the
  held-out images stay out of both, so they measure the int8 model independently.

Everything is seeded and deterministic on CPU: running it twice writes the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import warnings
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime
import onnxsim
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "zoo_digits"
SAMPLES = HERE / "samples"

SEED = 0
TEST_SIZE = 0.2
EPOCHS = 40
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
OPSET = 17
SAMPLE_SIZE = 64


class DigitsNet(nn.Module):
    """Two 3x3 convolutions, a 2x2 max pool and a linear layer: 1x8x8 in, 10 logits out (~10k parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(32 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs as the model sees them (``1 - X/16``: dark strokes on white), labels, and the held-out indices.

    Returns ``x_train, y_train, x_test, y_test, test_indices`` (indices into ``load_digits()``).
    """
    digits = load_digits()
    x = (1.0 - digits.images / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8)
    y = digits.target.astype(np.int64)
    train, test = train_test_split(np.arange(len(y)), test_size=TEST_SIZE, stratify=y, random_state=SEED)
    return x[train], y[train], x[test], y[test], np.sort(test)


def train(x: np.ndarray, y: np.ndarray) -> DigitsNet:
    """Train a :class:`DigitsNet` on ``x`` and ``y`` with AdamW and seeded mini-batches; eval mode."""
    torch.manual_seed(SEED)
    model = DigitsNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(targets), generator=order).split(BATCH_SIZE):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs[batch]), targets[batch]).backward()
            optimizer.step()
        schedule.step()
    return model.eval()


def to_onnx(model: DigitsNet) -> bytes:
    """The model as simplified, checked ONNX bytes, with a dynamic batch axis."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, but gives a small, plain graph
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    simplified, ok = onnxsim.simplify(onnx.load_from_string(buffer.getvalue()))
    if not ok:
        raise SystemExit("onnxsim could not validate the simplified model")
    onnx.checker.check_model(simplified, full_check=True)
    return simplified.SerializeToString()


def check_parity(model: DigitsNet, data: bytes, x: np.ndarray) -> np.ndarray:
    """Run ``x`` through onnxruntime, check it against PyTorch, and return the ONNX logits."""
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg="onnxruntime disagrees with PyTorch")
    return got


def render(image: np.ndarray, size: int = SAMPLE_SIZE) -> np.ndarray:
    """An 8x8 model input (0 ink .. 1 paper) as a ``size`` x ``size`` uint8 greyscale picture, smoothly upscaled."""
    pixels = np.round(image * 255).astype(np.uint8)
    return cv2.resize(pixels, (size, size), interpolation=cv2.INTER_LINEAR)


def write_samples(x_test: np.ndarray, y_test: np.ndarray) -> None:
    """``samples/<digit>.png``: the first held-out image of each digit."""
    SAMPLES.mkdir(exist_ok=True)
    for digit in range(10):
        first = int(np.flatnonzero(y_test == digit)[0])
        cv2.imwrite(str(SAMPLES / f"{digit}.png"), render(x_test[first, 0]))


def write_calibration(x_train: np.ndarray) -> None:
    """``calibration.png`` (the first 64 training images) and ``held.png`` (the next 64), tiled 8 by 8."""
    for number, name in enumerate(("calibration", "held")):
        images = np.round(x_train[64 * number:64 * (number + 1), 0] * 255).astype(np.uint8)
        tiled = images.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 64)
        cv2.imwrite(str(PACKAGE / f"{name}.png"), tiled)


def toml_table(name: str, values: dict[str, object]) -> str:
    """One TOML table of strings, numbers and booleans (enough for model.toml; tomllib only reads)."""
    lines = [f"[{name}]"]
    for key, value in values.items():
        text = json.dumps(value)  # JSON's strings, numbers and booleans are TOML's too
        lines.append(f"{key if re.fullmatch(r'[A-Za-z0-9_-]+', key) else json.dumps(key)} = {text}")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Train, export, check, and write the model, its record and the samples."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test, test_indices = load_split()

    started = time.perf_counter()
    model = train(x_train, y_train)
    seconds = time.perf_counter() - started

    data = to_onnx(model)
    logits = check_parity(model, data, x_test)
    accuracy = float((logits.argmax(axis=1) == y_test).mean() * 100)
    (PACKAGE / "digits.onnx").write_bytes(data)
    write_samples(x_test, y_test)
    write_calibration(x_train)

    header = "# Written by train.py: do not edit. zoo_digits/__init__.py reads it to register the model.\n\n"
    tables = [
        toml_table("onnx", {"file": "digits.onnx", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "opset": OPSET, "parameters": sum(p.numel() for p in model.parameters())}),
        toml_table("metrics", {"acc@1": round(accuracy, 2)}),
        toml_table("data", {
            "dataset": "sklearn.datasets.load_digits", "input": "1 - pixels / 16 (dark ink on white paper)",
            "split": f"sklearn.model_selection.train_test_split(test_size={TEST_SIZE}, stratify=y, "
                     f"random_state={SEED})",
            "train_images": len(y_train), "test_images": len(y_test),
            "test_indices_sha256": hashlib.sha256(test_indices.astype("<i8").tobytes()).hexdigest(),
        }),
        toml_table("training", {"seed": SEED, "epochs": EPOCHS, "batch_size": BATCH_SIZE, "optimizer": "AdamW",
                                "learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY,
                                "schedule": "cosine", "dropout": 0.25}),
        toml_table("versions", {name: metadata.version(name) for name in ("torch", "onnx", "onnxsim", "scikit-learn")}),
    ]
    (PACKAGE / "model.toml").write_text(header + "\n".join(tables), encoding="utf-8")
    print(f"trained in {seconds:.1f} s; held-out accuracy {accuracy:.2f}% ({len(y_test)} images); "
          f"digits.onnx {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
