"""Lazy package exports (PEP 562), so ``medseg --help`` and ``import medseg.<stage>`` do not load torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for a package whose names live in its sub-modules.

    Args:
        package: The package's ``__name__``.
        exports: Exported name -> sub-module (relative to ``package``) that defines it.

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's top level; a name is imported on first use
        and then cached in the package's namespace.

    Example:
        >>> __getattr__, __dir__ = lazy_exports(__name__, {"train": "loop"})  # doctest: +SKIP
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
