"""A tiny classifier for cache and conversion tests, importable by spawned processes.

Its build function records each call in ``ZOO_TEST_BUILD_LOG`` (one line per export) and,
when ``ZOO_TEST_BUILD_SLEEP`` is set, writes ``ZOO_TEST_BUILD_MARKER`` and sleeps, so that
a test can kill the process in the middle of an export.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import zoo
from zoo.testing import randomize

LABELS = ("cat", "dog", "bird", "fish", "frog")


def make_net(classes: int = len(LABELS)):
    import torch

    torch.manual_seed(0)
    return randomize(torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, classes),
    ), (3, 32, 32))


def build(spec: zoo.ModelSpec, weights: Path | None):
    log = os.environ.get("ZOO_TEST_BUILD_LOG")
    if log:
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\n")
    if os.environ.get("ZOO_TEST_BUILD_SLEEP"):
        Path(os.environ["ZOO_TEST_BUILD_MARKER"]).touch()
        time.sleep(float(os.environ["ZOO_TEST_BUILD_SLEEP"]))
    net = make_net(len(spec.labels))
    if weights is not None:
        zoo.load_weights(net, weights, what=spec.name)
    return net


def tiny_spec(**fields) -> zoo.ModelSpec:
    values = dict(name="tiny", task="image-classification", preprocess=zoo.Preprocess(resize=(32, 32)),
                  build=build, outputs=("logits",), labels=LABELS)
    values.update(fields)
    return zoo.ModelSpec(**values)


def save_weights(path: Path, scale: float = 1.0, classes: int = len(LABELS)) -> Path:
    """A checkpoint of the tiny net (scaled, to make different weights; ``classes`` outputs)."""
    import torch

    state = {k: v * scale if v.is_floating_point() else v for k, v in make_net(classes).state_dict().items()}
    torch.save(state, path)
    return path
