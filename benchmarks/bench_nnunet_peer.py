"""Benchmark: ``medseg predict`` against nnU-Net v2's ``nnUNetPredictor`` with the same weights, file to file.

The trained run's network is exported as TorchScript and handed to ``nnUNetPredictor.manual_initialization``
in nnU-Net's own environment (``make bench-env``: ``.venv-bench``); a wrapper permutes nnU-Net's
``(z, y, x)`` arrays to medseg's canonical RAS ``(x, y, z)``. nnU-Net's plan carries the run's target
spacing, patch and CT normalisation (``CTNormalization`` with the run's clip range, mean and std equals
medseg's ``ct_zscore``). Equal settings: step 0.5 (overlap 0.5), Gaussian weighting, mirroring on/off
(``--tta``), the whole scan at full resolution (``medseg predict --mode full --no-skip-air``), no
post-processing (``--no-postprocessing``: nnU-Net's predictor has none); medseg's default (coarse-to-fine,
air skipped) is listed too. Both run in fresh processes with the same thread count;
the wall time of each command (imports, reading, preprocessing, windows, resampling back, writing) is the
comparison. Dice of each against the phantom's reference label map.

Re-run: ``nice .venv/bin/python benchmarks/bench_nnunet_peer.py --run RUN`` (a medseg run folder; default
``/work/team/runs/liver-small/fold0``). Results replace the ``nnunet-peer`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))


def _export(predictor, path: Path) -> None:
    """The run's network as TorchScript returning the full-resolution logits only."""
    import torch

    class _Logits(torch.nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, x):
            out = self.network(x)
            return out[0] if isinstance(out, list | tuple) else out

    module = _Logits(predictor.network).eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, torch.zeros(1, 1, *predictor.patch_size))
    traced.save(str(path))


def _dice(pred: np.ndarray, ref: np.ndarray, region: tuple[int, ...]) -> float:
    p, r = np.isin(pred, region), np.isin(ref, region)
    return 2 * np.count_nonzero(p & r) / max(1, np.count_nonzero(p) + np.count_nonzero(r))


def _timed(cmd: list[str]) -> tuple[float, str]:
    """Wall seconds of ``cmd`` (a fresh process: imports included) and its stdout."""
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t, done.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="/work/team/runs/liver-small/fold0", help="medseg run folder")
    parser.add_argument("--bench-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--size", default="lits", help="phantom size (lits: 512 x 512, the issue's; small)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    for needed, how in ((args.bench_python, "make bench-env"), (args.run, "a trained run folder (--run)")):
        if not Path(needed).exists():
            print(f"bench_nnunet_peer: skipped, {needed} is missing ({how})", file=sys.stderr)
            return 0
    from _report import machine, write_section

    from medseg.data import make_phantom
    from medseg.inference.cpu import physical_cores
    from medseg.inference.predictor import Predictor
    from medseg.io import read_volume, write_volume

    threads = physical_cores()
    load_before = os.getloadavg()[0]
    predictor = Predictor.from_run(args.run, device="cpu")
    plan = predictor.plan
    case = make_phantom(size=args.size, seed=1, index=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scan = write_volume(case.image, tmp / "scan.nii.gz")
        _export(predictor, tmp / "network.pt")
        medseg_cli = [sys.executable, "-m", "medseg.cli", "predict", "--model", args.run, str(scan), "--device", "cpu",
                      "--no-preview", "--no-volumes", "--precision", "float32", "--no-postprocessing"]  # fmt: skip
        for mirror in (False, True):
            tta = ["--tta"] if mirror else ["--no-tta"]
            spec = {"scan": str(scan), "out": str(tmp / f"nnunet{int(mirror)}" / "scan"),
                    "network": str(tmp / "network.pt"),
                    "patch_size": list(predictor.patch_size), "spacing_mm": list(plan.target_spacing_mm),
                    "clip_hu": list(plan.clip_hu), "mean": plan.mean, "std": plan.std, "mirror": mirror,
                    "mirror_axes": list(predictor.mirror_axes or ()), "threads": threads}  # fmt: skip
            (tmp / "spec.json").write_text(json.dumps(spec))
            wall, stdout = _timed([args.bench_python, str(ROOT / "benchmarks" / "_nnunet_child.py"),
                                   str(tmp / "spec.json")])
            nn_s = (wall, json.loads(stdout.strip().splitlines()[-1])["seconds"])  # predict_from_files_sequential
            nn_labels = read_volume(tmp / f"nnunet{int(mirror)}" / "scan.nii.gz").array
            name = f"nnUNetPredictor (step 0.5, Gaussian, mirroring {'on' if mirror else 'off'})"
            rows.append((name, nn_s, nn_labels))
            for mode, extra in (("full, no air skipping", ["--mode", "full", "--no-skip-air"]), ("default", [])):
                out = tmp / f"medseg{int(mirror)}{len(extra)}"
                wall, _ = _timed([*medseg_cli, "--out", str(out), *tta, *extra])
                timings = json.loads((out / "run.json").read_text())["cases"][0]["timings_s"]
                seconds = (wall, sum(timings.values()))  # the case: read, predict, write
                labels = read_volume(out / "scan_seg.nii.gz").array
                rows.append((f"medseg predict ({mode}, TTA {'on' if mirror else 'off'})", seconds, labels))
            print([row[:2] for row in rows[-3:]], flush=True)
    ref = case.label.array
    lines = [
        "## `medseg predict` vs nnU-Net v2's `nnUNetPredictor`, same weights (`benchmarks/bench_nnunet_peer.py`)",
        "",
        f"Machine: {machine()}; {threads} threads each; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
        "(shared, loaded machine: ratios are from the same run).",
        "",
        f"Weights: the trained run `{args.run}` (patch {tuple(predictor.patch_size)}, target spacing "
        f"{tuple(round(s, 2) for s in plan.target_spacing_mm)} mm), exported as TorchScript into nnU-Net v2 "
        f"2.8.1's predictor. Scan: the `{args.size}` phantom {case.image.shape}, file to file (wall time of each "
        "command in a fresh process, imports included); float32 for both.",
        "",
        "| predictor | command wall s | case s (file to file, no imports) | liver Dice | tumor Dice |",
        "|---|---|---|---|---|",
    ]
    for name, (wall, case_s), labels in rows:
        lines.append(f"| {name} | {wall:.1f} | {case_s:.1f} | {_dice(labels, ref, (1, 2)):.4f} | "
                     f"{_dice(labels, ref, (2,)):.4f} |")
    for mirror in (0, 1):
        nn, full, default = rows[3 * mirror : 3 * mirror + 3]
        lines.append("")
        lines.append(f"Mirroring {'on' if mirror else 'off'}: per case, equal settings {nn[1][1] / full[1][1]:.1f}x "
                     f"nnU-Net's speed (liver Dice difference "
                     f"{abs(_dice(full[2], ref, (1, 2)) - _dice(nn[2], ref, (1, 2))):.4f}); medseg's default "
                     f"{nn[1][1] / default[1][1]:.1f}x; whole commands {nn[1][0] / full[1][0]:.1f}x and "
                     f"{nn[1][0] / default[1][0]:.1f}x.")
    lines += ["", "Case seconds: nnU-Net's `predict_from_files_sequential` (read, preprocess, windows, export) "
              "and the sum of medseg's per-case `timings_s` in `run.json` (read, predict, write)."]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_section("nnunet-peer", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
