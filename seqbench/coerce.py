"""The one way text and YAML values become typed config values.

Run-config fields, loss and model hyper-parameters and data set registry entries all go through
:func:`coerce`, so ``--set``, ``--config`` YAML and ``SEQBENCH_DATASETS`` accept and refuse the same
things: ``5`` or ``"5"`` or ``"1e3"`` for an int (not ``2.5``, not ``true``), finite numbers for a
float (not ``inf``/``nan``), ``true``/``false``/``yes``/``no``/``1``/``0`` for a bool, ``none`` or
``null`` for an optional field, a list or ``"5,10"`` for a tuple of ints.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from typing import Any, Union

import yaml

from seqbench.errors import InputError, unknown_name

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}
MAX_VALUE_CHARS = 1000


def type_name(hint: Any) -> str:
    options = _options(hint)
    names = [getattr(option, "__name__", str(option)).replace("NoneType", "None") for option in options]
    if typing.get_origin(hint) is tuple:
        return "comma-separated integers"
    return " or ".join(names)


def _options(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (a pasted blob stays one line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}...({len(text):,} characters)"


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` (a resolved annotation); a value that does not fit is an
    :class:`InputError` naming the key, the value and the type it needs."""
    options = _options(hint)
    optional = type(None) in options
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    if value is None:
        raise InputError(f"{name} needs a value of type {type_name(hint)}, got none")
    target = next(option for option in options if option is not type(None))
    if isinstance(target, type) and issubclass(target, enum.Enum):
        try:
            return target(value)
        except ValueError:
            raise InputError(f"unknown {name} {shown(value)}; valid: {', '.join(str(member.value) for member in target)}") from None
    try:
        return _convert(value, target)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name}={shown(value)} is not a valid {type_name(hint)}") from None


def _convert(value: Any, target: Any) -> Any:
    origin = typing.get_origin(target)
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        return tuple(_integer(item) for item in items)
    if target is dict or origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if target is bool:
        return _boolean(value)
    if target is int:
        return _integer(value)
    if target is float:
        return _real(value)
    if target is str:
        if isinstance(value, (list, dict, tuple, set)):
            raise TypeError
        return str(value)
    raise TypeError


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if isinstance(value, (int, str)) and text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError  # true is not a count
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            value = float(text)  # "1e3"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise ValueError


def _real(value: Any) -> float:
    if isinstance(value, (bool, list, dict, tuple)):
        raise TypeError
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError
    return number


def coerce_fields(cls: type, values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Every key of ``values`` coerced to its field's type in dataclass ``cls`` (unknown keys are
    left for the caller to reject, with its own list of valid names)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: coerce(f"{where}{key}", value, hints[key]) if key in names else value for key, value in values.items()}


def parse_list(text: str | None, what: str, known: list[str] | None = None) -> list[str]:
    """Split a comma-separated option; unknown names are an input error that lists the valid ones."""
    items = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not items:
        raise InputError(f"{what} list is empty: give at least one name")
    if known is not None:
        unknown = [item for item in items if item not in known]
        if unknown:
            raise InputError(unknown_name(what, unknown[0], known))
    return items


def parse_int_list(text: str, option: str) -> list[int]:
    """A comma-separated list of integers (``--seeds 0,1,2``, ``--k 5,10``); ``option`` names the flag in the error."""
    try:
        return [int(part) for part in parse_list(text, option)]
    except (ValueError, InputError):
        raise InputError(f"{option} expects comma-separated integers, got '{text}'") from None


def parse_value(text: str) -> Any:
    """A ``--set`` (or loss-spec) value as YAML reads a scalar or list (``5`` -> int, ``1e-3`` ->
    float, ``false`` -> bool); the one text-to-value reading of the project."""
    if len(text) > MAX_VALUE_CHARS:  # a 100,000-digit number would stall YAML and int() alike
        raise InputError(f"a value of {len(text):,} characters ({text[:20]}...) is too long: "
                         f"config values have at most {MAX_VALUE_CHARS} characters")
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError):
        return text
    if isinstance(value, str):
        # YAML reads 1e-3 as a string; numbers written that way are meant as floats.
        try:
            return float(value)
        except ValueError:
            return value
    return value


def split_assignments(pairs: list[str] | None, example: str) -> dict[str, str]:
    """``key=value`` pairs of ``--set`` as text (each command types the values its own way);
    ``example`` goes into the error for a pair without ``=``."""
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects key=value, got '{pair}': for example --set {example}")
        result[key.strip()] = value.strip()
    return result
