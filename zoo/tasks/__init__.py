"""Tasks: what a model does, each with its result type, default postprocessing, parity and drawing.

A :class:`Task` is registered by a plugin's ``zoo_register_tasks`` hook; the built-in
ones (``image-classification``, ``object-detection``, ``instance-segmentation``,
``keypoint-detection``, ``semantic-segmentation`` and ``regression``) are registered by
:mod:`zoo.tasks.builtin` through the same hook. A spec names its task; a spec without a
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

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from zoo._fields import TASK_PATTERN
from zoo.errors import PluginError, SpecError, UsageError, ZooError

if TYPE_CHECKING:
    import numpy as np

    from zoo.geometry import Geometry
    from zoo.spec import ModelSpec

#: The parameters the zoo passes to a postprocessing function by name; any other is an option.
ARGUMENTS = ("spec", "outputs", "geometries", "options")
#: The parameters the zoo passes to a pipeline's ``run`` function by name; any other is an option.
PIPELINE_ARGUMENTS = ("spec", "models", "image", "options")


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
    """

    name: str
    result: type
    postprocess: Callable[..., list[Any]]
    options: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    compare: Callable[..., dict[str, float]] | None = None  # (want, got, spec, **tolerances)
    check_decode: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not TASK_PATTERN.fullmatch(self.name):
            raise SpecError("name", f"a task's name is lowercase words joined by '-', got {self.name!r}")
        check_postprocess(self.postprocess)
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


def require(condition: Any, message: str) -> None:
    """``AssertionError(message)`` unless ``condition``: what a task's ``compare`` raises (kept under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


def function_options(fn: Callable[..., Any], arguments: tuple[str, ...] = ARGUMENTS) -> dict[str, Any]:
    """The options a function declares: its parameters other than ``arguments``, with their defaults."""
    return {name: p.default for name, p in _parameters(fn).items() if name not in arguments}


def check_postprocess(fn: Callable[..., Any], arguments: tuple[str, ...] = ARGUMENTS,
                      field_name: str = "postprocess") -> None:
    """:class:`SpecError` unless every parameter of ``fn`` is one of ``arguments`` or an option with a default."""
    for name, parameter in _parameters(fn, field_name).items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            raise SpecError(field_name, f"{_describe(fn)} takes {parameter}; its parameters are passed by name: "
                                        f"{', '.join(arguments)}, or options with defaults")
        if name not in arguments and parameter.default is parameter.empty:
            raise SpecError(field_name, f"{_describe(fn)} takes {name!r}, which is not one of "
                                        f"{', '.join(arguments)}; an option needs a default value")


def _parameters(fn: Callable[..., Any], field_name: str = "postprocess") -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError) as error:
        raise SpecError(field_name, f"{_describe(fn)} has no signature the zoo can read: {error}") from None


def _describe(fn: Callable[..., Any]) -> str:
    return f"function {getattr(fn, '__qualname__', type(fn).__name__)}"


def call_declared(fn: Callable[..., Any], available: Mapping[str, Any], spec: ModelSpec, stage: str) -> Any:
    """``fn`` called with the values of ``available`` that it declares; a plugin's exception becomes a
    :class:`~zoo.errors.PluginError` naming the plugin, the model and ``stage``, the original chained."""
    arguments = {name: available[name] for name in _parameters(fn) if name in available}
    try:
        return fn(**arguments)
    except (ZooError, AssertionError):
        raise
    except Exception as error:
        raise PluginError(spec.plugin or "-", f"{stage} of model {spec.name!r}", error) from error


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
        underneath = task_options if "options" in _parameters(spec.postprocess) else {}
        accepted, taker = {**underneath, **function_options(spec.postprocess)}, "its postprocessing"
    unknown = sorted(set(spec.options) - set(accepted))
    if unknown:
        raise SpecError("options", f"sets {', '.join(unknown)}, which {taker} does not take; it takes "
                                   f"{', '.join(sorted(accepted)) or 'no options'}", model=spec.name, plugin=spec.plugin)
    return {**accepted, **spec.options}


def resolve_options(spec: ModelSpec, task: Task | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options of one ``predict`` call: ``given`` over the defaults; :class:`UsageError` for unknown ones."""
    return merge_options(spec, accepted_options(spec, task), given)


