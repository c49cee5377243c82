"""The settings-file reader refuses alias bombs, absurd nesting, huge and non-UTF-8 files in one line
naming the file, quickly, while ordinary anchors and aliases keep working."""

from __future__ import annotations

import time

import pytest

from medseg.cli import main
from medseg.errors import ConfigError
from medseg.utils.yamlfile import MAX_DEPTH, MAX_NODES, parse_yaml, read_yaml


def _bomb(levels: int = 9) -> str:
    """The 'billion laughs': each level lists the previous one 9 times (9**levels values, ~1 KB of text)."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


def test_ordinary_anchors_and_aliases_are_read():
    assert parse_yaml("base: &b {lr: 0.01}\nother: *b\n") == {"base": {"lr": 0.01}, "other": {"lr": 0.01}}
    assert parse_yaml("") is None


def test_alias_bomb_is_refused_fast():
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES} values"):
        parse_yaml(_bomb())
    assert time.perf_counter() - start < 5  # it was minutes before


DEEP_MAPPING = "a:\n" + "".join(" " * (2 * i + 2) + f"k{i}:\n" for i in range(60))


@pytest.mark.parametrize("text", ["[" * 60 + "]" * 60, DEEP_MAPPING, "x: &a [*a]\n"])
def test_absurd_nesting_is_refused(text):
    with pytest.raises(ConfigError, match=f"nested more than {MAX_DEPTH} levels"):
        parse_yaml(text)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"name: caf\xe9\n")  # Latin-1
    with pytest.raises(ConfigError, match=r"p\.yaml: not UTF-8 text \(byte 9"):
        read_yaml(path)
    path.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ConfigError, match=r"p\.yaml: larger than 1024 KB"):
        read_yaml(path)
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        read_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize("content", [_bomb().encode(), b"name: liver\nmodel: \xff\n", ("[" * 5000).encode()])
def test_train_refuses_a_hostile_pipeline_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"medseg train: error: {path}: "), err
    assert not (tmp_path / "run").exists()
