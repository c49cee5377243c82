"""Cross-validation report of an nnU-Net v2 trained-model folder, from nnU-Net's own validation predictions.

nnU-Net's trainer (Isensee et al. 2021, *Nature Methods* 18:203) ends each fold by predicting that fold's
validation cases with the final checkpoint (``nnUNetv2_train DATASET CONFIG K``, or ``--val`` afterwards)
into ``<trainer>__<plans>__<configuration>/fold_K/validation/<case><file_ending>``, on the cases' own grids
and in the model's label space. :func:`run_nnunet_crossval` evaluates those files against the references
of the raw data set (``labelsTr/``, as :func:`medseg.data.discovery.discover_dataset` pairs them), exactly
as :func:`medseg.training.crossval.run_crossval` evaluates medseg's fold runs (the fold of a case is the
``fold_K`` it sits in), and chooses the post-processing on them
(:func:`medseg.training.postprocessing_search.choose_postprocessing_on`). Nothing is predicted, and
nothing is written inside the nnU-Net folder: the report and ``postprocessing.json`` go to ``settings.out``.

Labels: the model's ``dataset.json`` names its classes; a model whose classes are LiTS' (1 liver, 2
tumor) needs nothing, any other is mapped with ``labels`` (``--labels liver=5``), which applies to the
predictions and the references alike (both are in the model's label space).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, DataError
from medseg.io.label_map import LITS_MAPPING, LabelMapping
from medseg.training.crossval import FoldCases, evaluate_out_of_fold, write_crossval_report

__all__ = ["VALIDATION_DIR", "NnUNetCrossvalSettings", "ValidationFolds", "check_out", "find_validation_folds",
           "nnunet_labels", "run_nnunet_crossval"]  # fmt: skip

logger = logging.getLogger(__name__)

#: nnU-Net's folder of a fold's validation predictions (``fold_K/validation``).
VALIDATION_DIR = "validation"

_FOLD = re.compile(r"^fold_(\d+)$")


@dataclass(frozen=True)
class NnUNetCrossvalSettings:
    """What :func:`run_nnunet_crossval` reads and where it writes.

    Attributes:
        data: The raw data set (``imagesTr/``, ``labelsTr/``) holding the references.
        out: The report's folder (never inside the nnU-Net folder).
        labels: Which of the model's classes are liver and tumor (``None``: LiTS', else refused).
        folds: Only these folds (``None``: every ``fold_K`` with validation outputs).
        protocol: Evaluation protocol, ``"medseg"`` or ``"lits2017"``.
        figures: Draw the figures.
        postprocessing: Choose the post-processing (``out/postprocessing.json``).
        progress: Progress bar over cases.
    """

    data: str | os.PathLike
    out: str | os.PathLike
    labels: LabelMapping | None = None
    folds: tuple[int, ...] | None = None
    protocol: str = "medseg"
    figures: bool = True
    postprocessing: bool = True
    progress: bool = False


@dataclass(frozen=True)
class ValidationFolds:
    """The folds found: each as :class:`~medseg.training.crossval.FoldCases` (its ``run`` is ``fold_K``),
    every case's prediction file, and one line per ``fold_K`` skipped (no ``validation/``)."""

    folds: tuple[FoldCases, ...]
    predictions: dict[str, Path]
    skipped: tuple[str, ...]
    labels: LabelMapping


def nnunet_labels(folder: str | os.PathLike, labels: LabelMapping | None) -> LabelMapping:
    """The mapping of the model's classes to liver and tumor: ``labels``, else LiTS' when the model's
    ``dataset.json`` names 1 liver and 2 tumor.

    Raises:
        DataError: Classes other than LiTS' without ``labels``, or ``labels`` naming a value that is not
            one of the model's classes; one line naming ``dataset.json``.
    """
    import json

    from medseg.interop.nnunet import class_names
    from medseg.labels import is_lits

    path = Path(folder) / "dataset.json"
    try:
        names = class_names(json.loads(path.read_text(encoding="utf-8")), source=path)
    except (OSError, ValueError) as exc:
        raise DataError(f"not readable JSON ({exc})", path=path) from None
    if labels is None:
        if not is_lits(names):
            shown = ", ".join(f"{k} {v}" for k, v in list(names.items())[1:6]) + (", ..." if len(names) > 6 else "")
            raise DataError(f"the model's classes are not LiTS' ({shown}): say which are liver and tumor with "
                            "--labels liver=K [tumor=L]", path=path)  # fmt: skip
        return LITS_MAPPING
    unknown = [v for v in (*labels.liver, *labels.tumor) if str(v) not in names or str(v) == "0"]
    if unknown:
        raise DataError(f"--labels names {unknown[0]!r}, which is not one of the model's classes "
                        f"({', '.join(f'{k} {v}' for k, v in names.items())})", path=path)  # fmt: skip
    return labels


