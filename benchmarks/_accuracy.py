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
MODES = {"full": {"mode": "full"}, "default": {}, "tile": {"fine_windows": "tile"}, "tta": {"tta": True}}


@dataclass(frozen=True)
class Case:
    """One held-out scan on disk."""

    name: str
    image: Path
    label: Path


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
    """Markdown: per case, each mode's liver / tumor Dice (and the difference from full), then the worst."""
    by_case: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["mode"]] = r
    head = ("| case | full liver / tumor | default liver (Δ) | default tumor (Δ) | box grown | tile liver (Δ) | "
            "tile tumor (Δ) | tta liver (Δ vs default) | tta tumor (Δ vs default) | s full / default / tile / tta |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    deltas: dict[str, list[float]] = {}
    for name, m in by_case.items():
        f, d, r, t = m["full"], m["default"], m["tile"], m["tta"]
        delta = {"default liver": d["liver"] - f["liver"], "default tumor": d["tumor"] - f["tumor"],
                 "tile liver": r["liver"] - f["liver"], "tile tumor": r["tumor"] - f["tumor"],
                 "tta liver": t["liver"] - d["liver"], "tta tumor": t["tumor"] - d["tumor"]}
        for key, value in delta.items():
            deltas.setdefault(key, []).append(value)
        grown = "-" if d["rounds"] is None else ("no" if d["rounds"] == 1 else f"yes ({d['rounds'] - 1}x)")
        if d["rounds"] is not None and d["box"] is None:
            grown = f"whole scan ({d['rounds']} passes)"  # the box was not trusted, or kept growing
        cells = [f"{m[mode][region]:.3f} ({delta[f'{mode} {region}']:+.3f})"
                 for mode in ("default", "tile", "tta") for region in ("liver", "tumor")]
        cells.insert(2, grown)
        seconds = " / ".join(f"{m[mode]['seconds']:.1f}" for mode in MODES)
        lines.append(f"| {name} | {f['liver']:.3f} / {f['tumor']:.3f} | " + " | ".join(cells) + f" | {seconds} |")
    total = {mode: sum(r["seconds"] for r in rows if r["mode"] == mode) for mode in MODES}
    worst = {key: min(values) for key, values in deltas.items()}
    spread = {key: max(abs(v) for v in values) for key, values in deltas.items()}
    summary = ("Worst case (most negative Δ; largest |Δ| either way in brackets): "
               + ", ".join(f"{key} {worst[key]:+.4f} ({spread[key]:.4f})" for key in deltas)
               + ". Total seconds: " + ", ".join(f"{mode} {total[mode]:.1f}" for mode in MODES)
               + f"; default {total['full'] / max(total['default'], 1e-9):.2f}x and tile "
               f"{total['full'] / max(total['tile'], 1e-9):.2f}x faster than full.")
    return "\n".join(lines) + "\n\n" + summary
