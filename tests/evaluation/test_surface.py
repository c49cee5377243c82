import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.evaluation import binary_metrics, surface_distances, surface_metrics, surface_voxels


def _ball(shape, center, radius_mm, spacing):
    grid = np.indices(shape, dtype=float)
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, center, spacing))
    return dist2 <= radius_mm**2


def _monai(pred, ref, spacing, tol):
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    p = torch.as_tensor(pred[None, None], dtype=torch.float32)
    r = torch.as_tensor(ref[None, None], dtype=torch.float32)
    kw = {"include_background": True, "spacing": list(spacing)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "hd95_mm": compute_hausdorff_distance(p, r, percentile=95, **kw).item(),
            "mssd_mm": compute_hausdorff_distance(p, r, **kw).item(),
            "assd_mm": compute_average_surface_distance(p, r, symmetric=True, **kw).item(),
            "nsd": compute_surface_dice(p, r, [tol], **kw).item(),
        }


def test_surface_voxels_equal_erosion_border_is_background():
    rng = np.random.default_rng(0)
    mask = ndimage.gaussian_filter(rng.random((12, 15, 9)), 1.0) > 0.5
    mask[0, 3:6, 3:6] = True  # touches the border
    expected = mask & ~ndimage.binary_erosion(mask, border_value=0)
    np.testing.assert_array_equal(surface_voxels(mask), expected)
    full = np.ones((4, 5, 6), bool)  # every voxel touches the border
    np.testing.assert_array_equal(surface_voxels(full), ndimage.binary_erosion(full) ^ full)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.9, 2.5), (3.0, 0.5, 1.5)])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_shifted_cube_hausdorff_is_the_shift(spacing, axis):
    ref = np.zeros((20, 20, 20), bool)
    ref[5:12, 6:13, 4:11] = True
    pred = np.roll(ref, 3, axis=axis)
    m = binary_metrics(pred, ref, spacing_mm=spacing)
    assert m["mssd_mm"] == pytest.approx(3 * spacing[axis])
    # the faces perpendicular to the shift are 3 voxels apart, every other surface voxel is 0 apart or
    # (end caps) at most 3 voxels: the pooled mean is below the shift
    assert 0 < m["assd_mm"] < 3 * spacing[axis]
    assert m["dice"] == pytest.approx(2 * 4 / 14)


def test_concentric_spheres_anisotropic():
    spacing = (0.8, 0.8, 1.6)
    shape = (60, 60, 30)
    center = (29.5, 29.5, 14.5)
    inner, outer = _ball(shape, center, 10.0, spacing), _ball(shape, center, 14.0, spacing)
    m = surface_metrics(inner, outer, spacing_mm=spacing, nsd_tolerance_mm=1.0)
    # analytic: every surface point is 4 mm from the other sphere; voxelisation error < one voxel
    for key in ("assd_mm", "hd95_mm", "mssd_mm", "rmsd_mm"):
        assert abs(m[key] - 4.0) < 1.6, key
    assert m["nsd"] == 0.0  # 4 mm apart, 1 mm tolerance, and no voxel can be closer than ~2.4 mm


@pytest.mark.parametrize("seed", range(8))
def test_equal_to_monai_on_random_shapes(seed):
    rng = np.random.default_rng(seed)
    ndim = 2 if seed % 3 == 0 else 3
    shape = tuple(int(n) for n in rng.integers(10, 28 if ndim == 3 else 60, size=ndim))
    spacing = tuple(float(s) for s in rng.uniform(0.4, 3.0, size=ndim))
    # several components, some touching the border (no padding of the random field)
    pred = ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.5 + rng.uniform(-0.02, 0.02)
    ref = ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.5
    assert pred.any() and ref.any()
    tol = float(rng.uniform(0.5, 3.0))
    ours = binary_metrics(pred, ref, spacing_mm=spacing, nsd_tolerance_mm=tol)
    theirs = _monai(pred, ref, spacing, tol)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # RMSD, not in MONAI: from the raw distances
    d1, d2 = surface_distances(pred, ref, spacing_mm=spacing)
    assert ours["rmsd_mm"] == pytest.approx(math.sqrt(np.mean(np.concatenate([d1, d2]) ** 2)))


def test_directed_distances_against_brute_force():
    rng = np.random.default_rng(5)
    spacing = (1.3, 0.6, 2.0)
    pred = ndimage.gaussian_filter(rng.random((9, 11, 7)), 1.0) > 0.52
    ref = ndimage.gaussian_filter(rng.random((9, 11, 7)), 1.0) > 0.5
    sp, sr = surface_voxels(pred), surface_voxels(ref)
    cp, cr = np.argwhere(sp) * spacing, np.argwhere(sr) * spacing
    brute = np.sqrt(((cp[:, None, :] - cr[None, :, :]) ** 2).sum(-1)).min(axis=1)
    d_pr, _ = surface_distances(pred, ref, spacing_mm=spacing)
    np.testing.assert_allclose(d_pr, brute, rtol=1e-12)


@pytest.mark.slow
def test_equal_to_monai_on_phantom_liver_pair():
    from medseg.data import make_phantom

    case = make_phantom(size="small", seed=0, index=2)
    ref = np.isin(case.label.array, (1, 2))
    pred = ndimage.binary_dilation(np.roll(ref, 2, axis=0), iterations=1)
    spacing = case.label.spacing_mm
    ours = binary_metrics(pred, ref, spacing_mm=spacing)
    for key, value in _monai(pred, ref, spacing, 2.0).items():
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_surface_voxels_18_neighbourhood_is_scipy_erosion_xor():
    """connectivity=2 is the LiTS 2017 scorer's ``A ^ binary_erosion(A, 18-neighbourhood)``, border outside."""
    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.random((11, 13, 9)), 1.0) > 0.5
    mask[0, 4:8, 3:6] = True  # touches the border
    expected = mask ^ ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 2))
    np.testing.assert_array_equal(surface_voxels(mask, connectivity=2), expected)
    assert surface_voxels(mask, connectivity=2).sum() > surface_voxels(mask).sum()
    with pytest.raises(ValueError, match="connectivity"):
        surface_voxels(mask, connectivity=4)