def find_validation_folds(folder: str | os.PathLike, settings: NnUNetCrossvalSettings) -> ValidationFolds:
    """Every ``fold_K/validation/`` of ``folder`` with each prediction's reference in ``settings.data``;
    every check before any work.

    Raises:
        DataError: No fold with validation outputs; a requested fold without them; a prediction without a
            reference label map; a case in two folds; classes that cannot be mapped.
    """
    from medseg.data.discovery import discover_dataset

    root = Path(folder)
    labels = nnunet_labels(root, settings.labels)
    ending = _file_ending(root)
    found, skipped = _fold_folders(root, settings.folds)
    scan = discover_dataset(settings.data)
    by_id = {case.case_id: case for case in scan}
    ignore = scan.ignore_label
    parts, predictions = [], {}
    for fold, fold_dir in found:
        cases = []
        for path in sorted((fold_dir / VALIDATION_DIR).glob(f"*{ending}")):
            case_id = path.name[: -len(ending)]
            case = by_id.get(case_id)
            if case is None or case.label is None:
                raise DataError(f"validation case {case_id} has no reference label map in {settings.data} "
                                "(--data: the nnU-Net raw data set, imagesTr/ and labelsTr/)", path=path)  # fmt: skip
            if case_id in predictions:
                raise DataError(f"case {case_id} is a validation case of two folds", path=path)
            predictions[case_id] = path
            cases.append(case)
        if not cases:
            skipped.append(f"fold_{fold}/{VALIDATION_DIR} holds no {ending} predictions: skipped")
            continue
        parts.append(FoldCases(fold=fold, run=fold_dir, cases=tuple(cases), ignore_label=ignore))
    if not parts:
        raise DataError(f"no validation outputs (fold_K/{VALIDATION_DIR}/*{ending}): run nnUNetv2_train DATASET "
                        "CONFIGURATION FOLD --val to write them", path=root)  # fmt: skip
    return ValidationFolds(tuple(parts), predictions, tuple(skipped), labels)


def _fold_folders(root: Path, folds: tuple[int, ...] | None) -> tuple[list[tuple[int, Path]], list[str]]:
    """``(fold, fold_K)`` with a ``validation/`` folder, and a line per fold skipped."""
    found, skipped = [], []
    numbered = {int(m.group(1)): p for p in sorted(root.iterdir()) if (m := _FOLD.match(p.name)) and p.is_dir()}
    if (root / "fold_all").is_dir():
        skipped.append("fold_all trained on every case (no out-of-fold predictions): skipped")
    for fold in folds if folds is not None else sorted(numbered):
        if fold not in numbered:
            raise DataError(f"--folds: the nnU-Net folder has no fold_{fold}", path=root)
        if (numbered[fold] / VALIDATION_DIR).is_dir():
            found.append((fold, numbered[fold]))
        else:
            skipped.append(f"fold_{fold} has no {VALIDATION_DIR}/ (run nnUNetv2_train DATASET CONFIGURATION "
                           f"{fold} --val): skipped")  # fmt: skip
    return found, skipped


def _file_ending(root: Path) -> str:
    import json

    try:
        ending = json.loads((root / "dataset.json").read_text(encoding="utf-8")).get("file_ending", ".nii.gz")
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"not readable dataset.json ({exc})", path=root / "dataset.json") from None
    if ending not in (".nii.gz", ".nii"):
        raise DataError(f"dataset.json file_ending {ending!r}: medseg reads NIfTI (.nii.gz, .nii) validation "
                        "outputs only", path=root / "dataset.json")  # fmt: skip
    return ending


def check_out(folder: str | os.PathLike, out: str | os.PathLike | None) -> Path:
    """``out`` as the report's folder: required, and never the nnU-Net folder or inside it.

    Raises:
        ConfigError: No ``out``, or one inside ``folder``.
    """
    if out is None:
        raise ConfigError("--out DIR is required for an nnU-Net folder: medseg writes nothing inside it",
                          path=folder)  # fmt: skip
    root, target = Path(folder).resolve(), Path(out).resolve()
    if target == root or target.is_relative_to(root):
        raise ConfigError("--out is inside the nnU-Net folder: medseg writes nothing there", path=out)
    return Path(out)


def run_nnunet_crossval(folder: str | os.PathLike, settings: NnUNetCrossvalSettings,
                        found: ValidationFolds | None = None) -> dict[str, Any]:
    """Evaluate, report and (``settings.postprocessing``) choose the post-processing on nnU-Net's
    validation predictions (see the module doc); ``found``: :func:`find_validation_folds`'s result when the
    caller already checked the folder. Returns the summary written to ``out/summary.json``, with the
    post-processing choice under ``postprocessing``."""
    from medseg.training.postprocessing_search import POSTPROCESSING_FILE, SearchSettings, choose_postprocessing_on

    out = check_out(folder, settings.out)
    found = found or find_validation_folds(folder, settings)
    labels = None if found.labels is LITS_MAPPING else found.labels
    per_case, lesions, summary = evaluate_out_of_fold(found.folds, found.predictions, settings.protocol,
                                                      labels=labels)  # fmt: skip
    source = {"nnunet_folder": str(Path(folder)), "data": str(settings.data), "labels": _mapping_dict(found.labels)}
    summary.update(fold_of_case={c.case_id: p.fold for p in found.folds for c in p.cases}, source=source)
    write_crossval_report(out, per_case, lesions, summary, figures=settings.figures and settings.protocol == "medseg")
    if settings.postprocessing:
        pairs = [(found.predictions[c.case_id], c.label) for p in found.folds for c in p.cases]
        search = SearchSettings(labels=labels, ignore_label=found.folds[0].ignore_label, progress=settings.progress)
        summary["postprocessing"] = choose_postprocessing_on(pairs, out / POSTPROCESSING_FILE, search, extra={
            "predictions": [str(p.run / VALIDATION_DIR) for p in found.folds], **source})
    return summary


def _mapping_dict(labels: LabelMapping) -> dict[str, list]:
    return {"liver": list(labels.liver), "tumor": list(labels.tumor)}
