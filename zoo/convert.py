"""From a spec to a verified ONNX file in the cache: the one function that decides reuse or build.

:func:`convert` computes the cache key, returns the entry if it is complete and undamaged,
and otherwise takes the entry's lock, checks again (another process may have just built
it), and builds it in a temporary folder:

* a spec with a prebuilt ``onnx`` artifact (and no other weights, opset or exporter asked
  for) is downloaded and verified by its sha256;
* otherwise the weights are fetched (or a local file used) and :func:`zoo.export.export`
  converts, checks, simplifies and compares the model on random inputs and one photo.

The file is checked (external data must stay beside it) and committed with its metadata.
The key covers what the file depends on: the spec's name, build function, outputs, input
shape, tolerances and plugin data, the plugin's version, the weights' sha256, the
exporter, the opset, whether onnxsim ran, and the versions of onnx-zoo, torch, onnx and
onnxsim. Library versions are read from package metadata, so a cache hit imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from zoo import cache
from zoo.errors import ExportError
from zoo.spec import Artifact, ModelSpec
from zoo.weights import WeightsSource

log = logging.getLogger(__name__)

FORMAT = 1
#: The photo every export is also checked on (NASA portrait of astronaut Eileen Collins, public domain).
SAMPLE_IMAGE = "astronaut.jpg"
KEY_LIBRARIES = ("torch", "onnx", "onnxsim")


@dataclass(frozen=True)
class Converted:
    """A cached ONNX model: where it is and what its metadata says."""

    path: Path
    metadata: dict[str, Any]


def library_versions(exporter: str) -> dict[str, str | None]:
    """Installed versions of the libraries an export depends on, without importing them."""
    names = (*KEY_LIBRARIES, "onnxscript") if exporter == "dynamo" else KEY_LIBRARIES
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            found[name] = None
    return found


def key_inputs(spec: ModelSpec, source: dict[str, Any], plugin_version: str | None) -> dict[str, Any]:
    """Everything the converted file depends on (hashed into the cache key)."""
    from zoo import __version__

    build = spec.build
    return {
        "format": FORMAT,
        "zoo": __version__,
        "spec": {
            "name": spec.name,
            "build": f"{build.__module__}.{build.__qualname__}" if build is not None else None,
            "outputs": list(spec.outputs),
            "input_shape": list(spec.preprocess.input_shape),
            "atol": spec.atol,
            "rtol": spec.rtol,
            "extra": json.loads(json.dumps(spec.extra, sort_keys=True, default=_plain)),
        },
        "plugin": {"name": spec.plugin, "version": plugin_version},
        "source": source,
    }


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else repr(value)


def make_key(inputs: dict[str, Any]) -> str:
    """The cache key: the first 16 hex digits of the sha256 of the key inputs as JSON."""
    text = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[: cache.KEY_LENGTH]


def is_current(metadata: dict[str, Any]) -> bool:
    """Whether an entry could still be a cache hit with the libraries installed now."""
    from zoo import __version__

    inputs = metadata.get("key_inputs", {})
    source = inputs.get("source", {})
    if inputs.get("format") != FORMAT or inputs.get("zoo") != __version__:
        return False
    if source.get("kind") == "prebuilt":
        return True
    return source.get("versions") == library_versions(source.get("exporter", ""))


def convert(spec: ModelSpec, weights: WeightsSource = None, *, prebuilt: bool = True,
            exporter: str | None = None, opset: int | None = None, simplify: bool = True,
            plugin_version: str | None = None) -> Converted:
    """Return the cached ONNX model for ``spec`` with ``weights``, building it if needed.

    ``prebuilt=False`` (or weights other than the spec's own) exports even when the spec
    ships a prebuilt ONNX file.
    """
    from zoo import export

    use_prebuilt = spec.onnx is not None and prebuilt and (spec.build is None or weights == spec.weights)
    if use_prebuilt:
        assert spec.onnx is not None
        source: dict[str, Any] = {"kind": "prebuilt", "url": spec.onnx.url, "sha256": spec.onnx.sha256}
    else:
        if spec.build is None:
            raise ExportError(f"model {spec.name!r} ships only a prebuilt ONNX file and cannot be exported "
                              f"with other weights, opset or exporter")
        exporter = exporter or export.DEFAULT_EXPORTER
        if exporter not in export.EXPORTERS:
            raise ExportError(f"unknown exporter {exporter!r}; choose one of {', '.join(export.EXPORTERS)}")
        source = {"kind": "export", "exporter": exporter, "opset": opset or spec.opset or export.DEFAULT_OPSET,
                  "simplify": simplify, "weights_sha256": _weights_sha256(weights),
                  "versions": library_versions(exporter)}
    inputs = key_inputs(spec, source, plugin_version)
    folder = cache.entry_dir(spec.name, make_key(inputs))
    metadata = cache.read_entry(folder)
    if metadata is None:
        folder.mkdir(parents=True, exist_ok=True)
        with cache.locked(folder):
            metadata = cache.read_entry(folder)
            if metadata is None:
                metadata = _build(spec, weights, folder, inputs)
    elif metadata["files"][cache.MODEL_FILE]["mtime_ns"] != (folder / cache.MODEL_FILE).stat().st_mtime_ns:
        with cache.locked(folder):  # verified by hash after a move or a touch: remember the new times
            cache.refresh_records(folder, metadata)
    return Converted(path=folder / cache.MODEL_FILE, metadata=metadata)


def _weights_sha256(weights: WeightsSource) -> str | None:
    if isinstance(weights, Artifact):
        return weights.sha256
    return cache.sha256_of(weights) if isinstance(weights, Path) else None


def _build(spec: ModelSpec, weights: WeightsSource, folder: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    """Build the entry in a temporary folder and commit it (the caller holds the lock)."""
    cache.discard_leftovers(folder)
    temp = cache.new_temp_dir(folder)
    started = time.perf_counter()
    try:
        source = inputs["source"]
        model_path = temp / cache.MODEL_FILE
        if source["kind"] == "prebuilt":
            _fetch_prebuilt(spec, model_path)
            record: dict[str, Any] = {}
        else:
            record = _export(spec, weights, model_path, source)
        cache.check_external_data(model_path)
        metadata = {
            "name": spec.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3),
            "key_inputs": inputs,
            "weights": weights.url if isinstance(weights, Artifact) else str(weights) if weights else None,
            **record,
        }
        metadata = cache.commit(folder, temp, metadata)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        for empty in (folder, folder.parent):  # a failed first build leaves no trace
            if not any(empty.iterdir()):
                empty.rmdir()
    log.info("cached %s in %s", spec.name, folder)
    return metadata


def _fetch_prebuilt(spec: ModelSpec, model_path: Path) -> None:
    from zoo.download import fetch

    assert spec.onnx is not None
    downloaded = fetch(spec.onnx)
    with cache.locked(downloaded):  # the entry takes over the verified file
        os.replace(downloaded, model_path)


def _export(spec: ModelSpec, weights: WeightsSource, model_path: Path, source: dict[str, Any]) -> dict[str, Any]:
    from zoo import export
    from zoo.download import fetch

    local = fetch(weights) if isinstance(weights, Artifact) else weights
    log.info("exporting %s to ONNX (%s exporter, opset %d)", spec.name, source["exporter"], source["opset"])
    report = export.export(spec, local, model_path, exporter=source["exporter"], opset=source["opset"],
                           simplify=source["simplify"], images=sample_inputs(spec))
    return report.to_dict()


def sample_photo() -> np.ndarray:
    """The sample photo, decoded: an RGB ``uint8`` array."""
    from zoo import images

    return images.decode((files("zoo") / "data" / SAMPLE_IMAGE).read_bytes(), SAMPLE_IMAGE)


def sample_inputs(spec: ModelSpec) -> np.ndarray:
    """The sample photo, preprocessed for ``spec`` (a batch of one)."""
    return spec.preprocess.apply([sample_photo()])
