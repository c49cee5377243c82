"""The QA preview: size, not blank, liver and tumor colours where the label map has them."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread
from scipy import ndimage

from medseg.data import make_phantom
from medseg.io import Volume, to_canonical
from medseg.outputs.preview import preview_caption, write_preview
from medseg.viz import LIVER_RGB, TUMOR_RGB, preview_figure, preview_slices
from medseg.viz import _view as view_of


@pytest.fixture(scope="module")
def case():
    return make_phantom(size="tiny", seed=0, index=3)  # stored 'ALS', 3 lesions


def _near(rgb: np.ndarray, colour, tol=40) -> np.ndarray:
    """Pixels of an 8-bit ``rgb`` image within ``tol`` of ``colour`` (RGB in [0, 1])."""
    return np.abs(rgb[..., :3].astype(int) - np.asarray(colour) * 255).max(axis=-1) <= tol


def test_png_size_not_blank_and_legend(case, tmp_path):
    path = write_preview(case.image, case.label, tmp_path / "3_preview.png", caption="3 | liver 1.0 mL")
    rgb = (imread(path)[..., :3] * 255).round().astype(np.uint8)
    assert rgb.shape == (int(4.2 * 90), int(13.0 * 90), 3)
    assert rgb.std() > 20  # not blank
    assert _near(rgb, LIVER_RGB).sum() > 50 and _near(rgb, TUMOR_RGB).sum() > 10


def test_colours_lie_on_the_label_map_boundaries(case):
    fig = preview_figure(case.image, case.label)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    height = rgba.shape[0]
    lab = to_canonical(case.label)[0].array
    picks = preview_slices(lab)
    planes = [("axial", picks["axial"]), ("coronal", picks["coronal"]), ("sagittal", picks["sagittal"]),
              ("axial", picks["lesion"])]
    found = {"liver": 0, "tumor": 0}
    for ax, (plane, index) in zip(fig.axes, planes):
        view = view_of(lab, plane, index)
        x0, y0, x1, y1 = ax.get_window_extent().extents
        box = rgba[int(height - y1):int(height - y0), int(x0):int(x1)]
        for name, colour, mask in (("liver", LIVER_RGB, np.isin(view, (1, 2))), ("tumor", TUMOR_RGB, view == 2)):
            rows, cols = np.nonzero(_near(box, colour))
            if not mask.any():
                assert rows.size == 0, f"{name} colour in {plane} without {name}"
                continue
            # display pixels -> data coordinates (column, row of the view) of the panel
            pixels = np.column_stack([cols + int(x0) + 0.5, height - (rows + int(height - y1)) - 0.5])
            data = ax.transData.inverted().transform(pixels)
            boundary = mask ^ ndimage.binary_erosion(mask)
            distance = ndimage.distance_transform_edt(~boundary)
            r = np.clip(np.round(data[:, 1]).astype(int), 0, view.shape[0] - 1)
            c = np.clip(np.round(data[:, 0]).astype(int), 0, view.shape[1] - 1)
            assert np.mean(distance[r, c] <= 1.5) > 0.95, f"{name} contour off the label map in {plane}"
            found[name] += rows.size
    assert found["liver"] > 50 and found["tumor"] > 10


def test_tumor_free_case_and_caption(case, tmp_path):
    labels = case.label.with_array(np.where(case.label.array > 0, 1, 0).astype(np.uint8))
    assert preview_slices(to_canonical(labels)[0].array)["lesion"] is None
    path = write_preview(case.image, labels, tmp_path / "p.png")
    rgb = (imread(path)[..., :3] * 255).round().astype(np.uint8)
    legend_only = _near(rgb, TUMOR_RGB).sum()
    assert legend_only < 200  # only the legend's tumor swatch
    report = {"liver_ml": 1234.5, "tumor_ml": 0.0, "tumor_burden_percent": 0.0, "lesion_count": 0, "lesions": []}
    text = preview_caption("7", report, ["modality is MR"])
    assert "liver 1234.5 mL" in text and "0 lesion(s)" in text and "warnings: modality is MR" in text


def test_geometry_mismatch_is_refused(case):
    affine = case.label.affine.copy()
    affine[0, 3] += 5.0
    with pytest.raises(ValueError, match="grid"):
        preview_figure(case.image, Volume(case.label.array, affine))


def test_slices_from_the_stored_order_equal_the_canonical_ones(case):
    from nibabel.orientations import io_orientation

    stored = preview_slices(case.label.array, io_orientation(case.label.affine))
    assert stored == preview_slices(to_canonical(case.label)[0].array)
    assert stored["lesion"] is not None


def test_panel_titles_number_slices_as_the_file_does(tiny_case):
    """A viewer shows the file's slice numbers: the sagittal slice of an 'ALS' file is counted along its flipped
    L axis (issue #28: sagittal 335 was index 176 of the file)."""
    from nibabel.orientations import aff2axcodes, io_orientation

    assert aff2axcodes(tiny_case.label.affine) == ("A", "L", "S")
    fig = preview_figure(tiny_case.image, tiny_case.label)
    titles = [ax.get_title() for ax in fig.axes]
    picks = preview_slices(tiny_case.label.array, io_orientation(tiny_case.label.affine))
    file_index = tiny_case.label.shape[1] - 1 - picks["sagittal"]  # R index counted from the L end
    assert titles[2] == f"sagittal (liver), slice {file_index} (file axis 1)"
    assert titles[0] == f"axial (liver), slice {picks['axial']} (file axis 2)"  # S stored as is
    shown = np.take(tiny_case.image.array, file_index, axis=1)  # the file's slice holds the shown pixels
    displayed = fig.axes[2].images[0].get_array()
    assert sorted(np.asarray(displayed).ravel().tolist()) == sorted(shown.ravel().tolist())
