"""medseg: liver and liver-tumor segmentation in CT, and measurement of what it shows.

Stages, in the order data flows through them: :mod:`medseg.io` (CT files <-> :class:`~medseg.io.Volume`),
:mod:`medseg.data` (data sets, integrity checks, the synthetic phantom), :mod:`medseg.preprocessing`,
:mod:`medseg.models`, :mod:`medseg.losses`, :mod:`medseg.training`, :mod:`medseg.inference` and
:mod:`medseg.evaluation`. Sub-packages are imported on demand so ``import medseg`` stays light.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
