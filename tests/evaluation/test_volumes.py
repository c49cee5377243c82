import numpy as np
import pytest
from scipy.spatial.distance import pdist
from skimage.measure import marching_cubes

from medseg.data import make_phantom
from medseg.evaluation import max_diameter_mm, measure_volumes, volumes_report
from medseg.evaluation.diameters import axial_diameter_mm


@pytest.mark.parametrize("index", [1, 2, 3])
def test_phantom_volumes_match_manifest(index):
    case = make_phantom(size="tiny", seed=0, index=index)
    report = volumes_report(case.label, case.image)
    info = case.info
    for key in ("liver_ml", "liver_parenchyma_ml", "tumor_ml", "tumor_burden_percent"):
        assert report[key] == pytest.approx(info[key], rel=1e-9, abs=1e-9), key
    assert report["lesion_count"] == info["lesion_count"]
    # each lesion's centroid lies within one voxel diagonal of a manifest lesion centre (RAS+ mm)
    diag = float(np.linalg.norm(case.label.spacing_mm))
    centres = np.array([lesion["center_mm"] for lesion in info["lesions"]]).reshape(-1, 3)
    for lesion in report["lesions"]:
        assert np.min(np.linalg.norm(centres - lesion["centroid_mm"], axis=1)) < diag
    # HU statistics from the scan, checked directly
    liver = np.isin(case.label.array, (1, 2))
    assert report["hu"]["liver"]["mean"] == pytest.approx(case.image.array[liver].mean())


def test_volume_units_and_truncation():
    labels = np.zeros((10, 12, 8), np.uint8)
    labels[0:4, 2:6, 2:5] = 1  # liver touching the border at i = 0
    labels[2:4, 3:5, 3:4] = 2  # 4-voxel tumor inside
    report = measure_volumes(labels, spacing_mm=(0.5, 2.0, 3.0))
    voxel_ml = 0.5 * 2.0 * 3.0 / 1000
    assert report["liver_ml"] == pytest.approx(48 * voxel_ml)
    assert report["tumor_ml"] == pytest.approx(4 * voxel_ml)
    assert report["liver_parenchyma_ml"] == pytest.approx(44 * voxel_ml)
    assert report["tumor_burden_percent"] == pytest.approx(100 * 4 / 48)
    assert report["liver_truncated"] and not report["tumor_truncated"]
    (lesion,) = report["lesions"]
    assert lesion["volume_ml"] == pytest.approx(4 * voxel_ml) and not lesion["truncated"]
    # centroid without affine: mm from voxel (0, 0, 0) along the array axes
    np.testing.assert_allclose(lesion["centroid_mm"], [2.5 * 0.5, 3.5 * 2.0, 3 * 3.0])


def test_centroid_in_scanner_coordinates():
    affine = np.diag([-0.5, -2.0, 3.0, 1.0])
    affine[:3, 3] = (10.0, 20.0, -30.0)
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1, 2, 3] = 2
    report = measure_volumes(labels, spacing_mm=(0.5, 2.0, 3.0), affine=affine)
    np.testing.assert_allclose(report["lesions"][0]["centroid_mm"], [10 - 0.5, 20 - 4.0, -30 + 9.0])
    with pytest.raises(ValueError, match="spacing_mm"):
        measure_volumes(labels, spacing_mm=(1, 1, 1), affine=affine)


def test_diameters_equal_marching_cubes_vertices():
    rng = np.random.default_rng(3)
    from scipy import ndimage

    blob = ndimage.gaussian_filter(rng.random((14, 12, 10)), 1.5) > 0.5
    blob = ndimage.label(blob)[0] == 1
    spacing = (0.7, 1.1, 2.5)
    verts, *_ = marching_cubes(np.pad(blob, 1).astype(float), level=0.5, spacing=spacing)
    assert max_diameter_mm(blob, spacing_mm=spacing) == pytest.approx(pdist(verts).max())


def test_diameter_single_voxel_and_box():
    one = np.zeros((3, 3, 3), bool)
    one[1, 1, 1] = True
    assert max_diameter_mm(one, spacing_mm=(1.0, 2.0, 3.0)) == pytest.approx(3.0)
    box = np.zeros((12, 12, 6), bool)
    box[2:10, 3:7, 1:5] = True  # 8 x 4 x 4 voxels
    spacing = (1.0, 1.0, 2.0)
    # axial slices (axis 2): farthest face centres are the mid-points of opposite corner edges
    assert axial_diameter_mm(box, spacing_mm=spacing, axial_axis=2) == pytest.approx(np.hypot(8.0, 3.0))
    assert max_diameter_mm(box, spacing_mm=spacing) > np.hypot(8.0, 3.0)


