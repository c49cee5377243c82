"""Data-set discovery: LiTS, Decathlon and DICOM-per-case layouts, pairing by case id, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.data import discover_dataset, discover_images
from medseg.errors import DataError

PREAMBLE = b"\0" * 128 + b"DICM"


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_lits_layout_in_batches_pairs_by_id_and_sorts_numerically(tmp_path):
    for i in (0, 2, 10):
        _touch(tmp_path / "Training Batch 1" / f"volume-{i}.nii")
        _touch(tmp_path / "Training Batch 2" / f"segmentation-{i}.nii")
    _touch(tmp_path / "Training Batch 2" / "volume-11.nii.gz")  # no label
    _touch(tmp_path / "test" / "test-volume-5.nii")
    _touch(tmp_path / "Training Batch 1" / "._volume-3.nii")  # macOS resource fork: ignored
    scan = discover_dataset(tmp_path, report_orphans=False)
    assert scan.layout == "lits"
    assert [c.case_id for c in scan.cases] == ["0", "2", "5", "10", "11"]
    by_id = {c.case_id: c for c in scan.cases}
    assert by_id["10"].image.name == "volume-10.nii" and by_id["10"].label.name == "segmentation-10.nii"
    assert by_id["10"].label.parent.name == "Training Batch 2"
    assert by_id["11"].label is None and by_id["11"].split == "train"
    assert by_id["5"].split == "test" and by_id["5"].label is None


def test_lits_phantom_data_set(tiny_dataset):
    cases = discover_dataset(tiny_dataset)
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    assert [(c.case_id, c.image.name, c.label.name) for c in cases] == [
        (e["case_id"], e["image"], e["label"]) for e in manifest["cases"]
    ]


def test_decathlon_uses_training_list_and_imagests(tmp_path):
    for i in (0, 1, 7):
        _touch(tmp_path / "imagesTr" / f"liver_{i}.nii.gz")
        _touch(tmp_path / "labelsTr" / f"liver_{i}.nii.gz")
    _touch(tmp_path / "imagesTr" / "._liver_0.nii.gz")
    _touch(tmp_path / "imagesTs" / "liver_132.nii.gz")
    meta = {"name": "Liver", "training": [{"image": f"./imagesTr/liver_{i}.nii.gz",
                                           "label": f"./labelsTr/liver_{i}.nii.gz"} for i in (0, 7)]}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    scan = discover_dataset(tmp_path, report_orphans=False)
    assert scan.layout == "decathlon"
    assert [(c.case_id, c.split) for c in scan.cases] == [("liver_0", "train"), ("liver_7", "train"),
                                                          ("liver_132", "test")]
    assert scan.cases[1].label == tmp_path / "labelsTr" / "liver_7.nii.gz"
    assert scan.orphan_labels == [tmp_path / "labelsTr" / "liver_1.nii.gz"]  # not in the training list


def test_decathlon_without_training_list_pairs_nnunet_names(tmp_path):
    _touch(tmp_path / "imagesTr" / "liver_3_0000.nii.gz")
    _touch(tmp_path / "imagesTr" / "liver_4_0000.nii.gz")
    _touch(tmp_path / "labelsTr" / "liver_3.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}))
    cases = discover_dataset(tmp_path)
    assert [(c.case_id, c.label.name if c.label else None) for c in cases] == [
        ("liver_3", "liver_3.nii.gz"), ("liver_4", None)]


def test_dicom_per_case_with_inner_and_side_labels(tmp_path):
    _touch(tmp_path / "patient01" / "CT" / "IM0001", PREAMBLE)
    _touch(tmp_path / "patient01" / "segmentation.nii.gz")
    _touch(tmp_path / "patient02" / "1.dcm", PREAMBLE)
    _touch(tmp_path / "patient03" / "1.dcm", PREAMBLE)
    _touch(tmp_path / "labels" / "patient02.nii.gz")
    cases = discover_dataset(tmp_path)
    assert [(c.case_id, c.layout) for c in cases] == [("patient01", "dicom"), ("patient02", "dicom"),
                                                      ("patient03", "dicom")]
    assert cases[0].image == tmp_path / "patient01"
    assert cases[0].label == tmp_path / "patient01" / "segmentation.nii.gz"
    assert cases[1].label == tmp_path / "labels" / "patient02.nii.gz"
    assert cases[2].label is None


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "empty folder"),
        (lambda root: _touch(root / "notes.txt"), "no data set layout recognised"),
        (lambda root: (_touch(root / "a" / "volume-1.nii"), _touch(root / "b" / "volume-1.nii.gz")),
         "case id '1' is used by both"),
        (lambda root: _touch(root / "dataset.json", b"{not json"), "unreadable dataset.json"),
    ],
)
def test_bad_roots_raise_one_line_errors(tmp_path, setup, message):
    root = tmp_path / "root"
    root.mkdir()
    setup(root)
    with pytest.raises(DataError, match=message) as info:
        discover_dataset(root)
    assert "\n" not in str(info.value) and str(root) in str(info.value)


def test_missing_root_and_file_root(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        discover_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="expected a data set folder"):
        discover_dataset(_touch(tmp_path / "volume-1.nii"))


def test_discover_images_mixes_files_folders_and_series(tmp_path):
    scans = tmp_path / "scans"
    _touch(scans / "a.nii.gz")
    _touch(scans / "b_0000.nii.gz")
    _touch(scans / "b_seg.nii.gz")  # a prediction: skipped
    _touch(scans / "segmentation-9.nii")  # a label: skipped
    _touch(scans / "patient7" / "IM1", PREAMBLE)
    series = _touch(tmp_path / "series" / "x.dcm", PREAMBLE).parent
    single = _touch(tmp_path / "volume-42.nii")
    found = discover_images([scans, series, single])
    assert found == [("a", scans / "a.nii.gz"), ("b", scans / "b_0000.nii.gz"), ("patient7", scans / "patient7"),
                     ("series", series), ("42", single)]
    with pytest.raises(DataError, match="case id 'a' is used by both"):
        discover_images([scans, scans / "a.nii.gz"])
    with pytest.raises(DataError, match="not a NIfTI"):
        discover_images([_touch(tmp_path / "notes.txt")])


def test_discover_images_on_a_lits_root_with_training_batch_folders(tmp_path):
    """`medseg predict LiTS/` finds the images `medseg check LiTS/` accepts (no volume-N at the top)."""
    for batch, cases in (("Training Batch 1", (0, 1)), ("Training Batch 2", (27,))):
        for i in cases:
            _touch(tmp_path / batch / f"volume-{i}.nii")
            _touch(tmp_path / batch / f"segmentation-{i}.nii")
    expected = [(c.case_id, c.image) for c in discover_dataset(tmp_path)]
    assert discover_images([tmp_path]) == expected
    assert [cid for cid, _ in expected] == ["0", "1", "27"]


def test_unreadable_subfolder_is_reported_not_skipped_silently(tmp_path, monkeypatch, caplog):
    import os

    _touch(tmp_path / "Training Batch 1" / "volume-0.nii")
    _touch(tmp_path / "Training Batch 1" / "segmentation-0.nii")
    locked = tmp_path / "Training Batch 2"
    _touch(locked / "volume-1.nii")
    real_scandir = os.scandir

    def scandir(path="."):  # root reads every folder, so chmod 000 cannot be used to test this
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level("WARNING", logger="medseg.data.discovery"):
        cases = discover_dataset(tmp_path)
    assert [c.case_id for c in cases] == ["0"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(locked) in w and "cannot read folder (Permission denied)" in w for w in warnings), warnings


def test_predicts_own_outputs_in_a_folder_are_never_scans(tmp_path):
    """Issue #29.7: `predict` on a folder holding its earlier outputs predicted the ``_prob_*`` and
    ``_uncertainty`` maps as CT scans; a ``_seg.dcm`` made the folder look like a DICOM series."""
    from medseg.data.naming import is_output_name
    from medseg.outputs.case import map_filename, seg_filename

    folder = tmp_path / "scans"
    _touch(folder / "a.nii.gz")
    for name in ("a_seg.nii.gz", seg_filename("a"), map_filename("a", "liver"), map_filename("a", "tumor"),
                 map_filename("a", "uncertainty")):
        assert is_output_name(name)
        _touch(folder / name, PREAMBLE if name.endswith(".dcm") else b"x")
    assert discover_images([folder]) == [("a", folder / "a.nii.gz")]
    with pytest.raises(DataError, match="probability or uncertainty map written by medseg predict"):
        discover_images([folder / map_filename("a", "tumor")])
    assert not is_output_name("liver_7_0000.nii.gz") and not is_output_name("prob_scan.nii.gz")


def test_the_scan_is_the_sequence_of_its_cases_and_the_one_name(tiny_dataset, tmp_path, caplog):
    import shutil

    import medseg.data

    scan = discover_dataset(tiny_dataset)
    assert list(scan) == scan.cases and len(scan) == len(scan.cases) == 4 and scan[0] == scan.cases[0]
    assert not hasattr(medseg.data, "scan_dataset")  # one name for one thing (issue #25)
    orphaned = tmp_path / "orphaned"
    shutil.copytree(tiny_dataset, orphaned)
    label = next(orphaned.rglob("segmentation-*.nii*"))
    extra = label.with_name("segmentation-99" + "".join(label.suffixes))
    shutil.copy(label, extra)
    with caplog.at_level("WARNING"):
        assert discover_dataset(orphaned, report_orphans=False).orphan_labels == [extra]
    assert "label without a matching image" not in caplog.text
    with caplog.at_level("WARNING"):
        discover_dataset(orphaned)
    assert f"{extra}: label without a matching image" in caplog.text
