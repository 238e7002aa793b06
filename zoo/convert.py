"""From a spec to a verified ONNX file in the cache: the one function that decides reuse or build.

:func:`convert` computes the cache key, returns the entry if it is complete and undamaged,
and otherwise takes the entry's lock, checks again (another process may have just built
it), and builds it in a temporary folder:

* a spec with a prebuilt ``onnx`` artifact (and no opset or exporter asked for) is copied
  from the plugin's package or downloaded, and verified by its sha256; other weights for
  it are refused (:class:`~zoo.errors.WeightsError`), unless the spec can also be exported;
* otherwise the weights are fetched (or a local file used) and :func:`zoo.export.export`
  converts, checks, simplifies and compares the model on random inputs and one photo.

The file is checked (external data must stay beside it) and committed with its metadata.
The key covers what the file depends on. A prebuilt file: its sha256 and the zoo's
version, not where it is installed. An export: the spec's name, build function, outputs,
input shape, labels, tolerances and plugin data, the plugin's version, the weights'
sha256, the exporter, the opset, whether onnxsim ran, and the versions of onnx-zoo,
torch, onnx and onnxsim. An int8 file (:mod:`zoo.quantize`): its float32 source's key inputs
and the quantization's. Library versions are read from package metadata, so a cache hit
imports no torch, and every part of the key is the same in every process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np

from zoo import cache, onnxmeta, quantize
from zoo._log import notice
from zoo._version import __version__, installed_versions
from zoo.errors import AmbiguousModelError, DownloadError, ExportError, NotWritableError, UsageError, WeightsError
from zoo.spec import PRECISIONS, Artifact, HubFile, ModelSpec, callable_name
from zoo.weights import RANDOM, WeightsSource

if TYPE_CHECKING:
    from zoo.registry import Registry
    from zoo.tasks import Task

log = logging.getLogger(__name__)

FORMAT = 1
#: The photo every export is also checked on (NASA portrait of astronaut Eileen Collins, public domain).
SAMPLE_IMAGE = "astronaut.jpg"
KEY_LIBRARIES = ("torch", "onnx", "onnxsim")


@dataclass(frozen=True)
class BuildOptions:
    """What a model is built from and how: :func:`zoo.get`'s build arguments as one value, carried from the API and
    the command line to the cache key and the build (one more option is one more field, not five signatures).

    ``weights`` is a weights variant's tag or name, a checkpoint, a URL (with ``sha256``), an
    :class:`~zoo.spec.Artifact` or ``"random"``; ``labels`` the classes of a checkpoint fine-tuned for
    others; ``opset``, ``exporter`` and ``simplify`` choose the export; ``precision`` is one of
    :data:`zoo.spec.PRECISIONS` (``int8`` builds a quantized file; ``bf16`` and ``fp16`` run the float32 one).
    """

    weights: str | os.PathLike[str] | Artifact | None = None
    sha256: str | None = None
    labels: tuple[str, ...] | None = None
    opset: int | None = None
    exporter: str | None = None
    simplify: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.labels is not None and not isinstance(self.labels, str):
            object.__setattr__(self, "labels", tuple(self.labels))
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")

    @property
    def file_precision(self) -> str:
        """The precision of the file that is built: ``int8`` (quantized), else ``fp32`` (bf16 and fp16 are the
        float32 file, run in that precision)."""
        return "int8" if self.precision == "int8" else "fp32"

    @property
    def chosen(self) -> list[str]:
        """The options that choose one model's weights or export (given, not left at their defaults)."""
        return [name for name in ("weights", "sha256", "labels", "opset", "exporter") if getattr(self, name) is not None]


@dataclass(frozen=True)
class Converted:
    """An ONNX model ready to open: where it is and what its metadata says (a cache entry's, or the record of a
    file used in place)."""

    path: Path
    metadata: dict[str, Any]
    #: Whether the file is the user's, used where it is (not a cache entry).
    in_place: bool = False
    #: For a file used in place, the cache folder that keeps its optimised graph (None: none is kept).
    file_folder: Path | None = None

    @property
    def record_folder(self) -> Path | None:
        """The cache folder that keeps what is made and measured of the file on this machine (optimised graphs,
        checks of a precision, tunings): the entry, or a file's folder (None: none)."""
        return self.file_folder if self.in_place else self.path.parent

    @property
    def optimized(self) -> tuple[str, Path] | None:
        """The file's sha256 and the folder where onnxruntime's optimised graph of it is kept (an entry's own), or
        None where none is (a model with external data, a file with no cache folder)."""
        files = self.metadata.get("files", {})
        folder = self.record_folder
        return (files[self.path.name]["sha256"], folder) if list(files) == [self.path.name] and folder else None


