import pandas as pd
import pytest

from medseg.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, check_protocol, summarize_protocol


def test_protocol_names():
    assert PROTOCOLS == ("medseg", "lits2017") and DEFAULT_PROTOCOL == "medseg"
    assert check_protocol("lits2017") == "lits2017"
    with pytest.raises(ValueError, match="medseg, lits2017"):
        check_protocol("LiTS")


def test_summary_names_its_protocol_first():
    row = {"case": "0", "TP": 2, "FP": 1, "FN": 0, "TP_greater_zero": 2, "FP_greater_zero": 1, "FN_greater_zero": 0}
    row.update(n_predicted=3, n_reference=2, lesion_dice_per_case=0.5, lesion_I=3, lesion_S=12, liver_I=5, liver_S=10)
    row.update({f"liver_{k}": 0.5 for k in ("dice", "jaccard", "voe", "rvd", "assd", "rmsd", "msd")})
    row["tumor_burden_diff"] = 0.1
    summary = summarize_protocol("lits2017", pd.DataFrame([row]), pd.DataFrame())
    assert next(iter(summary)) == "protocol" and summary["protocol"] == "lits2017"
    assert summary["scores"]["lesion_precision"] == pytest.approx(2 / 3)
    assert summary["scores"]["lesion_dice_global"] == pytest.approx(0.5)
    medseg = summarize_protocol("medseg", pd.DataFrame([{"case": "0", "liver_dice": 0.5}]), pd.DataFrame())
    assert next(iter(medseg)) == "protocol" and medseg["protocol"] == "medseg"
    assert medseg["regions"]["liver"]["dice"]["mean"] == 0.5
