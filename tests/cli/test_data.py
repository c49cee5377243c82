"""``medseg phantom`` and ``medseg check`` through the CLI: files written, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest

from medseg.cli import main


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "data"
    assert main(["phantom", str(out), "--cases", "2", "--size", "tiny", "--seed", "4", "--workers", "1"]) == 0
    return out


def test_phantom_writes_cases_and_manifest(phantom):
    manifest = json.loads((phantom / "manifest.json").read_text())
    assert (manifest["size"], manifest["seed"], len(manifest["cases"])) == ("tiny", 4, 2)
    assert manifest["labels"] == {"0": "background", "1": "liver", "2": "tumor"}
    for case in manifest["cases"]:
        assert (phantom / case["image"]).is_file() and (phantom / case["label"]).is_file()


def test_check_a_clean_data_set_exits_0_and_writes_csv(phantom, tmp_path, capsys):
    csv = tmp_path / "problems.csv"
    assert main(["check", str(phantom), "--workers", "1", "--csv", str(csv)]) == 0
    assert csv.is_file()
    assert "error" not in capsys.readouterr().err


def test_check_errors_exit_2_with_a_count(phantom, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((phantom / "manifest.json").read_text())
    for case in manifest["cases"]:
        for key in ("image", "label"):
            target = broken / case[key]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((phantom / case[key]).read_bytes())
    first_label = broken / manifest["cases"][0]["label"]
    first_label.write_bytes(first_label.read_bytes()[:100])  # truncated
    assert main(["check", str(broken), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "medseg check: error:" in err and "error(s) in 1 case(s)" in err


@pytest.mark.parametrize(("args", "message"), [
    (["phantom", "{tmp}/p", "--cases", "0"], "--cases must be at least 1, got 0"),
    (["phantom", "{tmp}/p", "--workers", "0"], "--workers must be at least 1, got 0"),
    (["check", "{tmp}", "--workers", "0"], "--workers must be at least 1, got 0"),
])
def test_bad_flags_are_one_line(args, message, tmp_path, capsys):
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_phantom_refuses_a_folder_of_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("someone's data")
    assert main(["phantom", str(tmp_path), "--cases", "1", "--size", "tiny"]) == 2
    assert "refusing to write a phantom over it" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
