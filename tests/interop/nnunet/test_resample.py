"""nnU-Net's resampling reproduced: equal to nnunetv2's own ``resample_data_or_seg_to_shape``."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.interop.nnunet.resample import new_shape, resample, separate_z_axis

nnunet_resampling = pytest.importorskip("nnunetv2.preprocessing.resampling.default_resampling")


@pytest.mark.parametrize(("spacing", "target", "order", "order_z", "axis"), [
    ((8.0, 8.0, 8.0), (9.5, 6.0, 7.0), 3, 0, None),     # isotropic enough: one 3D spline
    ((8.0, 7.9, 7.9), (4.0, 13.0, 4.0), 3, 0, 1),      # target anisotropic (13 / 4 > 3): axis 1 apart
    ((5.0, 0.8, 0.8), (2.5, 1.6, 1.6), 1, 0, 0),       # source anisotropic: axis 0 apart (logits: order 1)
    ((3.0, 7.0, 3.0), (4.0, 13.0, 4.0), 3, 0, 1),      # axis 1 apart and shrunk 17 -> 9 (order 0: a gather)
    ((8.0, 7.9, 7.9), (4.0, 13.0, 4.0), 3, 1, 1),      # order_z 1: nnU-Net's 3D map_coordinates
])
def test_resample_equals_nnunet(spacing, target, order, order_z, axis):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 11, 17, 13)).astype(np.float32)
    shape = new_shape(data.shape[1:], spacing, target)
    assert shape == tuple(nnunet_resampling.compute_new_shape(data.shape[1:], spacing, target))
    assert separate_z_axis(spacing, target) == axis
    ours = resample(data, shape, spacing=spacing, target_spacing=target, order=order, order_z=order_z)
    theirs = nnunet_resampling.resample_data_or_seg_to_shape(data, shape, spacing, target, is_seg=False, order=order,
                                                             order_z=order_z, force_separate_z=None)
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def test_resample_of_a_strided_view_equals_nnunet():
    """The imported path resamples transposed views (nnU-Net's ``transpose_forward``) as they are."""
    data = np.random.default_rng(1).normal(size=(1, 13, 11, 17)).astype(np.float32).transpose(0, 2, 1, 3)
    spacing, target = (2.0, 1.0, 2.0), (4.0, 13.0, 4.0)
    shape = new_shape(data.shape[1:], spacing, target)
    ours = resample(data, shape, spacing=spacing, target_spacing=target)
    theirs = nnunet_resampling.resample_data_or_seg_to_shape(np.ascontiguousarray(data), shape, spacing, target,
                                                             is_seg=False, order=3, order_z=0, force_separate_z=None)
    np.testing.assert_array_equal(ours, theirs)


def test_forced_separate_z_follows_the_source():
    assert separate_z_axis((1.0, 1.0, 2.0), (1.0, 1.0, 1.0), force_separate_z=True) == 2
    assert separate_z_axis((1.0, 1.0, 9.0), (1.0, 1.0, 1.0), force_separate_z=False) is None
    assert separate_z_axis((1.0, 9.0, 9.0), (1.0, 1.0, 1.0)) is None  # two coarse axes: none apart, as nnU-Net
