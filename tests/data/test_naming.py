import pytest

from medseg.data.naming import case_id_from_path, prediction_filename


@pytest.mark.parametrize(
    ("name", "case_id"),
    [
        ("volume-12.nii", "12"),
        ("data/segmentation-12.nii.gz", "12"),
        ("test-volume-3.nii", "3"),
        ("imagesTr/liver_7.nii.gz", "liver_7"),
        ("imagesTr/liver_7_0000.nii.gz", "liver_7"),
        ("out/12_seg.nii.gz", "12"),
        ("dicom/patient01", "patient01"),
    ],
)
def test_case_id_from_path(name, case_id):
    assert case_id_from_path(name) == case_id


def test_prediction_filename_round_trips():
    assert case_id_from_path(prediction_filename("liver_7")) == "liver_7"
