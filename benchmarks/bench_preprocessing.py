"""Preprocessing and data-loader speed.

1. Resampling a 512 x 512 x 400 int16 CT to a coarser grid: ``medseg.preprocessing.resample_array``
   (torch trilinear) against ``scipy.ndimage.zoom(order=1)`` and MONAI's ``Spacing``; and the whole
   ``preprocess_image`` (reorient + normalise + resample).
2. Loader throughput: patches/s of ``make_loader`` (2 workers, default augmentation) on the ``small``
   phantom set, against the time of one training step (forward + backward + SGD) of the U-Net the
   pipeline trains, for the CPU profile (``pipelines/liver.yaml``: depth 4, 8 filters, 64 x 64 x 32) and,
   when a GPU is present, the GPU default (depth 5, 32 filters, 128^3).

Re-run: ``.venv/bin/python benchmarks/bench_preprocessing.py`` (``--no-write`` to only print).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_resampling(repeats: int) -> list[tuple[str, float]]:
    from monai.transforms import Spacing
    from scipy import ndimage

    from medseg.io import Volume, affine_from_geometry
    from medseg.preprocessing import PreprocessingPlan, preprocess_image, resample_array, resampled_shape

    rng = np.random.default_rng(0)
    shape, spacing, target = (512, 512, 400), (0.7, 0.7, 1.0), (0.8, 0.8, 1.5)
    hu = rng.integers(-1000, 1000, size=shape, dtype=np.int16)
    out_shape = resampled_shape(shape, spacing_mm=spacing, target_spacing_mm=target)
    rows = [(f"`resample_array` trilinear, {shape} -> {out_shape}",
             _best_of(lambda: resample_array(hu, out_shape=out_shape), repeats))]
    zoom = np.asarray(out_shape) / np.asarray(shape)
    scipy_s = _best_of(lambda: ndimage.zoom(hu.astype(np.float32), zoom, order=1), 1)
    rows.append(("`scipy.ndimage.zoom(order=1)`", scipy_s))
    spacing_t = Spacing(pixdim=target, mode="bilinear")
    affine = torch.as_tensor(affine_from_geometry(spacing))
    from monai.data import MetaTensor

    meta = MetaTensor(torch.from_numpy(hu)[None].float(), affine=affine)
    rows.append(("MONAI `Spacing(bilinear)`", _best_of(lambda: spacing_t(meta), 1)))
    volume = Volume(hu, affine_from_geometry(spacing, direction=np.diag([-1.0, -1.0, 1.0])))  # LPS storage
    plan = PreprocessingPlan(target, "ct_zscore", clip_hu=(-20.0, 200.0), mean=90.0, std=45.0)
    rows.append(("`preprocess_image` (reorient LPS->RAS + normalise + resample)",
                 _best_of(lambda: preprocess_image(volume, plan), repeats)))
    return rows


def _loader_rate(cache: Path, case_ids, *, patch, batch, workers: int, batches: int) -> float:
    from medseg.training.data import PatchSettings, make_loader

    patches = PatchSettings(patch_size=patch, batch_size=batch, augment={}, seed=0)
    loader = make_loader(cache, case_ids, patches, workers=workers, iterations_per_epoch=batches + 3)
    iterator = iter(loader)
    for _ in range(3):  # warm-up: worker start, MONAI transform construction, page cache
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


def _step_time(model_config: dict, *, patch, batch: int, device: str, steps: int) -> float:
    from medseg.models import build_model

    model = build_model(model_config).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    x = torch.randn(batch, 1, *patch, device=device)
    y = torch.randint(0, 3, (batch, *patch), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, enabled=device == "cuda"):
            out = model(x)
            out = out[0] if isinstance(out, list | tuple) else out
            loss = torch.nn.functional.cross_entropy(out.float(), y)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step()
    return _best_of(step, steps)


def bench_loader(workdir: Path, *, cases: int, batches: int) -> list[list[str]]:
    from medseg.data import write_phantom_dataset
    from medseg.preprocessing import compute_fingerprint, plan_from_fingerprint, preprocess_dataset

    raw = workdir / "raw"
    write_phantom_dataset(raw, cases=cases, size="small", seed=0, workers=2, progress=False)
    specs = [(str(i), raw / f"volume-{i}.nii.gz", raw / f"segmentation-{i}.nii.gz") for i in range(cases)]
    start = time.perf_counter()
    plan = plan_from_fingerprint(compute_fingerprint(specs, workers=2, progress=False))
    cache = preprocess_dataset(specs, workdir / "cache", plan, workers=2, progress=False)
    prep_s = time.perf_counter() - start
    ids = [s[0] for s in specs]
    from medseg.training.loader import load_pipeline

    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    settings = []
    for device in devices:  # the liver pipeline's network and patch as resolved for each device
        config = load_pipeline("liver", device=device)
        settings.append((f"`liver` on {device}", tuple(config.training.patch_size), config.model_config(), device))
    rows = [[f"fingerprint + preprocess {cases} `small` cases (2 workers)", f"{prep_s:.1f} s", "", ""]]
    for name, patch, params, device in settings:
        rate = _loader_rate(cache, ids, patch=patch, batch=2, workers=2, batches=batches)
        step_s = _step_time(params, patch=patch, batch=2, device=device, steps=3)
        model = f"{params['name']} depth {params['depth']} width {params['base_filters']}"
        rows.append([f"{name}: {list(patch)}, batch 2, {model}", f"{rate:.1f} patches/s",
                     f"{step_s * 1000:.0f} ms/step ({2 / step_s:.1f} patches/s)", f"{(2 / rate) / step_s:.2f}"])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, help="phantom cases for the loader benchmark")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per loader measurement")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the fast resampling timings (best kept)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    resampling = bench_resampling(args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        loader = bench_loader(Path(tmp), cases=args.cases, batches=args.batches)
    lines = [
        "## Preprocessing and data loading",
        "",
        f"Machine: {machine()}. Torch threads: 2.",
        "",
        "| Resampling a 512 x 512 x 400 int16 CT, 0.7 x 0.7 x 1.0 mm -> 0.8 x 0.8 x 1.5 mm | time |",
        "|---|---|",
        *[f"| {name} | {seconds:.2f} s |" for name, seconds in resampling],
        "",
        "| Loader (2 workers, default augmentation) vs training step | loader | model | loader time / step time |",
        "|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in loader],
        "",
        "A ratio below 1 means the loader delivers a batch faster than the model consumes it. Loader and model",
        "were timed separately; on a machine with few cores they compete for the same cores during training.",
        "",
        "Re-run: `.venv/bin/python benchmarks/bench_preprocessing.py`",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_section("preprocessing", markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
