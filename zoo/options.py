"""Prediction options: merged over their defaults, and read from text (``--option KEY=VALUE``, a URL's query)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from zoo.errors import UsageError

if TYPE_CHECKING:
    from zoo.spec import ModelSpec


def merge_options(spec: ModelSpec, accepted: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` over the ``accepted`` defaults; :class:`UsageError` naming every accepted option for an unknown one."""
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        takes = ", ".join(f"{k}={v!r}" for k, v in sorted(accepted.items())) or "no options"
        raise UsageError(f"model {spec.name!r} does not take the option{'s' * (len(unknown) > 1)} "
                         f"{', '.join(unknown)}; it takes {takes}")
    return {**accepted, **given}


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