def library_versions(exporter: str) -> dict[str, str | None]:
    """Installed versions of the libraries an export depends on, without importing them."""
    return installed_versions((*KEY_LIBRARIES, "onnxscript") if exporter == "dynamo" else KEY_LIBRARIES)


def key_inputs(spec: ModelSpec, source: dict[str, Any], plugin_version: str | None) -> dict[str, Any]:
    """Everything the converted file depends on (hashed into the cache key).

    A prebuilt file depends on nothing but its own bytes: its key is its sha256 (and the
    zoo's format and version), wherever the file is installed. An export depends on the
    spec, the plugin's version, the weights and the export's libraries.
    """
    inputs: dict[str, Any] = {"format": FORMAT, "zoo": __version__, "source": source}
    if source["kind"] == "export":
        inputs["spec"] = spec_inputs(spec)
        inputs["plugin"] = {"name": spec.plugin, "version": plugin_version}
    return inputs


def spec_inputs(spec: ModelSpec) -> dict[str, Any]:
    """What an export takes from the spec: the same in every process (no memory address in it)."""
    return {
        "name": spec.name,
        "build": callable_name(spec.build),
        "outputs": list(spec.outputs),
        "input_shape": list(spec.preprocess.input_shape),
        "inputs": spec.graph_inputs(),
        "batch_axis": spec.batch_axis,
        "labels": hashlib.sha256("\n".join(spec.labels).encode()).hexdigest()[:16],
        "atol": spec.atol,
        "rtol": spec.rtol,
        "extra": spec.to_dict()["extra"],
    }


def make_key(inputs: dict[str, Any]) -> str:
    """The cache key: the first 16 hex digits of the sha256 of the key inputs as JSON (:func:`zoo.cache.key_of`)."""
    return cache.key_of(inputs)


def is_current(entry: cache.Entry, registry: Registry | None = None) -> bool:
    """Whether an entry could still be a cache hit: same zoo, same libraries, and not superseded.

    With a ``registry``, an entry of a registered model is superseded when the plugin's
    version or the spec changed (its key would differ now), or when a prebuilt file is no
    longer the one the spec ships. Entries of models no plugin registers are kept.
    """
    inputs = (entry.metadata or {}).get("key_inputs", {})
    source = inputs.get("source", {})
    if inputs.get("format") != FORMAT or inputs.get("zoo") != __version__:
        return False
    spec = None
    if registry is not None:  # the spec of the plugin that built it (two plugins may register one name)
        name = f"{entry.plugin}:{entry.name}" if entry.plugin else entry.name
        with contextlib.suppress(AmbiguousModelError):
            spec = registry.get(name) if name in registry else None
    info = registry.plugin_manager.infos.get(spec.plugin) if registry is not None and spec is not None else None
    precision = inputs.get("precision")
    if precision is not None and precision.get("onnxruntime") != quantize.onnxruntime_version():
        return False
    if precision is not None and spec is not None and spec.name == entry.name:
        try:  # no plugin code runs: the key names the calibration function, it does not call it
            if quantize.key_inputs(spec, precision["precision"], info.version if info else None) != precision:
                return False  # other photos, calibration, limits or settings
        except UsageError:  # a precision this version of the zoo does not know
            return False
    if source.get("kind") == "prebuilt":
        return spec is None or (spec.onnx is not None and spec.onnx.file_sha256 == source.get("sha256"))
    if source.get("versions") != library_versions(source.get("exporter", "")):
        return False
    if spec is None or spec.name != entry.name:
        return True
    now = {**spec_inputs(spec), "labels": inputs.get("spec", {}).get("labels")}  # the user's labels stay theirs
    current = {**inputs, "spec": now, "plugin": {"name": spec.plugin, "version": info.version if info else None}}
    return make_key(current) == entry.key


