"""What an ONNX file the zoo writes says about itself: ``metadata_props`` a user can read elsewhere.

Every file the zoo makes (an export, an int8 model) carries these keys from the moment it
enters the cache, and every file ``zoo export -o`` copies out carries them; a prebuilt file
stays in the cache byte for byte the file its plugin published. Each value is a string
(JSON where it is data):

* ``zoo.name``, ``zoo.task``, ``zoo.license``, ``zoo.homepage``, ``zoo.version`` (onnx-zoo's);
* ``zoo.labels``: the class names by class id (JSON list);
* ``zoo.preprocess``: the :class:`~zoo.preprocess.Preprocess` spec (JSON; its docstring gives
  the arithmetic: resize, crop, ``scale``, ``mean``, ``std``, channel order and layout);
* ``zoo.outputs``: the graph's outputs in order, and how the task reads them: a classifier's
  ``scores`` (``logits`` or ``probabilities``), a detector's ``decode`` table, renamed outputs
  and the graph's extra inputs (JSON);
* ``zoo.weights``: the weights' file name, tag and sha256, and their URL when they were
  downloaded (never a local path) (JSON, or ``null``);
* ``zoo.precision``: ``fp32`` or ``int8``;
* ``zoo.options``: the model's defaults for ``predict``'s options (JSON), ``zoo.unsupported``: the
  runtimes that cannot run it, with why (JSON);
* ``zoo.plugin`` and ``zoo.postprocess``: the plugin that registered the model and, where its
  postprocessing is a function of the plugin's rather than the task's, that function's name
  (the zoo uses it only from that installed plugin, never imports what a file names).

With them, onnx and numpy are enough to run the file as ``predict`` does (a test does so), and
``zoo.get("model.onnx")`` predicts as the named model does (:mod:`zoo.onnxfile`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo import cache
from zoo._files import replacing
from zoo._version import __version__
from zoo.errors import SpecError
from zoo.spec import ModelSpec, callable_name

PREFIX = "zoo."
#: The keys whose values are JSON; the others are plain strings.
JSON_KEYS = ("labels", "preprocess", "outputs", "weights", "options", "unsupported")


def properties(spec: ModelSpec, entry: dict[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` of ``spec``'s file, ``entry`` being its cache metadata (or the record
    being built): key -> string."""
    weights = dict(entry.get("weights") or entry.get("onnx") or {}) or None
    if weights and not str(weights.get("location", "")).startswith(("https://", "http://")):
        weights.pop("location", None)  # a path of this machine: not for a file that travels
    precision = cache.precision_of(entry)

    outputs = {"names": list(spec.outputs), "scores": spec.scores, "decode": dict(spec.decode),
               "rename_outputs": dict(spec.rename_outputs), "inputs": spec.graph_inputs(),
               "batch_axis": spec.batch_axis}
    values: dict[str, Any] = {
        "name": spec.name, "task": spec.task, "license": spec.license, "homepage": spec.homepage,
        "version": __version__, "labels": list(spec.labels), "preprocess": spec.preprocess.to_dict(),
        "outputs": outputs, "weights": weights, "precision": precision, "options": dict(spec.options),
        "unsupported": dict(spec.unsupported), "plugin": spec.plugin,
    }
    if spec.postprocess is not None:
        values["postprocess"] = callable_name(spec.postprocess)
    return {PREFIX + key: json.dumps(value) if key in JSON_KEYS else value for key, value in values.items()}


def carried(key_inputs: dict[str, Any]) -> bool:
    """Whether a cache entry's file carries the keys: the zoo made it (an export, an int8 model),
    rather than copied a plugin's prebuilt file (and it has no external data)."""
    return key_inputs["source"]["kind"] == "export" or "precision" in key_inputs


def write(path: Path, props: dict[str, str]) -> None:
    """Set ``props`` in the ONNX file at ``path`` (replacing the zoo's earlier ones, keeping any others).

    The file is written anew and renamed over ``path``: a hard link to it (a download the
    cache keeps) is left as it was.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    kept = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    with replacing(path) as temp:
        onnx.save(model, str(temp))


def read(path: Path) -> dict[str, Any]:
    """The zoo's ``metadata_props`` of the ONNX file at ``path``, decoded (JSON values parsed)."""
    import onnx

    return decode(onnx.load(str(path), load_external_data=False))


def labels(path: Path, key: str) -> tuple[str, ...]:
    """The labels that the ONNX file at ``path`` keeps in its ``metadata_props`` value ``key``, one a line;
    :class:`~zoo.errors.SpecError` if it has none."""
    import onnx

    for prop in onnx.load(str(path), load_external_data=False).metadata_props:
        if prop.key == key:
            return tuple(prop.value.splitlines())
    raise SpecError("labels_from", f"names metadata key {key!r}, which {path.name} does not have")


def decode(model: Any) -> dict[str, Any]:
    """The zoo's ``metadata_props`` of a loaded ``onnx.ModelProto``, decoded; ValueError for a value that is not JSON."""
    found: dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key.startswith(PREFIX):
            key = prop.key[len(PREFIX):]
            found[key] = json.loads(prop.value) if key in JSON_KEYS else prop.value
    return found
