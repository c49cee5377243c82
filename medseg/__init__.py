"""medseg: liver and liver-tumor segmentation in CT, and measurement of what it shows.

Stages, in the order data flows through them: :mod:`medseg.io` (CT files <-> :class:`~medseg.io.Volume`),
:mod:`medseg.data` (data sets, integrity checks, the synthetic phantom), :mod:`medseg.preprocessing`,
:mod:`medseg.models`, :mod:`medseg.losses`, :mod:`medseg.training`, :mod:`medseg.inference` and
:mod:`medseg.evaluation`. Sub-packages are imported on first use (PEP 562), so ``import medseg`` stays light
and ``medseg.evaluation.binary_metrics(...)`` works after a bare ``import medseg``; ``__init__.pyi`` names them
for IDEs and type checkers (a stub, so the package imports none of its sub-packages, not even for typing)::

    import medseg

    scan = medseg.io.read_volume("volume-3.nii.gz")          # loads medseg.io (and nibabel) only now
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: The sub-packages reachable as attributes of ``medseg`` (imported on first access).
SUBPACKAGES = ("cli", "data", "evaluation", "inference", "interop", "io", "losses", "models", "outputs",
               "preprocessing", "runs", "training", "utils")  # fmt: skip

__all__ = ["SUBPACKAGES", "__version__", *SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBPACKAGES))
