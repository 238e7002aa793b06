"""zoo pull: models fetched and converted ahead of time, failures reported without stopping the others."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import zoo
from zoo import cache

if "digits" not in zoo.list_models():
    pytest.skip("the zoo-digits plugin is not installed", allow_module_level=True)


def zoo_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True, check=False,
                          env={**os.environ, **env})


def test_pull_converts_into_the_cache_and_a_later_offline_predict_uses_it(zoo_cache_dir, tmp_path):
    pulled = zoo_cli("pull", "digits", "--precision", "int8")
    assert pulled.returncode == 0, pulled.stderr
    assert "pulled 1 of 1 model(s)" in pulled.stderr
    [int8] = [e for e in cache.entries("digits") if e.ok and e.to_dict()["precision"] == "int8"]
    assert f"digits: {int8.folder / cache.MODEL_FILE}" in pulled.stdout
    sample = tmp_path / "blank.png"
    cv2.imwrite(str(sample), np.full((32, 32), 255, np.uint8))
    offline = zoo_cli("predict", "digits", str(sample), "--precision", "int8", ZOO_OFFLINE="1")
    assert offline.returncode == 0 and "quantizing" not in offline.stderr, offline.stderr


def test_pull_selects_by_task_and_plugin_and_refuses_what_it_cannot_find(zoo_cache_dir):
    chosen = zoo_cli("pull", "--plugin", "digits", "--task", "image-classification")
    assert chosen.returncode == 0 and "digits:" in chosen.stdout, chosen.stderr
    unknown = zoo_cli("pull", "digitz")
    assert unknown.returncode != 0 and "digits" in unknown.stderr  # the suggestion
    assert zoo_cli("pull", "zz*").returncode == 2 and "no model matches zz*" in zoo_cli("pull", "zz*").stderr
    none = zoo_cli("pull")
    assert none.returncode == 2 and "--task" in none.stderr


def test_a_model_that_fails_is_reported_and_the_others_are_pulled(zoo_cache_dir):
    if "resnet18" not in zoo.list_models():
        pytest.skip("needs zoo-torchvision (a model whose weights are not in the cache)")
    result = zoo_cli("pull", "resnet18", "digits", ZOO_OFFLINE="1")  # resnet18's weights cannot be fetched offline
    assert result.returncode == 1
    assert "resnet18: FAILED" in result.stderr and "failed: resnet18" in result.stderr
    assert "pulled 1 of 2 model(s)" in result.stderr and cache.entries("digits")
