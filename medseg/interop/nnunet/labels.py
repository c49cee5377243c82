"""An nnU-Net v2 model's classes, from its ``dataset.json``'s ``labels`` (name -> value).

nnU-Net numbers the classes ``0..K-1`` (background 0) and its network has one output per class, so class
index = label value. Region-based models (a name mapped to a list of values, trained with sigmoids on
overlapping regions) are refused: their outputs are not one softmax over classes. An ``ignore`` label is
not a class (nnU-Net gives it no output).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from medseg.errors import DataError

__all__ = ["class_names"]


def class_names(dataset: Mapping[str, Any], *, source: str | os.PathLike | None = None) -> dict[str, str]:
    """Class index (str) -> name of a ``dataset.json`` (``{"0": "background", "1": "liver", ...}``).

    Raises:
        DataError: No ``labels``, a region (list of values), values that are not ``0..K-1``, or
            ``regions_class_order`` set; one line naming ``source``.
    """
    labels = dataset.get("labels")
    if not isinstance(labels, Mapping) or not labels:
        raise DataError("dataset.json has no labels", path=source)
    regions = [name for name, value in labels.items() if isinstance(value, list | tuple)]
    if regions or dataset.get("regions_class_order") is not None:
        raise DataError(f"dataset.json defines regions ({', '.join(map(str, regions)) or 'regions_class_order'}): "
                        "region-based nnU-Net models (sigmoid outputs) are not supported", path=source)
    names = {}
    for name, value in labels.items():
        if str(name) == "ignore":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"dataset.json label {name!r} has value {value!r}, expected an integer", path=source)
        names[value] = str(name)
    if sorted(names) != list(range(len(names))) or len(names) < 2:
        raise DataError(f"dataset.json label values {sorted(names)} must be 0..K-1 with K >= 2", path=source)
    return {str(value): names[value] for value in sorted(names)}
