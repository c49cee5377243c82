"""The one binder of pipeline settings: plain YAML values -> frozen dataclasses, type by type.

:func:`bind` walks a dataclass's type hints and converts each value of a mapping (lists -> tuples,
integers -> floats where a float is expected) or raises :class:`~medseg.errors.ConfigError` whose message
names the key (``optimizer.betas[0]``), the expected type and the value. Floats must be finite: ``.inf``
and ``.nan`` are refused everywhere, so a non-finite learning rate can never reach the optimiser. Range
and cross-field rules are not the binder's job; they live in :mod:`medseg.training.rules`.

Supported hints: ``bool``, ``int``, ``float``, ``str``, ``Any``, ``X | None``, unions, ``tuple[X, ...]``,
fixed-length ``tuple[X, Y]``, ``dict[str, X]`` and nested frozen dataclasses. A dataclass may define a
``_coerce(value)`` class method that turns a shorthand into a mapping first (e.g. a loss given by name).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from medseg.errors import ConfigError

__all__ = ["bind", "type_name"]


def type_name(hint: Any) -> str:
    """A short, readable name of a type hint (``int``, ``float | None``, ``tuple[int, ...]``)."""
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def bind(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from the mapping ``data`` (``None``: every default).

    Args:
        cls: A (frozen) dataclass whose type hints describe the allowed values.
        data: The plain mapping read from YAML (or a shorthand accepted by ``cls._coerce``).
        where: The dotted key of ``data`` in the whole pipeline, for messages (``""`` at the top).

    Raises:
        ConfigError: Unknown key (listing the valid ones) or a value of the wrong type or non-finite.
    """
    coerce = getattr(cls, "_coerce", None)
    if coerce is not None:
        data = coerce(data, where)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'pipeline'}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(map(str, data)) - set(names))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' in ' + where if where else ''}: {', '.join(names)}"
        )
    values = {str(k): check_value(v, hints[str(k)], f"{where}.{k}" if where else str(k)) for k, v in data.items()}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # a __post_init__ that raises plain errors
        raise ConfigError(f"{where or 'pipeline'}: {exc}") from None


def check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to ``hint`` or :class:`ConfigError` naming ``where``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _union(value, hint, args, where)
    if hint is Any:
        return value
    if origin is tuple:
        return _tuple(value, args, where)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): check_value(v, item, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return bind(hint, value, where)
    return _scalar(value, hint, where)


def _union(value: Any, hint: Any, args: tuple, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    errors = []
    for arg in options:
        try:
            return check_value(value, arg, where)
        except ConfigError as exc:
            errors.append(str(exc))
    if len(errors) == 1:
        raise ConfigError(errors[0])
    raise ConfigError(f"{where}: expected {type_name(hint)}, got {_show(value)}")


def _tuple(value: Any, args: tuple, where: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {_show(value)}")
    if len(args) > 1 and args[1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {_show(value)}")
        return tuple(check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item = args[0] if args else Any
    return tuple(check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value))


def _scalar(value: Any, hint: Any, where: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {where}")  # pragma: no cover - programming error


def _show(value: Any) -> str:
    """``repr`` of a value, cut to one short line (a pasted mapping can be long)."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."
