"""Label maps from any tool as LiTS label maps: value checks, a liver/tumor mapping, one reader.

medseg measures LiTS label maps (0 background, 1 liver, 2 tumor; :mod:`medseg.labels`). Other tools
write other values: TotalSegmentator's multi-organ map has the liver at 5, many viewers save masks as
0/255, nnU-Net keeps the data set's own numbering, a DICOM SEG has named, coded segments. A
:class:`LabelMapping` says which values (or SEG segments) are liver and which are tumor; everything else
becomes background. Without one, a label map must hold only 0, 1 and 2: any other value, a non-integer
or a NaN is an error naming the file and the values found, never silently scored.

Examples of mappings (``--labels`` on the command line, ``labels=`` in the API)::

    LabelMapping.parse(["liver=5"])             # TotalSegmentator: 5 is liver, no tumor
    LabelMapping.parse(["liver=1", "tumor=2,3"])  # 3 (e.g. a cyst class) counted as tumor
    LabelMapping.parse(["liver=255"])           # a 0/255 mask
    LabelMapping.parse(['liver="Liver"'])       # a DICOM SEG segment, by its label

Partial annotations (issue #30) declare an *ignore* value, "not annotated" (nnU-Net's ignore label):
``LabelMapping().with_ignore(3)`` accepts 3 besides the mapped values and keeps it as 3 in the mapped map, so
training and scoring can leave those voxels out. Undeclared, such a value is an error as any other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from medseg.boxes import bounding_box
from medseg.errors import ConfigError, DataError
from medseg.labels import BACKGROUND, LIVER, TUMOR

__all__ = ["LITS_MAPPING", "LabelMapping", "apply_label_mapping", "label_value_problems", "looks_like_label_map"]

logger = logging.getLogger(__name__)

_REGIONS = ("liver", "tumor")
_LITS_VALUES = (BACKGROUND, LIVER, TUMOR)


@dataclass(frozen=True)
class LabelMapping:
    """Which stored values (or DICOM SEG segments) are liver and which are tumor.

    Attributes:
        liver: Values (int) or SEG segment labels (str) read as liver parenchyma (LiTS label 1).
        tumor: Values or segment labels read as tumor (LiTS label 2); tumor wins where both overlap.
        explicit: ``False`` for the LiTS default (values other than 0, 1, 2 are errors); ``True`` for a
            user's mapping (unlisted values are background).
        ignore: The value of voxels that are not annotated (3..255, kept as it is by the mapping), or ``None``.
    """

    liver: tuple[int | str, ...] = (LIVER,)
    tumor: tuple[int | str, ...] = (TUMOR,)
    explicit: bool = False
    ignore: int | None = None

    def __post_init__(self) -> None:
        both = set(self.liver) & set(self.tumor)
        if both:
            raise ConfigError(f"--labels: {sorted(map(str, both))} mapped to both liver and tumor")
        if self.explicit and not (self.liver or self.tumor):
            raise ConfigError("--labels maps nothing to liver or tumor")
        if self.ignore is not None:
            whole = isinstance(self.ignore, int | np.integer) and not isinstance(self.ignore, bool)
            if not whole or not 3 <= self.ignore <= 255:
                raise ConfigError(f"--ignore-label {self.ignore!r}: the ignore value must be an integer in 3..255 "
                                  "(0, 1, 2 are background, liver, tumor)")
            if self.ignore in (*self.liver, *self.tumor):
                raise ConfigError(f"--ignore-label {self.ignore} is also mapped to liver or tumor by --labels")

    def with_ignore(self, value: int | None) -> LabelMapping:
        """This mapping with ``value`` declared as the ignore value ("not annotated"); ``None``: unchanged."""
        return self if value is None else replace(self, ignore=int(value))

    @property
    def allowed_values(self) -> tuple[int, ...] | None:
        """The values a stored map may hold: LiTS 0, 1, 2 (and the ignore value); ``None`` (any) when explicit."""
        if self.explicit:
            return None
        return _LITS_VALUES if self.ignore is None else (*_LITS_VALUES, self.ignore)

    @classmethod
    def parse(cls, specs: LabelMapping | Sequence[str] | Mapping | str | None) -> LabelMapping:
        """A mapping from ``["liver=5", "tumor=2,3"]``, ``{"liver": 5, "tumor": [2, 3]}`` or ``None`` (LiTS).

        Integers are label values (segment numbers for a DICOM SEG); anything else is a SEG segment
        label (quotes are stripped). A region not named maps nothing.

        Raises:
            ConfigError: Unknown region, empty value, or a value given to both regions.
        """
        if specs is None:
            return LITS_MAPPING
        if isinstance(specs, LabelMapping):
            return specs
        if isinstance(specs, str):
            specs = [specs]
        if not isinstance(specs, Mapping):
            items = {}
            for spec in specs:
                name, sep, values = str(spec).partition("=")
                if not sep:
                    raise ConfigError(f"--labels: expected REGION=VALUES (e.g. liver=5), got {spec!r}")
                items.setdefault(name.strip().lower(), []).extend(_split(values))
            specs = items
        unknown = sorted(set(specs) - set(_REGIONS))
        if unknown:
            raise ConfigError(f"--labels: unknown region(s) {unknown}; use liver=... and/or tumor=...")
        parsed = {region: _parse_values(specs.get(region), region) for region in _REGIONS}
        return cls(liver=parsed["liver"], tumor=parsed["tumor"], explicit=True)

    def to_json(self) -> dict:
        """``{"liver": [...], "tumor": [...], "explicit": bool[, "ignore": value]}``, as recorded in summary and
        volumes JSON."""
        out = {"liver": list(self.liver), "tumor": list(self.tumor), "explicit": self.explicit}
        return out if self.ignore is None else {**out, "ignore": self.ignore}

    @property
    def by_name(self) -> bool:
        """Whether any entry is a segment label (only DICOM SEG files have those)."""
        return any(isinstance(v, str) for v in (*self.liver, *self.tumor))


#: The LiTS convention: 1 liver, 2 tumor, nothing else allowed.
LITS_MAPPING = LabelMapping()


def _split(values: str) -> list[str]:
    """``"2,3"`` -> ``["2", "3"]``; a quoted value (a segment label with commas) stays whole."""
    text = values.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return [text]
    return text.split(",")


def _parse_values(raw, region: str) -> tuple[int | str, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list | tuple) else [raw] if not isinstance(raw, str) else _split(raw)
    out: list[int | str] = []
    for item in items:
        if isinstance(item, bool) or (isinstance(item, float) and not float(item).is_integer()):
            raise ConfigError(f"--labels {region}: {item!r} is not an integer label value or a segment label")
        if isinstance(item, int | float | np.integer):
            out.append(_positive(int(item), region))
            continue
        text = str(item).strip().strip("\"'").strip()
        if not text:
            raise ConfigError(f"--labels {region}= needs a value (e.g. {region}=5)")
        out.append(_positive(int(text), region) if text.lstrip("-").isdigit() else text)
    return tuple(out)


def _positive(value: int, region: str) -> int:
    """``value`` when it is a label value a region can have: 0 is the background (``liver=0`` counted every
    background voxel as liver), negative values are no label (and no DICOM SEG segment number)."""
    if value < 1:
        raise ConfigError(f"--labels {region}={value}: label values of a region are positive integers "
                          "(0 is the background)")
    return value


def label_value_problems(array: np.ndarray, *, allowed: Sequence[int] | None = _LITS_VALUES) -> list[str]:
    """What is wrong with the values of a label map (an empty list when nothing is).

    Args:
        array: Label map of any shape.
        allowed: The values a map may hold (LiTS 0, 1, 2); ``None`` accepts any integer.

    Returns:
        One message per problem: NaN/inf voxels, non-integer values, values outside ``allowed`` (with a
        note when the map looks like a CT scan).
    """
    values = np.asarray(array)
    problems = []
    if values.dtype.fields is not None or not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        return [f"label map has non-numeric voxels ({values.dtype})"]
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all():
            problems.append(f"{int(np.count_nonzero(~finite))} NaN/inf voxels in the label map")
            values = values[finite]
        fractional = values != np.round(values)
        if fractional.any():
            example = float(values[fractional][0])
            problems.append(f"{int(np.count_nonzero(fractional))} non-integer label values (e.g. {example:g}); "
                            "a label map holds whole numbers")
            return problems
    if allowed is None:
        return problems
    present = _present_values(values)
    extra = [v for v in present if v not in allowed]
    if extra:
        shown = ", ".join(f"{v:g}" for v in extra[:8]) + (f" ... ({len(extra)} values)" if len(extra) > 8 else "")
        hint = ("; this looks like a CT scan, not a label map" if _looks_like_ct(present)
                else "; a map from another tool? map its values with --labels (e.g. --labels liver=5)")
        if len(extra) == 1 and (LIVER in present or TUMOR in present):  # a sparse map: LiTS values and one more
            hint += f"; or unannotated voxels? declare them with --ignore-label {extra[0]:g}"
        problems.append(f"label values {shown} outside {{{', '.join(map(str, allowed))}}}{hint}")
    return problems


def looks_like_label_map(array: np.ndarray) -> str | None:
    """A one-line reason when a scan's values look like a label map rather than CT HU, else ``None``.

    A label map holds background 0 and small non-negative integers: either a few values within 0..255
    (at most 16, e.g. 0/1/2 or 0/255), or another tool's multi-label map (TotalSegmentator's 117 classes,
    an instance map) with at most 256 distinct values of which 0 is the most frequent. A CT holds
    thousands of values and air at about -1000 HU, so neither rule takes a CT.
    """
    values = np.asarray(array)
    if values.size == 0 or not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        return None
    lo, hi = float(np.min(values)), float(np.max(values))
    if lo != 0 or hi > 65535:
        return None
    if np.issubdtype(values.dtype, np.floating) and not np.array_equal(values, np.round(values)):
        return None
    present = _present_values(values)
    if len(present) < 2 or len(present) > 256:  # a constant scan is another problem
        return None
    if len(present) > 16 or hi > 255:
        zeros = values.size - int(np.count_nonzero(values))
        if zeros * len(present) < values.size:  # 0 not more frequent than an average value: not background
            return None
        return (f"{len(present)} integer values {present[0]:g}..{present[-1]:g}, mostly 0: this is a multi-label "
                "map (segmentation), not a CT scan")
    shown = ", ".join(f"{v:g}" for v in present)
    return f"values {shown} only: this is a label map (segmentation), not a CT scan"


def apply_label_mapping(array: np.ndarray, mapping: LabelMapping = LITS_MAPPING, *, path=None) -> np.ndarray:
    """A LiTS ``uint8`` label map (0, 1, 2) from ``array`` under ``mapping``.

    Args:
        array: Stored label values, any shape.
        mapping: Which values are liver and tumor (:data:`LITS_MAPPING`: the values must be 0, 1, 2).
        path: The file, for messages.

    Raises:
        DataError: NaN/inf, non-integer values, values outside {0, 1, 2} without an explicit mapping, or a
            mapping that names segment labels (only DICOM SEG files have them).
    """
    if mapping.by_name:
        raise DataError(f"--labels names segments ({mapping.to_json()}); only DICOM SEG files have segment "
                        "labels, map this file's integer values (e.g. --labels liver=5)", path=path)
    problems = label_value_problems(array, allowed=mapping.allowed_values)
    if problems:
        raise DataError("; ".join(problems), path=path)
    values = np.asarray(array)
    if not mapping.explicit:
        return values.astype(np.uint8, copy=False)
    present_sorted = _present_values(values)
    if _looks_like_ct(present_sorted):  # a mapping chooses values; it never makes a CT a label map
        raise DataError(f"{len(present_sorted)} distinct values from {present_sorted[0]:g} to {present_sorted[-1]:g}: "
                        "this looks like a CT scan, not a label map", path=path)
    present = set(present_sorted)
    missing = [v for v in (*mapping.liver, *mapping.tumor) if v not in present]
    if missing:
        logger.warning("%s: no voxel has the mapped value(s) %s (values present: %s)", path or "label map",
                       ", ".join(map(str, missing)), ", ".join(f"{v:g}" for v in sorted(present)))
    out = np.zeros(values.shape, dtype=np.uint8)
    out[np.isin(values, list(mapping.liver))] = LIVER
    out[np.isin(values, list(mapping.tumor))] = TUMOR
    if mapping.ignore is not None:
        out[values == mapping.ignore] = mapping.ignore
    return out


def _present_values(values: np.ndarray) -> list[float]:
    """Sorted distinct values (``bincount`` for small non-negative integers: much faster than ``unique``)."""
    if values.size == 0:
        return []
    if values.dtype == bool:
        values = values.view(np.uint8)
    if np.issubdtype(values.dtype, np.integer):
        lo, hi = int(values.min()), int(values.max())
        if 0 <= lo and hi <= 1 << 16:
            return [int(v) for v in np.flatnonzero(_value_counts(values, hi + 1))]
        return [int(v) for v in np.unique(values)]
    return [float(v) if not float(v).is_integer() else int(v) for v in np.unique(values)]


def _value_counts(values: np.ndarray, length: int) -> np.ndarray:
    """``np.bincount`` of non-negative integers: inside the box of the non-zero voxels (a view; zeros
    elsewhere), over slabs of the outermost axis in memory. No whole-volume copy for either memory order
    (``ravel`` copies a Fortran-ordered map, ``astype(intp)`` takes 8 bytes a voxel)."""
    if values.ndim == 0:
        values = values.reshape(1)
    counts = np.zeros(length, dtype=np.int64)
    box = bounding_box(values)
    if box is None:
        counts[0] = values.size
        return counts
    inside = values[box]
    counts[0] = values.size - inside.size
    view = inside.transpose(sorted(range(inside.ndim), key=lambda a: -abs(inside.strides[a])))
    rows = max(1, (1 << 22) // max(1, view[:1].size))
    for start in range(0, view.shape[0], rows):
        counts += np.bincount(view[start : start + rows].astype(np.intp).reshape(-1), minlength=length)
    return counts


def _looks_like_ct(present: list[float]) -> bool:
    return len(present) > 256 or (bool(present) and min(present) < -100)