def option_from_text(text: str, default: Any = None, name: str = "option") -> Any:
    """An option's value as written on a command line or in a URL, read by the type of its ``default``.

    A ``bool`` default takes ``true``/``false`` (``yes``/``no``, ``on``/``off``, ``1``/``0``); an ``int``, a whole
    number; a ``float``, a finite number; a ``str``, the text as it is; a tuple or a list, numbers (or the type of
    its items) separated by commas, in brackets or not: ``(0.6,0.7,0.99)``, ``[0.6, 0.7, 0.99]``, ``0.6,0.7,0.99``.
    Text of another type is a :class:`UsageError` naming the option and the type. A default of no such type
    (``None``) takes JSON (``5``, ``true``, ``[1, 2]``), else a number JSON does not read (``.3``), else the text.
    """
    if isinstance(default, (tuple, list)):
        kind = _item_kind(default)
        items = _items(text, kind.read)
        if items is None:
            raise UsageError(_wrong_text(name, f"a list of {kind.many}", default, text))
        return tuple(items) if isinstance(default, tuple) else items
    kind = _kind(default)
    if kind is None:
        return _guess(text)
    try:
        return kind.read(text)
    except ValueError:  # int() past 4,300 digits is one too
        raise UsageError(_wrong_text(name, kind.one, default, text)) from None


def options_from_text(spec: ModelSpec, accepted: Mapping[str, Any], texts: Mapping[str, str]) -> dict[str, Any]:
    """Options given as text (``--option KEY=VALUE``, a URL's query), each read by the type of its ``accepted`` default
    (:func:`option_from_text`); :class:`UsageError` naming every accepted option for an unknown one."""
    merge_options(spec, accepted, texts)
    return {name: option_from_text(text, accepted[name], name) for name, text in texts.items()}


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise ValueError(text)


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # nan, inf, or digits past float's range
        raise ValueError(text)
    return value


def _guess(text: str) -> Any:
    """A value of no known type: JSON, else a finite number JSON does not read, else the text itself."""
    import json

    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, an integer past 4,300 digits, brackets nested past the stack
        try:
            return _number(text)
        except ValueError:
            return text


class _Kind(NamedTuple):
    """A type an option's text is read as: how, and what one value and several are called."""

    read: Callable[[str], Any]
    one: str
    many: str


#: Numbers: a ``float`` default's kind, and a list's whose items are of no one kind.
_NUMBERS = _Kind(_number, "a number", "numbers")
#: The types option text is read as, by the default's type (``bool`` before ``int``: it is one).
_KINDS: tuple[tuple[type, _Kind], ...] = (
    (bool, _Kind(_boolean, "true or false", "true or false values")),
    (int, _Kind(int, "a whole number", "whole numbers")),
    (float, _NUMBERS),
    (str, _Kind(str, "a text", "texts")))


def _kind(default: Any) -> _Kind | None:
    """How text is read for an option of this default; None for a type of no :data:`_KINDS`."""
    return next((kind for base, kind in _KINDS if isinstance(default, base)), None)


def _item_kind(default: tuple[Any, ...] | list[Any]) -> _Kind:
    """How a list option's items are read: as its default's items if they are of one kind, else as numbers."""
    kinds = {_kind(item) for item in default}
    only = kinds.pop() if len(kinds) == 1 else None
    return only or _NUMBERS


def _items(text: str, read: Callable[[str], Any]) -> list[Any] | None:
    """The items of ``a,b``, ``(a, b)`` or ``[a, b]`` (a comma may end it), each read by ``read``; None if one cannot
    be read or holds a bracket (lists in lists are not options)."""
    inner = text.strip()
    if inner[:1] + inner[-1:] in ("()", "[]"):
        inner = inner[1:-1]
    parts = [part.strip() for part in inner.split(",")]
    if parts[-1] == "":
        parts.pop()  # '(0.5,)', or '()'
    if any(not part or set(part) & set("()[]") for part in parts):
        return None
    try:
        return [read(part) for part in parts]
    except ValueError:
        return None


def _wrong_text(name: str, what: str, default: Any, text: str) -> str:
    """The one-line message for option ``name`` given ``text`` where it takes ``what``, as its ``default`` is."""
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    if isinstance(default, (tuple, list)):
        example = ", ".join(map(_written, default))
        example = f"({example})" if isinstance(default, tuple) else f"[{example}]"
    else:
        example = _written(default)
    return f"option {name!r} must be {what}, like its default {example}; got {shown}"


def _written(value: Any) -> str:
    """A default as one would write it in option text."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def merge_options(spec: ModelSpec, accepted: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` over the ``accepted`` defaults; :class:`UsageError` naming every accepted option for an unknown one."""
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        takes = ", ".join(f"{k}={v!r}" for k, v in sorted(accepted.items())) or "no options"
        raise UsageError(f"model {spec.name!r} does not take the option{'s' * (len(unknown) > 1)} "
                         f"{', '.join(unknown)}; it takes {takes}")
    return {**accepted, **given}


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
