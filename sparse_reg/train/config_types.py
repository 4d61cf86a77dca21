"""Type checking of configuration values against the field types of a dataclass.

The check is driven by the annotations alone (``bool``, ``int``, ``float``, ``str``, ``X | None``,
``dict[str, ...]``, ``Literal[...]``), so a field added to :class:`~sparse_reg.train.config.Config`
is checked without more code. JSON and TOML values are taken as they are, never converted from
text: ``"false"`` is not a boolean, ``true`` is not a count and ``"5"`` is not a number. The only
conversion is an integer in a ``float`` field (``lr = 1``), which becomes a float.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["TypeMismatch", "check_value", "describe_type", "field_types"]

_NONE = type(None)


class TypeMismatch(TypeError):
    """A value does not have its field's type; ``expected`` says what would have."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def _options(annotation: Any) -> tuple[Any, ...]:
    """The members of a union annotation (``int | None`` -> ``(int, NoneType)``), else itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def describe_type(annotation: Any) -> str:
    """Plain words for an annotation: ``int | None`` -> ``"an integer or null"``."""
    words = {
        bool: "a boolean (true or false)",
        int: "an integer",
        float: "a number",
        str: "a string",
        _NONE: "null (none)",
    }
    parts = []
    for option in _options(annotation):
        origin = typing.get_origin(option)
        if origin is typing.Literal:
            parts.append("one of " + ", ".join(repr(a) for a in typing.get_args(option)))
        elif origin in (dict, Mapping) or option is dict:
            parts.append("a table of settings")
        else:
            parts.append(words.get(option, getattr(option, "__name__", str(option))))
    return " or ".join(parts)


def _matches(value: Any, option: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(option)
    if option is Any:
        return True, value
    if option is _NONE:
        return value is None, value
    if origin is typing.Literal:
        return value in typing.get_args(option) and not isinstance(value, bool), value
    if origin in (dict, Mapping) or option is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value), value
    if option is bool:
        return isinstance(value, bool), value
    # bool is an int subclass in Python, but true is never a count or a rate.
    if isinstance(value, bool):
        return False, value
    if option is float:
        if not isinstance(value, (int, float)):
            return False, value
        try:
            return True, float(value)
        except OverflowError:  # an integer beyond the float range is no usable number either
            return False, value
    if isinstance(option, type):
        return isinstance(value, option), value
    return True, value  # an annotation this check does not know: left to the field's validation


def check_value(value: Any, annotation: Any) -> Any:
    """``value`` if it has the type ``annotation`` describes (an int in a float field as a float).

    Raises
    ------
    TypeMismatch
        It does not; ``expected`` is :func:`describe_type` of the annotation.
    """
    for option in _options(annotation):
        ok, converted = _matches(value, option)
        if ok:
            return converted
    raise TypeMismatch(describe_type(annotation))


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of the dataclass ``cls``'s fields (string annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
