"""Tasks: what a model does, each with its result type, default postprocessing, parity and drawing.

A :class:`Task` is registered by a plugin's ``zoo_register_tasks`` hook; the built-in
ones (``image-classification``, ``object-detection``, ``instance-segmentation``,
``keypoint-detection``, ``semantic-segmentation``, ``regression`` and ``image-embedding``) are registered by
:mod:`zoo.builtin_tasks` through the same hook. A spec names its task; a spec without a
``postprocess`` function gets the task's default postprocessing, configured by the
spec's ``decode`` table (checked by the task when the spec is registered).

Postprocessing functions, the task's or a plugin's, declare only the parameters they use,
as pluggy hooks do; the zoo passes them by name:

* ``spec``: the :class:`~zoo.spec.ModelSpec`;
* ``outputs``: the raw outputs of one run, by name (renamed by ``rename_outputs``), each
  with a leading batch axis;
* ``geometries``: one :class:`~zoo.geometry.Geometry` per image of the run;
* ``options``: every option, the user's over the model's and the task's defaults;
* any other parameter is an option itself (``score_threshold=0.25``): its default is the
  default, and ``predict`` accepts it.

It returns one result per image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from zoo._fields import TASK_PATTERN
from zoo.declared import (
    ARGUMENTS,
    PIPELINE_ARGUMENTS,
    call_declared,
    check_postprocess,
    declared_parameters,
    function_options,
)
from zoo.errors import PluginError, SpecError
from zoo.options import merge_options, option_from_text, options_from_text

__all__ = ["ARGUMENTS", "PIPELINE_ARGUMENTS", "Result", "Task", "accepted_options", "call_declared", "check_postprocess",
           "function_options", "merge_options", "option_from_text", "options_from_text", "postprocess", "require",
           "resolve_options"]

if TYPE_CHECKING:
    import numpy as np

    from zoo.geometry import Geometry
    from zoo.spec import ModelSpec

@runtime_checkable
class Result(Protocol):
    """What a task's result provides, built-in or a plugin's: the command line prints ``summary()``, the server and
    ``--json`` send ``to_dict()``, ``--save`` writes ``draw(image)``."""

    def to_dict(self) -> dict[str, Any]:
        """The result as strict JSON data."""
        ...

    def draw(self, image: np.ndarray) -> np.ndarray:
        """An RGB uint8 copy of ``image`` (RGB uint8) with the result drawn on it."""
        ...

    def summary(self) -> str:
        """The result in one line of text."""
        ...


@dataclass(frozen=True)
class Task:
    """A kind of model: its result type, default postprocessing, options, parity and decode check.

    ``postprocess`` follows the rules in this module's docstring. ``options`` are the
    options ``predict`` accepts for models of this task, with their defaults.
    ``compare(want, got, spec, **tolerances)`` checks that two results of one image agree
    (ONNX against PyTorch, a batch against a single image) and returns figures, or raises
    ``AssertionError`` saying how they differ; its keyword-only parameters are the
    tolerances it takes (such as ``score_tolerance``), each with its default. ``check_decode(decode)`` validates a spec's
    ``decode`` table and returns it normalised (``SpecError`` naming the key otherwise).

    ``agreement(want, got, **keywords)`` measures how far a reduced precision's results (bf16,
    fp16, int8) are from float32's on held images, for the gate a reduced precision passes before
    it is used: ``want`` and ``got`` are lists of results, one per held image, float32's and the
    reduced precision's. Like postprocessing, it declares the parameters it takes and is called
    with them by name: ``want`` and ``got``; ``want_outputs`` and ``got_outputs``, the lists of
    each image's raw outputs by name (each with a batch axis of 1); ``spec``; and any other
    keyword-only parameter is one of the model's predict options (``score_threshold``), its
    default the option's. It returns figures, at least ``agreement`` (a fraction from 0 to 1, the
    primary figure, held against the limit ``min_agreement``), ``max_difference`` (the largest
    change, held against ``max_difference``) and ``compared`` (how many things were compared:
    detections, pixels, images; 0 means the comparison proves nothing). ``limits`` are the task's
    default ``min_agreement`` and ``max_difference``.
    """

    name: str
    result: type
    postprocess: Callable[..., list[Any]]
    options: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    compare: Callable[..., dict[str, float]] | None = None  # (want, got, spec, **tolerances)
    check_decode: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    agreement: Callable[..., dict[str, float]] | None = None  # (want, got, **keywords)
    limits: Mapping[str, float] = field(default_factory=dict)  # min_agreement, max_difference

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not TASK_PATTERN.fullmatch(self.name):
            raise SpecError("name", f"a task's name is lowercase words joined by '-', got {self.name!r}")
        check_postprocess(self.postprocess)
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))


def require(condition: Any, message: str) -> None:
    """``AssertionError(message)`` unless ``condition``: what a task's ``compare`` raises (kept under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


def accepted_options(spec: ModelSpec, task: Task | None) -> dict[str, Any]:
    """Every option ``predict`` accepts for ``spec``, with its default (the spec's own defaults win).

    A pipeline takes the options of its ``run`` function; a model with its own
    postprocessing, that function's (and the task's too where it takes ``options``);
    any other model, its task's.
    """
    task_options = dict(task.options) if task is not None else {}
    if spec.run is not None:
        accepted, taker = function_options(spec.run, PIPELINE_ARGUMENTS), "its run function"
    elif spec.postprocess is None:
        accepted, taker = task_options, "its postprocessing"
    else:
        underneath = task_options if "options" in declared_parameters(spec.postprocess) else {}
        accepted, taker = {**underneath, **function_options(spec.postprocess)}, "its postprocessing"
    unknown = sorted(set(spec.options) - set(accepted))
    if unknown:
        raise SpecError("options", f"sets {', '.join(unknown)}, which {taker} does not take; it takes "
                                   f"{', '.join(sorted(accepted)) or 'no options'}", model=spec.name, plugin=spec.plugin)
    return {**accepted, **spec.options}


def resolve_options(spec: ModelSpec, task: Task | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options of one ``predict`` call: ``given`` over the defaults; :class:`UsageError` for unknown ones."""
    return merge_options(spec, accepted_options(spec, task), given)


def postprocess(spec: ModelSpec, task: Task | None, outputs: Mapping[str, np.ndarray],
                geometries: list[Geometry], options: Mapping[str, Any]) -> list[Any]:
    """Results for one run: the spec's postprocessing (or the task's), called with the arguments it declares.

    An exception in a plugin's function becomes a :class:`~zoo.errors.PluginError` naming
    the plugin and the model, with the original chained.
    """
    fn = spec.postprocess or (task.postprocess if task is not None else _raw)
    renamed = {spec.rename_outputs.get(name, name): value for name, value in outputs.items()}
    available = {"spec": spec, "outputs": renamed, "geometries": geometries, "options": dict(options), **options}
    results = list(call_declared(fn, available, spec, "postprocess the outputs"))
    if len(results) != len(geometries):
        raise PluginError(spec.plugin or "-", f"postprocess the outputs of model {spec.name!r}", ValueError(
            f"it returned {len(results)} results for {len(geometries)} images; return one per image"))
    return results


def _raw(outputs: Mapping[str, np.ndarray], geometries: list[Geometry]) -> list[dict[str, Any]]:
    """A model of no known task: each image's raw outputs, by name."""
    return [{name: value[i] for name, value in outputs.items()} for i in range(len(geometries))]
