"""An ONNX file given by its path: what describes it, and its record in the cache.

``zoo.get("model.onnx")`` runs the file where it is (it is hashed, never copied into the
cache). What it does comes from, in order:

1. the file itself: a file the zoo wrote (``zoo export -o``, a copied cache entry) carries
   its description in ``metadata_props`` (:mod:`zoo.onnxmeta`), and a plugin's published
   file is recognised by its sha256;
2. ``model.toml`` beside it: the format :func:`zoo.specfile.load_specs` reads, with one
   ``[models.NAME]`` table (or one whose ``onnx.file`` names this file);
3. arguments: ``task``, ``preprocess`` and ``labels``.

Without any of them, :class:`~zoo.errors.SpecError` says what is missing and shows the
smallest ``model.toml`` that would do, filled in from the graph's inputs and outputs.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from zoo import cache, onnxmeta
from zoo._fields import NAME_PATTERN
from zoo.errors import SpecError, UsageError, ZooError
from zoo.preprocess import Preprocess
from zoo.runtime import signature
from zoo.spec import Artifact, ModelSpec, callable_name
from zoo.specfile import FUNCTIONS, read_tables, spec_from_table

if TYPE_CHECKING:
    from zoo.registry import Registry

#: The spec file read beside an ONNX file that does not describe itself.
SPEC_FILE = "model.toml"


def is_file(name: object) -> bool:
    """Whether ``name`` names an ONNX file rather than a model: a path object, or text ending in ``.onnx``."""
    return isinstance(name, os.PathLike) or isinstance(name, str) and name.strip().lower().endswith(".onnx")


@dataclass(frozen=True)
class OnnxFile:
    """An ONNX file used where it is, read once: its records, its zoo metadata, its graph's inputs and outputs."""

    #: The file, absolute.
    path: Path
    #: :func:`zoo.cache.file_record` (hashed) of the file and of each external-data file beside it, by name.
    files: dict[str, dict[str, Any]]
    #: The zoo's ``metadata_props`` (:func:`zoo.onnxmeta.read`), empty for a file it did not write.
    props: dict[str, Any]
    #: The graph's inputs (name -> shape) and output names.
    inputs: dict[str, list[int | str | None]]
    outputs: list[str]

    @property
    def sha256(self) -> str:
        return self.files[self.path.name]["sha256"]


def read(name: str | os.PathLike[str]) -> OnnxFile:
    """The ONNX file at ``name``, hashed and parsed (once); :class:`UsageError` for a file that is missing, empty or
    not an ONNX model, :class:`SpecError` for one whose zoo metadata is damaged."""
    import onnx

    text = os.fspath(name).strip()
    try:
        path = Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(2, "no such file" if not path.exists() else "not a file")
        if path.stat().st_size == 0:
            raise OSError(0, "it is empty")
        path = path.resolve()
        model = onnx.load(os.fspath(path), load_external_data=False)
    except (OSError, RuntimeError) as error:  # RuntimeError: ~user that does not exist
        raise UsageError(f"ONNX file {text!r} cannot be read ({getattr(error, 'strerror', None) or error}); give the "
                         f"path of an .onnx file, or a model's name ('zoo list' shows them)") from None
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError, onnx's own errors
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else "no detail"
        raise UsageError(f"{path} is not an ONNX model that can be read ({type(error).__name__}: {detail}); check "
                         f"that it is the model itself, not a Git LFS pointer, an HTML page or a partial "
                         f"download") from None
    try:
        props = onnxmeta.decode(model)
    except ValueError as error:  # a value that is not JSON
        raise _damaged(path, error) from None
    data = cache.check_external_data(path, model)  # beside it, or refused
    files = {path.name: cache.file_record(path), **{d: cache.file_record(path.parent / d) for d in data}}
    return OnnxFile(path, files, props, *signature(model.graph))


