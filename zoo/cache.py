"""Where the zoo keeps its files.

The cache root is ``ZOO_CACHE_DIR`` when set, else the user cache directory that
platformdirs gives for ``onnx-zoo`` (``~/.cache/onnx-zoo`` on Linux,
``~/Library/Caches/onnx-zoo`` on macOS, ``%LOCALAPPDATA%\\onnx-zoo\\Cache`` on Windows).
Each model has a folder of its own under ``models/``, named after its canonical name, which
:func:`zoo.spec.ModelSpec` restricts to characters that are safe in a file name.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_path


def cache_root() -> Path:
    """The root of the cache tree (not created by this call)."""
    override = os.environ.get("ZOO_CACHE_DIR", "").strip()
    return Path(override).expanduser() if override else user_cache_path("onnx-zoo", appauthor=False)


def model_dir(name: str) -> Path:
    """The folder that holds the cached files of the model with canonical ``name``."""
    return cache_root() / "models" / name


def cached_files(name: str) -> list[Path]:
    """The files cached for ``name``, sorted; empty if none."""
    folder = model_dir(name)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
