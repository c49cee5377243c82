"""Post-processing on hand-built label maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.inference.postprocess import (
    PostprocessConfig,
    applies_to,
    ball_mm,
    keep_largest_foreground,
    postprocess_labels,
    remove_small_lesions,
    restrict_tumor_to_liver,
)


def _scene():
    """A 10^3 liver with a 2^3 tumor inside, a 3^3 liver fragment, a 1-voxel tumor far away."""
    labels = np.zeros((30, 30, 20), dtype=np.uint8)
    labels[2:12, 2:12, 2:12] = 1
    labels[5:7, 5:7, 5:7] = 2
    labels[20:23, 20:23, 2:5] = 1
    labels[25, 5, 15] = 2
    return labels


def test_keep_largest_foreground_counts():
    labels = _scene()
    out = keep_largest_foreground(labels)
    assert np.count_nonzero(out == 1) == 1000 - 8
    assert np.count_nonzero(out == 2) == 8
    assert out[21, 21, 3] == 0 and out[25, 5, 15] == 0
    assert np.count_nonzero(labels) == 1000 + 27 + 1  # input untouched


def test_liver_split_by_tumor_stays_whole():
    labels = np.zeros((20, 10, 10), dtype=np.uint8)
    labels[0:8, 2:8, 2:8] = 1
    labels[8:10, 2:8, 2:8] = 2  # tumor slab cutting the liver in two
    labels[10:15, 2:8, 2:8] = 1  # smaller half
    out = keep_largest_foreground(labels)
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("spacing,dilation,kept", [((1.0, 1.0, 1.0), 3.0, True), ((1.0, 1.0, 1.0), 2.0, False),
                                                    ((2.0, 1.0, 1.0), 5.0, False), ((2.0, 1.0, 1.0), 7.0, True)])
def test_tumor_kept_only_near_liver(spacing, dilation, kept):
    labels = np.zeros((20, 10, 10), dtype=np.uint8)
    labels[0:5, 2:8, 2:8] = 1
    labels[8:10, 4:6, 4:6] = 2  # 3 voxels gap along axis 0 (index 5, 6, 7)
    # touching the liver dilated by d means: gap of 3 voxels along axis 0 <= d / spacing[0] voxels
    out = restrict_tumor_to_liver(labels, spacing_mm=spacing, dilation_mm=dilation)
    assert bool(np.count_nonzero(out == 2) == 8) == kept
    assert np.count_nonzero(out == 1) == np.count_nonzero(labels == 1)


@pytest.mark.parametrize("seed", range(4))
def test_restrict_tumor_matches_a_whole_map_dilation(seed):
    """The per-component dilation equals dilating the liver over the whole map (scipy, no boxes, no
    shortcuts) on random scenes with tumors inside, near and far from the liver."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    spacing = (0.8, 0.8, 2.0) if seed % 2 else (1.0, 1.5, 1.0)
    labels = (ndimage.gaussian_filter(rng.random((40, 36, 24)), 3) > 0.52).astype(np.uint8)  # liver blobs
    specks = ndimage.binary_dilation(rng.random(labels.shape) > 0.9985, iterations=1)
    labels[specks] = 2  # tumors: inside, at the edge of and away from the liver
    twenty_six = np.ones((3, 3, 3), bool)
    near = ndimage.binary_dilation(ndimage.binary_dilation(labels == 1, structure=twenty_six),
                                   structure=ball_mm(4.0, spacing_mm=spacing))  # fmt: skip
    components, n = ndimage.label(labels == 2, structure=twenty_six)
    expected = labels.copy()
    for index in range(1, n + 1):
        if not (near & (components == index)).any():
            expected[components == index] = 0
    out = restrict_tumor_to_liver(labels, spacing_mm=spacing, dilation_mm=4.0)
    assert 0 < np.count_nonzero(out == 2) < np.count_nonzero(labels == 2)  # some kept, some removed
    np.testing.assert_array_equal(out, expected)


def test_tumor_touching_liver_kept_with_zero_dilation():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[0:5] = 1
    labels[5:7, 3:5, 3:5] = 2
    labels[8:10, 8:10, 8:10] = 2  # gap of one voxel: removed
    out = restrict_tumor_to_liver(labels, spacing_mm=(1, 1, 1), dilation_mm=0.0)
    assert np.count_nonzero(out == 2) == 8 and out[9, 9, 9] == 0