def describe(file: OnnxFile, registry: Registry, *, task: str | None = None,
             preprocess: Preprocess | Mapping[str, Any] | None = None,
             labels: Sequence[str] | None = None) -> ModelSpec:
    """The spec of ``file``, from the first that describes it: the file, ``model.toml`` beside it, or the arguments
    (see the module's docstring)."""
    path = file.path
    artifact = Artifact(path.as_uri(), file.sha256, size=file.files[path.name]["size"])
    spec: ModelSpec | None = None
    if file.props.get("task") and file.props.get("preprocess"):
        spec, source = _from_properties(file.props, artifact, registry), "its onnx-zoo metadata"
    elif (published := _published(file.sha256, registry)) is not None:
        spec = dataclasses.replace(published, onnx=artifact, weights=None, build=None)
        source = f"its sha256: it is the published file of {published.name}"
    elif (path.parent / SPEC_FILE).is_file():
        spec, source = _from_spec_file(file, artifact), str(path.parent / SPEC_FILE)
    if spec is not None and (task, preprocess) != (None, None):
        raise UsageError(f"{path} is described by {source}: a task and preprocessing apply only to an ONNX file "
                         f"without a description")
    if spec is None:
        if task is None or preprocess is None:
            raise SpecError("file", _undescribed(file, task, preprocess), model=_name_of(path))
        spec = ModelSpec(name=_name_of(path), task=task, preprocess=preprocess, labels=tuple(labels or ()),
                         onnx=artifact, outputs=tuple(file.outputs), summary=f"the ONNX file {path.name}")
    if labels is not None and tuple(labels) != spec.labels:
        spec = dataclasses.replace(spec, labels=tuple(labels), labels_from=None)
    return spec


def _damaged(path: Path, error: Exception) -> SpecError:
    return SpecError(getattr(error, "field", "metadata"), f"{path}'s onnx-zoo metadata_props cannot be used ({error}): "
                                                          f"the file was changed after the zoo wrote it; export it again")


def _from_properties(props: dict[str, Any], artifact: Artifact, registry: Registry) -> ModelSpec:
    """The spec a file the zoo wrote carries (:mod:`zoo.onnxmeta`)."""
    path = Path(artifact.filename)
    name, plugin = props.get("name"), props.get("plugin", "")
    try:
        registered = registry.get(f"{plugin}:{name}" if plugin else name) if isinstance(name, str) else None
    except (KeyError, ZooError):  # not installed here (or contested)
        registered = None
    postprocess = None
    if props.get("postprocess"):  # the plugin's function, taken from the installed plugin only
        if registered is None or callable_name(registered.postprocess) != props["postprocess"]:
            raise SpecError("postprocess", f"{path} is {name!r}, whose results are made by {props['postprocess']} of "
                                           f"the plugin {plugin or '?'}, which is not installed here (or has "
                                           f"changed); install that plugin", model=name)
        postprocess = registered.postprocess
    elif "plugin" not in props and registered is not None:  # written by an older zoo, which did not say
        postprocess = registered.postprocess
    try:
        outputs = props.get("outputs") or {}
        weights = props.get("weights") or {}
        made_from = ", random weights" if weights.get("tag") == "random" else f", {weights['file']}" if weights.get(
            "file") else ""
        return ModelSpec(
            name=name, task=props["task"], preprocess=props["preprocess"], labels=tuple(props.get("labels") or ()),
            summary=f"{name} from the ONNX file {path}{made_from}", license=props.get("license") or "unspecified",
            homepage=props.get("homepage", ""), onnx=artifact, outputs=tuple(outputs.get("names") or ("output",)),
            scores=outputs.get("scores", "logits"), decode=outputs.get("decode") or {},
            rename_outputs=outputs.get("rename_outputs") or {}, inputs=outputs.get("inputs") or {},
            batch_axis=outputs.get("batch_axis", True), options=props.get("options") or {},
            unsupported=props.get("unsupported") or {}, postprocess=postprocess, plugin=plugin)
    except (AttributeError, KeyError, TypeError, ValueError) as error:  # SpecError (a ValueError) names the field
        raise _damaged(Path(unquote(urlsplit(artifact.url).path)), error) from None


def _published(sha256: str, registry: Registry) -> ModelSpec | None:
    """The registered spec whose prebuilt file this is (a plugin's published file carries no description)."""
    for spec in registry:
        if spec.onnx is not None and sha256.startswith(spec.onnx.file_sha256):
            return spec
    return None