def test_lesion_at_scan_edge_is_flagged_not_dropped():
    labels = np.ones((10, 10, 10), np.uint8)
    labels[3:6, 3:6, 7:10] = 2  # reaches the last slice
    labels[1:3, 1:3, 1:3] = 2
    report = measure_volumes(labels, spacing_mm=(1.0, 1.0, 1.0))
    assert [lesion["truncated"] for lesion in report["lesions"]] == [True, False]  # largest (27 voxels) first
    assert report["lesions"][0]["volume_ml"] == pytest.approx(0.027)
    np.testing.assert_allclose(report["lesions"][1]["centroid_mm"], [1.5, 1.5, 1.5])
    assert report["tumor_truncated"] and report["liver_truncated"]


def test_fortran_ordered_map_is_measured_without_whole_map_masks():
    """nibabel's Fortran-ordered maps: the region masks are taken inside the labels' box (views), so new
    allocations stay below half of one map; the report (truncation, centroids, HU) equals the C-order one."""
    import tracemalloc

    labels = np.zeros((300, 280, 120), np.uint8, order="F")
    labels[100:160, 90:150, 0:40] = 1  # the liver reaches the first slice: truncated
    labels[120:130, 100:110, 20:30] = 2
    image = np.asfortranarray(np.where(labels > 0, 60, -1000).astype(np.int16))
    spacing, affine = (0.8, 0.8, 2.0), np.diag([0.8, 0.8, 2.0, 1.0])
    measure_volumes(labels, spacing_mm=spacing, affine=affine, image=image)  # warm-up
    tracemalloc.start()
    try:
        report = measure_volumes(labels, spacing_mm=spacing, affine=affine, image=image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * labels.nbytes, f"peak {peak / 1e6:.2f} MB for a {labels.nbytes / 1e6:.2f} MB map"
    assert report == measure_volumes(np.ascontiguousarray(labels), spacing_mm=spacing, affine=affine,
                                     image=np.ascontiguousarray(image))
    assert report["liver_truncated"] and not report["tumor_truncated"]
    assert report["lesions"][0]["centroid_mm"] == pytest.approx([124.5 * 0.8, 104.5 * 0.8, 24.5 * 2.0])
    assert report["liver_ml"] == pytest.approx(60 * 60 * 40 * 0.8 * 0.8 * 2.0 / 1000)


def _ball_on_tilted_grid(tilt_deg: float, radius_mm: float, tumor_mm: float):
    """A liver ball with a concentric tumor ball, rasterised on a gantry-tilted grid (1 x 1 mm pixels, 1.5 mm
    slice step along an axis tilted by ``tilt_deg``): voxel centres within the radius in world mm."""
    from medseg.io.volume import Volume

    t = np.radians(tilt_deg)
    affine = np.eye(4)
    affine[:3, :3] = [[1.0, 0, 0], [0, 1.0, 1.5 * np.sin(t)], [0, 0, 1.5 * np.cos(t)]]
    shape = (48, 60, 32)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    distance = np.linalg.norm(index @ affine[:3, :3].T - [24.0, 37.0, 22.5], axis=1).reshape(shape)
    labels = (distance < radius_mm).astype(np.uint8)
    labels[distance < tumor_mm] = 2
    return Volume(labels, affine)


def test_tilted_grid_volumes_and_diameters_are_true_world_values():
    """Issue #29.3: |det| voxel volume (product of axis lengths: +10.4%) and diameters on the true geometry
    (orthogonal spacing: 40.4 mm for a 30 mm ball); analytic 4/3 pi r^3 and 2 r."""
    from medseg.evaluation.volumes import volumes_report

    label = _ball_on_tilted_grid(25.0, 15.0, 6.0)
    report = volumes_report(label)
    assert report["liver_ml"] == pytest.approx(4 / 3 * np.pi * 15.0**3 / 1000, rel=0.005)  # 14.147 vs 14.137
    assert report["tumor_ml"] == pytest.approx(4 / 3 * np.pi * 6.0**3 / 1000, rel=0.03)  # 0.888 vs 0.905
    lesion = report["lesions"][0]
    # face centres of a voxelised ball: 2 r plus at most one slice step (1.5 mm)
    assert 12.0 <= lesion["max_diameter_mm"] <= 12.0 + 1.5
    assert 12.0 - 1.0 <= lesion["axial_diameter_mm"] <= 12.0 + 1.0  # in the acquired (square) slice
    assert 12.0 - 1.0 <= lesion["short_axis_mm"] <= 12.0 + 1.0
