"""Small validators: of the spec dataclasses' fields (each raises :class:`SpecError` naming the field), and
of counts given as arguments (:func:`check_count`, a :class:`UsageError`)."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from zoo.errors import SpecError, UsageError

T = TypeVar("T")

#: A model name: lowercase letters and digits in words joined by one of ``._-``. ``ARCH.TAG``
#: names a weights variant of ``ARCH``. The pattern keeps names safe as file names.
NAME_PATTERN = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
#: A model's name: a name, or a Hub name ``OWNER/NAME`` (``timm/resnet50.a1_in1k``), one ``/`` at most.
MODEL_NAME_PATTERN = re.compile(rf"(?:{NAME_PATTERN.pattern}/)?{NAME_PATTERN.pattern}")
TASK_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
HEX_PATTERN = re.compile(r"[0-9a-f]{8,64}")


def check_name(field: str, value: Any) -> str:
    """A model name (:data:`MODEL_NAME_PATTERN`), at most 100 characters."""
    if not isinstance(value, str) or not MODEL_NAME_PATTERN.fullmatch(value) or len(value) > 100:
        raise SpecError(
            field,
            f"must be lowercase letters and digits joined by '.', '_' or '-', with one '/' at most after an "
            f"owner's name (at most 100 characters), got {value!r}",
        )
    return value


def check_str(field: str, value: Any, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise SpecError(field, f"must be a {'' if empty else 'non-empty '}string, got {value!r}")
    return value


def check_choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SpecError(field, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_number(field: str, value: Any, *, positive: bool = False, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(field, f"must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise SpecError(field, f"must be greater than 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(field, f"must be at least {minimum}, got {value!r}")
    return value


def check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(field, f"must be true or false, got {value!r}")
    return value


def check_int(field: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(field, f"must be an integer of at least {minimum}, got {value!r}")
    return value


def check_size(field: str, value: Any) -> tuple[int, int]:
    """An ``int`` (a square) or a ``(height, width)`` pair of positive integers."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise SpecError(field, f"must be an integer or a [height, width] pair, got {value!r}")
    return (check_int(field, value[0]), check_int(field, value[1]))


def check_strings(field: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise SpecError(field, f"must be a list of strings, got {type(value).__name__}")
    value = tuple(value)
    if value and set(map(type, value)) != {str}:  # the fast path matters: label lists are long
        bad = next(item for item in value if not isinstance(item, str))
        raise SpecError(field, f"must hold only strings, found {bad!r}")
    return value


def check_numbers(field: str, value: Any, *, positive: bool = False) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
        raise SpecError(field, f"must be a number or a non-empty list of numbers, got {value!r}")
    return tuple(float(check_number(field, v, positive=positive)) for v in value)


#: The mappings specs hold, told apart without the cost of an isinstance against the Mapping ABC (registering
#: thousands of specs checks a dozen mappings each).
_MAPPINGS = (dict, MappingProxyType)


def check_mapping(field: str, value: Any) -> Mapping[str, Any]:
    if type(value) not in _MAPPINGS and not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SpecError(field, f"must be a mapping with string keys, got {type(value).__name__}")
    return value


def from_mapping(cls: type[T], data: Any, field: str) -> T:
    """Build the dataclass ``cls`` from a mapping (a TOML table), naming unknown keys."""
    data = check_mapping(field, data)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            raise SpecError(f"{field}.{key}", f"is not a field of {cls.__name__}; known: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except SpecError as error:
        raise SpecError(f"{field}.{error.field}", error.problem) from None


def set_field(obj: object, name: str, value: Any) -> None:
    """Store a normalised value on a frozen dataclass during ``__post_init__``."""
    object.__setattr__(obj, name, value)


def check_count(name: str, value: Any, minimum: int = 1, *, optional: bool = False) -> None:
    """:class:`UsageError` unless ``value`` is an integer of at least ``minimum`` (or None when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer of at least {minimum}, got {value!r}")