def _from_spec_file(file: OnnxFile, artifact: Artifact) -> ModelSpec:
    """The spec of ``model.toml`` beside the file: its one table, or the one whose ``onnx.file`` is this file.

    It is data only: a table naming code (``postprocess``, ``build``, ...) is refused, since nothing from a file's
    folder is imported (a plugin registers its own functions, :func:`zoo.plugin.load_specs`)."""
    path, spec_file = file.path, file.path.parent / SPEC_FILE
    tables = read_tables(spec_file)
    named = {name: (table.get("onnx") or {}).get("file") if isinstance(table.get("onnx"), Mapping) else None
             for name, table in tables.items()}
    mine = {name: tables[name] for name, found in named.items() if found == path.name}
    if not mine and len(tables) == 1 and None in named.values():  # one table that names no file: this one's
        mine = tables
    if len(mine) != 1:
        raise SpecError("models", f"{spec_file} has {len(tables)} [models.NAME] tables and {len(mine)} of them "
                                  f"describe {path.name}; give it one table, or set onnx.file = {path.name!r} in "
                                  f"the table that describes it")
    (name, table), = mine.items()
    values = dict(table)
    code = [key for key in FUNCTIONS if key in values]
    if code:
        raise SpecError(code[0], f"in {spec_file} names code; a {SPEC_FILE} beside an ONNX file is data only, and "
                                 f"nothing in a file's folder is imported. Register the model from a plugin "
                                 f"(zoo.plugin.load_specs) to give it functions", model=name)
    given = values.pop("onnx", None)
    if isinstance(given, Mapping) and given.get("sha256") and not artifact.sha256.startswith(
            str(given["sha256"]).lower().removeprefix("sha256:")):
        raise SpecError("onnx.sha256", f"in {spec_file} is {given['sha256']}, but {path.name} has the sha256 "
                                       f"{artifact.sha256}: the file has changed since the table was written; "
                                       f"update the table's sha256 (or remove it)", model=name)
    values.setdefault("outputs", file.outputs)
    values.setdefault("summary", f"{name}, the ONNX file {path.name} described by {SPEC_FILE}")
    try:
        return spec_from_table(name, {**values, "onnx": artifact.to_dict()}, spec_file.parent)
    except SpecError as error:
        raise SpecError(error.field, f"{error.problem} (in {spec_file}, [models.{name}])", model=name) from None


def _name_of(path: Path) -> str:
    """A model name from the file's name: lowercase, other characters as ``-``."""
    name = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")[:100] or "model"
    return name if NAME_PATTERN.fullmatch(name) else "model"


def _undescribed(file: OnnxFile, task: str | None, preprocess: object) -> str:
    """What is missing to run a file that does not describe itself, and the smallest ``model.toml`` that would do."""
    path = file.path
    shape = next(iter(file.inputs.values()), [])
    size = [d for d in shape[-2:] if isinstance(d, int) and d > 0] if len(shape) == 4 else []
    name = _name_of(path)
    missing = " and ".join(f"its {what}" for what, value in (("task", task), ("preprocessing", preprocess))
                           if value is None)
    resize = f"resize = {size}" if len(size) == 2 else "resize = [224, 224]              # the input's height, width"
    example = "\n".join([
        f"[models.{name}]",
        'task = "image-classification"      # or object-detection, semantic-segmentation, ...',
        'labels = "labels.txt"              # class names, one a line',
        f"outputs = {file.outputs}",
        "",
        f"[models.{name}.preprocess]",
        resize,
        "scale = 0.00392156862745098        # 1/255",
        "mean = [0.485, 0.456, 0.406]",
        "std = [0.229, 0.224, 0.225]",
    ])
    return (f"{path} has no onnx-zoo description (it was not written by the zoo) and no {SPEC_FILE} beside it, so "
            f"{missing} {'is' if ' and ' not in missing else 'are'} unknown. Write {path.parent / SPEC_FILE}, "
            f"for example:\n\n{example}\n\nor give them with --task, --preprocess JSON and --labels FILE (zoo "
            f"predict, zoo info), as task= and preprocess= in a zoo serve --models table, or as zoo.get(path, "
            f"task=..., preprocess=..., labels=...)")