def test_small_lesions_become_liver_inside_and_background_outside():
    labels = np.zeros((30, 30, 20), dtype=np.uint8)
    labels[2:12, 2:12, 2:12] = 1
    labels[5:7, 5:7, 5:7] = 2  # 8 voxels x 2 mm^3 = 16 mm^3, inside
    labels[3:6, 8:11, 8:11] = 2  # 27 voxels = 54 mm^3, inside
    labels[25, 25, 15] = 2  # 2 mm^3, isolated
    out = remove_small_lesions(labels, spacing_mm=(1.0, 1.0, 2.0), min_volume_mm3=54.0)
    assert np.count_nonzero(out == 2) == 27  # exactly the threshold is kept
    assert out[5, 5, 5] == 1 and out[25, 25, 15] == 0
    assert np.count_nonzero(out) == np.count_nonzero(labels) - 1


def test_ball_mm_anisotropic():
    ball = ball_mm(2.0, spacing_mm=(1.0, 1.0, 2.0))
    assert ball.shape == (5, 5, 3)
    # voxels within 2 mm: |dx|^2 + |dy|^2 + (2 dz)^2 <= 4 -> 13 in the dz=0 plane, 1 each for dz = +-1
    assert ball.sum() == 13 + 2


def test_postprocess_pipeline_and_config():
    labels = _scene()
    out = postprocess_labels(labels, spacing_mm=(1, 1, 1), config=PostprocessConfig(min_lesion_volume_mm3=10))
    expected = np.zeros_like(labels)
    expected[2:12, 2:12, 2:12] = 1  # fragment gone, far tumor gone, 8 mm^3 lesion absorbed into the liver
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8
    off = PostprocessConfig(keep_largest_liver=False, tumor_inside_liver_dilation_mm=None)
    np.testing.assert_array_equal(postprocess_labels(labels, spacing_mm=(1, 1, 1), config=off), labels)
    assert PostprocessConfig.from_dict(off.to_dict()) == off
    with pytest.raises(ConfigError, match="min_lesion_volume"):
        PostprocessConfig.from_dict({"min_lesion_volume": 3})
    with pytest.raises(ConfigError, match="must be >= 0"):
        PostprocessConfig(min_lesion_volume_mm3=-1)


def test_applies_to_lits_labels_only():
    assert applies_to({"0": "background", "1": "liver", "2": "tumor"})
    assert applies_to({0: "background", 1: "liver", 2: "tumor", 3: "vessel"})  # int keys, extra classes
    assert not applies_to({"0": "background", "1": "kidney", "2": "tumor"})
    assert not applies_to({"0": "background", "1": "liver"})


def _tilted(spacing, degrees):
    """A gantry-tilted affine: slice axis tilted by ``degrees`` in the y-z plane; |det| = prod(spacing) cos."""
    a = np.diag([*spacing, 1.0])
    t = np.radians(degrees)
    a[1:3, 2] = spacing[2] * np.sin(t), spacing[2] * np.cos(t)
    return a


def test_small_lesion_threshold_uses_the_true_voxel_volume():
    """Issue #29.3: on a 60° tilted grid a voxel holds 1 x 1 x 2 x cos 60° = 1 mm^3, not the 2 mm^3 of the
    spacings' product: the 27-voxel lesion is 27 mm^3 < 40 and goes; the 64-voxel one (64 mm^3) stays."""
    labels = np.zeros((30, 30, 20), dtype=np.uint8)
    labels[2:12, 2:14, 2:12] = 1
    labels[3:6, 3:6, 3:6] = 2  # 27 voxels
    labels[7:11, 8:12, 6:10] = 2  # 64 voxels
    affine = _tilted((1.0, 1.0, 2.0), 60.0)
    assert abs(np.linalg.det(affine[:3, :3])) == pytest.approx(1.0)
    kept = remove_small_lesions(labels, spacing_mm=(1.0, 1.0, 2.0), min_volume_mm3=40.0)
    assert np.count_nonzero(kept == 2) == 27 + 64  # 54 mm^3 by the product: kept
    out = postprocess_labels(labels, spacing_mm=(1.0, 1.0, 2.0), affine=affine,
                             config=PostprocessConfig(keep_largest_liver=False, tumor_inside_liver_dilation_mm=None,
                                                      min_lesion_volume_mm3=40.0))
    assert np.count_nonzero(out == 2) == 64 and out[4, 4, 4] == 1
