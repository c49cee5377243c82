"""``check_dataset``: read every case and report every integrity problem at once, before training.

Stricter than nnU-Net's ``--verify_dataset_integrity``: a geometry mismatch between image and label is an
error (not a warning), and HU plausibility, label values and spacing are checked too. Checks per case:

===============  ========  =========================================================================
check            severity  problem
===============  ========  =========================================================================
``missing``      error     image or label file does not exist; a training image has no label
``read``         error     unreadable, truncated, not 3D, bad DICOM series (gap, several series...)
``geometry``     error     image and label differ in shape, spacing, origin or direction (the same world
                           grid stored in another voxel order, e.g. LAS against L,P,I, is not a problem)
``label_values`` error     labels not integral, not finite, or outside {0, 1, 2} (or the ``labels`` mapping);
                           an ignore value only when declared (``ignore_label``, or ``dataset.json``)
``kind``         error     the image is a label map (a few small integers), not a CT scan
``non_finite``   error     NaN or inf in the image
``hu_range``     error     constant image; values look normalised (all within -10..10) or like raw
                           stored values (no negatives, maximum above 1000: rescale not applied)
``hu_range``     warning   no air (1st percentile above -500 HU), values above 4000 HU, no negatives
``spacing``      error     a voxel size outside ``SpacingLimits.implausible_mm`` (broken header)
``spacing``      warning   in-plane or slice spacing outside the usual CT ranges (see SpacingLimits)
``no_liver``     warning   the label map has no liver or tumor voxel
``modality``     warning   a DICOM series that is not CT
``orphan``       warning   a label file that matches no image
===============  ========  =========================================================================

Inputs are only read, never modified.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.data.discovery import Case, discover_dataset
from medseg.errors import ConfigError, MedsegError
from medseg.io.label_map import (
    LITS_MAPPING,
    LabelMapping,
    apply_label_mapping,
    label_value_problems,
    looks_like_label_map,
)
from medseg.io.orientation import align_to
from medseg.io.reader import read_volume
from medseg.io.volume import Volume
from medseg.utils.progress import tqdm_disable

__all__ = ["LABEL_VALUES", "CheckReport", "Problem", "SpacingLimits", "check_case", "check_dataset",
           "resolve_ignore_label"]

LABEL_VALUES = (0, 1, 2)


@dataclass(frozen=True)
class SpacingLimits:
    """Voxel-size ranges in mm; outside ``in_plane_mm`` / ``slice_mm`` is a warning, outside
    ``implausible_mm`` (any axis) an error.

    The defaults cover clinical abdominal CT (LiTS: 0.56-1.0 mm in-plane, 0.45-6 mm slices). The tiny and
    small phantoms (3-8 mm in-plane, 4-10 mm slices) produce warnings only.
    """

    in_plane_mm: tuple[float, float] = (0.4, 1.5)
    slice_mm: tuple[float, float] = (0.4, 6.0)
    implausible_mm: tuple[float, float] = (0.05, 50.0)


@dataclass(frozen=True)
class Problem:
    """One row of the report: which case and file, how bad, which check, what is wrong."""

    case_id: str
    path: str
    severity: str  # "error" | "warning"
    check: str
    message: str


@dataclass(frozen=True)
class CheckReport:
    """All problems found in a data set."""

    root: Path
    layout: str
    n_cases: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Problems with severity ``"error"``."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems with severity ``"warning"``."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def to_dataframe(self):
        """A pandas DataFrame with columns case_id, path, severity, check, message."""
        import pandas as pd

        columns = ["case_id", "path", "severity", "check", "message"]
        return pd.DataFrame([[getattr(p, c) for c in columns] for p in self.problems], columns=columns)

    def format_table(self) -> str:
        """Plain-text table of the problems (errors first) with a summary line."""
        summary = (f"{self.root}: {self.layout} layout, {self.n_cases} cases, {len(self.errors)} errors, "
                   f"{len(self.warnings)} warnings")
        if not self.problems:
            return summary + " - all checks passed"
        rows = [("SEVERITY", "CASE", "CHECK", "FILE", "MESSAGE")]
        for p in sorted(self.problems, key=lambda p: (p.severity != "error", _natural(p.case_id), p.check)):
            rows.append((p.severity, p.case_id, p.check, _relative(p.path, self.root), p.message))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
        return "\n".join([*lines, summary])


def check_dataset(
    root: str | os.PathLike,
    *,
    workers: int | None = None,
    limits: SpacingLimits = SpacingLimits(),
    progress: bool | None = None,
    labels: LabelMapping | None = None,
    series_uid: str | None = None,
    ignore_label: int | None = None,
) -> CheckReport:
    """Check every case of the data set under ``root`` (read in ``workers`` processes, with a progress bar).

    ``labels`` maps another tool's label values to liver/tumor (:class:`medseg.io.label_map.LabelMapping`);
    without it label maps must hold 0, 1, 2 only. ``series_uid`` chooses the series of DICOM case folders
    that hold several. ``ignore_label`` declares the value of unannotated voxels (partial annotations); a
    ``dataset.json`` may declare it too (``"ignore"`` among its labels). Undeclared, it is a bad label value.

    Raises:
        DataError: ``root`` holds no recognisable data set (see :func:`medseg.data.discovery.discover_dataset`).
        ConfigError: ``ignore_label`` differs from the one ``dataset.json`` declares, or is not in 3..255.
    """
    from medseg.utils.parallel import map_with_progress

    scan = discover_dataset(root, report_orphans=False)  # the orphans are problems of the report
    mapping = (labels or LITS_MAPPING).with_ignore(resolve_ignore_label(ignore_label, scan.ignore_label, scan.root))
    jobs = [(case, limits, mapping, series_uid) for case in scan.cases]
    per_case = map_with_progress(_check_job, jobs, workers=workers, desc="check",
                                 disable=tqdm_disable(progress))
    problems = [p for rows in per_case for p in rows]
    problems += [Problem("", str(p), "warning", "orphan", "label file matches no image") for p in scan.orphan_labels]
    return CheckReport(root=scan.root, layout=scan.layout, n_cases=len(scan.cases), problems=problems)


def resolve_ignore_label(given: int | None, declared: int | None, root) -> int | None:
    """The ignore value of a data set: the one given (``--ignore-label``, ``data.ignore_label``) or the one its
    ``dataset.json`` declares; a :class:`~medseg.errors.ConfigError` when both are given and differ."""
    if given is not None and declared is not None and int(given) != int(declared):
        raise ConfigError(f"--ignore-label {given} differs from the ignore label {declared} that dataset.json "
                          "declares", path=root)
    return declared if given is None else int(given)


def check_case(case: Case, *, limits: SpacingLimits = SpacingLimits(), labels: LabelMapping = LITS_MAPPING,
               series_uid: str | None = None) -> list[Problem]:
    """All problems of one case (an empty list when it passes); arguments as in :func:`check_dataset`."""
    out: list[Problem] = []

    def add(path, severity: str, check: str, message: str) -> None:
        out.append(Problem(case.case_id, str(path), severity, check, message))

    image = _read(case.image, add, series_uid)
    label = None
    if case.label is None:
        if case.split == "train":
            add(case.image, "error", "missing", "no label map for this image")
    else:
        label = _read(case.label, add)
    if image is not None:
        _check_image(image, case.image, limits, add)
    if label is not None:
        label = _check_label(label, case.label, labels, add)
    if image is not None and label is not None:
        _check_geometry(image, label, case.label, add)
    return out


# --------------------------------------------------------------------------------------------------
# checks


def _check_job(job: tuple[Case, SpacingLimits, LabelMapping, str | None]) -> list[Problem]:
    case, limits, labels, series_uid = job
    return check_case(case, limits=limits, labels=labels, series_uid=series_uid)


def _read(path: Path, add, series_uid: str | None = None) -> Volume | None:
    if not Path(path).exists():
        add(path, "error", "missing", "file does not exist")
        return None
    try:
        return read_volume(path, series_uid=series_uid)
    except MedsegError as exc:
        message, prefix = str(exc), f"{path}: "
        add(path, "error", "read", message[len(prefix):] if message.startswith(prefix) else message)
    except Exception as exc:  # an unforeseen reader failure must not hide the other cases' problems
        add(path, "error", "read", f"unreadable ({type(exc).__name__}: {str(exc).strip()[:200]})")
    return None


def _check_image(image: Volume, path: Path, limits: SpacingLimits, add) -> None:
    modality = image.meta.get("modality")
    if image.meta.get("format") == "dicom" and modality != "CT":
        add(path, "warning", "modality", f"modality is {modality or 'unset'!r}, not CT")
    values = np.asarray(image.array)
    kind = looks_like_label_map(values)
    if kind:
        add(path, "error", "kind", kind)
        return
    if np.issubdtype(values.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            add(path, "error", "non_finite", f"{bad} NaN/inf voxels")
            values = values[np.isfinite(values)]
    if values.size == 0:
        add(path, "error", "hu_range", "no finite voxel")
        return
    lo, hi = float(values.min()), float(values.max())
    sample = values.ravel()[:: max(1, values.size // 1_000_000)]
    p1 = float(np.percentile(sample, 1))
    if lo == hi:
        add(path, "error", "hu_range", f"constant image (every voxel is {lo:g})")
    elif lo >= -10 and hi <= 10:
        add(path, "error", "hu_range", f"values {lo:g}..{hi:g} are not Hounsfield units (already normalised?)")
    elif lo >= 0 and hi > 1000:
        add(path, "error", "hu_range", f"values {lo:g}..{hi:g} have no negatives: raw stored values, rescale "
            "intercept not applied? (air is about -1000 HU)")
    else:
        if lo >= 0:
            add(path, "warning", "hu_range", f"no negative values ({lo:g}..{hi:g}); air should be about -1000 HU")
        elif p1 > -500:
            add(path, "warning", "hu_range", f"no air in the scan (1st percentile {p1:.0f} HU)")
        if hi > 4000:
            add(path, "warning", "hu_range", f"maximum {hi:g} HU above 4000 (metal, or a scaling problem)")
    _check_spacing(image, path, limits, add)


def _check_spacing(image: Volume, path: Path, limits: SpacingLimits, add) -> None:
    spacing = np.asarray(image.spacing_mm)
    shown = "x".join(f"{s:.3g}" for s in spacing)
    lo, hi = limits.implausible_mm
    if np.any(spacing < lo) or np.any(spacing > hi):
        add(path, "error", "spacing", f"implausible voxel size {shown} mm (allowed {lo:g}..{hi:g}); broken header?")
        return
    slice_axis = int(np.argmax(np.abs(image.direction[2])))  # the axis closest to superior-inferior
    in_plane = np.delete(spacing, slice_axis)
    (a, b), (c, d) = limits.in_plane_mm, limits.slice_mm
    unusual = []
    if np.any(in_plane < a) or np.any(in_plane > b):
        unusual.append(f"in-plane outside the usual {a:g}..{b:g} mm")
    if not c <= spacing[slice_axis] <= d:
        unusual.append(f"slice spacing outside the usual {c:g}..{d:g} mm")
    if unusual:
        add(path, "warning", "spacing", f"voxel size {shown} mm: " + "; ".join(unusual))


def _check_label(label: Volume, path: Path, labels: LabelMapping, add) -> Volume | None:
    """Report bad label values; the label map under ``labels`` (LiTS values), or ``None`` when unusable."""
    problems = label_value_problems(label.array, allowed=labels.allowed_values)
    for message in problems:
        add(path, "error", "label_values", message)
    if problems:
        return None
    mapped = label.with_array(apply_label_mapping(label.array, labels, path=path))
    if not np.any((mapped.array == 1) | (mapped.array == 2)):
        add(path, "warning", "no_liver", "the label map has no liver or tumor voxel")
    return mapped


def _check_geometry(image: Volume, label: Volume, path: Path, add) -> None:
    if align_to(label, image, required=False) is not None:  # the same grid, perhaps in another voxel order
        return
    if sorted(image.shape) == sorted(label.shape) and image.shape != label.shape:
        add(path, "error", "geometry", f"label shape {label.shape} is the image shape {image.shape} permuted, but "
            "not on the same world grid (affines differ)")
        return
    if image.shape != label.shape:
        add(path, "error", "geometry", f"label shape {label.shape} differs from image shape {image.shape}")
        return
    checks = (
        ("spacing", np.asarray(image.spacing_mm), np.asarray(label.spacing_mm), 1e-3, "mm"),
        ("origin", np.asarray(image.origin_mm), np.asarray(label.origin_mm), 1e-2, "mm"),
        ("direction", image.direction, label.direction, 1e-3, ""),
    )
    for name, a, b, tol, unit in checks:
        if not np.allclose(a, b, atol=tol, rtol=0):
            fmt = ", ".join(f"{v:.4g}" for v in np.ravel(b)), ", ".join(f"{v:.4g}" for v in np.ravel(a))
            add(path, "error", "geometry", f"label {name} ({fmt[0]}){unit and ' ' + unit} differs from image "
                f"{name} ({fmt[1]}){unit and ' ' + unit}")


def _natural(text: str) -> list:
    """Sort key putting "2" before "10"."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
