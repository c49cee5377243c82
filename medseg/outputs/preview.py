"""A QA picture per predicted case: ``<case>_preview.png``, to check a cohort at a glance.

The figure is :func:`medseg.viz.preview_figure` (four panels, the palette and window of every medseg
figure); this module names the file, writes the caption (the case's volumes and warnings) and writes the
PNG atomically.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from medseg.io.volume import Volume

__all__ = ["preview_caption", "preview_filename", "write_preview"]


def preview_filename(case_id: str) -> str:
    """File name of the preview written next to ``<case>_seg.nii.gz``."""
    return f"{case_id}_preview.png"


def preview_caption(case_id: str, report: Mapping | None, warnings: Sequence[str] = ()) -> str:
    """The caption: volumes, burden, lesions (largest: RECIST axes) and warnings of one case."""
    parts = [case_id]
    if report:
        parts.append(f"liver {report['liver_ml']:.1f} mL, tumor {report['tumor_ml']:.2f} mL "
                     f"(burden {report['tumor_burden_percent']:.2f} %), {report['lesion_count']} lesion(s)")
        if report.get("lesions"):
            big = report["lesions"][0]
            parts.append(f"largest {big['volume_ml']:.2f} mL, {big['axial_diameter_mm']:.1f} x "
                         f"{big.get('short_axis_mm', float('nan')):.1f} mm axial")
    text = "  |  ".join(parts)
    if warnings:
        text += "\nwarnings: " + "; ".join(warnings)
    return "\n".join(textwrap.fill(line, 150) for line in text.splitlines())


def write_preview(image: Volume, labels: Volume, path: str | os.PathLike, *, caption: str = "") -> Path:
    """Write :func:`preview_figure` as a PNG atomically; returns ``path``."""
    from medseg.utils.atomic import atomic_path
    from medseg.viz import preview_figure

    fig = preview_figure(image, labels, caption=caption)
    with atomic_path(path) as tmp:
        # zlib level 1: the encoding takes a few ms instead of ~0.1 s at the default 6, for a slightly larger file
        fig.savefig(tmp, format="png", pil_kwargs={"compress_level": 1})
    return Path(path)
