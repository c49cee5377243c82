"""Benchmark: ``medseg predict`` on an nnU-Net v2 results folder against ``nnUNetv2_predict_from_modelfolder``
on the same folder and scans (issue #26), file to file, each command a fresh process.

The model is a real nnU-Net v2 results folder made by nnunetv2 2.8.1 itself on the phantom (its planner and
preprocessor, its trainer for a few iterations, its ``save_checkpoint``: ``tests/interop/nnunet/
_nnunet_oracle.py build``). Scans: phantom cases of the ``small`` size (128 x 128 in-plane at ~3 mm) and one of
the LiTS size (512 x 512 x ~300). Rows, each with and without mirroring:

* ``nnUNetv2_predict_from_modelfolder`` (fold 0, ``checkpoint_final.pth``, CPU, one process for
  preprocessing and export: ``-npp 1 -nps 1``);
* ``medseg predict`` with nnU-Net's own settings (``--mode full --no-skip-air --precision float32 --runtime
  torch --no-postprocessing``: the raw output of the same network over the same windows);
* ``medseg predict`` as shipped (coarse-to-fine, air skipped, ``--runtime auto``, ``--precision auto``).

Seconds are the wall time of the whole command (imports, reading, preprocessing, windows, resampling back,
writing); peak memory is the command's maximum resident set (GNU ``time -v``). Dice of each medseg output
against nnU-Net's label maps (liver = labels 1 and 2, tumor = 2; ``n/a`` where neither predicts tumor).

Re-run: ``taskset -c 0 .venv/bin/python benchmarks/bench_nnunet_import.py`` (writes the ``nnunet-import``
section of ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
ORACLE = ROOT / "tests" / "interop" / "nnunet" / "_nnunet_oracle.py"
BIN = Path(sys.executable).parent


def _env(root: Path, threads: int) -> dict[str, str]:
    return {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
            "nnUNet_results": str(root / "results"), "nnUNet_n_proc_DA": "1", "nnUNet_def_n_proc": "1",
            "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT), "HOME": str(root)}  # fmt: skip


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of ``command`` (GNU time), failing loudly."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True)
    if done.returncode not in (0,):
        raise RuntimeError(f"{command[0]} failed: {done.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return 3600 * hours + 60 * minutes + seconds, rss / 1024


def _scans(folder: Path, sizes: list[str]) -> list[Path]:
    from medseg.data import make_phantom
    from medseg.io.nifti import write_nifti

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for n, size in enumerate(sizes):
        case = make_phantom(size=size, seed=11, index=n)
        files.append(write_nifti(case.image, folder / f"scan{n}_{size}_0000.nii.gz"))
    return files


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return None if total == 0 else 2.0 * np.count_nonzero(a & b) / total


def _compare(folder: Path, reference: Path, names: list[str]) -> tuple[list[float], list[float | None]]:
    from medseg.io import read_volume

    liver, tumor = [], []
    for name in names:
        ours = np.asarray(read_volume(folder / f"{name}_seg.nii.gz").array)
        theirs = np.asarray(read_volume(reference / f"{name}.nii.gz").array)
        liver.append(_dice(ours > 0, theirs > 0))
        tumor.append(_dice(ours == 2, theirs == 2))
    return liver, tumor


def _fmt(values: list[float | None]) -> str:
    defined = [v for v in values if v is not None]
    return "n/a" if not defined else f"{min(defined):.4f}" + (f"-{max(defined):.4f}" if len(defined) > 1 else "")


def main() -> None:
    from _report import machine, write_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,small,lits", help="phantom sizes of the scans")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=60, help="nnU-Net training iterations of the model")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_nnunet_import_"))
    env = _env(work, args.threads)
    model = work / "results" / "Dataset501_Phantom" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if not (model / "fold_0" / "checkpoint_final.pth").is_file():
        subprocess.run([sys.executable, str(ORACLE), "build", str(work)], env={**env, "ORACLE_ITERATIONS": str(
            args.iterations)}, check=True, capture_output=True)  # fmt: skip
    scans = _scans(work / "scans", args.sizes.split(","))
    names = [p.name.replace("_0000.nii.gz", "") for p in scans]
    rows = []
    for mirror in (False, True):
        ref = work / f"nnunet_{int(mirror)}"
        shutil.rmtree(ref, ignore_errors=True)
        nnunet = [str(BIN / "nnUNetv2_predict_from_modelfolder"), "-i", str(work / "scans"), "-o", str(ref), "-m",
                  str(model), "-f", "0", "-chk", "checkpoint_final.pth", "-device", "cpu", "-npp", "1", "-nps", "1",
                  *([] if mirror else ["--disable_tta"])]  # fmt: skip
        seconds, mib = _timed(nnunet, env)
        rows.append((f"nnUNetv2_predict_from_modelfolder{' (mirroring)' if mirror else ''}", seconds, mib, "-", "-"))
        for label, extra in (("nnU-Net's settings", ["--mode", "full", "--no-skip-air", "--precision", "float32",
                                                     "--runtime", "torch", "--no-postprocessing"]),
                             ("as shipped", ["--no-postprocessing"])):  # fmt: skip
            out = work / f"medseg_{int(mirror)}_{label[:3]}"
            shutil.rmtree(out, ignore_errors=True)
            ours = [str(BIN / "medseg"), "predict", "--model", str(model), *map(str, scans), "--out", str(out),
                    "--device", "cpu", "--no-progress", "--no-preview", *extra, *(["--tta"] if mirror else [])]
            seconds_m, mib_m = _timed(ours, env)
            # medseg names the case after the file (scan0_small_0000 -> its own id); map to nnU-Net's names
            for produced in out.glob("*_seg.nii.gz"):
                fixed = produced.name.replace("_0000_seg", "_seg")
                if fixed != produced.name:
                    produced.rename(out / fixed)
            liver, tumor = _compare(out, ref, names)
            rows.append((f"medseg predict, {label}{' (--tta)' if mirror else ''}", seconds_m, mib_m, _fmt(liver),
                         _fmt(tumor)))  # fmt: skip
    lines = ["## medseg predict on an nnU-Net v2 model folder against nnUNetv2_predict", "",
             f"Machine: {machine()}. {args.threads} thread(s), pinned by the caller.", "",
             f"Model: an nnU-Net v2 results folder trained by nnunetv2 2.8.1 itself on the tiny phantom for "
             f"{args.iterations} iterations (tests/interop/nnunet/_nnunet_oracle.py: PlainConvUNet, 3 stages, "
             "patch 32 x 16 x 32 on a transposed 4 x 13 x 4 mm grid). Scans: "
             f"{', '.join(args.sizes.split(','))} phantom cases. Every command is a fresh process; seconds are its "
             "wall time for all scans, memory its peak resident set. Dice of medseg's label maps against nnU-Net's "
             "(range over the scans; tumor n/a where neither predicts any).", "",
             "| command | seconds | peak MiB | liver Dice vs nnU-Net | tumor Dice vs nnU-Net |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {s:.1f} | {m:.0f} | {liver} | {tumor} |" for name, s, m, liver, tumor in rows]
    lines += ["", "Re-run: `taskset -c 0 .venv/bin/python benchmarks/bench_nnunet_import.py` (`--threads 2` without "
              "taskset for both cores)."]
    write_section("nnunet-import", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