def plan(spec: ModelSpec, weights: WeightsSource = None, *, prebuilt: bool = True, exporter: str | None = None,
         opset: int | None = None, simplify: bool = True, plugin_version: str | None = None,
         precision: str = "fp32") -> dict[str, Any]:
    """The key inputs of the entry that :func:`convert` would return, without building anything.

    A spec's prebuilt file is used when the spec's own weights are asked for and no
    export option is (``prebuilt=False`` forces an export). Other weights for a spec that
    can only be fetched prebuilt are refused: the file could not contain them. An int8
    entry's inputs are its float32 source's, plus its ``precision`` (:func:`zoo.quantize.key_inputs`).
    """
    from zoo import export

    precision_inputs = quantize.key_inputs(spec, precision, plugin_version)
    if precision_inputs is not None:
        source = plan(spec, weights, prebuilt=prebuilt, exporter=exporter, opset=opset, simplify=simplify,
                      plugin_version=plugin_version)
        return {**source, "precision": precision_inputs}

    own_weights = weights is None or is_own(spec, weights)
    if spec.build is None:
        if not own_weights:
            raise WeightsError(f"model {spec.name!r} ships a prebuilt ONNX file and has no build function, so it "
                               f"cannot use other weights ({weights}); drop the weights argument")
        if not prebuilt:
            raise ExportError(f"model {spec.name!r} ships only a prebuilt ONNX file and cannot be exported "
                              f"with another opset or exporter")
    if spec.onnx is not None and prebuilt and own_weights:
        return key_inputs(spec, {"kind": "prebuilt", "sha256": spec.onnx.file_sha256}, plugin_version)
    exporter = exporter or export.DEFAULT_EXPORTER
    if exporter not in export.EXPORTERS:
        raise UsageError(f"unknown exporter {exporter!r}; choose one of {', '.join(export.EXPORTERS)}")
    source = {"kind": "export", "exporter": exporter, "opset": opset or spec.opset or export.DEFAULT_OPSET,
              "simplify": simplify, "weights_sha256": _weights_sha256(weights), "versions": library_versions(exporter)}
    return key_inputs(spec, source, plugin_version)


def convert(spec: ModelSpec, weights: WeightsSource = None, *, prebuilt: bool = True,
            exporter: str | None = None, opset: int | None = None, simplify: bool = True,
            plugin_version: str | None = None, precision: str = "fp32", task: Task | None = None) -> Converted:
    """Return the cached ONNX model for ``spec`` with ``weights``, building it if needed.

    The arguments are those of :func:`plan`, and the spec's ``task`` (from the registry), which
    an export's parity check uses. An int8 model is made from the float32 one, which is
    converted (and cached) first.
    """
    arguments = {"prebuilt": prebuilt, "exporter": exporter, "opset": opset, "simplify": simplify,
                 "plugin_version": plugin_version, "task": task}
    inputs = plan(spec, weights, prebuilt=prebuilt, exporter=exporter, opset=opset, simplify=simplify,
                  plugin_version=plugin_version, precision=precision)
    folder = cache.entry_dir(spec.name, make_key(inputs))

    def int8_source() -> Converted | None:  # an int8 entry's float32 entry (locks: the int8 entry's, then its)
        return convert(spec, weights, **arguments) if "precision" in inputs else None

    metadata = cache.read_entry(folder)
    if metadata is None and (elsewhere := exported_elsewhere(spec.name, inputs)) is not None:
        folder, metadata = elsewhere.folder, elsewhere.metadata
    if metadata is None:
        source = int8_source()
        cache.make_dirs(folder)
        with cache.locked(folder, what=spec.name):
            metadata = cache.read_entry(folder)
            if metadata is None:
                metadata = _build(spec, weights, folder, inputs, source, task)
    elif _touched(folder, metadata):
        try:  # verified by hash after a move or a touch: remember the new times
            with cache.locked(folder, what=spec.name):
                metadata = cache.refresh_records(folder) or _build(spec, weights, folder, inputs, int8_source(),
                                                                   task)
        except NotWritableError:  # a read-only cache: the hash was checked, use it as it is
            pass
    return Converted(path=folder / cache.MODEL_FILE, metadata=metadata)


