"""Per-case accuracy of every inference mode against ``--mode full`` (``bench_inference.py --accuracy``).

Held-out cases, written as NIfTI files: the validation fold of the run (read from the run folder's
``data.json`` and ``folds.json``: cases the network never trained on) and fresh phantom cases of two sizes
that no run has seen (``small``: 128 x 128 at ~3 mm; ``lits``: 512 x 512 at ~0.75 mm). Each mode reads the
scan file, predicts with the public API (:class:`medseg.inference.Predictor`, the code behind
``medseg predict``), writes the label map and reads it back; Dice (liver = labels 1 and 2, tumor = 2, on
the scan's own grid, 1.0 when both are empty) is taken against the reference file. Reported per case:
each mode's Dice, its difference from ``--mode full``, seconds, and whether the coarse pass's box had to
grow (the cases where the coarse pass found a partial or split liver); then the worst case of each.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

#: mode name -> InferenceSettings changes; "full" is the reference the others are compared with.
MODES = {"full": {"mode": "full"}, "default": {}, "reach": {"fine_windows": "reach"}, "tile": {"fine_windows": "tile"},
         "tta": {"tta": True}}
#: Modes compared with ``full`` in the table (``tta`` is compared with ``default``, the same mode without it).
VERSUS_FULL = ("default", "reach", "tile")


@dataclass(frozen=True)
class Case:
    """One held-out scan on disk."""

    name: str
    image: Path
    label: Path


def parse_fresh(text: str) -> dict[str, tuple[int, list[int]]]:
    """``size:seed:i,j;size:seed:k`` (the ``--fresh`` option) -> size -> (seed, case indices)."""
    fresh = {}
    for item in filter(None, text.split(";")):
        size, seed, indices = item.split(":")
        fresh[size] = (int(seed), [int(i) for i in indices.split(",")])
    return fresh


def held_out_cases(run: Path, work: Path, *, fresh: dict[str, tuple[int, list[int]]]) -> list[Case]:
    """The run's validation cases (if its data set is on disk) plus fresh phantom cases.

    Args:
        fresh: size -> (seed, case indices) of phantom cases to generate into ``work``.
    """
    from medseg.data import make_phantom, write_phantom_case

    cases = []
    data, folds = run / "data.json", run / "folds.json"
    if data.is_file() and folds.is_file():
        root = Path(json.loads(data.read_text())["root"])
        record = json.loads(folds.read_text())
        for cid in sorted(record["folds"][record["fold"]]["val"], key=int):
            image, label = root / f"volume-{cid}.nii.gz", root / f"segmentation-{cid}.nii.gz"
            if image.is_file() and label.is_file():
                cases.append(Case(f"{root.name}/{cid} (val)", image, label))
    for size, (seed, indices) in fresh.items():
        for index in indices:
            folder = work / f"{size}-seed{seed}-case{index}"
            info_path = folder / "info.json"
            if not info_path.exists():
                info_path.parent.mkdir(parents=True, exist_ok=True)
                info_path.write_text(json.dumps(write_phantom_case(make_phantom(size=size, seed=seed, index=index),
                                                                   folder)))
            info = json.loads(info_path.read_text())
            cases.append(Case(f"{size} seed {seed}/{index}", folder / info["image"], folder / info["label"]))
    return cases


def dice(pred, ref, cls: int) -> float:
    """Dice of ``pred >= cls`` against ``ref >= cls`` (1.0 when both are empty)."""
    a, b = pred >= cls, ref >= cls
    denom = int(a.sum()) + int(b.sum())
    return float(2 * int((a & b).sum()) / denom) if denom else 1.0


def measure(run: Path, cases: list[Case], work: Path, *, device: str = "auto", modes=tuple(MODES),
            json_path: Path | None = None) -> list[dict]:
    """Every mode on every case, from the files; one row per (case, mode), also written to ``json_path``
    after each case (a long run interrupted keeps what it measured)."""
    import numpy as np

    from medseg.inference import Predictor
    from medseg.io import read_volume, write_volume

    base = Predictor.from_run(run, device=device)
    rows = []
    for case in cases:
        ref = np.asarray(read_volume(case.label).array)
        for mode in modes:
            predictor = base.with_settings(**MODES[mode])
            t0 = time.perf_counter()
            labels, stats = predictor.predict(read_volume(case.image))
            out = work / "predictions" / mode / f"{re.sub('[^A-Za-z0-9]+', '-', case.name)}_seg.nii.gz"
            out.parent.mkdir(parents=True, exist_ok=True)
            write_volume(labels, out, label=True)
            seconds = time.perf_counter() - t0
            pred = np.asarray(read_volume(out).array)
            rows.append({"case": case.name, "mode": mode, "seconds": seconds, "liver": dice(pred, ref, 1),
                         "tumor": dice(pred, ref, 2), "rounds": stats.get("rounds"),
                         "coarse_box": stats.get("coarse_box"), "box": stats.get("box")})
            print(json.dumps(rows[-1]), flush=True)
        if json_path is not None:
            json_path.write_text(json.dumps(rows, indent=1))
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per case, each mode's liver / tumor Dice and its difference from full (TTA: from default),
    then the worst case of each."""
    by_case: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["mode"]] = r
    compared = [(mode, "full") for mode in VERSUS_FULL] + [("tta", "default")]
    head = ["case", "full liver / tumor", "default box"]
    head += [f"{mode} {region} (Δ{'' if base == 'full' else ' vs ' + base})" for mode, base in compared
             for region in ("liver", "tumor")]
    head.append("s " + " / ".join(MODES))
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    deltas: dict[str, list[float]] = {}
    for name, m in by_case.items():
        cells = [name, f"{m['full']['liver']:.3f} / {m['full']['tumor']:.3f}", _box_cell(m["default"])]
        for mode, base in compared:
            for region in ("liver", "tumor"):
                delta = m[mode][region] - m[base][region]
                deltas.setdefault(f"{mode} {region}", []).append(delta)
                cells.append(f"{m[mode][region]:.3f} ({delta:+.3f})")
        cells.append(" / ".join(f"{m[mode]['seconds']:.1f}" for mode in MODES))
        lines.append("| " + " | ".join(cells) + " |")
    total = {mode: sum(r["seconds"] for r in rows if r["mode"] == mode) for mode in MODES}
    summary = ("Worst case (most negative Δ; largest |Δ| either way in brackets): "
               + ", ".join(f"{key} {min(v):+.4f} ({max(abs(x) for x in v):.4f})" for key, v in deltas.items())
               + ". Total seconds: " + ", ".join(f"{mode} {total[mode]:.1f}" for mode in MODES) + "; against full: "
               + ", ".join(f"{mode} {total['full'] / max(total[mode], 1e-9):.2f}x" for mode in VERSUS_FULL) + ".")
    return "\n".join(lines) + "\n\n" + summary


def _box_cell(row: dict) -> str:
    """How the default's box ended: kept (``no``), grown ``n`` times, or the whole scan."""
    if row["rounds"] is None:
        return "-"
    if row["box"] is None:
        return f"whole scan ({row['rounds']} passes)"  # not trusted, or it kept growing
    return "kept" if row["rounds"] == 1 else f"grown {row['rounds'] - 1}x"
