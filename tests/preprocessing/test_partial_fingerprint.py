"""The intensity fingerprint of partially annotated cases (issue #30): unannotated voxels are not foreground."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.io import Volume, affine_from_geometry
from medseg.preprocessing.plan import compute_fingerprint


def test_fingerprint_foreground_leaves_out_the_ignore_value():
    shape = (12, 10, 8)
    image = np.full(shape, -1000, np.int16)
    label = np.zeros(shape, np.uint8)
    label[2:6, 2:6, 2:6], image[2:6, 2:6, 2:6] = 1, 60  # liver at 60 HU
    label[7:9, 2:4, 2:4], image[7:9, 2:4, 2:4] = 2, 30  # tumor at 30 HU
    label[:, :, 6:] = 3  # unannotated slab: air and soft tissue
    image[:, 5:, 6:] = 200
    affine = affine_from_geometry((1.0, 1.0, 2.0))
    case = ("c", Volume(image, affine), Volume(label, affine))
    stats = compute_fingerprint([case], workers=1, progress=False, ignore_label=3)["foreground"]
    n_liver, n_tumor = 64, 8
    assert stats["samples"] == n_liver + n_tumor
    assert stats["mean"] == pytest.approx((60 * n_liver + 30 * n_tumor) / (n_liver + n_tumor))
    assert stats["min"] == 30 and stats["max"] == 60
    undeclared = compute_fingerprint([case], workers=1, progress=False)["foreground"]
    assert undeclared["samples"] > stats["samples"] and undeclared["max"] == 200