def exported_elsewhere(name: str, inputs: dict[str, Any]) -> cache.Entry | None:
    """An entry of ``name`` exported with other versions of the export's libraries, where this machine cannot export.

    A cache key includes the versions of torch, onnx and onnxsim that made an export, so a
    machine with others (or with none: an inference-only install) computes another key for
    an entry copied from elsewhere (``zoo bundle import``, a shared cache). Where this
    machine could not export anyway (a library missing, or ``ZOO_OFFLINE``), such an entry,
    equal in everything else, is used; where it could, it exports with its own.
    """
    from zoo.download import is_offline

    source = inputs.get("source", {})
    if source.get("kind") != "export" or (None not in source["versions"].values() and not is_offline()):
        return None

    def unversioned(found: dict[str, Any]) -> dict[str, Any]:
        return {**found, "source": {k: v for k, v in found.get("source", {}).items() if k != "versions"}}

    wanted = unversioned(inputs)
    for entry in cache.entries(name):
        if entry.ok and unversioned(entry.metadata.get("key_inputs", {})) == wanted:
            return entry
    return None


def _touched(folder: Path, metadata: dict[str, Any]) -> bool:
    """Whether a file of the entry no longer has its recorded times (or another process has just removed it)."""
    try:
        return not all(cache.untouched(folder / name, record) for name, record in metadata["files"].items())
    except FileNotFoundError:
        return True


def is_own(spec: ModelSpec, weights: WeightsSource) -> bool:
    """Whether ``weights`` are the spec's published ones (a Hub file pinned to a commit still is)."""
    return weights == spec.weights or (isinstance(weights, HubFile) and weights.same_file(spec.weights))


def _weights_sha256(weights: WeightsSource) -> str | None:
    if weights == RANDOM:
        return RANDOM
    if isinstance(weights, HubFile):
        if weights.sha256 is None or len(weights.sha256) != 64:
            raise WeightsError(f"{weights.url} must be pinned to its sha256 before it is planned (zoo.hub.pin)")
        return weights.sha256
    if isinstance(weights, Artifact):
        return weights.file_sha256
    return cache.sha256_of(weights) if isinstance(weights, Path) else None


def pin_hub_file(name: str, file: HubFile) -> HubFile:
    """``file`` pinned (:func:`zoo.hub.pin`); where neither the Hub nor its cache can say, as the newest complete
    entry of model ``name`` built from that revision records it (:func:`weights_record` writes the record)."""
    from zoo import hub

    def recorded(file: HubFile) -> HubFile | None:
        built = []
        for entry in cache.entries(name):
            record = (entry.metadata or {}).get("weights") or {}
            source = record.get("hub") or {}
            if entry.ok and (source.get("repo"), source.get("filename"), source.get("revision")) == (
                    file.repo, file.filename, file.revision) and record.get("sha256"):
                built.append((entry.metadata.get("created", ""), source["commit"], record["sha256"]))
        if not built:
            return None
        _, commit, sha256 = max(built)
        log.info("%s of %s: pinned to commit %s, as its cache entry records", file.filename, file.repo, commit)
        return dataclasses.replace(file, commit=commit, sha256=sha256)

    return hub.pin(file, recorded)


def weights_record(spec: ModelSpec, weights: WeightsSource, sha256: str | None) -> dict[str, Any] | None:
    """Which weights an export was built from (``sha256``: as the key has it), as ``zoo cache list`` shows them."""
    if weights is None:
        return None
    if weights == RANDOM:
        return {"tag": RANDOM, "file": None, "location": None, "sha256": None}
    tag = (spec.tag or "default") if is_own(spec, weights) else None
    if isinstance(weights, HubFile):  # the revision asked for, and the commit it was at
        return {"tag": tag, "file": weights.filename, "location": weights.url, "sha256": sha256,
                "hub": {"repo": weights.repo, "filename": weights.filename, "revision": weights.revision,
                        "commit": weights.commit}}
    if isinstance(weights, Artifact):
        found = {"tag": tag, "file": weights.filename, "location": weights.url, "sha256": sha256}
        return {**found, "member": weights.member} if weights.member else found  # location: the archive's
    return {"tag": None, "file": weights.name, "location": str(weights), "sha256": sha256}


