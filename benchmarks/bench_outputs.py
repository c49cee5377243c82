"""Benchmark: what the clinical outputs of ``medseg predict`` cost beside the prediction itself.

One LiTS-size phantom scan written as a DICOM series (what a PACS export looks like) goes through the
public API that ``medseg predict`` runs: :func:`medseg.inference.batch.predict_batch` with
:class:`medseg.outputs.PredictOutputs` (``--format both``: NIfTI and DICOM SEG, preview, volumes JSON and
tables, ``run.json``). The network runs for real (its time is the prediction time), but the label map
handed to the outputs is the phantom's reference, so the volumes, SEG and preview work on a realistic
liver with lesions even with an untrained model. Step times come from ``run.json`` (``timings_s``).

Goal (issue 12): the preview costs under 10% of the case's prediction time (reading + predicting). The
DICOM SEG's share is reported beside it. Results go to ``docs/benchmarks.md`` (section "outputs").

Usage::

    python benchmarks/bench_outputs.py                          # untrained liver CPU model
    python benchmarks/bench_outputs.py --model runs/liver/fold0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

STEPS = ("read", "predict", "volumes", "dicom_seg", "preview")


class _ReferenceOutputs:
    """A predictor that runs the real network (timed as the prediction) but returns the reference labels."""

    def __init__(self, predictor, reference):
        self.predictor, self.reference = predictor, reference

    def predict(self, volume):
        _, stats = self.predictor.predict(volume)
        return volume.with_array(self.reference), stats


def _dicom_scan(work: Path, index: int, seed: int) -> tuple[Path, object]:
    """The phantom scan as a DICOM series folder, and its reference label array (same voxel order)."""
    from bench_inference import _scan

    from medseg.io import read_volume, write_dicom_series

    image_path, label_path, _ = _scan(work, index, seed)
    folder = work / f"dicom-seed{seed}-case{index}"
    if not folder.exists():
        write_dicom_series(read_volume(image_path), folder)
    return folder, read_volume(label_path).array


def _one_run(model: Path, folder: Path, reference, out: Path, device: str) -> dict:
    import torch

    from medseg.inference import Predictor
    from medseg.inference.batch import predict_batch
    from medseg.io.dicom_seg_writer import SegSettings
    from medseg.outputs.case import OutputSettings, PredictOutputs
    from medseg.outputs.manifest import RunManifest, file_sha256
    from medseg.runs import find_checkpoint

    torch.set_num_threads(1)
    shutil.rmtree(out, ignore_errors=True)
    checkpoint = find_checkpoint(model)
    predictor = Predictor.from_run(model, device=device)
    manifest = RunManifest.start(out, command="predict", checkpoints=[checkpoint], device=str(predictor.device))
    settings = OutputSettings(format="both", seg=SegSettings(model_sha256=file_sha256(checkpoint)))
    writer = PredictOutputs(out, settings, manifest)
    t0 = time.perf_counter()
    predict_batch(_ReferenceOutputs(predictor, reference), [("case", folder)], out, writer=writer)
    total = time.perf_counter() - t0
    manifest.finish("complete")
    (case,) = json.loads((out / "run.json").read_text())["cases"]
    assert case["status"] == "ok" and not case["warnings"], case
    return {**{k: case["timings_s"][k] for k in STEPS}, "total": total,
            "seg_mb": (out / "case_seg.dcm").stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="run folder or checkpoint (default: untrained)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medseg-bench-inference"))
    parser.add_argument("--index", type=int, default=0, help="phantom case index (0: 512x512x298 at 1 mm)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2, help="runs (fastest time per step)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    from bench_inference import _untrained_run

    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model or _untrained_run(args.work)
    folder, reference = _dicom_scan(args.work, args.index, args.seed)
    runs = [_one_run(model, folder, reference, args.work / "outputs", args.device) for _ in range(args.repeat)]
    best = {k: min(r[k] for r in runs) for k in runs[0]}
    print(json.dumps(best, indent=2))
    if not args.no_write:
        _report(best, reference.shape, model, args)


def _report(best: dict, shape, model: Path, args) -> None:
    from _report import machine, write_section

    prediction = best["read"] + best["predict"]
    rows = "\n".join(f"| {step} | {best[step]:.2f} | {100 * best[step] / prediction:.1f}% |" for step in STEPS)
    preview_share = best["preview"] / prediction
    if args.model is None:
        model_note = ("With the default untrained model the coarse pass does not confine the liver, so the fine "
                      "pass covers more of the scan than a trained model's would; the preview and SEG costs do not "
                      "depend on the model, but their shares do: re-run with `--model` a trained run to judge it.")
    else:
        model_note = ("A trained run: the prediction time is what a user of this model waits for, so the shares "
                      "judge the goal.")
    verdict = "met" if preview_share < 0.10 else "NOT met"
    text = f"""## Outputs: what the DICOM SEG, preview and tables cost beside the prediction

Machine: {machine()} (load average {os.getloadavg()[0]:.1f}: compare the ratios, not the seconds)

One LiTS-size phantom scan ({'x'.join(map(str, shape))}; seed {args.seed}, case {args.index}) as a DICOM
series; model `{model}`; one CPU thread; fastest of {args.repeat} runs of `predict_batch` +
`PredictOutputs` (`--format both`), step times from `run.json`. The outputs get the phantom's reference
labels (realistic liver and lesions), the network runs for real. Shares are of the prediction time
(read + predict = {prediction:.2f} s). {model_note}

| step | seconds | share of the prediction time |
|---|---|---|
{rows}

DICOM SEG file: {best['seg_mb']:.1f} MB (BINARY, two segments, empty frames omitted).

Goal: preview under 10% of the prediction time: **{verdict}** ({100 * preview_share:.1f}%; {best['preview']:.2f} s
against {prediction:.2f} s). The DICOM SEG costs more than the preview (highdicom's checks and encoding of
every segmented frame); it is written only for DICOM input or on request (`--format`).

Re-run: `python benchmarks/bench_outputs.py --model runs/liver/fold0` (without `--model`: an untrained model).
"""
    write_section("outputs", text)


if __name__ == "__main__":
    main()
