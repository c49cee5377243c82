"""Canonical reorientation and its exact inverse."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medseg.io import Volume, affine_from_geometry, axcodes, from_canonical, to_canonical


def _all_orientations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            direction = np.zeros((3, 3))
            for axis, (world, sign) in enumerate(zip(perm, signs)):
                direction[world, axis] = sign
            yield direction


@pytest.mark.parametrize("direction", list(_all_orientations()))
def test_to_canonical_is_ras_keeps_world_and_inverts_exactly(direction):
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 1000, size=(5, 6, 7)).astype(np.int16)
    vol = Volume(array, affine_from_geometry((0.7, 0.9, 2.5), origin_mm=(3, -4, 5), direction=direction))
    canon, recipe = to_canonical(vol)
    assert axcodes(canon.affine) == ("R", "A", "S")
    # every voxel keeps its world position: compare via world coordinates of a few voxels
    for index in [(0, 0, 0), (4, 5, 6), (2, 3, 1)]:
        world = vol.world_coordinates([index])
        canon_index = np.rint(np.linalg.solve(canon.affine, np.append(world[0], 1.0))[:3]).astype(int)
        assert canon.array[tuple(canon_index)] == array[index]
    np.testing.assert_array_equal(from_canonical(canon.array, recipe), array)
    # leading channel axes are carried through the inverse
    stacked = np.stack([canon.array, canon.array + 1])
    back = from_canonical(stacked, recipe)
    np.testing.assert_array_equal(back[1], array + 1)