def _build(spec: ModelSpec, weights: WeightsSource, folder: Path, inputs: dict[str, Any],
           float32: Converted | None = None, task: Task | None = None) -> dict[str, Any]:
    """Build the entry in a temporary folder and commit it (the caller holds the lock); an int8
    entry from its ``float32`` source's entry."""
    cache.discard_leftovers(folder)
    temp = cache.new_temp_dir(folder)
    started = time.perf_counter()
    try:
        source = inputs["source"]
        model_path = temp / cache.MODEL_FILE
        if float32 is not None:
            notice(log, "quantizing %s to int8 (calibrated on %s); this is done once, then cached", spec.name,
                   "the zoo's photos" if spec.calibration is None else callable_name(spec.calibration))
            with cache.reading(float32.path.parent):  # `zoo cache rm` of the float32 entry waits
                report = quantize.quantize(spec, float32.path, model_path, inputs["precision"])
            record = {"weights": float32.metadata.get("weights"), "onnx": float32.metadata.get("onnx"),
                      "source_entry": float32.path.parent.name, "int8": report}
        elif source["kind"] == "prebuilt":
            _fetch_prebuilt(spec, model_path)
            record: dict[str, Any] = {"onnx": {"file": spec.onnx.filename, "sha256": spec.onnx.file_sha256}}  # type: ignore[union-attr]
        else:
            record = {"weights": weights_record(spec, weights, source["weights_sha256"]),
                      **_export(spec, weights, model_path, source, task)}
        if not cache.check_external_data(model_path) and onnxmeta.carried(inputs):  # files over 2 GB are left as they are
            onnxmeta.write(model_path, onnxmeta.properties(spec, {**record, "key_inputs": inputs}))
        metadata = {
            "name": spec.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3),
            "key_inputs": inputs,
            "weights": None,
            **record,
        }
        metadata = cache.commit(folder, temp, metadata)
    finally:
        # Best effort: an error here must not hide the build's own error.
        shutil.rmtree(temp, ignore_errors=True)
        for empty in (folder, folder.parent):  # a failed first build leaves no trace
            with contextlib.suppress(OSError):
                empty.rmdir()
    if source["kind"] == "export" and float32 is None:
        notice(log, "exported %s in %.1f s, cached in %s", spec.name, time.perf_counter() - started, folder)
    return metadata


def _fetch_prebuilt(spec: ModelSpec, model_path: Path) -> None:
    """Put the spec's prebuilt file at ``model_path``, verified.

    A file the plugin ships (``file://``) is copied straight from the package; a download is
    kept once in ``downloads/`` and linked (or copied) into the entry, so that another spec
    sharing it, or a later rebuild, still finds it.
    """
    from zoo.download import fetched, verify

    artifact = spec.onnx
    assert artifact is not None
    parts = urlsplit(artifact.url)
    if parts.scheme == "file":
        source = Path(unquote(parts.path))
        try:
            shutil.copyfile(source, model_path)
        except OSError as error:
            raise DownloadError(f"model {spec.name!r}: its prebuilt file {source} cannot be read "
                                f"({error.strerror or error}); reinstall the plugin {spec.plugin!r}") from None
        verify(model_path, artifact)
        return
    with fetched(artifact) as downloaded:
        try:
            os.link(downloaded, model_path)
        except OSError:
            shutil.copyfile(downloaded, model_path)


def _export(spec: ModelSpec, weights: WeightsSource, model_path: Path, source: dict[str, Any],
            task: Task | None) -> dict[str, Any]:
    from zoo import export, hub
    from zoo.download import fetched

    with (fetched(weights) if isinstance(weights, Artifact) else hub.fetched(weights) if isinstance(weights, HubFile)
          else contextlib.nullcontext(weights)) as local:
        report = export.export(spec, None if local == RANDOM else local, model_path, exporter=source["exporter"],
                               opset=source["opset"], simplify=source["simplify"], photo=sample_photo(),
                               random_weights=local == RANDOM, task=task)
    return report.to_dict()


def sample_photo() -> np.ndarray:
    """The sample photo, decoded: an RGB ``uint8`` array."""
    from zoo import images

    return images.decode((files("zoo") / "data" / SAMPLE_IMAGE).read_bytes(), SAMPLE_IMAGE)


def sample_inputs(spec: ModelSpec) -> np.ndarray:
    """The sample photo, preprocessed for ``spec`` (a batch of one)."""
    return spec.preprocess.apply([sample_photo()])
