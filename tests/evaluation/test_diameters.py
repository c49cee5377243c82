"""RECIST long and short axes against analytic ellipsoids at anisotropic spacing."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.evaluation.diameters import axial_diameter_mm, recist_axes_mm

SPACING = (0.7, 0.9, 2.5)


def _ellipsoid(semi_mm, *, spacing, angle_deg=0.0, offset_vox=(0.0, 0.0, 0.0)):
    """Boolean ellipsoid (semi-axes along rotated in-plane axes u, v and the slice axis), centre near the middle."""
    spacing = np.asarray(spacing, dtype=float)
    shape = np.ceil(2 * max(semi_mm) / spacing).astype(int) + 6
    grid = [(np.arange(n) - n // 2 - o) * s for n, o, s in zip(shape, offset_vox, spacing)]
    x, y, z = np.meshgrid(*grid, indexing="ij")
    t = np.deg2rad(angle_deg)
    u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    a, b, c = semi_mm
    return (u / a) ** 2 + (v / b) ** 2 + (z / c) ** 2 <= 1, int(shape[2] // 2 + offset_vox[2])


@pytest.mark.parametrize("axis", [0, 1])
def test_axis_aligned_ellipsoid_within_half_a_voxel(axis):
    # centre on a voxel centre, semi-axes (m + 0.5) voxels: the voxel model's extent is the analytic 2a
    sx, sy, _ = SPACING
    long_vox, short_vox = 15.5, 8.5
    # the ellipsoid's long axis u runs along array axis 0 (angle 0) or 1 (angle 90)
    semi = (long_vox * sx, short_vox * sy, 9.0) if axis == 0 else (long_vox * sy, short_vox * sx, 9.0)
    mask, centre = _ellipsoid(semi, spacing=SPACING, angle_deg=90.0 * axis)
    axes = recist_axes_mm(mask, spacing_mm=SPACING)
    half_voxel = 0.5 * min(sx, sy)
    assert axes.long_axis_mm == pytest.approx(2 * semi[0], abs=half_voxel)
    assert axes.short_axis_mm == pytest.approx(2 * semi[1], abs=half_voxel)
    assert axes.slice_index == centre
    assert axes.long_axis_mm == pytest.approx(axial_diameter_mm(mask, spacing_mm=SPACING))


@pytest.mark.parametrize(("angle", "offset"), [(30.0, (0.3, 0.1, 0.0)), (45.0, (0.0, 0.5, 0.0)),
                                               (110.0, (0.45, 0.2, 0.0))])
def test_rotated_ellipsoid_within_half_a_voxel_per_end(angle, offset):
    # off-grid boundaries: each end of a diameter is known to half a voxel (diagonal), the diameter to one
    semi = (11.0, 6.0, 8.0)
    mask, centre = _ellipsoid(semi, spacing=SPACING, angle_deg=angle, offset_vox=offset)
    axes = recist_axes_mm(mask, spacing_mm=SPACING)
    diagonal = float(np.hypot(SPACING[0], SPACING[1]))
    assert axes.long_axis_mm == pytest.approx(2 * semi[0], abs=diagonal)
    assert axes.short_axis_mm == pytest.approx(2 * semi[1], abs=diagonal)
    assert axes.slice_index == centre


def test_short_axis_is_perpendicular_not_the_width():
    # an L-shaped slice: long axis along the diagonal; the perpendicular chord is shorter than the box
    mask = np.zeros((20, 20, 1), bool)
    mask[:, :4, 0] = True
    mask[:4, :, 0] = True
    axes = recist_axes_mm(mask, spacing_mm=(1.0, 1.0, 1.0))
    assert axes.long_axis_mm == pytest.approx(np.hypot(20, 20), abs=1.5)
    assert axes.short_axis_mm < axes.long_axis_mm


def test_empty_and_single_voxel():
    assert recist_axes_mm(np.zeros((3, 3, 3), bool), spacing_mm=SPACING).slice_index == -1
    one = np.zeros((3, 3, 3), bool)
    one[1, 1, 1] = True
    axes = recist_axes_mm(one, spacing_mm=SPACING)
    # face centres (+-0.35, 0) and (0, +-0.45): long axis across the 0.9 mm side, short across the 0.7 mm one
    assert (axes.long_axis_mm, axes.short_axis_mm, axes.slice_index) == pytest.approx((0.9, 0.7, 1))
