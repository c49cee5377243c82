"""Forward + backward time per batch of every medseg loss against MONAI's equivalent, in the same run.

Default batch: logits 2 x 3 x 96^3 on CPU (float32). The per-sample maps (weight_map, distance_map,
target_distance) are computed once per sample by the data pipeline, so they are timed separately; a MONAI
3D U-Net training step on the same batch gives the scale of a whole step.

Re-run: ``.venv/bin/python benchmarks/bench_losses.py`` (``--no-write`` to only print).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section

from medseg.losses import compute_maps, get_loss


def _time_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)  # the machine is shared: the fastest run is the least disturbed one


def _fwd_bwd(loss, logits: torch.Tensor, target: torch.Tensor, **kwargs):
    def run():
        x = logits.detach().requires_grad_(True)
        loss(x, target, **kwargs).backward()

    return run


def _blob_target(batch: int, size: int, classes: int, seed: int) -> torch.Tensor:
    """A liver-like ball per sample with a few tumour balls inside it."""
    gen = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1)
    target = np.zeros((batch, 1, size, size, size), dtype=np.int64)
    for b in range(batch):
        centre = size / 2 + gen.uniform(-5, 5, 3)
        target[b, 0][np.linalg.norm(grid - centre, axis=-1) < size * 0.35] = 1
        for _ in range(3):
            c = centre + gen.uniform(-size * 0.2, size * 0.2, 3)
            target[b, 0][np.linalg.norm(grid - c, axis=-1) < gen.uniform(3, 8)] = classes - 1
    return torch.from_numpy(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-unet", action="store_true", help="skip the U-Net reference step")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import monai.losses as ml

    load = os.getloadavg()[0]
    spacing = (0.8, 0.8, 2.5)
    b, c, s = args.batch, args.classes, args.size
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn((b, c, s, s, s), generator=gen)
    target = _blob_target(b, s, c, seed=0)

    # per-sample maps, as the data loader computes them (time per sample)
    names = ["weight_map", "distance_map", "target_distance"]
    maps_ms = {}
    per_sample = []
    for name in names:
        maps_ms[name] = _time_ms(
            lambda n=name: compute_maps(target[0].numpy(), [n], num_classes=c, spacing_mm=spacing), args.repeats
        )
    for t in target:
        per_sample.append(compute_maps(t.numpy(), names, num_classes=c, spacing_mm=spacing))
    maps = {k: torch.from_numpy(np.stack([m[k] for m in per_sample])) for k in names}

    unit = (1.0, 1.0, 1.0)
    onehot_kw = {"to_onehot_y": True}
    rows = [
        ("dice", get_loss("dice"), {}, ml.DiceLoss(softmax=True, **onehot_kw), "DiceLoss"),
        (
            "tversky",
            get_loss("tversky"),
            {},
            ml.TverskyLoss(softmax=True, alpha=0.3, beta=0.7, **onehot_kw),
            "TverskyLoss",
        ),
        ("focal_tversky", get_loss("focal_tversky"), {}, None, "-"),
        ("focal", get_loss("focal"), {}, ml.FocalLoss(use_softmax=True, **onehot_kw), "FocalLoss"),
        ("ce", get_loss("ce"), {}, torch.nn.CrossEntropyLoss(), "torch CrossEntropyLoss"),
        ("dice_ce", get_loss("dice_ce"), {}, ml.DiceCELoss(softmax=True, **onehot_kw), "DiceCELoss"),
        ("border_ce", get_loss("border_ce"), {"weight_map": maps["weight_map"]}, None, "-"),
        (
            "boundary",
            get_loss("boundary", include_background=True),
            {"distance_map": maps["distance_map"]},
            ml.BoundaryLoss(softmax=True, **onehot_kw),
            "BoundaryLoss (maps every step, voxels)",
        ),
        (
            "hausdorff",
            get_loss("hausdorff", spacing_mm=unit),
            {"target_distance": maps["target_distance"]},
            ml.HausdorffDTLoss(softmax=True, **onehot_kw),
            "HausdorffDTLoss (voxels)",
        ),
        ("hausdorff, no precomputed map", get_loss("hausdorff", spacing_mm=unit), {}, None, "-"),
    ]
    results = []
    for name, ours, kwargs, monai_loss, monai_name in rows:
        ours_ms = _time_ms(_fwd_bwd(ours, logits, target, **kwargs), args.repeats)
        if monai_loss is None:
            ref_ms = None
        elif isinstance(monai_loss, torch.nn.CrossEntropyLoss):
            ref_ms = _time_ms(_fwd_bwd(lambda x, t, f=monai_loss: f(x, t[:, 0]), logits, target), args.repeats)
        else:
            ref_ms = _time_ms(_fwd_bwd(monai_loss, logits, target), args.repeats)
        results.append((name, ours_ms, ref_ms, monai_name))
        print(f"{name:32s} ours {ours_ms:9.1f} ms   MONAI {'-' if ref_ms is None else f'{ref_ms:9.1f}'} ms", flush=True)

    unet_ms = None
    if not args.no_unet:
        from monai.networks.nets import UNet

        net = UNet(3, 1, c, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)
        image = torch.randn((b, 1, s, s, s), generator=gen)
        dice_ce = get_loss("dice_ce")

        def step():
            net.zero_grad()
            dice_ce(net(image), target).backward()

        unet_ms = _time_ms(step, max(1, args.repeats - 1))
        print(f"MONAI UNet (16-128, 2 res units) + dice_ce step: {unet_ms:.0f} ms", flush=True)

    lines = [
        "## Losses",
        "",
        f"Machine: {machine()}; torch threads: {args.threads}; load average at start {load:.1f} "
        "(other jobs shared the cores: compare ours and MONAI within this run, not across runs).",
        "",
        f"Forward + backward per batch, logits {b} x {c} x {s}^3 float32 on CPU, fastest of {args.repeats} "
        "(after one warm-up; the machine is shared). Targets: a ball with three smaller balls inside per sample. "
        "MONAI losses with `softmax=True, to_onehot_y=True`; ours with precomputed maps where the loss takes them.",
        "",
        "| loss | ours (ms) | MONAI (ms) | MONAI equivalent |",
        "|---|---:|---:|---|",
    ]
    for name, ours_ms, ref_ms, monai_name in results:
        lines.append(f"| `{name}` | {ours_ms:.0f} | {'-' if ref_ms is None else f'{ref_ms:.0f}'} | {monai_name} |")
    lines += [
        "",
        "Per-sample maps in the data pipeline (one 96^3 sample, 3 classes, spacing 0.8 x 0.8 x 2.5 mm): "
        + ", ".join(f"`{k}` {v:.0f} ms" for k, v in maps_ms.items())
        + ".",
    ]
    if unet_ms is not None:
        worst = max(r[1] for r in results if r[0] != "hausdorff, no precomputed map")
        lines += [
            "",
            f"Scale of a training step: MONAI `UNet` (channels 16-128, 2 residual units) forward + backward with "
            f"`dice_ce` on the same batch: {unet_ms:.0f} ms; the slowest loss with precomputed maps is "
            f"{100 * worst / unet_ms:.0f}% of that.",
        ]
    lines += ["", "Re-run: `.venv/bin/python benchmarks/bench_losses.py`"]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        print(f"wrote {write_section('losses', markdown)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
