"""Functions that declare the arguments they take, as pluggy hooks do: checked by their signature, called by name.

A plugin's ``postprocess`` and a pipeline's ``run`` declare only the parameters they use among
the ones the zoo passes (:data:`ARGUMENTS`, :data:`PIPELINE_ARGUMENTS`); any other parameter is
an option, and its default is the option's default.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from zoo.errors import PluginError, SpecError, ZooError

if TYPE_CHECKING:
    from zoo.spec import ModelSpec

#: The parameters the zoo passes to a postprocessing function by name; any other is an option.
ARGUMENTS = ("spec", "outputs", "geometries", "options")
#: The parameters the zoo passes to a pipeline's ``run`` function by name; any other is an option.
PIPELINE_ARGUMENTS = ("spec", "models", "image", "options")


def function_options(fn: Callable[..., Any], arguments: tuple[str, ...] = ARGUMENTS) -> dict[str, Any]:
    """The options a function declares: its parameters other than ``arguments``, with their defaults."""
    return {name: p.default for name, p in declared_parameters(fn).items() if name not in arguments}


def check_postprocess(fn: Callable[..., Any], arguments: tuple[str, ...] = ARGUMENTS,
                      field_name: str = "postprocess") -> None:
    """:class:`SpecError` unless every parameter of ``fn`` is one of ``arguments`` or an option with a default."""
    for name, parameter in declared_parameters(fn, field_name).items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            raise SpecError(field_name, f"{_describe(fn)} takes {parameter}; its parameters are passed by name: "
                                        f"{', '.join(arguments)}, or options with defaults")
        if name not in arguments and parameter.default is parameter.empty:
            raise SpecError(field_name, f"{_describe(fn)} takes {name!r}, which is not one of "
                                        f"{', '.join(arguments)}; an option needs a default value")


def declared_parameters(fn: Callable[..., Any], field_name: str = "postprocess") -> Mapping[str, inspect.Parameter]:
    """The parameters ``fn`` declares; :class:`SpecError` naming ``field_name`` if it has no readable signature."""
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError) as error:
        raise SpecError(field_name, f"{_describe(fn)} has no signature the zoo can read: {error}") from None


def _describe(fn: Callable[..., Any]) -> str:
    return f"function {getattr(fn, '__qualname__', type(fn).__name__)}"


def call_declared(fn: Callable[..., Any], available: Mapping[str, Any], spec: ModelSpec, stage: str) -> Any:
    """``fn`` called with the values of ``available`` that it declares; a plugin's exception becomes a
    :class:`~zoo.errors.PluginError` naming the plugin, the model and ``stage``, the original chained."""
    arguments = {name: available[name] for name in declared_parameters(fn) if name in available}
    try:
        return fn(**arguments)
    except (ZooError, AssertionError):
        raise
    except Exception as error:
        raise PluginError(spec.plugin or "-", f"{stage} of model {spec.name!r}", error) from error
